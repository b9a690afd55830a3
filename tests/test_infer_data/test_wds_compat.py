"""The shards are plain tars that the real webdataset library reads."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import webdataset as wds

from infer_data import FormatError
from infer_data.wds import group_pipeline, shard_urls, zstd_handler

# webdataset 1.0 leaves its shard file objects to the garbage collector; collect them inside each
# test so the ResourceWarning is attributed here and ignored here only.
pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning", "ignore::pytest.PytestUnraisableExceptionWarning")


@pytest.fixture(autouse=True)
def _collect_leaked_files():
    yield
    import gc

    gc.collect()


def test_webdataset_with_documented_decoder_yields_every_group_once(tiny_dir: Path, tiny_groups: list) -> None:
    pipeline = wds.WebDataset(shard_urls(tiny_dir), shardshuffle=False).decode(zstd_handler, "rgb8")
    samples = list(pipeline)
    assert [s["__key__"] for s in samples] == ["g000000", "g000001", "g000002"]
    for s, want in zip(samples, tiny_groups):
        img = s["base.png"]  # webdataset's own PNG decoder: (K*H, W, C), slot k in rows k*H..(k+1)*H
        assert img.dtype == np.uint8 and img.shape == (4 * 8, 8, 3)
        np.testing.assert_array_equal(img.reshape(4, 8, 8, 3).transpose(0, 3, 1, 2), want.bases)
        assert s["comp.npy.zst"].dtype == np.float16 and s["comp.npy.zst"].shape == (2, 3, 8, 8)
        assert s["label.npy.zst"].shape == (12, 4)
        assert s["meta.json"]["source_indices"] == want.source_indices.tolist()


def test_webdataset_reads_npy_bases(dataset_factory) -> None:
    from builders import make_groups

    groups = make_groups(2, 3, 1, (1, 5, 6))
    root = dataset_factory(groups, codecs={"base": "npy"})
    samples = list(wds.WebDataset(shard_urls(root), shardshuffle=False).decode(zstd_handler))
    assert len(samples) == 2
    for s, want in zip(samples, groups):
        assert s["base.npy.zst"].dtype == np.uint8 and s["base.npy.zst"].shape == (3, 1, 5, 6)
        np.testing.assert_array_equal(s["base.npy.zst"], want.bases)


def test_group_pipeline_returns_checked_records(tiny_dir: Path, tiny_groups: list) -> None:
    records = list(group_pipeline(tiny_dir))
    assert len(records) == 3
    np.testing.assert_array_equal(records[2].bases, tiny_groups[2].bases)


def test_zstd_handler_is_bounded() -> None:
    import zstandard

    data = zstandard.ZstdCompressor().compress(b"\0" * 10_000)
    with pytest.raises(Exception, match="decompresses to more than the 100 bytes"):
        zstd_handler(".x.npy.zst", data, max_bytes=100)
    assert zstd_handler(".x.npy", b"") is None


def test_group_pipeline_rejects_foreign_members(tiny_dir: Path) -> None:
    import io
    import json
    import tarfile

    extra = tiny_dir / "index.json"
    obj = json.loads(extra.read_text())
    shard = tiny_dir / obj["shards"][0]["name"]
    with tarfile.open(shard) as tar:
        members = [(i.name, tar.extractfile(i).read()) for i in tar.getmembers()]
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in members + [("g000000.evil.pyd", b"x")]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    shard.write_bytes(buf.getvalue())
    import hashlib

    obj["shards"][0].update(bytes=len(buf.getvalue()), sha256=hashlib.sha256(buf.getvalue()).hexdigest())
    extra.write_text(json.dumps(obj))
    with pytest.raises(FormatError, match="unexpected member 'evil.pyd'"):
        list(group_pipeline(tiny_dir))
