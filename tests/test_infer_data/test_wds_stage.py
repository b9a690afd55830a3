"""The public webdataset stage: groups -> the instances of InferDataset, for every codec and input form."""

from __future__ import annotations

import functools
import http.server
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import webdataset as wds
from builders import make_groups
from torch.utils.data import DataLoader, IterableDataset

from infer_data import FormatError, InferDataset
from infer_data.wds import decode_topk, expand_groups, group_pipeline, shard_urls, zstd_handler

# webdataset 1.0 leaves its shard file objects to the garbage collector.
pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning", "ignore::pytest.PytestUnraisableExceptionWarning")

CODECS = [  # (channels, codecs): every base codec in grey and colour, every label codec
    (1, {"base": "png"}), (3, {"base": "png", "labels": {"name": "topk", "k": 2}}),
    (1, {"base": {"name": "jpeg", "quality": 90}, "labels": {"name": "topk", "k": 3}}), (3, {"base": "jpeg"}),
    (1, {"base": {"name": "webp", "quality": 80}}), (3, {"base": {"name": "webp", "lossless": True}, "compensators": "int8"}),
    (1, {"base": "npy", "labels": "none"}), (3, {"base": {"name": "png", "stack": 2}, "compensators": {"name": "fp16", "zstd_level": None}}),
]


def _target(codecs: dict[str, Any]) -> str:
    return "class" if codecs.get("labels") == "none" else "soft"


def _assert_same(items: list[tuple[torch.Tensor, Any]], ref: InferDataset) -> None:
    """Instance by instance: the same images (bit for bit) and targets as the map-style dataset."""
    assert len(items) == len(ref)
    for i, (x, y) in enumerate(items):
        want_x, want_y = ref[i]
        assert x.dtype == torch.float32 and x.shape == want_x.shape and torch.equal(x, want_x), i
        assert torch.equal(torch.as_tensor(y), torch.as_tensor(want_y)), i


@pytest.fixture(params=CODECS, ids=lambda p: f"C{p[0]}-" + "-".join(str(v) for v in p[1].values()))
def coded(request: pytest.FixtureRequest, dataset_factory: Any) -> tuple[Path, str]:
    c, codecs = request.param
    root = dataset_factory(make_groups(3, 3, 1, (c, 8, 8), nc=5), codecs=codecs, max_shard_bytes=3000)
    return root, _target(codecs)


def test_raw_samples_expand_to_the_instances_of_InferDataset(coded: tuple[Path, str]) -> None:
    root, target = coded
    pipeline = wds.WebDataset(shard_urls(root), shardshuffle=False).compose(expand_groups(root, target=target))
    _assert_same(list(pipeline), InferDataset(root, target=target))


@pytest.mark.parametrize("decoder", ["pil", "rgb8", "l8"])
def test_samples_decoded_by_webdataset_keep_C_and_dense_labels(coded: tuple[Path, str], decoder: str) -> None:
    root, target = coded
    ref = InferDataset(root, target=target)
    if decoder == "l8" and ref.index.dataset.image_shape[0] == 3:
        pytest.skip("l8 turns colour into grey: refused, see test_a_grey_decode_of_a_colour_set_is_refused")
    if decoder == "l8" and ref.index.codecs["base"]["name"] == "webp":
        pytest.skip("WebP stores grey as RGB; PIL's L conversion weighs the lossy channels, the format takes the first")
    pipeline = wds.WebDataset(shard_urls(root), shardshuffle=False).decode(zstd_handler, decoder).compose(expand_groups(root, target=target))
    _assert_same(list(pipeline), ref)


def test_group_records_expand_too(tiny_dir: Path) -> None:
    pipeline = wds.DataPipeline(group_pipeline(tiny_dir), expand_groups(tiny_dir))
    _assert_same(list(pipeline), InferDataset(tiny_dir))


def test_decode_topk_gives_the_dense_labels_InferDataset_uses(dataset_factory: Any) -> None:
    groups = make_groups(2, 4, 1, (3, 4, 4), nc=7)
    root = dataset_factory(groups, codecs={"labels": {"name": "topk", "k": 3}})
    ref = InferDataset(root)
    samples = list(wds.WebDataset(shard_urls(root), shardshuffle=False).decode(zstd_handler))
    dense = np.concatenate([decode_topk(s["label_topk.npy.zst"], 7) for s in samples])  # (G*K*(M+1), NC)
    assert dense.dtype == np.float16 and dense.shape == (16, 7)
    assert torch.equal(torch.from_numpy(dense.astype(np.float32)), torch.stack([ref[i][1] for i in range(16)]))
    with pytest.raises(FormatError, match=r"^label_topk: holds int64 \(2, 3\), expected uint16 \(rows, 2k \+ 1\) top-k labels$"):
        decode_topk(np.zeros((2, 3), np.int64), 7)
    with pytest.raises(FormatError, match=r"^label_topk: label index 9 out of range for 7 classes$"):
        decode_topk(np.array([[0, 9, 0]], np.uint16), 7)


