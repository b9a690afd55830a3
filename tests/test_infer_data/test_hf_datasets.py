"""Hugging Face ``datasets`` reads the shards with its webdataset builder; the stage expands its rows."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from builders import make_groups

from infer_data import InferDataset
from infer_data.wds import expand_groups, shard_urls

datasets = pytest.importorskip("datasets")

# The demo's shape: Fashion-MNIST-sized grey 28 x 28, K = 10, M = 2 teachers, ipc 10 -> G = 8.
DEMO = {"g": 8, "k": 10, "m": 2, "chw": (1, 28, 28)}


def _rows(root: Path, cache: Path, fmt: str | None) -> Any:
    ds = datasets.load_dataset("webdataset", data_files={"train": shard_urls(root)}, split="train", cache_dir=str(cache))
    return ds.with_format(fmt) if fmt else ds


@pytest.mark.parametrize("codecs,fmt", [({}, None), ({"base": "jpeg", "labels": {"name": "topk", "k": 3}}, "numpy")])
def test_load_dataset_rows_expand_to_the_instances_of_InferDataset(dataset_factory: Any, tmp_path: Path,
                                                                   codecs: dict[str, Any], fmt: str | None) -> None:
    root = dataset_factory(make_groups(DEMO["g"], DEMO["k"], DEMO["m"], DEMO["chw"]), codecs=codecs, max_shard_bytes=20000)
    rows = _rows(root, tmp_path / "hf", fmt)
    assert len(rows) == DEMO["g"]
    ref = InferDataset(root)
    items = list(expand_groups(root)(rows))
    assert len(items) == len(ref) == 240
    for i, (x, y) in enumerate(items):
        want_x, want_y = ref[i]
        assert x.shape == (1, 28, 28) and torch.equal(x, want_x) and torch.equal(y, want_y), i
