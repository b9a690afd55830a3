"""A committed v1 dataset guards the on-disk format: readable as-is, and rewritten byte for byte.

The golden data uses uncompressed codecs so its bytes depend only on this project (not on the
zstd or zlib versions installed). Regenerate only with a deliberate format change:
``python tests/test_infer_data/test_golden.py`` (and bump the format version if readers break).
"""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path
from types import ModuleType

import numpy as np

HERE = Path(__file__).resolve().parent
GOLDEN = HERE.parent / "data" / "golden_v1"
CODECS = {"base": {"name": "npy", "zstd_level": None}, "compensators": {"name": "fp16", "zstd_level": None},
          "labels": {"name": "fp16", "zstd_level": None}}




def _builders() -> ModuleType:
    """tests/builders.py, loaded by path so this file also runs as a script."""
    spec = importlib.util.spec_from_file_location("golden_builders", HERE.parent / "builders.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def golden_groups() -> list:
    return _builders().make_groups(2, 3, 2, (1, 4, 5), seed=2024)


def write_golden(root: Path) -> Path:
    return _builders().write_dataset(root, golden_groups(), codecs=CODECS, max_shard_bytes=6000, name="golden")


def digests(root: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.iterdir())}


def test_golden_reads_back() -> None:
    from infer_data import InferDataset, iter_groups, read_index

    index = read_index(GOLDEN)
    groups = list(iter_groups(GOLDEN, index))
    for got, want in zip(groups, golden_groups(), strict=True):
        np.testing.assert_array_equal(got.bases, want.bases)
        np.testing.assert_array_equal(got.compensators, want.compensators.astype(np.float16))
    ds = InferDataset(GOLDEN)
    assert len(ds) == 2 * 3 * 3 and ds[17][1].shape == (3,)


def test_writer_reproduces_golden_bytes(tmp_path: Path) -> None:
    assert digests(write_golden(tmp_path / "again")) == digests(GOLDEN)


if __name__ == "__main__":
    import shutil

    shutil.rmtree(GOLDEN, ignore_errors=True)
    write_golden(GOLDEN)
    print(digests(GOLDEN))
