"""Streaming with webdataset's stages: real HTTP on loopback, pipe: URLs, splits, integrity, cache."""

from __future__ import annotations

import functools
import http.server
import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
import webdataset as wds
from builders import make_groups
from torch.utils.data import DataLoader

from infer_data import ConfigError, DatasetNotFoundError, FormatError, InferDataset, IntegrityError
from infer_data.stream import InferStreamDataset, expand_groups, reader_plan
from infer_data.shardstream import StreamError

# webdataset 1.0 leaves pipe objects to the garbage collector.
pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning", "ignore::pytest.PytestUnraisableExceptionWarning")


class Handler(http.server.SimpleHTTPRequestHandler):
    """Serves a folder; ``drops`` maps a file name to how many requests get only half the body."""

    drops: dict[str, int] = {}

    def log_message(self, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        name = self.path.rsplit("/", 1)[-1]
        if self.drops.get(name, 0) > 0:
            self.drops[name] -= 1
            data = (Path(self.directory) / self.path.lstrip("/")).read_bytes()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        super().do_GET()


@pytest.fixture
def serve() -> Iterator[Callable[..., str]]:
    """Call with a dataset folder (and ``drops``); returns its http:// prefix on loopback."""
    servers = []

    def start(folder: Path, drops: dict[str, int] | None = None) -> str:
        handler = type("H", (Handler,), {"drops": dict(drops or {})})
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(handler, directory=str(folder.parent)))
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}/{folder.name}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def _keys(ds: InferDataset) -> dict[tuple[bytes, bytes], int]:
    """(image bytes, target bytes) -> instance index, for every instance of the map-style dataset."""
    return {(ds[i][0].numpy().tobytes(), torch.as_tensor(ds[i][1]).numpy().tobytes()): i for i in range(len(ds))}


def _indices(batches: list[Any], keys: dict[tuple[bytes, bytes], int]) -> list[int]:
    out = []
    for x, y in batches:
        for b in range(len(x)):
            out.append(keys[(x[b].numpy().tobytes(), y[b].numpy().tobytes())])
    return out


def test_http_stream_equals_the_map_style_dataset_in_order(tiny_dir: Path, serve: Callable[..., str]) -> None:
    ref = InferDataset(tiny_dir)
    stream = InferStreamDataset(serve(tiny_dir))
    items = list(stream)
    assert len(items) == len(ref) == 36
    for i, (x, y) in enumerate(items):
        assert x.dtype == torch.float32 and x.shape == (3, 8, 8)
        assert torch.equal(x, ref[i][0]) and torch.equal(y, ref[i][1])


def test_shuffled_epoch_holds_every_instance_once_and_depends_on_seed_and_epoch(tiny_dir: Path, serve: Callable[..., str]) -> None:
    keys = _keys(InferDataset(tiny_dir, target="class", normalize=True))
    ds = InferStreamDataset(serve(tiny_dir), target="class", normalize=True, shuffle=20, seed=3)
    epoch0 = [keys[(x.numpy().tobytes(), torch.tensor(y).numpy().tobytes())] for x, y in ds]
    assert sorted(epoch0) == list(range(36)) and epoch0 != list(range(36))
    assert [keys[(x.numpy().tobytes(), torch.tensor(y).numpy().tobytes())] for x, y in ds] == epoch0  # same seed, same epoch
    ds.set_epoch(1)
    epoch1 = [keys[(x.numpy().tobytes(), torch.tensor(y).numpy().tobytes())] for x, y in ds]
    assert sorted(epoch1) == list(range(36)) and epoch1 != epoch0


@pytest.mark.parametrize("shard_bytes", [2000, 1 << 30], ids=["one-group-per-shard", "one-shard"])
def test_two_ranks_two_workers_give_disjoint_covers_and_equal_batch_counts(
        dataset_factory: Callable[..., Path], serve: Callable[..., str], shard_bytes: int) -> None:
    root = dataset_factory(make_groups(5, 4, 2, (3, 8, 8)), max_shard_bytes=shard_bytes)  # 60 instances, 4 readers
    keys = _keys(InferDataset(root))
    url = serve(root)
    per_rank = []
    for rank in range(2):
        ds = InferStreamDataset(url, shuffle=8, seed=1, rank=rank, world_size=2)
        batches = list(DataLoader(ds, batch_size=4, num_workers=2))
        assert len(batches) == ds.epoch_length(num_workers=2, batch_size=4) == 8
        per_rank.append(_indices(batches, keys))
    assert [len(p) for p in per_rank] == [30, 30]
    assert sorted(per_rank[0] + per_rank[1]) == list(range(60))


