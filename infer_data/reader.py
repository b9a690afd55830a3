"""Safe reading of shards as small generator stages: iter_members -> group_members -> decode_group.

Nothing is unpickled; every member is bounded by what the index declares before it is read
or decompressed; every malformed input becomes an :class:`~infer_data.errors.InferError` that
names the shard and the member. ``check_shard_file`` compares size and sha256 with the index.
"""

from __future__ import annotations

import json
import os
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, TypeVar

import numpy as np

from .codecs import FieldCodec, Members, create_codec
from .constants import GROUP_KEY, META_MAX_BYTES_BASE, META_MAX_BYTES_PER_CLASS
from .errors import DatasetNotFoundError, FormatError, IntegrityError
from .index import DatasetIndex, ShardEntry
from .record import GroupRecord
from .writer import sha256_file

T = TypeVar("T")
MemberRef = tuple[int, int]  # (offset of the member's data in the shard, size in bytes)


@dataclass
class FieldShapes:
    """Declared shapes of one group's fields, derived from the index."""

    base: tuple[int, ...]  # (K, C, H, W)
    compensators: tuple[int, ...]  # (M, C, H, W)
    labels: tuple[int, ...]  # (K * (M + 1), NC)

    @classmethod
    def from_index(cls, index: DatasetIndex) -> FieldShapes:
        """Shapes for ``index``."""
        k, m, chw = index.method.k, index.method.m, tuple(index.dataset.image_shape)
        return cls((k, *chw), (m, *chw), (k * (m + 1), index.dataset.num_classes))


class GroupSchema:
    """Which members a group must contain, with their size bounds."""

    def __init__(self, index: DatasetIndex) -> None:
        self.index = index
        self.shapes = FieldShapes.from_index(index)
        self.codecs: dict[str, FieldCodec] = {f: create_codec(f, spec) for f, spec in index.codecs.items()}
        self.bounds: dict[str, int] = {}
        for f in ("base", "compensators", "labels"):
            shape = getattr(self.shapes, f)
            for suffix in self.codecs[f].member_names(shape):
                self.bounds[suffix] = self.codecs[f].max_member_bytes(suffix, shape)
        self.bounds["meta.json"] = META_MAX_BYTES_BASE + META_MAX_BYTES_PER_CLASS * index.method.k

    @property
    def has_labels(self) -> bool:
        """Whether soft labels are stored."""
        return self.codecs["labels"].spec()["name"] != "none"


def shard_path(root: str | os.PathLike[str], entry: ShardEntry) -> Path:
    """Path of a shard inside the dataset folder."""
    return Path(root) / entry.name


def check_shard_file(path: Path, entry: ShardEntry, *, verify: bool = True) -> None:
    """Compare a shard file's size, and its sha256 when ``verify``, with the index.

    Raises:
        DatasetNotFoundError: the shard is missing.
        IntegrityError: the size or checksum differ (truncated, corrupt or rewritten).
    """
    if not path.is_file():
        raise DatasetNotFoundError(f"{path}: shard listed in index.json is missing; re-download it or rewrite the dataset")
    size = path.stat().st_size
    if size != entry.bytes:
        raise IntegrityError(
            f"{path}: {size} bytes but index.json declares {entry.bytes}; the shard is truncated or rewritten, re-download it"
        )
    if verify:
        got = sha256_file(path)
        if got != entry.sha256:
            raise checksum_error(path, got, entry)


def checksum_error(path: Path, got: str, entry: ShardEntry) -> IntegrityError:
    """The error for a shard whose sha256 ``got`` differs from the one ``entry`` declares."""
    return IntegrityError(f"{path}: sha256 {got[:12]}... does not match index.json ({entry.sha256[:12]}...); the file is corrupt, re-download it")


