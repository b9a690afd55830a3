"""Safe reading of shards as small generator stages: iter_members -> group_members -> decode_group.

Nothing is unpickled; every member is bounded by what the index declares before it is read
or decompressed; every malformed input becomes an :class:`~infer_data.errors.InferError` that
names the shard and the member. ``check_shard_file`` compares size and sha256 with the index.
"""

from __future__ import annotations

import hashlib
import os
import stat
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, TypeVar

import numpy as np

from .codecs import FieldCodec, Members, create_codec
from .constants import GROUP_KEY, META_MAX_BYTES_BASE, META_MAX_BYTES_PER_CLASS
from .errors import DatasetNotFoundError, FormatError, IntegrityError, quote
from .index import DatasetIndex, ShardEntry
from .limits import load_json
from .record import GroupRecord

T = TypeVar("T")
HASH_CHUNK = 1 << 20
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


def open_shard(path: Path, entry: ShardEntry) -> IO[bytes]:
    """Open a shard for reading: it must be a regular file (after symlinks) of exactly the declared size.

    Every later check and read of the shard uses this one open file, so the bytes that are hashed
    are the bytes that are parsed even if the name is replaced meanwhile.

    Raises:
        DatasetNotFoundError: the shard is missing or cannot be opened.
        FormatError: it is not a regular file (a device, FIFO or folder).
        IntegrityError: its size differs from the index.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))  # a FIFO must not block the open
    except FileNotFoundError:
        raise DatasetNotFoundError(f"{path}: shard listed in index.json is missing; re-download it or rewrite the dataset") from None
    except OSError as exc:
        raise DatasetNotFoundError(f"{path}: cannot open the shard ({exc.strerror}); check the file and its permissions") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or st.st_size != entry.bytes:
        os.close(fd)
        if not stat.S_ISREG(st.st_mode):
            raise FormatError(f"{path}: not a regular file; a shard must be a plain file, re-download it")
        raise IntegrityError(
            f"{path}: {st.st_size} bytes but index.json declares {entry.bytes}; the shard is truncated or rewritten, re-download it"
        )
    os.set_blocking(fd, True)
    return os.fdopen(fd, "rb")


def hash_shard(f: IO[bytes], path: Path, entry: ShardEntry) -> None:
    """Hash exactly the declared bytes of the open shard ``f`` and compare with the index.

    Raises:
        IntegrityError: the file changed size or its sha256 differs from the index.
    """
    sha, offset, fd = hashlib.sha256(), 0, f.fileno()
    while offset < entry.bytes:
        block = os.pread(fd, min(HASH_CHUNK, entry.bytes - offset), offset)
        if not block:
            break
        sha.update(block)
        offset += len(block)
    if offset != entry.bytes or os.pread(fd, 1, entry.bytes):
        raise IntegrityError(f"{path}: changed size while being read; re-download it and do not rewrite shards in use")
    if sha.hexdigest() != entry.sha256:
        raise checksum_error(path, sha.hexdigest(), entry)


def check_shard_file(path: Path, entry: ShardEntry, *, verify: bool = True) -> None:
    """Compare a shard file's size, and its sha256 when ``verify``, with the index.

    Raises:
        DatasetNotFoundError: the shard is missing.
        FormatError: not a regular file.
        IntegrityError: the size or checksum differ (truncated, corrupt or rewritten).
    """
    with open_shard(path, entry) as f:
        if verify:
            hash_shard(f, path, entry)


def checksum_error(path: Path, got: str, entry: ShardEntry) -> IntegrityError:
    """The error for a shard whose sha256 ``got`` differs from the one ``entry`` declares."""
    return IntegrityError(f"{path}: sha256 {got[:12]}... does not match index.json ({entry.sha256[:12]}...); the file is corrupt, re-download it")


class BoundedReader:
    """A read-only file wrapper that hands out at most ``budget`` bytes until :meth:`renew`.

    The tar module reads a GNU long-name or pax header whole, of whatever size the header claims;
    behind this wrapper such a header larger than the budget is refused instead of read. Seeks
    (over member data) cost nothing.
    """

    def __init__(self, raw: IO[bytes], budget: int, where: str) -> None:
        self.raw, self.budget, self.left, self.where = raw, budget, budget, where

    def renew(self, extra: int = 0) -> None:
        """Allow ``budget + extra`` more bytes (call once per member)."""
        self.left = self.budget + extra

    def read(self, n: int | None = -1) -> bytes:
        """Up to ``n`` bytes.

        Raises:
            FormatError: more bytes asked for than the budget allows.
        """
        want = self.left + 1 if n is None or n < 0 else n
        if want > self.left:
            raise FormatError(f"{self.where}: a tar header or member needs more than the {self.budget} bytes any member of this "
                              "dataset may take; the shard is corrupt or hostile")
        data = self.raw.read(want)
        self.left -= len(data)
        return data

    def seek(self, offset: int, whence: int = 0) -> int:
        """Forwarded to the wrapped file."""
        return self.raw.seek(offset, whence)

    def tell(self) -> int:
        """Forwarded to the wrapped file."""
        return self.raw.tell()


def header_budget(schema: GroupSchema) -> int:
    """Bytes a reader may read for one member's headers: the largest member bound plus 64 KiB."""
    return max(schema.bounds.values(), default=0) + 65536


