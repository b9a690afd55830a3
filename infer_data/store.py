"""GroupStore: lazy, per-group access to a distilled dataset through a memory-mapped decoded cache.

Opening a store reads nothing but what the caller passes in (the parsed index) and the shard
sizes. The first time a group is needed, its shard's member table is read from the tar headers
(once per process), the shard's sha256 is checked (once per process, when ``verify``), the
group's members are read by offset, decoded with the project's safe codecs, and written into
the decoded cache: a folder of raw arrays, one file per field, each shaped for the whole
dataset::

    <cache root>/decoded/<key>/
        info.json            what the folder holds (source, shapes, dtypes, bytes)
        bases.u8             uint8   (G, K, C, H, W)
        comps.f32            float32 (G, M, C, H, W)
        labels.f16           float16 (G, K * (M + 1), NC)   (absent without soft labels)
        class_ids.i64        int64   (G, K)
        source.i64           int64   (G, K)
        ready/g000003        marker: group 3 is complete ("verified" or "size-checked")
        locks/g000003        lock file: one process decodes a group, the others wait

``key`` is the sha256 of index.json, so identical datasets share a cache and any change to a
shard (its sha256 is in the index) gives a new one. The files are sparse until groups are
written and are mapped with ``mmap`` (copy-on-write), so open time and private memory do not
grow with G, every process on the machine (DataLoader workers of any start method, DDP ranks)
shares one copy in the page cache, and a group is decoded once per machine, not once per
process. A group's marker is written only after its data, so a killed writer leaves the group
to be decoded again.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
from collections.abc import Iterable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch

from .atomic import atomic_write
from .constants import GROUP_KEY, INDEX_FILENAME
from .errors import ConfigError
from .index import INDEX_MAX_BYTES, DatasetIndex, read_bounded, read_index
from .reader import (
    GroupSchema,
    MemberRef,
    check_shard_file,
    decode_group,
    decode_meta,
    group_member_refs,
    hash_shard,
    open_shard,
    read_members,
    shard_path,
)
from .record import GroupRecord

DECODED_DIRNAME = "decoded"
VERIFIED, SIZE_CHECKED = "verified", "size-checked"
MAX_OPEN_SHARDS = 64  # shard files one process keeps open (each is reopened, and its identity checked, on demand)


@dataclass
class Factors:
    """The stored factors of every group as tensors over the decoded cache (nothing copied).

    Read a group's slices only after :meth:`GroupStore.ensure` returned for it; other groups'
    slices hold zeros until decoded.
    """

    bases: torch.Tensor  # uint8 (G, K, C, H, W)
    compensators: torch.Tensor  # float32 (G, M, C, H, W), [0, 1]-range pixel deltas
    labels: torch.Tensor | None  # float16 (G, K * (M + 1), NC) logits, or None
    class_ids: torch.Tensor  # int64 (G, K)
    source_indices: torch.Tensor  # int64 (G, K)


@dataclass(frozen=True)
class _Field:
    """One array file of the cache: name, dtype and per-group shape."""

    file: str
    dtype: Any
    shape: tuple[int, ...]  # per group

    @property
    def group_bytes(self) -> int:
        return int(np.prod(self.shape)) * np.dtype(self.dtype).itemsize


def cache_key(index_bytes: bytes) -> str:
    """The decoded-cache folder name of a dataset: 16 hex digits of its index's sha256."""
    return hashlib.sha256(index_bytes).hexdigest()[:16]


def _fields(index: DatasetIndex, has_labels: bool) -> dict[str, _Field]:
    k, m = index.method.k, index.method.m
    chw = tuple(index.dataset.image_shape)
    out = {
        "bases": _Field("bases.u8", np.uint8, (k, *chw)),
        "compensators": _Field("comps.f32", np.float32, (m, *chw)),
        "class_ids": _Field("class_ids.i64", np.int64, (k,)),
        "source_indices": _Field("source.i64", np.int64, (k,)),
    }
    if has_labels:
        out["labels"] = _Field("labels.f16", np.float16, (k * (m + 1), index.dataset.num_classes))
    return out