def _tar_entries(path: Path, schema: GroupSchema, fileobj: IO[bytes] | None = None) -> Iterator[tuple[tarfile.TarFile, tarfile.TarInfo, str, str]]:
    """Yield ``(tar, info, key, suffix)`` for every member header of a shard, bounded by the schema.

    From ``path`` only headers are read (the tar module seeks over member data); from a
    ``fileobj`` the shard is read once, front to back, as a stream.

    Raises:
        FormatError: not a tar, a non-file member, a name outside the schema, an oversized member.
    """
    try:
        with (tarfile.open(path, mode="r:") if fileobj is None else tarfile.open(fileobj=fileobj, mode="r|")) as tar:
            for info in tar:
                key, _, suffix = info.name.partition(".")
                where = f"{path} member '{info.name}'"
                if not info.isfile():
                    raise FormatError(f"{where}: not a regular file; the shard was not written by infer-data")
                if suffix not in schema.bounds:
                    raise FormatError(f"{where}: unexpected member for codecs {schema.index.codecs}; the shard does not match index.json")
                if info.size > schema.bounds[suffix]:
                    raise FormatError(f"{where}: {info.size} bytes exceeds the {schema.bounds[suffix]} its declared shape allows")
                yield tar, info, key, suffix
    except tarfile.TarError as exc:
        raise FormatError(f"{path}: not a readable tar file ({exc}); re-download the shard") from exc


def iter_members(path: Path, schema: GroupSchema, fileobj: IO[bytes] | None = None) -> Iterator[tuple[str, str, bytes]]:
    """Yield ``(key, suffix, data)`` for every member of a tar shard, bounded by the schema.

    With ``fileobj`` the shard's bytes come from it, read once as a stream (``path`` names it).

    Raises:
        FormatError: not a tar, a non-file member, a name outside the schema, an oversized or
            truncated member.
    """
    for tar, info, key, suffix in _tar_entries(path, schema, fileobj):
        f = tar.extractfile(info)
        data = f.read() if f is not None else b""
        if len(data) != info.size:
            raise FormatError(f"{path} member '{info.name}': truncated member; re-download the shard")
        yield key, suffix, data


def iter_member_refs(path: Path, schema: GroupSchema) -> Iterator[tuple[str, str, MemberRef]]:
    """Yield ``(key, suffix, (offset, size))`` for every member, reading headers only.

    ``offset`` is the byte position of the member's data in the shard file.
    """
    for _, info, key, suffix in _tar_entries(path, schema):
        yield key, suffix, (info.offset_data, info.size)


def _grouped(items: Iterator[tuple[str, str, T]], path: Path, entry: ShardEntry, schema: GroupSchema) -> Iterator[tuple[int, dict[str, T]]]:
    """Group consecutive ``(key, suffix, value)`` into ``(global group number, {suffix: value})``.

    Raises:
        FormatError: keys out of order, a group with missing members, or a group count that
            differs from the index.
    """
    want = sorted(schema.bounds) if schema.has_labels else sorted(s for s in schema.bounds if not s.startswith("label"))
    expected = [GROUP_KEY.format(entry.first_group + i) for i in range(entry.groups)]
    current: str | None = None
    members: dict[str, T] = {}
    n = 0

    def finish() -> tuple[int, dict[str, T]]:
        missing = [s for s in want if s not in members]
        if missing:
            raise FormatError(f"{path} group {current}: missing member '{current}.{missing[0]}'; the shard is incomplete, re-download it")
        return entry.first_group + n, members

    for key, suffix, value in items:
        if key != current:
            if current is not None:
                yield finish()
                n += 1
            if n >= len(expected) or key != expected[n]:
                raise FormatError(f"{path}: found group key '{key}' where index.json expects '{expected[n] if n < len(expected) else 'end of shard'}'")
            current, members = key, {}
        if suffix in members:
            raise FormatError(f"{path}: member '{key}.{suffix}' appears twice")
        members[suffix] = value
    if current is not None:
        yield finish()
        n += 1
    if n != entry.groups:
        raise FormatError(f"{path}: holds {n} groups but index.json declares {entry.groups}; the shard is truncated or rewritten")


