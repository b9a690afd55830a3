"""Committed datasets guard the on-disk format: each is read as-is, and the current writer's
output is pinned byte for byte.

- ``golden_v1`` (format 1.0, npy bases): read back; today's writer gives the same shards and an
  index that differs only in ``minor``.
- ``golden_v1_0_png`` and ``golden_v1_0_jpeg`` (format 1.0, one stacked image member per group):
  written by the 1.0 writer, read back pixel for pixel (decoded digests pinned).
- ``golden_v1_1`` (format 1.1, PNG bases cut into ``stack``-image members): rewritten byte for
  byte by the current writer.

The golden data uses uncompressed array codecs (and PNG level 0) so its bytes depend only on
this project and Pillow's PNG writer, not on the zstd or zlib versions installed. Regenerate
``golden_v1_1`` only with a deliberate format change: ``python tests/test_infer_data/test_golden.py``
(and bump the format version if readers break). The 1.0 sets are frozen; they can only be
rewritten by the 1.0 writer:
``git archive 5e9db4f infer_data | tar -x -C /tmp/v10 && PYTHONPATH=/tmp/v10 python tests/test_infer_data/test_golden.py v1.0``.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

HERE = Path(__file__).resolve().parent
DATA = HERE.parent / "data"
GOLDEN = DATA / "golden_v1"
GOLDEN_1_1 = DATA / "golden_v1_1"
RAW = {"compensators": {"name": "fp16", "zstd_level": None}, "labels": {"name": "fp16", "zstd_level": None}}
CODECS = {"base": {"name": "npy", "zstd_level": None}, **RAW}
CODECS_1_1 = {"base": {"name": "png", "compress_level": 0, "stack": 2}, **RAW}
IMAGE_CODECS_1_0 = {"png": {"name": "png", "compress_level": 9}, "jpeg": {"name": "jpeg", "quality": 90}}
DECODED_1_0 = {  # sha256 of the (2, 3, 3, 20, 12) uint8 bases the 1.0 reader decoded
    "png": "8791e1d07653ffbacd41619009f38191ddfe2429b774580c93e2999f851af73a",
    "jpeg": "e7e343dac2f2ce41e55ee444c583f35d8c2cd419c896432340c52c775042ece4",
}


def _builders() -> ModuleType:
    """tests/builders.py, loaded by path so this file also runs as a script."""
    spec = importlib.util.spec_from_file_location("golden_builders", HERE.parent / "builders.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def golden_groups() -> list:
    return _builders().make_groups(2, 3, 2, (1, 4, 5), seed=2024)


def smooth_groups() -> list:
    """Two groups, K=3, M=1, RGB 20 x 12 with smooth bases (so JPEG keeps them close)."""
    groups = _builders().make_groups(2, 3, 1, (3, 20, 12), seed=10)
    yy, xx = np.mgrid[0:20, 0:12]
    for g, rec in enumerate(groups):
        for k in range(3):
            for c in range(3):
                rec.bases[k, c] = ((yy * (4 + k + c) + xx * (6 - c) + 40 * g + 50 * k) % 200 + 20).astype(np.uint8)
    return groups


def groups_1_1() -> list:
    """Two groups, K=5, M=1, RGB 6 x 4: with stack 2 each group has three base members."""
    return _builders().make_groups(2, 5, 1, (3, 6, 4), seed=11)


def write_golden(root: Path) -> Path:
    return _builders().write_dataset(root, golden_groups(), codecs=CODECS, max_shard_bytes=6000, name="golden")


def write_golden_1_1(root: Path) -> Path:
    return _builders().write_dataset(root, groups_1_1(), codecs=CODECS_1_1, max_shard_bytes=6000, name="golden-1.1")


def write_images_1_0(data: Path) -> None:
    """The 1.0 PNG and JPEG sets (run with the 1.0 package on the path)."""
    for name, spec in IMAGE_CODECS_1_0.items():
        _builders().write_dataset(data / f"golden_v1_0_{name}", smooth_groups(), codecs={"base": spec, **RAW},
                                  max_shard_bytes=1 << 20, name=f"golden-{name}")


def digests(root: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.iterdir())}


def test_golden_reads_back() -> None:
    from infer_data import InferDataset, iter_groups, read_index

    index = read_index(GOLDEN)
    assert (index.version, index.minor) == (1, 0)
    groups = list(iter_groups(GOLDEN, index))
    for got, want in zip(groups, golden_groups(), strict=True):
        np.testing.assert_array_equal(got.bases, want.bases)
        np.testing.assert_array_equal(got.compensators, want.compensators.astype(np.float16))
    ds = InferDataset(GOLDEN)
    assert len(ds) == 2 * 3 * 3 and ds[17][1].shape == (3,)


def test_writer_reproduces_v1_0_shards_and_only_bumps_the_minor(tmp_path: Path) -> None:
    again = write_golden(tmp_path / "again")
    got, want = digests(again), digests(GOLDEN)
    assert {n: d for n, d in got.items() if n != "index.json"} == {n: d for n, d in want.items() if n != "index.json"}
    new, old = json.loads((again / "index.json").read_text()), json.loads((GOLDEN / "index.json").read_text())
    assert (new.pop("minor"), old.pop("minor")) == (1, 0) and new == old


@pytest.mark.parametrize("name", ["png", "jpeg"])
def test_v1_0_single_member_image_sets_read_back(name: str) -> None:
    from infer_data import iter_groups, read_index

    root = DATA / f"golden_v1_0_{name}"
    index = read_index(root)
    assert index.minor == 0 and index.codecs["base"] == IMAGE_CODECS_1_0[name]  # no "stack": one member per group
    bases = np.stack([g.bases for g in iter_groups(root, index)])
    assert hashlib.sha256(bases.tobytes()).hexdigest() == DECODED_1_0[name]
    want = np.stack([g.bases for g in smooth_groups()])
    assert np.abs(bases.astype(int) - want).mean() <= (0 if name == "png" else 8)


def test_v1_1_golden_reads_back_and_is_rewritten_byte_for_byte(tmp_path: Path) -> None:
    import tarfile

    from infer_data import iter_groups, read_index

    index = read_index(GOLDEN_1_1)
    assert (index.minor, index.codecs["base"]) == (1, CODECS_1_1["base"])
    for got, want in zip(iter_groups(GOLDEN_1_1, index), groups_1_1(), strict=True):
        np.testing.assert_array_equal(got.bases, want.bases)
    with tarfile.open(GOLDEN_1_1 / index.shards[0].name) as tar:
        assert [m.name for m in tar.getmembers()][:4] == ["g000000.base.000.png", "g000000.base.001.png",
                                                          "g000000.base.002.png", "g000000.comp.npy"]
    assert digests(write_golden_1_1(tmp_path / "again")) == digests(GOLDEN_1_1)


if __name__ == "__main__":
    import shutil

    if sys.argv[1:] == ["v1.0"]:
        from infer_data.index import DatasetIndex

        if DatasetIndex.__dataclass_fields__["minor"].default != 0:
            sys.exit("the 1.0 sets need the 1.0 writer on PYTHONPATH (see this file's docstring)")
        for name in IMAGE_CODECS_1_0:
            shutil.rmtree(DATA / f"golden_v1_0_{name}", ignore_errors=True)
        write_images_1_0(DATA)
    else:
        shutil.rmtree(GOLDEN_1_1, ignore_errors=True)
        write_golden_1_1(GOLDEN_1_1)
        print(digests(GOLDEN_1_1))
