"""Every malformed input is a one-line InferError naming the file, never a deep traceback."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zstandard

from infer_data import (
    CodecError,
    DatasetNotFoundError,
    FormatError,
    InferDataset,
    IntegrityError,
    UnsupportedVersionError,
)
from infer_data.verify import verify_dataset



def _open_all(root: Path, **kw: Any) -> InferDataset:
    """Open a dataset and decode every group: shard problems surface on first use, not at open."""
    ds = InferDataset(root, **kw)
    ds.ensure_groups(range(ds.num_groups))
    return ds

def _first_shard(root: Path) -> Path:
    return root / json.loads((root / "index.json").read_text())["shards"][0]["name"]


def _rewrite_shard(root: Path, edit) -> None:
    """Rebuild shard 0 with ``edit(members) -> members`` and update its sha256/bytes in the index."""
    path = _first_shard(root)
    with tarfile.open(path) as tar:
        members = [(i.name, tar.extractfile(i).read()) for i in tar.getmembers()]
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in edit(members):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    path.write_bytes(buf.getvalue())
    index = json.loads((root / "index.json").read_text())
    index["shards"][0].update(bytes=len(buf.getvalue()), sha256=hashlib.sha256(buf.getvalue()).hexdigest())
    (root / "index.json").write_text(json.dumps(index))


def _edit_index(root: Path, edit) -> None:
    obj = json.loads((root / "index.json").read_text())
    edit(obj)
    (root / "index.json").write_text(json.dumps(obj))


def test_flipped_byte_is_a_checksum_error(tiny_dir: Path) -> None:
    path = _first_shard(tiny_dir)
    data = bytearray(path.read_bytes())
    data[700] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match=r"shard-000000\.tar: sha256 .* does not match index\.json .* re-download it"):
        _open_all(tiny_dir)
    report = verify_dataset(tiny_dir)
    assert not report.ok and len(report.problems) == 1 and "shard-000000.tar" in report.problems[0]


def test_flipped_byte_without_verify_is_still_caught_by_zstd(tiny_dir: Path) -> None:
    path = _first_shard(tiny_dir)
    data = bytearray(path.read_bytes())
    data[560] ^= 0xFF  # inside the first member's PNG data (after its 512-byte tar header)
    path.write_bytes(bytes(data))
    with pytest.raises((CodecError, FormatError), match=r"shard-000000\.tar group g000000 member 'base\.png': cannot decode image"):
        _open_all(tiny_dir, verify=False)


def test_truncated_shard(tiny_dir: Path) -> None:
    path = _first_shard(tiny_dir)
    path.write_bytes(path.read_bytes()[:1500])
    with pytest.raises(IntegrityError, match=r"shard-000000\.tar: 1500 bytes but index\.json declares \d+; the shard is truncated"):
        _open_all(tiny_dir, verify=False)


def test_missing_member(tiny_dir: Path) -> None:
    _rewrite_shard(tiny_dir, lambda ms: [(n, d) for n, d in ms if not n.endswith("comp.npy.zst")])
    with pytest.raises(FormatError, match=r"group g000000: missing member 'g000000\.comp\.npy\.zst'; the shard is incomplete"):
        _open_all(tiny_dir)


def test_missing_shard(tiny_dir: Path) -> None:
    _first_shard(tiny_dir).unlink()
    with pytest.raises(DatasetNotFoundError, match=r"shard-000000\.tar: shard listed in index\.json is missing"):
        _open_all(tiny_dir)


def test_missing_index(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError, match=r"No INFER dataset found at .*: missing index\.json\. Create one with `infer distill`"):
        _open_all(tmp_path)


def test_malformed_index_json(tiny_dir: Path) -> None:
    (tiny_dir / "index.json").write_text('{"format": "infer", "version": 1, "dataset": ')
    with pytest.raises(FormatError, match=r"index\.json: not valid JSON"):
        _open_all(tiny_dir)
    _reset = {"format": "infer", "version": 1, "dataset": {"name": "x"}}
    (tiny_dir / "index.json").write_text(json.dumps(_reset))
    with pytest.raises(FormatError, match=r"index\.json: malformed field"):
        _open_all(tiny_dir)


def test_unknown_format_version(tiny_dir: Path) -> None:
    _edit_index(tiny_dir, lambda o: o.update(version=2))
    with pytest.raises(UnsupportedVersionError, match=r"format version 2 is not supported .*upgrade infer-data"):
        _open_all(tiny_dir)
    _edit_index(tiny_dir, lambda o: o.update(version=1, format="mds"))
    with pytest.raises(UnsupportedVersionError, match=r"format is 'mds', expected 'infer'"):
        _open_all(tiny_dir)


def test_shapes_that_disagree_with_the_index(tiny_dir: Path) -> None:
    _edit_index(tiny_dir, lambda o: o["dataset"].update(image_shape=[3, 8, 6]))
    with pytest.raises(FormatError, match=r"member 'base\.png': image is 8x32, the index declares 6x32"):
        _open_all(tiny_dir)


def test_array_shapes_that_disagree_with_the_index(dataset_factory) -> None:
    from builders import make_groups

    root = dataset_factory(make_groups(1, 4, 2, (3, 8, 8)), codecs={"base": "npy"})
    _edit_index(root, lambda o: o["dataset"].update(image_shape=[3, 8, 6]))
    with pytest.raises(FormatError, match=r"member 'base\.npy\.zst': holds uint8 \(4, 3, 8, 8\) but the index declares uint8 \(4, 3, 8, 6\)"):
        _open_all(root)


def test_member_bigger_than_declared_after_decompression(tiny_dir: Path) -> None:
    huge = io.BytesIO()
    np.save(huge, np.zeros((2, 3, 64, 64), np.float16))
    bomb = zstandard.ZstdCompressor().compress(huge.getvalue())  # small on disk, 49 KB expanded
    _rewrite_shard(tiny_dir, lambda ms: [(n, bomb if n.endswith("comp.npy.zst") else d) for n, d in ms])
    with pytest.raises(CodecError, match=r"member 'comp\.npy\.zst': decompresses to more than the \d+ bytes its declared shape allows"):
        _open_all(tiny_dir)


def test_stored_member_bigger_than_declared(tiny_dir: Path) -> None:
    _rewrite_shard(tiny_dir, lambda ms: [(n, d + b"\0" * 100_000 if n.endswith("meta.json") else d) for n, d in ms])
    with pytest.raises(FormatError, match=r"member 'g000000\.meta\.json': \d+ bytes exceeds the \d+ its declared shape allows"):
        _open_all(tiny_dir)


def test_unexpected_member_and_wrong_group_key(tiny_dir: Path) -> None:
    _rewrite_shard(tiny_dir, lambda ms: ms + [("g000000.label.pkl", b"x")])
    with pytest.raises(FormatError, match=r"member 'g000000\.label\.pkl': unexpected member"):
        _open_all(tiny_dir)


def test_group_key_out_of_order(tiny_dir: Path) -> None:
    _rewrite_shard(tiny_dir, lambda ms: [(n.replace("g000000", "g000005"), d) for n, d in ms])
    with pytest.raises(FormatError, match=r"found group key 'g000005' where index\.json expects 'g000000'"):
        _open_all(tiny_dir)


def test_not_a_tar(tiny_dir: Path) -> None:
    path = _first_shard(tiny_dir)
    junk = b"\x89PNG" + b"\x07" * (path.stat().st_size - 4)
    path.write_bytes(junk)
    with pytest.raises(FormatError, match=r"shard-000000\.tar: not a readable tar file"):
        _open_all(tiny_dir, verify=False)


def test_malformed_meta_json(tiny_dir: Path) -> None:
    _rewrite_shard(tiny_dir, lambda ms: [(n, b'{"class_ids": [0]}' if n.endswith("meta.json") else d) for n, d in ms])
    with pytest.raises(FormatError, match=r"member 'meta\.json': malformed"):
        _open_all(tiny_dir)
