"""Drive mutated datasets through every reader and classify what each one did.

A *case* is one mutated dataset (a base dataset copied, then one mutation kind applied with a
seeded ``random.Random``); it is read by every reader in :data:`READERS`. Per reader the outcome
is one of:

- ``same``: read completely, content identical to the unmutated dataset's;
- ``changed``: read completely, content differs (a defect when the shard bytes were not re-signed
  and the reader checks sha256, or when only index.json was edited: :func:`is_silent`);
- ``infer_error``: refused with an InferError whose message is one line without escape codes;
- ``bad_message``: refused with an InferError whose message holds a newline or an escape code;
- ``defect``: any other exception (a traceback the user would see);
- ``leftover``: a URL fetch that left a temporary file in the cache.

Hangs and peak memory are measured by the caller (bench/fuzz.py runs cases in child processes).
"""

from __future__ import annotations

import functools
import hashlib
import http.server
import json
import random
import shutil
import socketserver
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from builders import make_groups, write_dataset
from fuzz.mutations import KINDS

from infer_data import InferDataset, InferError
from infer_data.index import read_index
from infer_data.reader import iter_groups
from infer_data.stream import InferStreamDataset
from infer_data.verify import verify_dataset
from infer_data.wds import group_pipeline

BASE_VARIANTS: dict[str, dict[str, Any]] = {
    "npy": {"chw": (3, 6, 6), "codecs": {"base": "npy", "compensators": "fp16", "labels": "fp16"}},
    "png": {"chw": (3, 6, 6), "codecs": {"base": "png", "compensators": "int8", "labels": {"name": "topk", "k": 2}}},
    "jpeg": {"chw": (1, 8, 8), "codecs": {"base": {"name": "jpeg", "quality": 90}, "compensators": {"name": "fp16", "zstd_level": None},
                                          "labels": "fp16"}},
    "webp": {"chw": (3, 6, 6), "codecs": {"base": {"name": "webp", "lossless": True}, "compensators": "fp16", "labels": "fp16"}},
}
SERVER_KINDS = ("server_trickle", "server_lie_long", "server_lie_short", "server_cut", "server_cut_chunked")
ALL_KINDS = (*KINDS, *SERVER_KINDS)
INDEX_ONLY_KINDS = {k for k in KINDS if k.startswith("index_")}
TEMP_MARKS = (".download", ".remote", ".partial", ".tmp")


def make_bases(folder: Path) -> dict[str, Path]:
    """Write every base variant under ``folder`` (G=3, K=3, M=1, two or three shards)."""
    out = {}
    for name, spec in BASE_VARIANTS.items():
        groups = make_groups(3, 3, 1, spec["chw"], seed=len(out))
        out[name] = write_dataset(folder / name, groups, codecs=spec["codecs"], max_shard_bytes=1500)
    return out


# -- content digests ---------------------------------------------------------------------------


def _digest(arrays: list[Any]) -> str:
    h = hashlib.sha256()
    for a in arrays:
        a = a.numpy() if isinstance(a, torch.Tensor) else np.asarray(a)
        h.update(str(a.dtype).encode() + str(a.shape).encode())
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def _record_arrays(rec: Any) -> list[Any]:
    labels = [] if rec.labels is None else [np.asarray(rec.labels, np.float16)]
    return [rec.bases, np.asarray(rec.compensators, np.float32), *labels, rec.class_ids, rec.source_indices]


# -- the readers -------------------------------------------------------------------------------


def read_verify(root: Path, url: str, cache: Path) -> str:
    report = verify_dataset(root, jobs=1)
    if not report.ok:
        raise _Refused(report.problems)
    return _digest([a for rec in iter_groups(root, read_index(root)) for a in _record_arrays(rec)])


def _dataset_digest(ds: InferDataset) -> str:
    f = ds.factors(decode_all=True)
    x, y = ds[list(range(len(ds)))]  # every instance, composed
    labels = [] if f.labels is None else [f.labels]
    return _digest([f.bases, f.compensators, *labels, f.class_ids, f.source_indices, x, y])


def read_dataset_sha(root: Path, url: str, cache: Path) -> str:
    return _dataset_digest(InferDataset(root, verify=True, cache_dir=cache))


