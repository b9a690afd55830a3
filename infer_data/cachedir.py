"""What lies under the cache root, listed and cleared (``infer cache ls|clear``).

The cache root is ``$INFER_CACHE`` or ``~/.cache/infer`` (:func:`infer_data.remote.default_cache_dir`).
It holds two kinds of folders, and only these are listed or removed:

- ``<root>/<key>/`` (``key`` = 16 hex digits): shards of a URL or ``pipe:`` dataset, mirrored by
  ``InferDataset(url)`` or kept by the streaming reader's ``cache_dir``; ``source.json`` names the
  prefix (folders written before it existed show ``?``);
- ``<root>/decoded/<key>/``: decoded groups of a dataset; ``info.json`` names its source folder.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .remote import SOURCE_FILENAME, default_cache_dir

DECODED = "decoded"
KEY_RE = re.compile(r"[0-9a-f]{16}")
INFO_MAX_BYTES = 1 << 20


@dataclass
class CacheEntry:
    """One cached dataset folder."""

    kind: str  # "shards" (URL mirror or stream cache) or "decoded"
    key: str  # the folder name
    source: str  # URL prefix, pipe: command or dataset folder it came from; "?" when unknown
    bytes: int  # sum of the file sizes
    disk_bytes: int  # bytes allocated on disk (smaller for sparse decoded caches)
    path: Path

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self) | {"path": str(self.path)}


def _sizes(folder: Path) -> tuple[int, int]:
    """(sum of file sizes, allocated bytes) of the files under ``folder``, links not followed."""
    size = disk = 0
    for dirpath, _, files in os.walk(folder):
        for name in files:
            st = os.lstat(os.path.join(dirpath, name))
            size += st.st_size
            disk += getattr(st, "st_blocks", 0) * 512 or st.st_size
    return size, disk


def _source(path: Path) -> str:
    """The ``source`` field of a small JSON file, or ``?``."""
    try:
        with open(path, "rb") as fh:
            obj = json.loads(fh.read(INFO_MAX_BYTES))
        return str(obj["source"]) if isinstance(obj, dict) and "source" in obj else "?"
    except (OSError, ValueError):
        return "?"


def _entry(kind: str, folder: Path, info: str) -> CacheEntry:
    size, disk = _sizes(folder)
    return CacheEntry(kind, folder.name, _source(folder / info), size, disk, folder)


def list_cache(cache_dir: str | os.PathLike[str] | None = None) -> list[CacheEntry]:
    """Every cached dataset folder under the cache root, shards first, by key."""
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    out: list[CacheEntry] = []
    if root.is_dir():
        out += [_entry("shards", p, SOURCE_FILENAME) for p in sorted(root.iterdir()) if _is_folder(p) and KEY_RE.fullmatch(p.name)]
    if (root / DECODED).is_dir():
        out += [_entry("decoded", p, "info.json") for p in sorted((root / DECODED).iterdir()) if _is_folder(p)]
    return out


def _is_folder(p: Path) -> bool:
    return p.is_dir() and not p.is_symlink()


def select(entries: list[CacheEntry], what: str) -> list[CacheEntry]:
    """The entries ``what`` names: a key, a folder path, or a source (URL prefix or dataset folder).

    A shards entry brings along the decoded caches made from its folder.

    Raises:
        ConfigError: nothing matches.
    """
    want = what.rstrip("/") or what
    local = str(Path(what).resolve()) if not re.match(r"^[a-z]+:", what) else want
    hit = [e for e in entries if want in (e.key, e.source.rstrip("/"), str(e.path)) or local in (e.source, str(e.path))]
    folders = {str(e.path.resolve()) for e in hit if e.kind == "shards"}
    hit += [e for e in entries if e.kind == "decoded" and e.source in folders and e not in hit]
    if not hit:
        raise ConfigError(f"{what}: no cached dataset has this key, URL or folder; `infer cache ls` lists them")
    return hit


def remove_entry(entry: CacheEntry) -> None:
    """Delete one cached dataset folder."""
    shutil.rmtree(entry.path, ignore_errors=True)