class GroupStore:
    """Decode groups on demand into a shared, memory-mapped cache; see the module docstring.

    Args:
        root: the local dataset folder.
        index: its parsed index.
        index_bytes: the exact bytes of its index.json (the cache key).
        cache_root: where ``decoded/<key>/`` lives (default ``$INFER_CACHE`` or ``~/.cache/infer``).
        verify: check each shard's sha256 before decoding a group from it (once per process).

    Raises:
        IntegrityError, DatasetNotFoundError: a shard is missing or has another size than declared.
        ConfigError: the cache folder cannot be created or lacks the space the decoded set needs.
    """

    def __init__(self, root: Path, index: DatasetIndex, index_bytes: bytes, *, cache_root: Path, verify: bool = True) -> None:
        self.root, self.index, self.verify = root, index, verify
        self.schema = GroupSchema(index)
        self.fields = _fields(index, self.schema.has_labels)
        self.num_groups = index.num_groups
        for entry in index.shards:
            check_shard_file(shard_path(root, entry), entry, verify=False)
        self.path = cache_root / DECODED_DIRNAME / cache_key(index_bytes)
        self._shard_of = np.repeat(np.arange(len(index.shards)), [s.groups for s in index.shards])  # (G,)
        self._ready: set[int] = set()
        self._verified: dict[int, tuple[int, ...]] = {}  # shard -> identity of the file whose sha256 matched
        self._files: dict[int, IO[bytes]] = {}  # shard -> the one open file this process reads it from
        self._seen: dict[int, tuple[int, ...]] = {}  # shard -> identity of the file its member table came from
        self._refs: dict[int, dict[int, dict[str, MemberRef]]] = {}
        self._factors: Factors | None = None
        self._prepare()

    # -- the cache folder --------------------------------------------------------------------

    @property
    def nbytes(self) -> int:
        """Bytes the decoded cache takes once every group is decoded."""
        return sum(f.group_bytes for f in self.fields.values()) * self.num_groups

    def _prepare(self) -> None:
        """Create the cache folder and its sparse array files once, under a folder lock."""
        try:
            (self.path / "ready").mkdir(parents=True, exist_ok=True)
            (self.path / "locks").mkdir(exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"{self.path}: cannot create the decoded cache ({exc.strerror}); set INFER_CACHE or pass cache_dir") from exc
        if (self.path / "info.json").is_file():
            return
        with _locked(self.path / "locks" / "folder"):
            if (self.path / "info.json").is_file():
                return
            free = shutil.disk_usage(self.path).free
            if free < self.nbytes:
                raise ConfigError(f"{self.path}: the decoded cache needs {self.nbytes / 1e9:.2f} GB but {free / 1e9:.2f} GB are free; "
                                  "free space or pass cache_dir on a larger disk")
            for f in self.fields.values():
                with open(self.path / f.file, "ab") as fh:
                    fh.truncate(f.group_bytes * self.num_groups)
            info = {"source": str(self.root.resolve()), "dataset": self.index.dataset.name, "groups": self.num_groups,
                    "bytes": self.nbytes, "fields": {n: {"file": f.file, "dtype": np.dtype(f.dtype).name, "shape": [self.num_groups, *f.shape]}
                                                     for n, f in self.fields.items()}}
            atomic_write(self.path / "info.json", (json.dumps(info, indent=1) + "\n").encode())

    def factors(self) -> Factors:
        """Tensors over the whole cache (see :class:`Factors`); cheap, nothing is read."""
        if self._factors is None:
            t = {name: self._map(f) for name, f in self.fields.items()}
            self._factors = Factors(t["bases"], t["compensators"], t.get("labels"), t["class_ids"], t["source_indices"])
        return self._factors

    def _map(self, f: _Field) -> torch.Tensor:
        shape = (self.num_groups, *f.shape)
        if f.group_bytes * self.num_groups == 0:
            return torch.from_numpy(np.zeros(shape, f.dtype))
        arr = np.memmap(self.path / f.file, dtype=f.dtype, mode="c", shape=shape)
        return torch.from_numpy(arr)

    # -- decoding ----------------------------------------------------------------------------

    def ensure(self, groups: Iterable[int]) -> None:
        """Make sure every group in ``groups`` is decoded into the cache.

        Raises:
            InferError: a shard fails its checks, naming the shard and member.
        """
        for g in groups:
            if g not in self._ready:
                self._ensure_one(int(g))

    def _marker_ok(self, g: int) -> bool:
        marker = self.path / "ready" / GROUP_KEY.format(g)
        try:
            state = marker.read_text()
        except OSError:
            return False
        return state == VERIFIED or (state == SIZE_CHECKED and not self.verify)

    def _ensure_one(self, g: int) -> None:
        if not self._marker_ok(g):
            with _locked(self.path / "locks" / GROUP_KEY.format(g)):
                if not self._marker_ok(g):
                    self._decode_into_cache(g)
        self._ready.add(g)

    def _decode_into_cache(self, g: int) -> None:
        record = self.read_group(g)
        arrays = {"bases": record.bases, "compensators": record.compensators, "class_ids": record.class_ids,
                  "source_indices": record.source_indices}
        if "labels" in self.fields:
            arrays["labels"] = record.labels
        for name, f in self.fields.items():
            data = np.ascontiguousarray(arrays[name], dtype=f.dtype)
            with open(self.path / f.file, "r+b") as fh:
                os.pwrite(fh.fileno(), data.tobytes(), g * f.group_bytes)
        atomic_write(self.path / "ready" / GROUP_KEY.format(g), (VERIFIED if self.verify else SIZE_CHECKED).encode())

    def _shard(self, g: int) -> tuple[int, Path]:
        if not 0 <= g < self.num_groups:
            raise IndexError(f"group {g} out of range for {self.num_groups} groups")
        s = int(self._shard_of[g])
        return s, shard_path(self.root, self.index.shards[s])

    def _open(self, s: int, path: Path) -> IO[bytes]:
        """Shard ``s`` opened once per process; with ``verify`` its sha256 is checked on that same
        open file unless this process (or its parent, before pickling) verified the same file
        (device, inode, size, modification time) already."""
        f = self._files.get(s)
        if f is None:
            if len(self._files) >= MAX_OPEN_SHARDS:  # close the least recently opened
                self._files.pop(next(iter(self._files))).close()
            entry = self.index.shards[s]
            f = open_shard(path, entry)
            if s in self._seen and self._seen[s] != _identity(f):
                self._refs.pop(s, None)  # another file under the name: its member table may differ
            self._seen[s] = _identity(f)
            if self.verify and self._verified.get(s) != _identity(f):
                try:
                    hash_shard(f, path, entry)
                except BaseException:
                    f.close()
                    raise
                self._verified[s] = _identity(f)
            self._files[s] = f
        return f

    def group_refs(self, g: int) -> tuple[Path, dict[str, MemberRef]]:
        """Shard path and member table of group ``g`` (the shard is checked once per process)."""
        s, path = self._shard(g)
        f = self._open(s, path)
        if s not in self._refs:
            self._refs[s] = dict(group_member_refs(path, self.index.shards[s], self.schema, f))
        return path, self._refs[s][g]

    def read_group(self, g: int) -> GroupRecord:
        """Group ``g`` decoded straight from its shard (no cache).

        Raises:
            InferError: naming the shard, the group and the member.
        """
        path, refs = self.group_refs(g)
        members = read_members(self._files[self._shard(g)[0]], refs, path)
        return decode_group(members, self.schema, f"{path} group {GROUP_KEY.format(g)}")

    def read_meta(self, g: int) -> dict[str, Any]:
        """Group ``g``'s meta.json, checked (class ids, source indices, teachers); bases not decoded."""
        path, refs = self.group_refs(g)
        members = read_members(self._files[self._shard(g)[0]], {"meta.json": refs["meta.json"]}, path)
        return decode_meta(members, self.schema, f"{path} group {GROUP_KEY.format(g)}")

    def close(self) -> None:
        """Close the shard files this process opened (they are reopened, and checked again, on demand)."""
        files, self._files = getattr(self, "_files", {}), {}  # absent when __init__ failed
        for f in files.values():
            f.close()

    def __del__(self) -> None:
        self.close()

    # -- pickling for worker processes -------------------------------------------------------

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.update(_factors=None, _refs={}, _files={}, _seen={}, _verified=dict(state["_verified"]), _ready=set(state["_ready"]))
        return state


def _identity(f: IO[bytes]) -> tuple[int, ...]:
    """(device, inode, size, mtime in ns) of an open file: another file or a rewrite changes it."""
    st = os.fstat(f.fileno())
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns


@contextmanager
def _locked(path: Path):  # type: ignore[no-untyped-def]
    """An exclusive ``flock`` on ``path`` (created if missing) for the ``with`` block."""
    with open(path, "a+b") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def open_index(root: Path) -> tuple[DatasetIndex, bytes]:
    """Parse ``root/index.json`` from one read; returns the index and its exact bytes (the cache key).

    Raises:
        DatasetNotFoundError, FormatError, UnsupportedVersionError: as :func:`infer_data.index.read_index`.
    """
    path = root / INDEX_FILENAME
    if not path.is_file():
        read_index(root)  # raises the canonical "no dataset here" error
    data = read_bounded(path, INDEX_MAX_BYTES)
    return DatasetIndex.from_json(data, where=str(path)), data
