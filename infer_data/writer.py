"""ShardWriter: streams GroupRecords into deterministic, atomic tar shards plus index.json.

Each group becomes one webdataset sample (key ``g000003``) whose members are written sorted by
name with fixed mtime, owner and mode, so the same input gives byte-identical shards. A shard is
written under a reserved temporary name (``.infer-tmp-<pid>-<random>-shard-000000.tar``); when the
``with`` block exits without an exception the shards are renamed to their final names and
``index.json`` replaces any old one atomically, last (see :meth:`ShardWriter.close` for what a
kill can leave and how the next writer clears it). The writer holds the folder's lock
(:class:`infer_data.atomic.DirLock`) from construction to close, never replaces a file it did not
write, and turns a full, read-only or unwritable disk into a one-line ``StorageError``.

For producers that cut the work by shard (several processes, resumable runs),
:meth:`ShardWriter.write_shard` writes one complete shard with a given number and first group
into a folder of the caller's (e.g. its work folder), and :meth:`ShardWriter.add_shard` lists a
shard written that way (by this or another process); :meth:`ShardWriter.close` moves such
shards to their final names just before it writes the index. Both paths encode a group with
the same code, so they give the same bytes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import logging
import os
import re
import tarfile
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType
from typing import Any

from .atomic import DirLock, atomic_write, remove_stale_temporaries, storage_errors, temp_name
from .codecs import FieldCodec, create_codec
from .import_codecs import format_minor
from .constants import (
    DEFAULT_MAX_SHARD_BYTES,
    DEFAULT_SHARD_PREFIX,
    GROUP_KEY,
    INDEX_FILENAME,
    SHARD_PATTERN,
    TAR_MTIME,
)
from .errors import ConfigError, FormatError
from .index import DatasetIndex, DatasetInfo, MethodInfo, ShardEntry
from .record import GroupRecord

logger = logging.getLogger(__name__)

MAX_INDEX_READ = 64 << 20  # bytes of an old index.json read to learn its shard names

DEFAULT_CODECS: dict[str, dict[str, Any]] = {  # levels measured in docs/decisions/0011-codec-defaults.md
    "base": {"name": "png", "compress_level": 6},
    "compensators": {"name": "fp16", "zstd_level": 3},
    "labels": {"name": "fp16", "zstd_level": 3},
}


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _tar_info(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mtime = TAR_MTIME
    info.mode = 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def encode_group(record: GroupRecord, codecs: dict[str, FieldCodec], key: str, meta: dict[str, Any]) -> list[tuple[str, bytes]]:
    """A group's tar members as sorted ``(name, bytes)`` pairs (names ``{key}.{suffix}``)."""
    members = dict(codecs["base"].encode(getattr(record, field_source(codecs["base"], "bases"))))
    members.update(codecs["compensators"].encode(record.compensators))
    labels = getattr(record, field_source(codecs["labels"], "labels"))
    if labels is not None:
        members.update(codecs["labels"].encode(labels))
    members["meta.json"] = (json.dumps(meta, sort_keys=True, separators=(",", ":")) + "\n").encode()
    return [(f"{key}.{suffix}", members[suffix]) for suffix in sorted(members)]


def field_source(codec: FieldCodec, default: str) -> str:
    """The GroupRecord field a codec encodes: ``default``, or the codec's ``source`` (``base_files``, ``crops``)."""
    return str(getattr(codec, "source", default))


