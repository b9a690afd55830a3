"""Datasets published under a URL prefix: served over real HTTP on loopback, mirrored, checked."""

from __future__ import annotations

import functools
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from infer_data import DatasetNotFoundError, InferDataset, IntegrityError


@pytest.fixture
def served(tiny_dir: Path) -> Iterator[str]:
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tiny_dir.parent))
    handler.log_message = lambda *a, **k: None  # type: ignore[attr-defined]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/{tiny_dir.name}"
    server.shutdown()
    server.server_close()


def test_url_dataset_is_mirrored_and_equals_the_local_one(served: str, tiny_dir: Path, tmp_path: Path) -> None:
    remote = InferDataset(served, cache_dir=tmp_path / "cache")
    local = InferDataset(tiny_dir)
    assert len(remote) == len(local) == 36
    assert torch.equal(remote[20][0], local[20][0]) and torch.equal(remote[20][1], local[20][1])
    mirrored = sorted(p.name for p in remote.root.iterdir() if p.name != "source.json")  # source.json: the URL, for `infer cache ls`
    assert mirrored == sorted(p.name for p in tiny_dir.iterdir())
    before = {p.name: p.stat().st_mtime_ns for p in remote.root.glob("*.tar")}
    again = InferDataset(served + "/", cache_dir=tmp_path / "cache")  # cached shards are not fetched again
    assert again.root == remote.root
    assert before == {p.name: p.stat().st_mtime_ns for p in again.root.glob("*.tar")}


def test_corrupt_server_copy_is_refused(served: str, tiny_dir: Path, tmp_path: Path) -> None:
    shard = tiny_dir / "shard-000002.tar"
    data = bytearray(shard.read_bytes())
    data[600] ^= 1
    shard.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match=r"shard-000002\.tar: downloaded bytes do not match index\.json .* the server copy is corrupt"):
        InferDataset(served, cache_dir=tmp_path / "cache")
    assert list((tmp_path / "cache").glob("*/index.json")) == []


def test_unreachable_url(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError, match=r"http://127\.0\.0\.1:9/nothing/index\.json: cannot download"):
        InferDataset("http://127.0.0.1:9/nothing", cache_dir=tmp_path)