def _tar_entries(path: Path, schema: GroupSchema, fileobj: IO[bytes]) -> Iterator[tuple[tarfile.TarFile, tarfile.TarInfo, str, str]]:
    """Yield ``(tar, info, key, suffix)`` for every member header of a shard, bounded by the schema.

    A seekable ``fileobj`` is read headers only (the tar module seeks over member data); a stream
    (``seekable()`` false or absent) is read once, front to back.

    Raises:
        FormatError: not a tar, a non-file member, a name outside the schema, an oversized member
            or header.
    """
    bounded = BoundedReader(fileobj, header_budget(schema), str(path))
    seekable = getattr(fileobj, "seekable", lambda: False)()
    try:
        with tarfile.open(fileobj=bounded, mode="r:" if seekable else "r|") as tar:  # type: ignore[call-overload]
            for info in tar:
                key, _, suffix = info.name.partition(".")
                where = f"{path} member {quote(info.name)}"
                if not info.isfile():
                    raise FormatError(f"{where}: not a regular file; the shard was not written by infer-data")
                if suffix not in schema.bounds:
                    raise FormatError(f"{where}: unexpected member for codecs {schema.index.codecs}; the shard does not match index.json")
                if info.size > schema.bounds[suffix]:
                    raise FormatError(f"{where}: {info.size} bytes exceeds the {schema.bounds[suffix]} its declared shape allows")
                bounded.renew(info.size)
                yield tar, info, key, suffix
                bounded.renew()
    except tarfile.TarError as exc:
        raise FormatError(f"{path}: not a readable tar file ({' '.join(str(exc).split())[:160]}); re-download the shard") from None


def iter_members(path: Path, schema: GroupSchema, fileobj: IO[bytes]) -> Iterator[tuple[str, str, bytes]]:
    """Yield ``(key, suffix, data)`` for every member of a tar shard read from ``fileobj`` as a
    stream, once, front to back (``path`` names it in messages), bounded by the schema.

    Raises:
        FormatError: not a tar, a non-file member, a name outside the schema, an oversized or
            truncated member.
    """
    for tar, info, key, suffix in _tar_entries(path, schema, fileobj):
        try:
            f = tar.extractfile(info)
            data = f.read() if f is not None else b""
        except tarfile.TarError:  # a stream that ends inside the member
            data = b""
        if len(data) != info.size:
            raise FormatError(f"{path} member {quote(info.name)}: truncated member; re-download the shard")
        yield key, suffix, data


def iter_member_refs(path: Path, schema: GroupSchema, fileobj: IO[bytes]) -> Iterator[tuple[str, str, MemberRef]]:
    """Yield ``(key, suffix, (offset, size))`` for every member of the seekable ``fileobj``, reading headers only.

    ``offset`` is the byte position of the member's data in the shard file.
    """
    for _, info, key, suffix in _tar_entries(path, schema, fileobj):
        yield key, suffix, (info.offset_data, info.size)


def _grouped(items: Iterator[tuple[str, str, T]], path: Path, entry: ShardEntry, schema: GroupSchema) -> Iterator[tuple[int, dict[str, T]]]:
    """Group consecutive ``(key, suffix, value)`` into ``(global group number, {suffix: value})``.

    Raises:
        FormatError: keys out of order, a group with missing members, or a group count that
            differs from the index.
    """
    want = sorted(schema.bounds) if schema.has_labels else sorted(s for s in schema.bounds if not s.startswith("label"))
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
            expected = GROUP_KEY.format(entry.first_group + n) if n < entry.groups else "end of shard"
            if key != expected:
                raise FormatError(f"{path}: found group key {quote(key)} where index.json expects '{expected}'")
            current, members = key, {}
        if suffix in members:
            raise FormatError(f"{path}: member {quote(key + '.' + suffix)} appears twice")
        members[suffix] = value
    if current is not None:
        yield finish()
        n += 1
    if n != entry.groups:
        raise FormatError(f"{path}: holds {n} groups but index.json declares {entry.groups}; the shard is truncated or rewritten")


