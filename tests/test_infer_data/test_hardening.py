"""Reader hardening: each refusal of hostile input is one line naming the file and the fix."""

from __future__ import annotations

import hashlib
import http.server
import io
import json
import os
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zstandard
from builders import make_groups
from fuzz.harness import start_server

from infer_data import CodecError, ConfigError, DatasetNotFoundError, FormatError, InferDataset, IntegrityError, UnsupportedVersionError
from infer_data.errors import LimitError
from infer_data.index import read_index
from infer_data.remote import fetch_dataset
from infer_data.verify import verify_dataset


def _index(root: Path) -> dict[str, Any]:
    return json.loads((root / "index.json").read_text())


def _write_index(root: Path, obj: Any, raw: str | None = None) -> None:
    (root / "index.json").write_text(raw if raw is not None else json.dumps(obj))


def _edit_member(root: Path, suffix: str, data: bytes) -> None:
    """Replace member ``g000000.<suffix>`` of the first shard and re-sign the index."""
    obj = _index(root)
    path = root / obj["shards"][0]["name"]
    with tarfile.open(path) as tar:
        members = [(i, tar.extractfile(i).read()) for i in tar.getmembers()]
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for info, old in members:
            new = data if info.name == f"g000000.{suffix}" else old
            info.size = len(new)
            tar.addfile(info, io.BytesIO(new))
    path.write_bytes(buf.getvalue())
    obj["shards"][0].update(bytes=len(buf.getvalue()), sha256=hashlib.sha256(buf.getvalue()).hexdigest())
    _write_index(root, obj)


@pytest.mark.parametrize(("edit", "message"), [
    (lambda o: o["shards"][1].update(first_group=2), r"shard 'shard-000001\.tar': first_group 2, but the shards before it end at group 1"),
    (lambda o: o["shards"].reverse(), r"first_group 2, but the shards before it end at group 0 \(shards must be listed in order"),
    (lambda o: o.update(shards=[]), r"method\.g is 3 but the shards hold 0 groups"),
    (lambda o: o["shards"].append(dict(o["shards"][0])), r"shard 'shard-000000\.tar' is listed twice"),
    (lambda o: o["shards"][0].update(sha256=7), r"shards\[0\]\.sha256 must be a string of at most 64 characters, got 7"),
    (lambda o: o["dataset"].update(classes=5), r"dataset\.classes must be a list of 1\.\.1048576 items, got 5"),
    (lambda o: o["shards"][0].update(name="a\nOK \x1b[2J.tar"), r"shard 0 name 'a\\nOK \\x1b\[2J\.tar' must be a plain file name"),
    (lambda o: o["shards"][0].update(first_group=[0]), r"shards\[0\]\.first_group must be an integer in 0\.\.1099511627776, got \[0\]"),
    (lambda o: o["shards"][0].update(groups=2**63, instances=2**63 * 12), r"shards\[0\]\.groups must be an integer in 1\.\.1099511627776"),
])
def test_index_fields_are_checked_before_anything_is_read(tiny_dir: Path, edit: Any, message: str) -> None:
    obj = _index(tiny_dir)
    edit(obj)
    _write_index(tiny_dir, obj)
    with pytest.raises(FormatError, match=message) as info:
        read_index(tiny_dir)
    assert "\n" not in str(info.value) and "\x1b" not in str(info.value)
    assert verify_dataset.__name__  # the same gate serves every reader:
    with pytest.raises(FormatError, match=message):
        InferDataset(tiny_dir)


@pytest.mark.parametrize(("text", "message"), [
    ('{"format": "infer", "version": 1, "minor": Infinity}', r"refused JSON \(Infinity is not allowed\)"),
    ('{"format": "infer", "version": 1, "seed": ' + "9" * 5000 + "}", r"refused JSON \(an integer of 5000 digits \(at most 40\)\)"),
    ("[" * 5000 + "]" * 5000, r"not valid JSON \(nested too deeply\)"),
    ('{"a": ' + "[" * 70 + "]" * 70 + "}", r"JSON nested more than 64 levels deep"),
])
def test_hostile_json_text(tiny_dir: Path, text: str, message: str) -> None:
    _write_index(tiny_dir, None, raw=text)
    with pytest.raises(FormatError, match=message):
        read_index(tiny_dir)


