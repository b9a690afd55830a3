"""Full integrity check of a distilled dataset: every shard's size and sha256, every group decoded.

Each shard is read exactly once, front to back: the bytes that are hashed are the bytes that are
parsed and decoded, so a file swapped between a checksum pass and a decode pass cannot slip
through. Shards are checked in parallel threads (sha256, zstd and image decoding release the GIL).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from .constants import GROUP_KEY
from .errors import InferError, IntegrityError
from .index import ShardEntry, read_index
from .reader import GroupSchema, checksum_error, decode_group, group_members, open_shard, shard_path

CHUNK = 1 << 20


@dataclass
class VerifyReport:
    """Outcome of :func:`verify_dataset`."""

    shards: int = 0
    groups: int = 0
    problems: list[str] = field(default_factory=list)  # one line per bad shard, in index order

    @property
    def ok(self) -> bool:
        """True when no shard had a problem."""
        return not self.problems


class _HashingReader:
    """A read-only stream over the first ``size`` bytes of a file, feeding every byte into a sha256."""

    def __init__(self, raw: IO[bytes], size: int) -> None:
        self.raw, self.hash, self.left = raw, hashlib.sha256(), size

    def read(self, n: int | None = -1) -> bytes:
        data = self.raw.read(self.left if n is None or n < 0 else min(n, self.left))
        self.left -= len(data)
        self.hash.update(data)
        return data

    def drain(self) -> str:
        """Read to the declared end of the file; the hex digest of everything read."""
        while self.read(CHUNK):
            pass
        return self.hash.hexdigest()


def verify_shard(path: Path, entry: ShardEntry, schema: GroupSchema) -> int:
    """Check one shard's size, sha256 and every group's decode in a single read; returns its groups.

    Raises:
        DatasetNotFoundError: the shard is missing.
        IntegrityError: size or sha256 differ from the index (reported before any decode error,
            since a corrupt file explains it).
        FormatError, CodecError: a group that does not decode, or a shard that is not a regular file.
    """
    groups = 0
    decode_error: InferError | None = None
    with open_shard(path, entry) as raw:  # present, a regular file, with the declared size
        stream = _HashingReader(raw, entry.bytes)
        try:
            for g, members in group_members(path, entry, schema, stream):  # type: ignore[arg-type]
                decode_group(members, schema, f"{path} group {GROUP_KEY.format(g)}")
                groups += 1
        except InferError as exc:
            decode_error = exc
        digest = stream.drain()
        if raw.read(1):
            raise IntegrityError(f"{path}: grew while being read; re-download it and do not rewrite shards in use")
    if digest != entry.sha256:
        raise checksum_error(path, digest, entry)
    if decode_error is not None:
        raise decode_error
    return groups


def verify_dataset(root: str | os.PathLike[str], *, on_shard: Callable[[str], None] | None = None,
                   jobs: int | None = None) -> VerifyReport:
    """Check sha256 and decode every group of every shard; keeps going past bad shards.

    Args:
        on_shard: called with each shard's name as it finishes (in completion order).
        jobs: shards checked at once (default: the CPU count, at most the number of shards).

    Raises:
        InferError: only for a missing or malformed index (shard problems go in the report).
    """
    index = read_index(root)
    schema = GroupSchema(index)

    def check(entry: ShardEntry) -> tuple[int, str | None]:
        try:
            n, problem = verify_shard(shard_path(root, entry), entry, schema), None
        except InferError as exc:
            n, problem = 0, str(exc)
        if on_shard is not None:
            on_shard(entry.name)
        return n, problem

    workers = max(1, min(jobs or os.cpu_count() or 1, len(index.shards) or 1))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(check, index.shards))
    report = VerifyReport(shards=len(results))
    for n, problem in results:
        report.groups += n
        if problem is not None:
            report.problems.append(problem)
    return report