def group_members(path: Path, entry: ShardEntry, schema: GroupSchema, fileobj: IO[bytes]) -> Iterator[tuple[int, Members]]:
    """Group consecutive members into ``(global group number, {suffix: bytes})``, in order, reading
    ``fileobj`` once as a stream (see :func:`iter_members`).

    Raises:
        FormatError: keys out of order, a group with missing members, or a group count that
            differs from the index.
    """
    yield from _grouped(iter_members(path, schema, fileobj), path, entry, schema)


def group_member_refs(path: Path, entry: ShardEntry, schema: GroupSchema, fileobj: IO[bytes]) -> list[tuple[int, dict[str, MemberRef]]]:
    """Every group's ``{suffix: (offset, size)}`` in a shard, from the headers of the seekable ``fileobj``.

    Raises:
        FormatError: as :func:`group_members`.
    """
    return list(_grouped(iter_member_refs(path, schema, fileobj), path, entry, schema))


def read_members(fileobj: IO[bytes], refs: dict[str, MemberRef], where: Path) -> Members:
    """The bytes of the members at ``refs`` (offsets from :func:`group_member_refs`) of the open shard ``fileobj``.

    Raises:
        FormatError: the file ends before a member does.
    """
    out: Members = {}
    for suffix, (offset, size) in sorted(refs.items(), key=lambda kv: kv[1][0]):
        data = os.pread(fileobj.fileno(), size, offset)
        if len(data) != size:
            raise FormatError(f"{where} member '{suffix}': truncated member; re-download the shard")
        out[suffix] = data
    return out


def decode_meta(members: Members, schema: GroupSchema, where: str) -> dict[str, Any]:
    """Parse and check a group's meta.json (class ids, source indices, teachers).

    Raises:
        FormatError: invalid JSON or fields of the wrong type, length or range.
    """
    what = f"{where} member 'meta.json'"
    meta = load_json(members["meta.json"], what)
    k, nc = schema.index.method.k, schema.index.dataset.num_classes
    ids, src, teachers = (meta.get(f) if isinstance(meta, dict) else None for f in ("class_ids", "source_indices", "teachers"))
    if not _ints(ids, k, 0, nc - 1) or not _ints(src, k, 0, 2**63 - 1):
        raise FormatError(f"{what}: malformed, needs {k} class ids in 0..{nc - 1} and {k} source indices in 0..2**63-1")
    if teachers != list(schema.index.method.teachers):
        raise FormatError(f"{what}: teachers {quote(teachers)} differ from index.json {quote(schema.index.method.teachers)}")
    extra = meta.get("extra", {})
    if not isinstance(extra, dict):
        raise FormatError(f"{what}: 'extra' must be an object")
    return {"class_ids": np.asarray(ids, np.int64), "source_indices": np.asarray(src, np.int64), "teachers": teachers, "extra": extra}


def _ints(value: Any, n: int, lo: int, hi: int) -> bool:
    """Whether ``value`` is a list of ``n`` integers (not booleans) in ``lo..hi``."""
    return type(value) is list and len(value) == n and all(type(v) is int and lo <= v <= hi for v in value)


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
    for where, members in iter_raw_groups(root, schema, verify=verify):
        yield decode_group(members, schema, where)


def iter_raw_groups(root: str | os.PathLike[str], schema: GroupSchema, *, verify: bool = True) -> Iterator[tuple[str, Members]]:
    """Every group's checked, undecoded members with where they are (``"{shard} group g000003"``), in order.

    Raises:
        InferError: a missing or corrupt shard, or a member the schema does not allow.
    """
    for entry in schema.index.shards:
        path = shard_path(root, entry)
        with open_shard(path, entry) as f:
            if verify:
                hash_shard(f, path, entry)
            for g, members in group_members(path, entry, schema, f):
                yield f"{path} group {GROUP_KEY.format(g)}", members
