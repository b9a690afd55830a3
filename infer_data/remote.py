"""Datasets published under a URL prefix: fetched once into a local cache, checked, then read.

``InferDataset("https://host/path/cifar10-ipc10")`` downloads ``index.json`` and the shards it
lists into ``~/.cache/infer/<key>/`` (or ``$INFER_CACHE``, or ``cache_dir``), ``key`` being 16 hex
digits of the sha256 of the URL prefix (:func:`cache_key`); ``source.json`` there records the
prefix for ``infer cache ls``. Every download is bounded by the size the index declares, hashed
as it arrives and checked against its sha256, written under a temporary name and renamed when
complete, so an interrupted download is simply retried. A byte progress bar goes to stderr when
it is a terminal (``progress=False`` or ``TQDM_DISABLE=1`` turn it off). The streaming reader
(:mod:`infer_data.stream`) keeps verified shards in the same layout.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import shutil
import socket
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .atomic import atomic_write
from .constants import INDEX_FILENAME
from .errors import ConfigError, DatasetNotFoundError, FormatError, IntegrityError
from .index import INDEX_MAX_BYTES, DatasetIndex, read_bounded
from .writer import sha256_file

URL_SCHEMES = ("http://", "https://", "file://")
CHUNK = 1 << 20
SOURCE_FILENAME = "source.json"
DEADLINE_ENV = "INFER_FETCH_DEADLINE"
MIN_RATE = 65536  # bytes per second a download must average, beyond its first 60 s


def is_url(source: str | os.PathLike[str]) -> bool:
    """Whether ``source`` is a URL prefix rather than a local folder."""
    return isinstance(source, str) and source.startswith(URL_SCHEMES)


def default_cache_dir() -> Path:
    """``$INFER_CACHE`` or ``~/.cache/infer``."""
    return Path(os.environ.get("INFER_CACHE", Path.home() / ".cache" / "infer"))


def cache_key(prefix: str) -> str:
    """The cache folder name of a dataset prefix: 16 hex digits of its sha256."""
    return hashlib.sha256(prefix.encode()).hexdigest()[:16]


def mark_source(folder: Path, source: str) -> None:
    """Record ``source`` in ``folder/source.json`` (once) so ``infer cache ls`` can name it."""
    path = folder / SOURCE_FILENAME
    if path.is_file():
        return
    atomic_write(path, (json.dumps({"source": source}) + "\n").encode())


def fetch_deadline(nbytes: int) -> float:
    """Seconds a download of ``nbytes`` may take in total: ``$INFER_FETCH_DEADLINE`` or 60 s plus
    one second per 64 KiB (an average rate of at least 64 KiB/s).

    Raises:
        ConfigError: the variable is set but is not a positive number of seconds.
    """
    text = os.environ.get(DEADLINE_ENV, "").strip()
    if not text:
        return 60.0 + nbytes / MIN_RATE
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value < float("inf"):
        raise ConfigError(f"{DEADLINE_ENV}={text!r}: not a positive number of seconds; fix or unset it")
    return value


def _fetch(url: str, dest: Path, max_bytes: int, advance: Callable[[int], object] = lambda n: None, *,
           deadline_bytes: int | None = None) -> str:
    """Download ``url`` to ``dest`` atomically, refusing more than ``max_bytes``; returns its sha256.

    The whole download must finish within :func:`fetch_deadline` of ``deadline_bytes`` (default
    ``max_bytes``); every read
    waits at most the time left. On any failure the temporary file is removed.

    Raises:
        DatasetNotFoundError: the URL cannot be fetched, the connection is cut or the deadline passes.
        IntegrityError: the body is larger than allowed.
    """
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.download")
    deadline = time.monotonic() + fetch_deadline(max_bytes if deadline_bytes is None else deadline_bytes)
    sha, n = hashlib.sha256(), 0
    try:
        with urllib.request.urlopen(url, timeout=_left(deadline, url)) as response, open(tmp, "wb") as out:  # noqa: S310 - schemes checked
            while True:
                _set_timeout(response, _left(deadline, url))
                block = response.read1(CHUNK) if hasattr(response, "read1") else response.read(CHUNK)
                if not block:
                    break
                n += len(block)
                if n > max_bytes:
                    raise IntegrityError(f"{url}: larger than the {max_bytes} bytes index.json declares; the server copy is wrong")
                out.write(block)
                sha.update(block)
                advance(len(block))
        os.replace(tmp, dest)
    except (urllib.error.URLError, OSError, http.client.HTTPException, ValueError) as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, IntegrityError | DatasetNotFoundError):
            raise
        if isinstance(exc, TimeoutError | socket.timeout) and time.monotonic() >= deadline - 0.1:
            _left(deadline, url)  # raises the deadline message
        raise DatasetNotFoundError(f"{url}: cannot download ({_why(exc, n)}); check the URL and your connection") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return sha.hexdigest()


def _left(deadline: float, url: str) -> float:
    """Seconds until ``deadline``.

    Raises:
        DatasetNotFoundError: the deadline has passed.
    """
    left = deadline - time.monotonic()
    if left <= 0:
        raise DatasetNotFoundError(f"{url}: download did not finish within its deadline; check your connection, "
                                   f"or set {DEADLINE_ENV} (seconds) for a slow link")
    return left


def _set_timeout(response: Any, seconds: float) -> None:
    """Make the next socket read of an HTTP ``response`` wait at most ``seconds``."""
    sock = getattr(getattr(getattr(response, "fp", None), "raw", None), "_sock", None)
    if sock is not None:
        sock.settimeout(seconds)


def _why(exc: BaseException, received: int) -> str:
    """One line about a download that failed after ``received`` bytes of the body."""
    if isinstance(exc, http.client.IncompleteRead):
        return f"connection closed after {received} bytes, before the end of the body"
    if isinstance(exc, TimeoutError | socket.timeout):
        return "timed out"
    text = " ".join(str(getattr(exc, "reason", exc)).split()) or type(exc).__name__
    return text[:200]


def _progress_bar(total: int, prefix: str, progress: bool | None) -> Any:
    """A tqdm byte bar on stderr; ``progress`` None: only when stderr is a terminal."""
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=f"download {prefix}", file=sys.stderr,
                disable=None if progress is None else not progress)


def fetch_dataset(url: str, cache_dir: str | os.PathLike[str] | None = None, *, progress: bool | None = None) -> Path:
    """Mirror the dataset at URL prefix ``url`` into the cache; returns the local folder.

    Shards already in the cache with the declared size and sha256 are not fetched again.

    Args:
        progress: byte progress bar on stderr: None shows it when stderr is a terminal.

    Raises:
        DatasetNotFoundError, IntegrityError, FormatError: naming the URL and the problem.
    """
    prefix = url.rstrip("/")
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    local = root / cache_key(prefix)
    local.mkdir(parents=True, exist_ok=True)
    mark_source(local, prefix)
    index_tmp = local / f".{INDEX_FILENAME}.{os.getpid()}.remote"
    _fetch(f"{prefix}/{INDEX_FILENAME}", index_tmp, INDEX_MAX_BYTES, deadline_bytes=1 << 20)
    try:
        _mirror_shards(prefix, local, index_tmp, progress)
    finally:
        index_tmp.unlink(missing_ok=True)
    return local


def _mirror_shards(prefix: str, local: Path, index_tmp: Path, progress: bool | None) -> None:
    """Fetch the shards ``index_tmp`` lists into ``local``, then put the index in place."""
    index = DatasetIndex.from_json(read_bounded(index_tmp, INDEX_MAX_BYTES), where=f"{prefix}/{INDEX_FILENAME}")
    if not index.shards:
        raise FormatError(f"{prefix}/{INDEX_FILENAME}: lists no shards")
    todo = [e for e in index.shards if not _cached_ok(local / e.name, e.bytes, e.sha256)]
    free, need = shutil.disk_usage(local).free, sum(e.bytes for e in todo)
    if need > free:
        raise ConfigError(f"{local}: the download needs {need} bytes but {free} are free; free space or pass cache_dir on a larger disk")
    with _progress_bar(sum(e.bytes for e in todo), prefix, progress) as bar:
        for entry in todo:
            dest = local / entry.name
            got = _fetch(f"{prefix}/{entry.name}", dest, entry.bytes, bar.update)
            if dest.stat().st_size != entry.bytes or got != entry.sha256:
                dest.unlink()
                raise IntegrityError(f"{prefix}/{entry.name}: downloaded bytes do not match index.json (size or sha256); the server copy is corrupt")
    os.replace(index_tmp, local / INDEX_FILENAME)


def _cached_ok(path: Path, size: int, sha256: str) -> bool:
    return path.is_file() and path.stat().st_size == size and sha256_file(path) == sha256


def clear_cache(cache_dir: str | os.PathLike[str] | None = None) -> None:
    """Remove every cached dataset (URL mirrors, stream caches, decoded groups) under the cache root.

    Only folders the package made are removed (see :mod:`infer_data.cachedir`), never other files.
    """
    from .cachedir import list_cache, remove_entry

    for entry in list_cache(cache_dir):
        remove_entry(entry)


def resolve_root(source: str | os.PathLike[str], cache_dir: str | os.PathLike[str] | None = None, *,
                 progress: bool | None = None) -> Path:
    """A local folder for ``source``: the folder itself, or the cache mirror of a URL prefix."""
    return fetch_dataset(str(source), cache_dir, progress=progress) if is_url(source) else Path(source)