def test_version_true_is_not_version_1(tiny_dir: Path) -> None:
    obj = _index(tiny_dir)
    obj["version"] = True
    _write_index(tiny_dir, obj)
    with pytest.raises(UnsupportedVersionError, match=r"format version True is not supported"):
        read_index(tiny_dir)


def test_infer_max_bytes_caps_declared_sizes(tiny_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INFER_MAX_BYTES", "1K")
    with pytest.raises(LimitError, match=r"index\.json: one group decodes to 2496 bytes, above the 1024 allowed; if the dataset is trusted, "
                                         r"raise INFER_MAX_BYTES"):
        InferDataset(tiny_dir)
    monkeypatch.setenv("INFER_MAX_BYTES", "3000")
    with pytest.raises(LimitError, match=r"shard 'shard-000000\.tar' declares \d+ bytes, above the 3000 allowed"):
        read_index(tiny_dir)
    monkeypatch.setenv("INFER_MAX_BYTES", "lots")
    with pytest.raises(ConfigError, match=r"INFER_MAX_BYTES='lots': not a positive size in bytes \(e\.g\. 2G, 512M or 1000000000\)"):
        read_index(tiny_dir)
    monkeypatch.setenv("INFER_MAX_BYTES", "1M")
    assert read_index(tiny_dir).group_nbytes() == 4 * 192 + 4 * 2 * 192 + 4 * 12 * 4


def _npy(header: str, payload: bytes) -> bytes:
    head = header.encode().ljust(117) + b"\n"
    return b"\x93NUMPY\x01\x00" + len(head).to_bytes(2, "little") + head + payload


@pytest.mark.parametrize(("member", "message", "error"), [
    (_npy("{'descr': '<f2', 'fortran_order': False, 'shape': (True,), }", b"\0\0"), r"holds float16 \(True,\) but the index declares", FormatError),
    (_npy("{'descr': '<f2', 'fortran_order': False, 'shape': (100000, 100000, 100000), }", b""), r"holds float16 \(100000, 100000, 100000\)",
     FormatError),
    (b"PK\x03\x04" + b"\0" * 100, r"member 'comp\.npy\.zst': not a valid \.npy array", CodecError),
])
def test_npy_headers_are_checked_before_allocation(tiny_dir: Path, member: bytes, message: str, error: type) -> None:
    _edit_member(tiny_dir, "comp.npy.zst", zstandard.ZstdCompressor().compress(member))
    with pytest.raises(error, match=message):
        InferDataset(tiny_dir).ensure_groups([0])


def test_nan_compensators_are_refused(tiny_dir: Path) -> None:
    comps = np.zeros((2, 3, 8, 8), np.float16)
    comps[1, 0, 0, 0] = np.nan
    buf = io.BytesIO()
    np.save(buf, comps)
    _edit_member(tiny_dir, "comp.npy.zst", zstandard.ZstdCompressor().compress(buf.getvalue()))
    with pytest.raises(FormatError, match=r"group g000000 member 'comp\.npy\.zst': holds NaN or infinite values"):
        InferDataset(tiny_dir).ensure_groups([0])


def test_image_members_must_be_the_declared_format_and_size(dataset_factory: Any) -> None:
    from PIL import Image

    root = dataset_factory(make_groups(1, 2, 1, (3, 8, 8)), codecs={"base": "png"})
    limit = Image.MAX_IMAGE_PIXELS
    buf = io.BytesIO()
    Image.new("RGB", (8, 16)).save(buf, format="JPEG")
    _edit_member(root, "base.png", buf.getvalue())
    with pytest.raises(CodecError, match=r"member 'base\.png': not a PNG file \(magic bytes b'\\xff\\xd8"):
        InferDataset(root).ensure_groups([0])
    buf = io.BytesIO()
    Image.new("RGB", (8, 16)).save(buf, format="PNG")
    bomb = bytearray(buf.getvalue())
    bomb[16:24] = (30000).to_bytes(4, "big") * 2  # IHDR says 30000 x 30000; the CRC is not even checked first
    _edit_member(root, "base.png", bytes(bomb))
    with pytest.raises(FormatError, match=r"member 'base\.png': image is 30000x30000, the index declares 8x16"):
        InferDataset(root).ensure_groups([0])
    assert Image.MAX_IMAGE_PIXELS == limit


def test_a_shard_that_is_a_fifo_or_special_file_is_refused(tiny_dir: Path) -> None:
    name = _index(tiny_dir)["shards"][0]["name"]
    (tiny_dir / name).unlink()
    os.mkfifo(tiny_dir / name)
    with pytest.raises(FormatError, match=rf"{name}: not a regular file; a shard must be a plain file"):
        InferDataset(tiny_dir)
    (tiny_dir / name).unlink()
    (tiny_dir / name).symlink_to("/proc/self/pagemap")
    assert "bytes but index.json declares" in verify_dataset(tiny_dir).problems[0]


class _BadServer(http.server.BaseHTTPRequestHandler):
    """index.json served normally from ``folder``; shards trickled or cut, as ``mode`` says."""

    folder: Path = Path(".")
    mode = "trickle"
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        data = (self.folder / self.path.rsplit("/", 1)[-1]).read_bytes()
        self.send_response(200)
        self.close_connection = True
        if self.path.endswith("index.json") or self.mode == "lie":
            self.send_header("Content-Length", str(len(data) + (1000 if self.mode == "lie" else 0)))
            self.end_headers()
            self.wfile.write(data)
        elif self.mode == "chunked":
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self.wfile.write(b"%x\r\n" % len(data) + data[:100])
        else:
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            for i in range(len(data)):
                self.wfile.write(data[i : i + 1])
                self.wfile.flush()
                time.sleep(0.2)


@pytest.fixture
def bad_server(tiny_dir: Path) -> Iterator[Any]:
    servers = []

    def start(mode: str) -> str:
        servers.append(start_server(type("H", (_BadServer,), {"folder": tiny_dir, "mode": mode})))
        return f"http://127.0.0.1:{servers[-1].server_address[1]}/ds"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(("mode", "message"), [
    ("trickle", r"shard-000000\.tar: download did not finish within its deadline; check your connection, or set INFER_FETCH_DEADLINE"),
    ("chunked", r"shard-000000\.tar: cannot download \(connection closed after 100 bytes, before the end of the body\)"),
])
def test_url_fetch_has_a_total_deadline_and_leaves_no_temp_files(bad_server: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                  mode: str, message: str) -> None:
    monkeypatch.setenv("INFER_FETCH_DEADLINE", "1")
    start = time.monotonic()
    with pytest.raises(DatasetNotFoundError, match=message):
        fetch_dataset(bad_server(mode), tmp_path / "cache")
    assert time.monotonic() - start < 10
    assert [p.name for p in (tmp_path / "cache").rglob("*") if p.is_file()] == ["source.json"]


def test_server_that_lies_about_the_size_gets_only_the_declared_bytes(bad_server: Any, tmp_path: Path, tiny_dir: Path) -> None:
    local = fetch_dataset(bad_server("lie"), tmp_path / "cache")
    assert (local / "shard-000000.tar").read_bytes() == (tiny_dir / "shard-000000.tar").read_bytes()


def test_a_shard_replaced_after_its_check_is_hashed_again_when_reopened(tiny_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import infer_data.store as store

    monkeypatch.setattr(store, "MAX_OPEN_SHARDS", 1)  # every other shard read closes the previous one
    ds = InferDataset(tiny_dir)
    first = [ds.store.read_group(g).bases.copy() for g in range(3)]
    assert [ds.store.read_group(g).bases.tobytes() for g in range(3)] == [b.tobytes() for b in first]
    path = tiny_dir / "shard-000000.tar"
    data = bytearray(path.read_bytes())
    data[700] ^= 1
    tmp = tiny_dir / "swap.tmp"
    tmp.write_bytes(bytes(data))
    os.replace(tmp, path)  # same size, new file
    with pytest.raises(IntegrityError, match=r"shard-000000\.tar: sha256 [0-9a-f]{12}\.\.\. does not match index\.json"):
        ds.store.read_group(0)


def test_a_resigned_shard_cut_inside_a_member_is_a_format_error_in_verify(tiny_dir: Path) -> None:
    obj = _index(tiny_dir)
    path = tiny_dir / obj["shards"][0]["name"]
    data = path.read_bytes()[:2600]  # inside a member's data, past the 2048 bytes a group needs at least
    path.write_bytes(data)
    obj["shards"][0].update(bytes=len(data), sha256=hashlib.sha256(data).hexdigest())
    _write_index(tiny_dir, obj)
    problems = verify_dataset(tiny_dir).problems
    assert len(problems) == 1 and "shard-000000.tar member 'g000000." in problems[0] and "truncated member" in problems[0]
