"""ShardWriter: streams GroupRecords into deterministic, atomic tar shards plus index.json.

Each group becomes one webdataset sample (key ``g000003``) whose members are written sorted by
name with fixed mtime, owner and mode, so the same input gives byte-identical shards. A shard is
written under a hidden temporary name; when the ``with`` block exits without an exception all
shards are renamed to their final names and ``index.json`` is written last, atomically. An
interrupted write leaves nothing under a final name.

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
import tarfile
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType
from typing import Any

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
    """One shard being written under its hidden name ``.NAME.tmp`` in ``root``."""

    def __init__(self, root: Path, name: str, first_group: int) -> None:
        self.final = root / name
        self.tmp = root / f".{name}.tmp"
        self.first_group, self.groups = first_group, 0
        self._tar = tarfile.open(self.tmp, mode="w", format=tarfile.USTAR_FORMAT)

    def tell(self) -> int:
        """Bytes written so far."""
        return self._tar.fileobj.tell()  # type: ignore[union-attr]

    def add(self, members: list[tuple[str, bytes]]) -> None:
        """Append one group's members (from :func:`encode_group`)."""
        for name, data in members:
            self._tar.addfile(_tar_info(name, len(data)), io.BytesIO(data))
        self.groups += 1

    def finish(self, instances_per_group: int) -> ShardEntry:
        """Close the tar (still under the hidden name) and describe it."""
        self._tar.close()
        with open(self.tmp, "r+b") as f:  # drop the record padding after the end-of-archive blocks
            f.truncate(self._tar.offset)
        return ShardEntry(name=self.final.name, bytes=self.tmp.stat().st_size, sha256=sha256_file(self.tmp),
                          groups=self.groups, instances=self.groups * instances_per_group, first_group=self.first_group)

    def discard(self) -> None:
        """Close and delete the hidden file."""
        self._tar.close()
        self.tmp.unlink(missing_ok=True)


class ShardWriter:
    """Write a distilled dataset, one group at a time.

    Args:
        root: output folder (created); must not already hold an index unless ``overwrite``.
        dataset: what the data distills (classes, image shape, mean/std).
        method: K, M, ipc, teachers, seed; ``g`` is filled in from the groups written.
        codecs: field -> codec spec (see ``infer_data.codecs``); defaults to lossless bases,
            fp16 compensators and fp16 dense labels (PNG level 6, zstd level 3).
        max_shard_bytes: a shard is closed before it would grow past this (a single group
            larger than the limit still gets a shard of its own).
        groups_per_shard: also close a shard once it holds this many groups (None: no limit),
            so that a set can be cut for the number of processes that will read it.
        provenance: free-form JSON recorded in the index (config, seeds, software versions).

    Example:
        >>> with ShardWriter(out, dataset=info, method=method) as w:  # doctest: +SKIP
        ...     for record in records:
        ...         w.write_group(record)

    Raises:
        ConfigError: an existing index in ``root`` or a bad argument.
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
    ) -> None:
        self.root = Path(root)
        if (self.root / INDEX_FILENAME).exists() and not overwrite:
            raise ConfigError(f"{self.root}: already holds a distilled dataset ({INDEX_FILENAME}); choose another folder or pass overwrite")
        if max_shard_bytes < 1:
            raise ConfigError(f"max_shard_bytes must be positive, got {max_shard_bytes}")
        if groups_per_shard is not None and groups_per_shard < 1:
            raise ConfigError(f"groups_per_shard must be a positive number of groups or None, got {groups_per_shard}")
        self.root.mkdir(parents=True, exist_ok=True)
        if overwrite:
            (self.root / INDEX_FILENAME).unlink(missing_ok=True)
        for stale in self.root.glob(f".{prefix}-*.tar.tmp"):  # left by a killed writer
            stale.unlink(missing_ok=True)  # several processes may clean the same folder at once
        specs = {**DEFAULT_CODECS, **({"compensators": {"name": "none"}} if method.m == 0 else {}), **({k: ({"name": v} if isinstance(v, str) else dict(v)) for k, v in (codecs or {}).items()})}
        self.codecs = {name: create_codec(name, spec, base_shape=(method.k, *dataset.image_shape)) for name, spec in specs.items()}
        self.dataset, self.method = dataset, method
        self.max_shard_bytes = max_shard_bytes
        self.groups_per_shard = groups_per_shard
        self.provenance = dict(provenance or {})
        self.prefix = prefix
        self.shards: list[ShardEntry] = []
        self._groups = 0
        self._open: _OpenShard | None = None  # the shard write_group appends to
        self._done: list[Path] = []  # finished shards, still under hidden names
        self._moves: list[tuple[Path, Path]] = []  # added shards: (where they are, final path)
        self._closed = False

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
        self._done.append(self._open.tmp)
        logger.info("finished %s (%d groups, %d bytes)", entry.name, entry.groups, entry.bytes)
        self._open = None

    # -- finishing -------------------------------------------------------------------------

    def index(self) -> DatasetIndex:
        """The index describing what has been finished so far."""
        method = MethodInfo(**{**self.method.__dict__, "g": self._groups})
        codecs = {name: c.spec() for name, c in self.codecs.items()}
        return DatasetIndex(self.dataset, method, codecs, list(self.shards), self.provenance, minor=format_minor(codecs))

    def close(self) -> DatasetIndex:
        """Finish the open shard and write index.json atomically; returns the index.

        Raises:
            ConfigError: no group was written.
        """
        if self._closed:
            return self.index()
        if self._open is not None:
            self._finish_shard()
        if self._groups == 0:
            self.abort()
            raise ConfigError(f"{self.root}: no groups were written; nothing to index")
        for tmp_shard in self._done:
            os.replace(tmp_shard, self.root / tmp_shard.name[1:-4])
        for where, final in self._moves:
            os.replace(where, final)
        index = self.index()
        tmp = self.root / f".{INDEX_FILENAME}.tmp"
        tmp.write_text(index.to_json())
        os.replace(tmp, self.root / INDEX_FILENAME)
        self._closed = True
        return index

    def abort(self) -> None:
        """Remove everything written so far; nothing appears under a final name."""
        if self._open is not None:
            self._open.discard()
        for tmp_shard in self._done:
            tmp_shard.unlink(missing_ok=True)
        self._open, self._done, self._closed = None, [], True

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def _without_labels(record: GroupRecord) -> GroupRecord:
    return dataclasses.replace(record, labels=None, crops=None)
