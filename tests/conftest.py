"""Shared fixtures: tiny datasets written by the project's own ShardWriter."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from builders import make_groups, write_dataset

from infer_data import GroupRecord

__all__ = ["make_groups", "write_dataset"]


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


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test gets its own cache root (URL mirrors, decoded groups), never the user's."""
    monkeypatch.setenv("INFER_CACHE", str(tmp_path_factory.mktemp("infer-cache")))
