"""Builders of tiny distilled datasets, written by the project's own ShardWriter."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

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
                  max_shard_bytes: int = 1 << 30, name: str = "toy", ipc: int = 10, overwrite: bool = False) -> Path:
    """Write ``groups`` with ShardWriter (``overwrite``: rewrite a dataset in place); returns ``root``."""
    k, m = groups[0].k, groups[0].m
    chw = tuple(groups[0].bases.shape[1:])
    nc = groups[0].labels.shape[1] if groups[0].labels is not None else k
    c = chw[0]
    info = DatasetInfo(name, [f"class{i}" for i in range(nc)], chw, [0.5] * c, [0.25] * c, source="synthetic")
    method = MethodInfo(k, m, 0, ipc, list(groups[0].teachers), seed=0, producer="tests")
    with ShardWriter(root, dataset=info, method=method, codecs=codecs, max_shard_bytes=max_shard_bytes, overwrite=overwrite) as w:
        for rec in groups:
            w.write_group(rec)
    return root