def _stored_size(members: list[tuple[str, bytes]]) -> int:
    """Bytes ``members`` take in a tar: a 512-byte header plus the data padded to 512 each."""
    return sum(512 + -(-len(b) // 512) * 512 for _, b in members)


class _OpenShard:
    """One shard being written under a reserved temporary name (:func:`temp_name`) in ``root``."""

    def __init__(self, root: Path, name: str, first_group: int) -> None:
        self.final = root / name
        self.tmp = root / temp_name(name)
        self.first_group, self.groups = first_group, 0
        with storage_errors(self.tmp):
            self._tar = tarfile.open(self.tmp, mode="w", format=tarfile.USTAR_FORMAT)

    def tell(self) -> int:
        """Bytes written so far."""
        return self._tar.fileobj.tell()  # type: ignore[union-attr]

    def add(self, members: list[tuple[str, bytes]]) -> None:
        """Append one group's members (from :func:`encode_group`)."""
        with storage_errors(self.tmp):
            for name, data in members:
                self._tar.addfile(_tar_info(name, len(data)), io.BytesIO(data))
        self.groups += 1

    def finish(self, instances_per_group: int) -> ShardEntry:
        """Close the tar (still under the temporary name) and describe it."""
        with storage_errors(self.tmp):
            self._tar.close()
            with open(self.tmp, "r+b") as f:  # drop the record padding after the end-of-archive blocks
                f.truncate(self._tar.offset)
        return ShardEntry(name=self.final.name, bytes=self.tmp.stat().st_size, sha256=sha256_file(self.tmp),
                          groups=self.groups, instances=self.groups * instances_per_group, first_group=self.first_group)

    def discard(self) -> None:
        """Close and delete the temporary file."""
        try:
            self._tar.close()
        except OSError:
            pass  # a full disk may refuse the closing blocks; the file goes anyway
        self.tmp.unlink(missing_ok=True)


class ShardWriter:
    """Write a distilled dataset, one group at a time.

    Args:
        root: output folder (created); must not already hold an index unless ``overwrite``.
            With ``overwrite`` the old index stays in place, readable, until the new one
            replaces it; the new shards take names the old index does not list (prefix
            ``shard`` or ``shard-b``, whichever is free) and the old shards are deleted after.
        dataset: what the data distills (classes, image shape, mean/std).
        method: K, M, ipc, teachers, seed; ``g`` is filled in from the groups written.
        codecs: field -> codec spec (see ``infer_data.codecs``); defaults to lossless bases,
            fp16 compensators and fp16 dense labels (PNG level 6, zstd level 3).
        max_shard_bytes: a shard is closed before it would grow past this (a single group
            larger than the limit still gets a shard of its own).
        groups_per_shard: also close a shard once it holds this many groups (None: no limit),
            so that a set can be cut for the number of processes that will read it.
        provenance: free-form JSON recorded in the index (config, seeds, software versions).
        lock: True: take ``root``'s :class:`DirLock` until :meth:`close` or :meth:`abort`; a
            :class:`DirLock` the caller already holds on ``root``; False: no lock and no
            clean-up of a dead writer's temporaries (for the extra processes of a run whose
            main process holds the lock).

    Example:
        >>> with ShardWriter(out, dataset=info, method=method) as w:  # doctest: +SKIP
        ...     for record in records:
        ...         w.write_group(record)

    Raises:
        ConfigError: an existing index in ``root``, another writer holding the folder, a file
            not written by this project under a name a shard takes, or a bad argument.
        StorageError: the folder cannot be written (full, read-only, no permission).
        FormatError: a group whose shapes disagree with ``dataset`` and ``method``.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        dataset: DatasetInfo,
        method: MethodInfo,
        codecs: dict[str, dict[str, Any] | str] | None = None,
        max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES,
        provenance: dict[str, Any] | None = None,
        prefix: str = DEFAULT_SHARD_PREFIX,
        overwrite: bool = False,
        groups_per_shard: int | None = None,
        lock: bool | DirLock = True,
    ) -> None:
        self.root = Path(root)
        if max_shard_bytes < 1:
            raise ConfigError(f"max_shard_bytes must be positive, got {max_shard_bytes}")
        if groups_per_shard is not None and groups_per_shard < 1:
            raise ConfigError(f"groups_per_shard must be a positive number of groups or None, got {groups_per_shard}")
        with storage_errors(self.root, resume="then write again"):
            self.root.mkdir(parents=True, exist_ok=True)
        self._owns_lock = lock is True
        self._lock = DirLock(self.root).acquire() if lock is True else (lock or None)
        try:
            self._old = self._prepare(overwrite)
        except BaseException:
            self._release()
            raise
        self.prefix = _free_prefix(prefix, self._old)
        specs = {**DEFAULT_CODECS, **({"compensators": {"name": "none"}} if method.m == 0 else {}), **({k: ({"name": v} if isinstance(v, str) else dict(v)) for k, v in (codecs or {}).items()})}
        self.codecs = {name: create_codec(name, spec, base_shape=(method.k, *dataset.image_shape)) for name, spec in specs.items()}
        self.dataset, self.method = dataset, method
        self.max_shard_bytes = max_shard_bytes
        self.groups_per_shard = groups_per_shard
        self.provenance = dict(provenance or {})
        self.shards: list[ShardEntry] = []
        self._groups = 0
        self._open: _OpenShard | None = None  # the shard write_group appends to
        self._done: list[tuple[Path, Path]] = []  # finished shards: (temporary path, final path)
        self._moves: list[tuple[Path, Path]] = []  # added shards: (where they are, final path)
        self._closed = False

    def _prepare(self, overwrite: bool) -> list[str]:
        """Refuse an existing index unless ``overwrite``; under the lock, clear a dead writer's leftovers.

        Returns:
            The shard names the existing index lists (empty without one).
        """
        if (self.root / INDEX_FILENAME).exists() and not overwrite:
            raise ConfigError(f"{self.root}: already holds a distilled dataset ({INDEX_FILENAME}); choose another folder or pass overwrite")
        if self._lock is not None:
            with storage_errors(self.root, resume="then write again"):
                recover_interrupted_publish(self.root)
                remove_stale_temporaries(self.root)
        return listed_shards(self.root)

    def check_free(self, names: Iterable[str]) -> None:
        """Refuse if a file already sits at one of the final shard ``names`` in the root.

        Raises:
            ConfigError: naming the first such file; it is never replaced or deleted.
        """
        for name in names:
            path = self.root / name
            if path.exists() or path.is_symlink():
                raise ConfigError(f"{path}: a file this writer did not create (not listed in {INDEX_FILENAME}) has the name of a new "
                                  "shard; move it away or write to another folder")

    # -- writing ---------------------------------------------------------------------------

    @property
    def groups_written(self) -> int:
        """Groups accepted so far."""
        return self._groups

    def write_group(self, record: GroupRecord) -> None:
        """Validate and append one group, rolling to a new shard by size or group count.

        Raises:
            FormatError: shapes, dtypes, teachers or label presence disagree with the dataset.
        """
        members = self._encode(record, self._groups)
        shard = self._open
        if shard is not None and (shard.tell() + _stored_size(members) + 10240 > self.max_shard_bytes
                                  or shard.groups == self.groups_per_shard):
            self._finish_shard()
        if self._open is None:
            self.check_free([self.shard_name(len(self.shards))])
            self._open = _OpenShard(self.root, self.shard_name(len(self.shards)), self._groups)
        self._open.add(members)
        self._groups += 1

    def write_shard(self, number: int, first_group: int, records: Iterable[GroupRecord], *,
                    folder: str | os.PathLike[str] | None = None) -> ShardEntry:
        """Write one complete shard as ``folder / shard_name(number)``.

        Its groups are numbered from ``first_group``. It is written under a hidden name and
        renamed when complete, so a killed writer leaves no partial file under that name. It is
        not listed in the index until :meth:`add_shard`.

        Args:
            number: the shard's number (its place in the index).
            first_group: global number of the first of ``records``.
            records: the shard's groups, in order; at least one.
            folder: where to put it, on the same filesystem as the root (default: the root
                itself, i.e. its final name at once).

        Returns:
            The entry the index will hold for the shard.

        Raises:
            FormatError: a group that disagrees with the dataset.
            ConfigError: no records, or a negative number.
        """
        if number < 0 or first_group < 0:
            raise ConfigError(f"write_shard: shard number and first group must be >= 0, got {number} and {first_group}")
        shard = _OpenShard(Path(folder) if folder is not None else self.root, self.shard_name(number), first_group)
        try:
            for record in records:
                shard.add(self._encode(record, first_group + shard.groups))
            if not shard.groups:
                raise ConfigError(f"{shard.final}: no groups given for the shard; pass at least one record")
            entry = shard.finish(self.method.k * (self.method.m + 1))
        except BaseException:
            shard.discard()
            raise
        with storage_errors(shard.final):
            os.replace(shard.tmp, shard.final)
        logger.info("wrote %s (%d groups, %d bytes)", entry.name, entry.groups, entry.bytes)
        return entry

    def add_shard(self, entry: ShardEntry, path: str | os.PathLike[str] | None = None) -> None:
        """List a finished shard (from :meth:`write_shard`, in any process) in the index.

        Shards must be added in order: ``entry`` must be the next shard number and start at the
        next group. Its size is checked against the file; its sha256 is the caller's to check.

        Args:
            entry: what :meth:`write_shard` returned.
            path: where the shard is (default: its final name); :meth:`close` moves it to its
                final name.

        Raises:
            ConfigError: out of order, or the file is missing or of another size.
        """
        if self._open is not None:
            self._finish_shard()
        want = self.shard_name(len(self.shards))
        if entry.name != want or entry.first_group != self._groups or entry.groups < 1:
            raise ConfigError(f"{self.root / entry.name}: shard added out of order (first group {entry.first_group}, "
                              f"{entry.groups} groups); expected {want} starting at group {self._groups}")
        where = Path(path) if path is not None else self.root / entry.name
        size = where.stat().st_size if where.is_file() else -1
        if size != entry.bytes:
            raise ConfigError(f"{where}: expected a finished shard of {entry.bytes} bytes, found "
                              f"{'no file' if size < 0 else f'{size} bytes'}; write it again")
        self.shards.append(entry)
        self._moves.append((where, self.root / entry.name))
        self._groups += entry.groups

    def shard_name(self, number: int) -> str:
        """File name of shard ``number`` (``shard-000003.tar``)."""
        return SHARD_PATTERN.format(prefix=self.prefix, shard=number)

    def _encode(self, record: GroupRecord, g: int) -> list[tuple[str, bytes]]:
        """Validate ``record`` as group ``g`` and encode its tar members."""
        where = f"group {g}"
        record.validate(image_shape=tuple(self.dataset.image_shape), num_classes=self.dataset.num_classes, where=where)
        if record.k != self.method.k or record.m != self.method.m:
            raise FormatError(f"{where}: K={record.k}, M={record.m} but the dataset declares K={self.method.k}, M={self.method.m}")
        if list(record.teachers) != list(self.method.teachers):
            raise FormatError(f"{where}: teachers {record.teachers} differ from the dataset's {self.method.teachers}")
        has_labels = self.codecs["labels"].spec()["name"] != "none"
        need = field_source(self.codecs["labels"], "labels")
        if has_labels and getattr(record, need) is None:
            raise FormatError(f"{where}: no {need} given but the labels codec is {self.codecs['labels'].spec()['name']!r}; pass {need} or use codec 'none'")
        meta = {
            "group": g,
            "class_ids": [int(v) for v in record.class_ids],
            "source_indices": [int(v) for v in record.source_indices],
            "teachers": list(record.teachers),
            **({"extra": record.extra} if record.extra else {}),
        }
        return encode_group(record if has_labels else _without_labels(record), self.codecs, GROUP_KEY.format(g), meta)

    def _finish_shard(self) -> None:
        """Close the open shard under its hidden name; it is renamed in :meth:`close`."""
        if self._open is None:
            return
        entry = self._open.finish(self.method.k * (self.method.m + 1))
        self.shards.append(entry)
        self._done.append((self._open.tmp, self._open.final))
        logger.info("finished %s (%d groups, %d bytes)", entry.name, entry.groups, entry.bytes)
        self._open = None

    # -- finishing -------------------------------------------------------------------------

    def index(self) -> DatasetIndex:
        """The index describing what has been finished so far."""
        method = MethodInfo(**{**self.method.__dict__, "g": self._groups})
        codecs = {name: c.spec() for name, c in self.codecs.items()}
        return DatasetIndex(self.dataset, method, codecs, list(self.shards), self.provenance, minor=format_minor(codecs))

    def close(self) -> DatasetIndex:
        """Finish the open shard, move the shards to their final names, write index.json; returns the index.

        Order: a journal (a reserved temporary file listing the new shards with their sha256 and
        the old index's shards) is written, the shards are renamed to their final names, the
        index replaces the old one atomically, the old index's shards are deleted, the journal
        goes. A process killed in between leaves the journal; the next writer that takes the
        folder's lock finishes the job from it: if the index on disk is the new one it deletes
        the old shards, else it deletes the new shards that still have the journal's size and
        sha256 (so after a kill the folder holds the old dataset, or the new one, and at most
        shard files no index lists until the next writer clears them).

        Raises:
            ConfigError: no group was written, or a file this writer did not create sits at a
                final shard name (nothing is replaced; the written shards are removed).
            StorageError: the disk refused a write.
        """
        if self._closed:
            return self.index()
        try:
            if self._open is not None:
                self._finish_shard()
            if self._groups == 0:
                raise ConfigError(f"{self.root}: no groups were written; nothing to index")
            moves = [*self._done, *self._moves]
            self.check_free(final.name for where, final in moves if where != final)
            index = self.index()
            with storage_errors(self.root, resume="then write again"):
                self._publish(index, moves)
        except BaseException:
            self.abort()
            raise
        self._closed = True
        self._release()
        return index

    def _publish(self, index: DatasetIndex, moves: list[tuple[Path, Path]]) -> None:
        """Journal, rename the shards, replace the index, delete the old shards (see :meth:`close`)."""
        journal = self.root / temp_name("publish.json")
        new = [{"name": e.name, "bytes": e.bytes, "sha256": e.sha256} for e in self.shards]
        atomic_write(journal, json.dumps({"new": new, "old": self._old}, sort_keys=True).encode())
        for where, final in moves:
            os.replace(where, final)
        self._done, self._moves = [], []
        atomic_write(self.root / INDEX_FILENAME, index.to_json().encode())
        _delete_listed(self.root, [n for n in self._old if n not in {e.name for e in self.shards}])
        journal.unlink()

    def abort(self) -> None:
        """Remove everything written so far; nothing appears under a final name; the lock is released."""
        if self._open is not None:
            self._open.discard()
        for tmp_shard, _ in self._done:
            tmp_shard.unlink(missing_ok=True)
        self._open, self._done, self._closed = None, [], True
        self._release()

    def _release(self) -> None:
        """Drop the folder's lock if this writer took it."""
        if self._owns_lock and self._lock is not None:
            self._lock.release()

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def _plain(name: object) -> bool:
    """Whether ``name`` is a plain, visible file name (no folder part)."""
    return isinstance(name, str) and bool(name) and "/" not in name and "\\" not in name and "\0" not in name and not name.startswith(".")


def listed_shards(root: Path) -> list[str]:
    """The plain shard names ``root/index.json`` lists (empty when there is no readable index)."""
    try:
        with open(root / INDEX_FILENAME, "rb") as f:
            shards = json.loads(f.read(MAX_INDEX_READ)).get("shards", [])
    except (OSError, ValueError, AttributeError, RecursionError):
        return []
    return [e["name"] for e in shards if isinstance(e, dict) and _plain(e.get("name"))] if isinstance(shards, list) else []


def _free_prefix(prefix: str, old: list[str]) -> str:
    """``prefix`` or ``prefix-b``, whichever gives names that none of ``old`` has.

    Raises:
        ConfigError: both are taken.
    """
    for candidate in (prefix, f"{prefix}-b"):
        pattern = re.compile(re.escape(candidate) + r"-\d{6}\.tar")
        if not any(pattern.fullmatch(n) for n in old):
            return candidate
    raise ConfigError(f"the index lists shards named both {prefix}-NNNNNN.tar and {prefix}-b-NNNNNN.tar; pass another prefix")


def _delete_listed(root: Path, names: Iterable[str]) -> None:
    """Delete the regular files ``root/name`` (names an index or journal of ours listed)."""
    for name in names:
        path = root / name
        if _plain(name) and path.is_file() and not path.is_symlink():
            path.unlink()


def recover_interrupted_publish(root: Path) -> None:
    """Finish or roll back a :meth:`ShardWriter.close` killed midway, from its journal (under the lock).

    If ``index.json`` lists exactly the journal's new shards the publish went through and the old
    index's shards are deleted; otherwise the new shards whose files still have the journal's
    size and sha256 are deleted. Other files are never touched.
    """
    for journal in sorted(root.glob(".infer-tmp-*-publish.json")):
        try:
            record = json.loads(journal.read_text())
            new, old = list(record["new"]), [n for n in record["old"] if isinstance(n, str)]
            names = [e["name"] for e in new]
        except (OSError, ValueError, KeyError, TypeError):
            continue  # not readable as ours: the stale-temporary sweep removes the file itself
        if sorted(listed_shards(root)) == sorted(names):
            _delete_listed(root, [n for n in old if n not in names])
        else:
            _delete_listed(root, [e["name"] for e in new if _is_written(root, e)])
        journal.unlink()


def _is_written(root: Path, entry: dict[str, Any]) -> bool:
    """Whether ``root/entry["name"]`` is the file a journal recorded (same size and sha256)."""
    path = root / str(entry.get("name"))
    return (_plain(entry.get("name")) and path.is_file() and path.stat().st_size == entry.get("bytes")
            and sha256_file(path) == entry.get("sha256"))


def _without_labels(record: GroupRecord) -> GroupRecord:
    return dataclasses.replace(record, labels=None, crops=None)
