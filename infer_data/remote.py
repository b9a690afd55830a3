"""Datasets published under a URL prefix: fetched once into a local cache, checked, then read.

``InferDataset("https://host/path/cifar10-ipc10")`` downloads ``index.json`` and the shards it
lists into ``~/.cache/infer/<hash of the URL>/`` (or ``$INFER_CACHE``, or ``cache_dir``). Every
download is bounded by the size the index declares, checked against its sha256, written under a
temporary name and renamed when complete, so an interrupted download is simply retried.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import urllib.error
import urllib.request
from pathlib import Path

from .constants import INDEX_FILENAME
from .errors import DatasetNotFoundError, FormatError, IntegrityError
from .index import INDEX_MAX_BYTES, DatasetIndex
from .writer import sha256_file

URL_SCHEMES = ("http://", "https://", "file://")
CHUNK = 1 << 20


def is_url(source: str | os.PathLike[str]) -> bool:
    """Whether ``source`` is a URL prefix rather than a local folder."""
    return isinstance(source, str) and source.startswith(URL_SCHEMES)


def default_cache_dir() -> Path:
    """``$INFER_CACHE`` or ``~/.cache/infer``."""
    return Path(os.environ.get("INFER_CACHE", Path.home() / ".cache" / "infer"))


def _fetch(url: str, dest: Path, max_bytes: int) -> None:
    """Download ``url`` to ``dest`` atomically, refusing more than ``max_bytes``.

    Raises:
        DatasetNotFoundError: the URL cannot be fetched.
        IntegrityError: the body is larger than allowed.
    """
    tmp = dest.with_name(f".{dest.name}.download")
    try:
        with urllib.request.urlopen(url, timeout=60) as response, open(tmp, "wb") as out:  # noqa: S310 - schemes checked
            n = 0
            while block := response.read(CHUNK):
                n += len(block)
                if n > max_bytes:
                    raise IntegrityError(f"{url}: larger than the {max_bytes} bytes index.json declares; the server copy is wrong")
                out.write(block)
    except (urllib.error.URLError, OSError) as exc:
        tmp.unlink(missing_ok=True)
        raise DatasetNotFoundError(f"{url}: cannot download ({exc}); check the URL and your connection") from exc
    except IntegrityError:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, dest)


def fetch_dataset(url: str, cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Mirror the dataset at URL prefix ``url`` into the cache; returns the local folder.

    Shards already in the cache with the declared size and sha256 are not fetched again.

    Raises:
        DatasetNotFoundError, IntegrityError, FormatError: naming the URL and the problem.
    """
    prefix = url.rstrip("/")
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    local = root / hashlib.sha256(prefix.encode()).hexdigest()[:16]
    local.mkdir(parents=True, exist_ok=True)
    index_tmp = local / f".{INDEX_FILENAME}.remote"
    _fetch(f"{prefix}/{INDEX_FILENAME}", index_tmp, INDEX_MAX_BYTES)
    index = DatasetIndex.from_json(index_tmp.read_bytes().decode("utf-8", errors="replace"), where=f"{prefix}/{INDEX_FILENAME}")
    for entry in index.shards:
        dest = local / entry.name
        if dest.is_file() and dest.stat().st_size == entry.bytes and sha256_file(dest) == entry.sha256:
            continue
        _fetch(f"{prefix}/{entry.name}", dest, entry.bytes)
        if dest.stat().st_size != entry.bytes or sha256_file(dest) != entry.sha256:
            dest.unlink()
            raise IntegrityError(f"{prefix}/{entry.name}: downloaded bytes do not match index.json (size or sha256); the server copy is corrupt")
    if not index.shards:
        raise FormatError(f"{prefix}/{INDEX_FILENAME}: lists no shards")
    os.replace(index_tmp, local / INDEX_FILENAME)
    return local


def clear_cache(cache_dir: str | os.PathLike[str] | None = None) -> None:
    """Remove every cached dataset."""
    shutil.rmtree(Path(cache_dir) if cache_dir is not None else default_cache_dir(), ignore_errors=True)


def resolve_root(source: str | os.PathLike[str], cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """A local folder for ``source``: the folder itself, or the cache mirror of a URL prefix."""
    return fetch_dataset(str(source), cache_dir) if is_url(source) else Path(source)