def test_readers_beyond_instances_leave_out_fewer_than_readers() -> None:
    from infer_data.index import DatasetIndex

    index = DatasetIndex.from_json((Path(__file__).parents[1] / "data" / "golden_v1" / "index.json").read_text())
    n = index.num_instances
    for readers in (1, 3, 7, 64):
        runs = [reader_plan(index, list(range(len(index.shards))), readers, r) for r in range(readers)]
        sizes = [sum(hi - lo for _, lo, hi in run) for run in runs]
        assert sizes == [n // readers] * readers


def test_resampled_epochs_have_equal_counts_per_rank(tiny_dir: Path) -> None:
    counts = []
    for rank in range(2):
        ds = InferStreamDataset(tiny_dir, resampled=True, epoch_instances=50, batch_size=4, rank=rank, world_size=2)
        batches = list(ds)
        counts.append(len(batches))
        assert [len(b[0]) for b in batches] == [4] * 6 + [4]  # 25 instances -> 7 full batches, drawn endlessly
        assert torch.equal(list(ds)[0][0], batches[0][0])  # deterministic for a seed and epoch
    assert counts == [7, 7]


def test_connection_dropped_mid_shard_is_a_clear_error_or_a_retry(tiny_dir: Path, serve: Callable[..., str], tmp_path: Path) -> None:
    size = (tiny_dir / "shard-000001.tar").stat().st_size
    url = serve(tiny_dir, drops={"shard-000001.tar": 1})
    with pytest.raises(StreamError, match=rf"^{url}/shard-000001\.tar: connection lost after {size // 2} of {size} bytes .*pass retries=N"):
        list(InferStreamDataset(url, cache_dir=tmp_path / "cache"))
    assert sorted(p.name for p in tmp_path.glob("cache/*/*")) == ["shard-000000.tar", "source.json"]  # nothing partial kept
    url = serve(tiny_dir, drops={"shard-000001.tar": 1})
    assert len(list(InferStreamDataset(url, retries=1))) == 36


def test_corrupt_served_shard_is_refused_and_not_cached(tiny_dir: Path, serve: Callable[..., str], tmp_path: Path) -> None:
    shard = tiny_dir / "shard-000002.tar"
    data = bytearray(shard.read_bytes())
    data[-1100] ^= 1  # inside the last member's padding-free data: the tar still parses
    shard.write_bytes(bytes(data))
    url = serve(tiny_dir)
    cache = tmp_path / "cache"
    with pytest.raises(IntegrityError, match=rf"^{url}/shard-000002\.tar: sha256 \w{{12}}\.\.\. does not match index\.json "
                                             r"\(\w{12}\.\.\.\); the served copy is corrupt"):
        list(InferStreamDataset(url, cache_dir=cache))
    kept = sorted(p.name for p in cache.glob("*/*"))
    assert kept == ["shard-000000.tar", "shard-000001.tar", "source.json"]
    assert json.loads(next(cache.glob("*/source.json")).read_text()) == {"source": url}


def test_cache_is_read_back_and_a_spoiled_copy_removed(tiny_dir: Path, serve: Callable[..., str], tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    ds = InferStreamDataset(serve(tiny_dir), cache_dir=cache)
    first = [x for x, _ in ds]
    cached = sorted(cache.glob("*/shard-*.tar"))
    assert [p.read_bytes() for p in cached] == [p.read_bytes() for p in sorted(tiny_dir.glob("shard-*.tar"))]
    for p in tiny_dir.glob("shard-*.tar"):
        p.unlink()  # the server now has nothing: the epoch comes from the cache
    assert all(torch.equal(a, x) for a, (x, _) in zip(first, ds, strict=True))
    cached[0].write_bytes(cached[0].read_bytes()[:-1] + b"\x01")
    with pytest.raises(IntegrityError, match=r"shard-000000\.tar: sha256 .* does not match index\.json"):
        list(ds)
    assert not cached[0].exists()


def test_pipe_and_file_urls(tiny_dir: Path) -> None:
    ref = torch.stack([x for x, _ in InferDataset(tiny_dir)])
    items = list(InferStreamDataset(f"pipe:cat {tiny_dir}/{{}}", batch_size=10))
    assert [len(x) for x, _ in items] == [10, 10, 10, 6]
    assert torch.equal(torch.cat([x for x, _ in items]), ref)
    assert torch.equal(torch.stack([x for x, _ in InferStreamDataset(f"file://{tiny_dir}/")]), ref)


def test_a_shard_the_server_lacks_is_a_clear_error(tiny_dir: Path, serve: Callable[..., str]) -> None:
    url = serve(tiny_dir)
    (tiny_dir / "shard-000001.tar").unlink()
    with pytest.raises(StreamError, match=rf"^{url}/shard-000001\.tar: cannot read the shard \(curl exited with status 22\); check the URL"):
        list(InferStreamDataset(url))


def test_bad_sources_are_one_line_errors(tiny_dir: Path, serve: Callable[..., str], tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^'pipe:cat x': a pipe: source needs '\{\}' where the file name goes"):
        InferStreamDataset("pipe:cat x")
    with pytest.raises(DatasetNotFoundError, match=r"^pipe:cat /nonexistent/index\.json: cannot read \(.*\); check the URL, path or command$"):
        InferStreamDataset("pipe:cat /nonexistent/{}")
    url = serve(tiny_dir)
    with pytest.raises(DatasetNotFoundError, match=rf"^{url}x/index\.json: cannot read"):
        InferStreamDataset(url + "x")
    index = json.loads((tiny_dir / "index.json").read_text())
    index["shards"][0]["name"] = "a;rm -rf x.tar"
    (tiny_dir / "index.json").write_text(json.dumps(index))
    with pytest.raises(FormatError, match=r"index\.json: malformed field \(shard 0 name 'a;rm -rf x\.tar' must be a plain file name"):
        InferStreamDataset(f"pipe:cat {tiny_dir}/{{}}")
    with pytest.raises(ConfigError, match=r"rank and world_size: give both or neither"):
        InferStreamDataset(tmp_path, rank=0)


def test_more_readers_than_instances_is_an_error(tiny_dir: Path) -> None:
    with pytest.raises(ConfigError, match=r"36 instances cannot be split over 40 readers"):
        list(InferStreamDataset(tiny_dir, rank=0, world_size=40))


def test_expand_groups_in_a_plain_webdataset_pipeline(tiny_dir: Path, serve: Callable[..., str]) -> None:
    url = serve(tiny_dir)
    ref = InferDataset(tiny_dir, target="class")
    urls = [f"{url}/shard-{i:06d}.tar" for i in range(3)]
    pipeline = wds.WebDataset(urls, shardshuffle=False).compose(expand_groups(url, target="class"))
    items = list(pipeline)
    assert len(items) == 36
    assert all(torch.equal(x, ref[i][0]) and y == ref[i][1] for i, (x, y) in enumerate(items))


def test_a_member_outside_the_schema_is_refused_before_it_is_read(tiny_dir: Path) -> None:
    import hashlib
    import io
    import tarfile

    shard = tiny_dir / "shard-000000.tar"
    buf = io.BytesIO()
    with tarfile.open(shard) as src, tarfile.open(fileobj=buf, mode="w") as dst:
        info = tarfile.TarInfo("g000000.evil.npy")
        info.size = 5
        dst.addfile(info, io.BytesIO(b"12345"))
        for member in src:
            dst.addfile(member, src.extractfile(member))
    shard.write_bytes(buf.getvalue())
    index = json.loads((tiny_dir / "index.json").read_text())
    index["shards"][0].update(bytes=len(buf.getvalue()), sha256=hashlib.sha256(buf.getvalue()).hexdigest())
    (tiny_dir / "index.json").write_text(json.dumps(index))
    with pytest.raises(FormatError, match=rf"^{tiny_dir}/shard-000000\.tar group g000000: unexpected member 'evil\.npy' for codecs"):
        list(InferStreamDataset(tiny_dir))


def test_rank_comes_from_the_environment_as_torchrun_sets_it(tiny_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "3")
    ds = InferStreamDataset(tiny_dir)
    assert ds.readers() == (1, 3) and ds.epoch_length() == 12
    assert [torch.equal(x, y) for (x, _), (y, _) in zip(ds, InferStreamDataset(tiny_dir, rank=1, world_size=3), strict=True)] == [True] * 12


def _ddp_rank(rank: int, url: str, out: str, port: int) -> None:
    import datetime
    import os

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank),
                      WORLD_SIZE="2", TORCHELASTIC_USE_AGENT_STORE="True")
    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo", timeout=datetime.timedelta(seconds=60))
    ds = InferStreamDataset(url, shuffle=8, seed=1)  # rank and world size from the process group
    images, steps = [], torch.zeros(1)
    for x, _ in DataLoader(ds, batch_size=4):
        torch.distributed.all_reduce(steps + 1)  # one collective per batch, as DDP's gradient sync: unequal counts would hang
        images.append(x)
        steps += 1
    counts = [torch.zeros(1), torch.zeros(1)]
    torch.distributed.all_gather(counts, steps)
    torch.distributed.barrier()
    torch.distributed.destroy_process_group()
    torch.save({"images": torch.cat(images), "counts": torch.cat(counts)}, Path(out) / f"rank{rank}.pt")
    os._exit(0)  # see tests/test_ddp.py: no interpreter teardown once the results are saved


@pytest.mark.skipif(not torch.distributed.is_available() or not torch.distributed.is_gloo_available(), reason="needs gloo")
def test_two_gloo_ranks_stream_disjoint_covers_in_equal_steps(dataset_factory: Callable[..., Path], serve: Callable[..., str],
                                                             tmp_path: Path) -> None:
    import socket

    import torch.multiprocessing as mp

    root = dataset_factory(make_groups(5, 4, 2, (3, 8, 8)), max_shard_bytes=2000)  # 5 shards, 60 instances, 2 readers
    keys = {k[0]: i for k, i in _keys(InferDataset(root)).items()}
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    store = torch.distributed.TCPStore("127.0.0.1", port, 2, is_master=True, wait_for_workers=False)
    mp.spawn(_ddp_rank, args=(serve(root), str(tmp_path), port), nprocs=2, join=True)
    del store
    results = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    assert all(r["counts"].tolist() == [8.0, 8.0] for r in results)  # 30 instances in batches of 4 per rank
    seen = [[keys[x.numpy().tobytes()] for x in r["images"]] for r in results]
    assert len(seen[0]) == len(seen[1]) == 30 and sorted(seen[0] + seen[1]) == list(range(60))
