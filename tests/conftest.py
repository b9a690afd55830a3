"""Shared fixtures: tiny datasets written by the project's own ShardWriter."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from infer_data import DatasetInfo, GroupRecord, MethodInfo, ShardWriter


def make_groups(g: int, k: int, m: int, chw: tuple[int, int, int], nc: int | None = None, seed: int = 0) -> list[GroupRecord]:
    """``g`` random groups: bases uint8, compensators ~N(0, 0.1), labels ~N(0, 3)."""
    rng = np.random.default_rng(seed)
    nc = nc or k
    out = []
    for i in range(g):
        out.append(GroupRecord(
            bases=rng.integers(0, 256, (k, *chw), dtype=np.uint8),
            class_ids=np.arange(k, dtype=np.int64) % nc,
            source_indices=np.arange(k, dtype=np.int64) + 1000 * i,
            compensators=(rng.standard_normal((m, *chw)) * 0.1).astype(np.float32),
            teachers=[f"t{j}" for j in range(m)],
            labels=(rng.standard_normal((k * (m + 1), nc)) * 3).astype(np.float32),
        ))
    return out


def write_dataset(root: Path, groups: list[GroupRecord], *, codecs: dict[str, Any] | None = None,
                  max_shard_bytes: int = 1 << 30, name: str = "toy", ipc: int = 10) -> Path:
    """Write ``groups`` with ShardWriter; returns ``root``."""
    k, m = groups[0].k, groups[0].m
    chw = tuple(groups[0].bases.shape[1:])
    nc = groups[0].labels.shape[1] if groups[0].labels is not None else k
    c = chw[0]
    info = DatasetInfo(name, [f"class{i}" for i in range(nc)], chw, [0.5] * c, [0.25] * c, source="synthetic")
    method = MethodInfo(k, m, 0, ipc, list(groups[0].teachers), seed=0, producer="tests")
    with ShardWriter(root, dataset=info, method=method, codecs=codecs, max_shard_bytes=max_shard_bytes) as w:
        for rec in groups:
            w.write_group(rec)
    return root


@pytest.fixture
def tiny_groups() -> list[GroupRecord]:
    """Three groups, K=4, M=2, RGB 8x8."""
    return make_groups(3, 4, 2, (3, 8, 8))


@pytest.fixture
def tiny_dir(tmp_path: Path, tiny_groups: list[GroupRecord]) -> Path:
    """A written tiny dataset, one group per shard."""
    return write_dataset(tmp_path / "ds", tiny_groups, max_shard_bytes=2000)


@pytest.fixture
def dataset_factory(tmp_path: Path) -> Callable[..., Path]:
    """Call with groups and writer keywords; returns a fresh dataset folder."""
    counter = iter(range(1000))

    def make(groups: list[GroupRecord], **kw: Any) -> Path:
        return write_dataset(tmp_path / f"ds{next(counter)}", groups, **kw)

    return make