def group_members(path: Path, entry: ShardEntry, schema: GroupSchema, fileobj: IO[bytes] | None = None) -> Iterator[tuple[int, Members]]:
    """Group consecutive members into ``(global group number, {suffix: bytes})``, in order.

    With ``fileobj`` the shard is read from it as a stream (see :func:`iter_members`).

    Raises:
        FormatError: keys out of order, a group with missing members, or a group count that
            differs from the index.
    """
    yield from _grouped(iter_members(path, schema, fileobj), path, entry, schema)


def group_member_refs(path: Path, entry: ShardEntry, schema: GroupSchema) -> list[tuple[int, dict[str, MemberRef]]]:
    """Every group's ``{suffix: (offset, size)}`` in a shard, from its headers only.

    Raises:
        FormatError: as :func:`group_members`.
    """
    return list(_grouped(iter_member_refs(path, schema), path, entry, schema))


def read_members(path: Path, refs: dict[str, MemberRef]) -> Members:
    """The bytes of the members at ``refs`` (offsets from :func:`group_member_refs`).

    Raises:
        FormatError: the file ends before a member does.
    """
    out: Members = {}
    with open(path, "rb") as f:
        for suffix, (offset, size) in sorted(refs.items(), key=lambda kv: kv[1][0]):
            f.seek(offset)
            data = f.read(size)
            if len(data) != size:
                raise FormatError(f"{path} member '{suffix}': truncated member; re-download the shard")
            out[suffix] = data
    return out


def decode_meta(members: Members, schema: GroupSchema, where: str) -> dict[str, Any]:
    """Parse and check a group's meta.json (class ids, source indices, teachers).

    Raises:
        FormatError: invalid JSON or fields of the wrong length or range.
    """
    try:
        meta = json.loads(members["meta.json"])
        ids = np.asarray(meta["class_ids"], dtype=np.int64)
        src = np.asarray(meta["source_indices"], dtype=np.int64)
        teachers = [str(t) for t in meta["teachers"]]
    except (ValueError, KeyError, TypeError) as exc:
        raise FormatError(f"{where} member 'meta.json': malformed ({exc}); re-download the shard") from exc
    k, nc = schema.index.method.k, schema.index.dataset.num_classes
    if ids.shape != (k,) or src.shape != (k,) or (k and (ids.min() < 0 or ids.max() >= nc)):
        raise FormatError(f"{where} member 'meta.json': needs {k} class ids in 0..{nc - 1} and {k} source indices")
    if teachers != list(schema.index.method.teachers):
        raise FormatError(f"{where} member 'meta.json': teachers {teachers} differ from index.json {schema.index.method.teachers}")
    return {"class_ids": ids, "source_indices": src, "teachers": teachers, "extra": meta.get("extra", {})}


def decode_group(members: Members, schema: GroupSchema, where: str, *, bases: bool = True) -> GroupRecord:
    """Decode one group's members into a :class:`GroupRecord`.

    Args:
        bases: decode the base images; when False ``record.bases`` is an empty (0, C, H, W)
            array (for lazily decoded lossy bases).

    Raises:
        FormatError, CodecError: naming ``where`` and the member.
    """
    meta = decode_meta(members, schema, where)
    s = schema.shapes
    base = schema.codecs["base"].decode(members, s.base, where) if bases else np.empty((0, *s.base[1:]), np.uint8)
    comps = schema.codecs["compensators"].decode(members, s.compensators, where)
    labels = schema.codecs["labels"].decode(members, s.labels, where) if schema.has_labels else None
    return GroupRecord(base, meta["class_ids"], meta["source_indices"], comps, meta["teachers"], labels, meta["extra"])


def iter_groups(root: str | os.PathLike[str], index: DatasetIndex, *, verify: bool = True) -> Iterator[GroupRecord]:
    """Every group of the dataset, in order, decoded.

    Raises:
        InferError: the first problem found, naming the shard and member.
    """
    schema = GroupSchema(index)
    for entry in index.shards:
        path = shard_path(root, entry)
        check_shard_file(path, entry, verify=verify)
        for g, members in group_members(path, entry, schema):
            yield decode_group(members, schema, f"{path} group {GROUP_KEY.format(g)}")
