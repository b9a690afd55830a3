"""ShardWriter: streams GroupRecords into deterministic, atomic tar shards plus index.json.

Each group becomes one webdataset sample (key ``g000003``) whose members are written sorted by
name with fixed mtime, owner and mode, so the same input gives byte-identical shards. A shard is
written under a hidden temporary name; when the ``with`` block exits without an exception all
shards are renamed to their final names and ``index.json`` is written last, atomically. An
interrupted write leaves nothing under a final name.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import tarfile
from pathlib import Path
from types import TracebackType
from typing import Any

from .codecs import FieldCodec, create_codec
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

DEFAULT_CODECS: dict[str, dict[str, Any]] = {
    "base": {"name": "png", "compress_level": 9},
    "compensators": {"name": "fp16", "zstd_level": 19},
    "labels": {"name": "fp16", "zstd_level": 19},
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
    members = dict(codecs["base"].encode(record.bases))
    members.update(codecs["compensators"].encode(record.compensators))
    if record.labels is not None:
        members.update(codecs["labels"].encode(record.labels))
    members["meta.json"] = (json.dumps(meta, sort_keys=True, separators=(",", ":")) + "\n").encode()
    return [(f"{key}.{suffix}", members[suffix]) for suffix in sorted(members)]


class ShardWriter:
    """Write a distilled dataset, one group at a time.

    Args:
        root: output folder (created); must not already hold an index unless ``overwrite``.
        dataset: what the data distills (classes, image shape, mean/std).
        method: K, M, ipc, teachers, seed; ``g`` is filled in from the groups written.
        codecs: field -> codec spec (see ``infer_data.codecs``); defaults to lossless bases,
            fp16 compensators and fp16 dense labels, all zstd level 19.
        max_shard_bytes: a shard is closed before it would grow past this (a single group
            larger than the limit still gets a shard of its own).
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
    ) -> None:
        self.root = Path(root)
        if (self.root / INDEX_FILENAME).exists() and not overwrite:
            raise ConfigError(f"{self.root}: already holds a distilled dataset ({INDEX_FILENAME}); choose another folder or pass overwrite")
        if max_shard_bytes < 1:
            raise ConfigError(f"max_shard_bytes must be positive, got {max_shard_bytes}")
        self.root.mkdir(parents=True, exist_ok=True)
        if overwrite:
            (self.root / INDEX_FILENAME).unlink(missing_ok=True)
        for stale in self.root.glob(f".{prefix}-*.tar.tmp"):  # left by a killed writer
            stale.unlink()
        specs = {**DEFAULT_CODECS, **({k: ({"name": v} if isinstance(v, str) else dict(v)) for k, v in (codecs or {}).items()})}
        self.codecs = {name: create_codec(name, spec) for name, spec in specs.items()}
        self.dataset, self.method = dataset, method
        self.max_shard_bytes = max_shard_bytes
        self.provenance = dict(provenance or {})
        self.prefix = prefix
        self.shards: list[ShardEntry] = []
        self._groups = 0
        self._tar: tarfile.TarFile | None = None
        self._tmp: Path | None = None
        self._open_groups = 0
        self._open_first = 0
        self._done: list[Path] = []  # finished shards, still under hidden names
        self._closed = False

    # -- writing ---------------------------------------------------------------------------

    @property
    def groups_written(self) -> int:
        """Groups accepted so far."""
        return self._groups

    def write_group(self, record: GroupRecord) -> None:
        """Validate and append one group, rolling to a new shard by size.

        Raises:
            FormatError: shapes, dtypes, teachers or label presence disagree with the dataset.
        """
        g = self._groups
        where = f"group {g}"
        record.validate(image_shape=tuple(self.dataset.image_shape), num_classes=self.dataset.num_classes, where=where)
        if record.k != self.method.k or record.m != self.method.m:
            raise FormatError(f"{where}: K={record.k}, M={record.m} but the dataset declares K={self.method.k}, M={self.method.m}")
        if list(record.teachers) != list(self.method.teachers):
            raise FormatError(f"{where}: teachers {record.teachers} differ from the dataset's {self.method.teachers}")
        has_labels = self.codecs["labels"].spec()["name"] != "none"
        if has_labels and record.labels is None:
            raise FormatError(f"{where}: no labels given but the labels codec is {self.codecs['labels'].spec()['name']!r}; pass labels or use codec 'none'")
        meta = {
            "group": g,
            "class_ids": [int(v) for v in record.class_ids],
            "source_indices": [int(v) for v in record.source_indices],
            "teachers": list(record.teachers),
            **({"extra": record.extra} if record.extra else {}),
        }
        members = encode_group(record if has_labels else _without_labels(record), self.codecs, GROUP_KEY.format(g), meta)
        size = sum(512 + -(-len(b) // 512) * 512 for _, b in members)
        if self._tar is not None and self._open_groups and self._tar.fileobj.tell() + size + 10240 > self.max_shard_bytes:  # type: ignore[union-attr]
            self._finish_shard()
        if self._tar is None:
            self._open_shard()
        for name, data in members:
            self._tar.addfile(_tar_info(name, len(data)), io.BytesIO(data))  # type: ignore[union-attr]
        self._open_groups += 1
        self._groups += 1

    def _open_shard(self) -> None:
        name = SHARD_PATTERN.format(prefix=self.prefix, shard=len(self.shards))
        self._tmp = self.root / f".{name}.tmp"
        self._tar = tarfile.open(self._tmp, mode="w", format=tarfile.USTAR_FORMAT)
        self._open_groups, self._open_first = 0, self._groups

    def _finish_shard(self) -> None:
        """Close the open shard under its hidden name; it is renamed in :meth:`close`."""
        if self._tar is None or self._tmp is None:
            return
        self._tar.close()
        with open(self._tmp, "r+b") as f:  # drop the record padding after the end-of-archive blocks
            f.truncate(self._tar.offset)
        name = self._tmp.name[1:-4]
        entry = ShardEntry(
            name=name,
            bytes=self._tmp.stat().st_size,
            sha256=sha256_file(self._tmp),
            groups=self._open_groups,
            instances=self._open_groups * self.method.k * (self.method.m + 1),
            first_group=self._open_first,
        )
        self.shards.append(entry)
        self._done.append(self._tmp)
        logger.info("finished %s (%d groups, %d bytes)", entry.name, entry.groups, entry.bytes)
        self._tar, self._tmp = None, None

    # -- finishing -------------------------------------------------------------------------

    def index(self) -> DatasetIndex:
        """The index describing what has been finished so far."""
        method = MethodInfo(**{**self.method.__dict__, "g": self._groups})
        codecs = {name: c.spec() for name, c in self.codecs.items()}
        return DatasetIndex(self.dataset, method, codecs, list(self.shards), self.provenance)

    def close(self) -> DatasetIndex:
        """Finish the open shard and write index.json atomically; returns the index.

        Raises:
            ConfigError: no group was written.
        """
        if self._closed:
            return self.index()
        if self._tar is not None:
            self._finish_shard()
        if self._groups == 0:
            self.abort()
            raise ConfigError(f"{self.root}: no groups were written; nothing to index")
        for tmp_shard in self._done:
            os.replace(tmp_shard, self.root / tmp_shard.name[1:-4])
        index = self.index()
        tmp = self.root / f".{INDEX_FILENAME}.tmp"
        tmp.write_text(index.to_json())
        os.replace(tmp, self.root / INDEX_FILENAME)
        self._closed = True
        return index

    def abort(self) -> None:
        """Remove everything written so far; nothing appears under a final name."""
        if self._tar is not None:
            self._tar.close()
        for tmp_shard in [*self._done, *([self._tmp] if self._tmp is not None else [])]:
            tmp_shard.unlink(missing_ok=True)
        self._tar, self._tmp, self._done, self._closed = None, None, [], True

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def _without_labels(record: GroupRecord) -> GroupRecord:
    return GroupRecord(record.bases, record.class_ids, record.source_indices, record.compensators, record.teachers, None, record.extra)