def read_dataset_nosha(root: Path, url: str, cache: Path) -> str:
    return _dataset_digest(InferDataset(root, verify=False, cache_dir=cache))


def read_wds(root: Path, url: str, cache: Path) -> str:
    return _digest([a for rec in group_pipeline(root, verify=True) for a in _record_arrays(rec)])


def read_stream_http(root: Path, url: str, cache: Path) -> str:
    return _digest([t for x, y in InferStreamDataset(url, cache_dir=cache) for t in (x, torch.as_tensor(y))])


def read_url(root: Path, url: str, cache: Path) -> str:
    return _dataset_digest(InferDataset(url, verify=True, cache_dir=cache))


READERS: dict[str, Callable[[Path, str, Path], str]] = {
    "verify": read_verify, "dataset_sha": read_dataset_sha, "dataset_nosha": read_dataset_nosha,
    "wds_sha": read_wds, "stream_http": read_stream_http, "url_fetch": read_url,
}
VERIFYING = {"verify", "dataset_sha", "wds_sha", "stream_http", "url_fetch"}


class _Refused(InferError):
    """verify's report listed problems (each an InferError message)."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__(problems[0])
        self.problems = problems


# -- a loopback server with bad manners ---------------------------------------------------------


class _Handler(http.server.SimpleHTTPRequestHandler):
    """Serves the case folders; a folder with a ``.serve`` file misbehaves as it says."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        path = Path(self.directory) / self.path.lstrip("/")
        mode_file = path.parent / ".serve"
        mode = mode_file.read_text() if mode_file.is_file() and path.name != "index.json" else ""
        if not mode or not path.is_file():
            self.close_connection = True
            return super().do_GET()
        data = path.read_bytes()
        self.close_connection = True
        if mode == "server_cut_chunked":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            half = data[: len(data) // 2]
            self.wfile.write(b"%x\r\n" % len(data) + half)
            return
        self.send_response(200)
        claimed = {"server_lie_long": len(data) + 1000, "server_lie_short": len(data) // 2}.get(mode, len(data))
        self.send_header("Content-Length", str(claimed))
        self.end_headers()
        if mode == "server_trickle":
            for i in range(len(data)):
                self.wfile.write(data[i : i + 1])
                self.wfile.flush()
                time.sleep(0.25)
            return
        body = data[: len(data) // 2] if mode == "server_cut" else data
        try:
            self.wfile.write(body)
        except OSError:
            pass


class _Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients that hang up early are part of the test


def start_server(handler: Any) -> http.server.HTTPServer:
    """A threading HTTP server with ``handler`` on a free loopback port, serving in a daemon thread."""
    httpd = _Server(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd


@dataclass
class Server:
    """A loopback HTTP server over ``folder``; ``url(name)`` is the prefix of ``folder/name``."""

    folder: Path

    def __post_init__(self) -> None:
        self.httpd = start_server(functools.partial(_Handler, directory=str(self.folder)))

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/{name}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


# -- one case ----------------------------------------------------------------------------------


@dataclass
class Outcome:
    reader: str
    result: str  # same, changed, infer_error, bad_message, defect, leftover
    detail: str = ""


def is_silent(kind: str, resigned: bool, reader: str) -> bool:
    """Whether ``changed`` content is a defect for this kind and reader."""
    return kind in INDEX_ONLY_KINDS or kind in SERVER_KINDS or (not resigned and reader in VERIFYING)


def widens_topk(base: Path, case: Path) -> bool:
    """Whether the case's index declares another class count over top-k labels: the shards do not
    record NC, so such an index legitimately widens (or narrows) every decoded label row."""
    try:
        a, b = (json.loads((p / "index.json").read_text()) for p in (base, case))
        return a["codecs"]["labels"]["name"] == "topk" and len(a["dataset"]["classes"]) != len(b["dataset"]["classes"])
    except (ValueError, KeyError, TypeError, RecursionError):
        return False


def classify(reader: str, fn: Callable[[], str], ref: str, kind: str, resigned: bool) -> Outcome:
    """Run one reader and classify its outcome against the reference digest ``ref``."""
    try:
        digest = fn()
    except InferError as exc:
        msgs = getattr(exc, "problems", [str(exc)])
        bad = [m for m in msgs if "\n" in m or "\r" in m or "\x1b" in m]
        return Outcome(reader, "bad_message", repr(bad[0])[:300]) if bad else Outcome(reader, "infer_error", msgs[0][:300])
    except Exception as exc:  # noqa: BLE001 - a defect is anything else
        tb = traceback.extract_tb(exc.__traceback__)
        where = f"{Path(tb[-1].filename).name}:{tb[-1].lineno}" if tb else "?"
        return Outcome(reader, "defect", f"{type(exc).__name__} at {where}: {' '.join(str(exc).split())[:200]}")
    if digest == ref:
        return Outcome(reader, "same")
    return Outcome(reader, "changed", "silent" if is_silent(kind, resigned, reader) else "re-signed or unverified")


def case_plan(seed: int, i: int, kinds: tuple[str, ...] = ALL_KINDS) -> tuple[random.Random, str, str]:
    """The rng, base variant and mutation kind of case ``i`` of run ``seed``."""
    rng = random.Random(f"{seed}:{i}")
    return rng, rng.choice(sorted(BASE_VARIANTS)), rng.choice(kinds)


class Fuzzer:
    """Base datasets, their reference digests per reader, a server, and a scratch folder."""

    def __init__(self, work: Path, readers: tuple[str, ...] = tuple(READERS)) -> None:
        self.work, self.readers = work, readers
        self.served = work / "served"
        self.served.mkdir(parents=True, exist_ok=True)
        self.bases = make_bases(work / "bases")
        self.server = Server(self.served)
        self.refs: dict[tuple[str, str], str] = {}
        for variant, path in self.bases.items():
            case = self._copy(path, f"ref-{variant}")
            for reader in readers:
                self.refs[(variant, reader)] = READERS[reader](case, self.server.url(case.name), self._cache(f"ref-{variant}-{reader}"))

    def _copy(self, base: Path, name: str) -> Path:
        dest = self.served / name
        shutil.rmtree(dest, ignore_errors=True)
        shutil.copytree(base, dest)
        return dest

    def _cache(self, name: str) -> Path:
        path = self.work / "cache" / name
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir(parents=True)
        return path

    def mutate(self, seed: int, i: int, kinds: tuple[str, ...] = ALL_KINDS) -> tuple[str, str, Path, bool]:
        """Build case ``i``: returns (variant, kind, folder, re-signed)."""
        rng, variant, kind = case_plan(seed, i, kinds)
        case = self._copy(self.bases[variant], f"case-{i}")
        if kind in SERVER_KINDS:
            (case / ".serve").write_text(kind)
            return variant, kind, case, False
        return variant, kind, case, KINDS[kind](rng, case)

    def run(self, seed: int, i: int, kinds: tuple[str, ...] = ALL_KINDS,
            on_mutated: Callable[[], None] | None = None) -> Iterator[tuple[str, str, Outcome]]:
        """Yield ``(variant, kind, outcome)`` per reader for case ``i``; ``on_mutated`` is called
        between building the case and the first reader."""
        variant, kind, case, resigned = self.mutate(seed, i, kinds)
        if on_mutated is not None:
            on_mutated()
        try:
            for reader in self.readers:
                if kind in SERVER_KINDS and reader not in ("url_fetch", "stream_http"):
                    continue
                cache = self._cache(f"case-{i}-{reader}")
                url = self.server.url(case.name)
                read = functools.partial(READERS[reader], case, url, cache)
                out = classify(reader, read, self.refs[(variant, reader)], kind, resigned)
                left = [p.name for p in cache.rglob("*") if p.name.endswith(TEMP_MARKS) and "decoded" not in p.parts]
                if out.detail == "silent" and widens_topk(self.bases[variant], case):
                    out = Outcome(reader, "changed", "index widens top-k labels")
                if left and out.result != "defect":
                    out = Outcome(reader, "leftover", ", ".join(left)[:200])
                shutil.rmtree(cache, ignore_errors=True)
                yield variant, kind, out
        finally:
            shutil.rmtree(case, ignore_errors=True)

    def close(self) -> None:
        self.server.close()
