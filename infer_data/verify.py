"""Full integrity check of a distilled dataset: every shard's size and sha256, every group decoded."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field

from .constants import GROUP_KEY
from .errors import InferError
from .index import read_index
from .reader import GroupSchema, check_shard_file, decode_group, group_members, shard_path


@dataclass
class VerifyReport:
    """Outcome of :func:`verify_dataset`."""

    shards: int = 0
    groups: int = 0
    problems: list[str] = field(default_factory=list)  # one line per bad shard

    @property
    def ok(self) -> bool:
        """True when no shard had a problem."""
        return not self.problems


def verify_dataset(root: str | os.PathLike[str], *, on_shard: Callable[[str], None] | None = None) -> VerifyReport:
    """Check sha256 and decode every group of every shard; keeps going past bad shards.

    Raises:
        InferError: only for a missing or malformed index (shard problems go in the report).
    """
    index = read_index(root)
    schema = GroupSchema(index)
    report = VerifyReport()
    for entry in index.shards:
        path = shard_path(root, entry)
        try:
            check_shard_file(path, entry, verify=True)
            for g, members in group_members(path, entry, schema):
                decode_group(members, schema, f"{path} group {GROUP_KEY.format(g)}")
                report.groups += 1
        except InferError as exc:
            report.problems.append(str(exc))
        report.shards += 1
        if on_shard is not None:
            on_shard(entry.name)
    return report
