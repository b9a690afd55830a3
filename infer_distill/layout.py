"""How a run's G groups are cut into shards, optimization chunks and ranks.

The layout depends on the configuration only, never on the number of processes, so a run on
one process and a run on N give the same bytes:

- shard ``s`` holds groups ``[s * S, min((s + 1) * S, G))`` for ``S`` groups per shard;
- within a shard, groups are optimized in chunks of ``batch_groups`` that never cross the
  shard's end (floating-point results depend on which groups share a batch);
- shard ``s`` is written by rank ``s % world``.
"""

from __future__ import annotations

from dataclasses import dataclass

from infer_data.constants import DEFAULT_MAX_SHARD_BYTES


def raw_group_bytes(k: int, m: int, image_shape: tuple[int, int, int], num_classes: int) -> int:
    """Uncompressed bytes of one group: uint8 bases, fp16 compensators and fp16 dense labels."""
    c, h, w = image_shape
    return k * c * h * w + 2 * m * c * h * w + 2 * k * (m + 1) * num_classes


def default_shard_size(batch_groups: int, k: int, m: int, image_shape: tuple[int, int, int], num_classes: int) -> int:
    """Groups per shard when none is asked for: one optimization chunk, capped by size.

    One chunk per shard lets as many processes work as there are chunks; the cap keeps a
    shard's uncompressed content within ``DEFAULT_MAX_SHARD_BYTES`` (256 MiB), so an ImageNet
    group (about 160 MB raw) gets a shard of its own.

    Example:
        >>> default_shard_size(16, 10, 4, (3, 32, 32), 10), default_shard_size(4, 1000, 4, (3, 224, 224), 1000)
        (16, 1)
    """
    return max(1, min(batch_groups, DEFAULT_MAX_SHARD_BYTES // raw_group_bytes(k, m, image_shape, num_classes)))


@dataclass(frozen=True)
class Layout:
    """G groups in shards of ``shard_size`` groups, optimized in chunks of ``batch_groups``."""

    groups: int  # G
    shard_size: int  # groups per shard (the last shard may hold fewer)
    batch_groups: int  # groups optimized together, at most

    @property
    def num_shards(self) -> int:
        """Number of shards, ceil(G / shard_size)."""
        return -(-self.groups // self.shard_size)

    def shard_groups(self, shard: int) -> range:
        """The global group numbers of ``shard``."""
        start = shard * self.shard_size
        return range(start, min(start + self.shard_size, self.groups))

    def chunks(self, shard: int) -> list[list[int]]:
        """The optimization chunks of ``shard``: consecutive groups, ``batch_groups`` at most."""
        groups = self.shard_groups(shard)
        return [list(groups[i:i + self.batch_groups]) for i in range(0, len(groups), self.batch_groups)]

    def shards_of(self, rank: int, world: int) -> list[int]:
        """The shards rank ``rank`` of ``world`` processes writes: ``rank, rank + world, ...``."""
        return list(range(rank, self.num_shards, world))