def test_a_grey_decode_of_a_colour_set_is_refused(tiny_dir: Path) -> None:
    pipeline = wds.WebDataset(shard_urls(tiny_dir), shardshuffle=False).decode(zstd_handler, "l8").compose(expand_groups(tiny_dir))
    with pytest.raises(FormatError, match=r"shard-000000\.tar group g000000 field 'base\.png': image has 1 channels, the index declares C=3$"):
        list(pipeline)


def test_decoded_fields_are_checked(tiny_dir: Path) -> None:
    stage = expand_groups(tiny_dir)
    sample = next(iter(wds.WebDataset(shard_urls(tiny_dir), shardshuffle=False).decode(zstd_handler, "rgb8")))
    cases = [
        ({"comp.npy.zst": sample["comp.npy.zst"][:1]}, r"group g000000 member 'comp\.npy': holds float16 \(1, 3, 8, 8\) but the index declares float16 \(2, 3, 8, 8\)"),
        ({"comp.npy.zst": sample["comp.npy.zst"].astype(np.float64) + 1e-6}, r"field 'comp\.npy\.zst': values do not convert to float16 exactly"),
        ({"base.png": sample["base.png"].astype(np.float32)}, r"field 'base\.png': holds float32 \(32, 8, 3\), expected uint8 \(32, 8\[, C\]\)"),
        ({"base.png": sample["base.png"][:8]}, r"field 'base\.png': holds uint8 \(8, 8, 3\), expected uint8 \(32, 8\[, C\]\)"),
        ({"evil.pyd": 1}, r"unexpected member 'evil\.pyd'"),
        ({"meta.json": None}, r"missing field 'meta\.json'; pass every field of the sample to the stage"),
    ]
    for change, message in cases:
        with pytest.raises(FormatError, match=message):
            list(stage([{**sample, **change}]))


# -- DataLoader and URL roots ---------------------------------------------------------------------


def test_stage_in_a_dataloader_with_workers(dataset_factory: Any) -> None:
    root = dataset_factory(make_groups(4, 3, 1, (1, 8, 8)), max_shard_bytes=1500)
    ref = InferDataset(root)
    ds = wds.WebDataset(shard_urls(root), shardshuffle=False).compose(expand_groups(root))
    assert isinstance(ds, IterableDataset)
    got = Counter((x.numpy().tobytes(), y.numpy().tobytes()) for xb, yb in DataLoader(ds, batch_size=5, num_workers=2)
                  for x, y in zip(xb, yb))
    assert got == Counter((x.numpy().tobytes(), y.numpy().tobytes()) for x, y in (ref[i] for i in range(len(ref))))


def test_group_pipeline_is_an_iterable_dataset_workers_split(dataset_factory: Any) -> None:
    groups = make_groups(4, 3, 1, (1, 8, 8))
    root = dataset_factory(groups, max_shard_bytes=1500)
    ds = group_pipeline(root)
    assert isinstance(ds, IterableDataset)
    records = list(DataLoader(ds, batch_size=None, num_workers=2))
    assert sorted(int(r.source_indices[0]) for r in records) == [0, 1000, 2000, 3000]
    for r in records:
        np.testing.assert_array_equal(r.bases, groups[int(r.source_indices[0]) // 1000].bases)


@pytest.fixture
def http_root(tiny_dir: Path) -> Iterator[str]:
    """``tiny_dir`` served over HTTP on loopback."""
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(tiny_dir.parent)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/{tiny_dir.name}/"
    server.shutdown()
    server.server_close()


def test_url_roots_are_read_without_a_false_missing_index(http_root: str, tiny_dir: Path, tiny_groups: list) -> None:
    urls = shard_urls(http_root)
    assert urls == [f"{http_root}shard-{i:06d}.tar" for i in range(3)]
    records = list(group_pipeline(http_root))
    assert [r.source_indices.tolist() for r in records] == [g.source_indices.tolist() for g in tiny_groups]
    for r, want in zip(records, tiny_groups):
        np.testing.assert_array_equal(r.bases, want.bases)
    pipeline = wds.WebDataset(urls, shardshuffle=False).compose(expand_groups(http_root))
    _assert_same(list(pipeline), InferDataset(tiny_dir))


@pytest.mark.parametrize("form", ["file://{}", "pipe:cat {}/{{}}"])
def test_file_and_pipe_roots(tiny_dir: Path, tiny_groups: list, form: str) -> None:
    root = form.format(tiny_dir)
    names = [f"shard-{i:06d}.tar" for i in range(3)]
    want = [f"file://{tiny_dir}/{n}" for n in names] if root.startswith("file:") else [f"pipe:cat {tiny_dir}/{n}" for n in names]
    assert shard_urls(root) == want
    assert [r.source_indices.tolist() for r in group_pipeline(root)] == [g.source_indices.tolist() for g in tiny_groups]
    _assert_same(list(wds.WebDataset(shard_urls(root), shardshuffle=False).compose(expand_groups(root))), InferDataset(tiny_dir))
