"""Fixtures for producer tests: tiny real teachers saved as checkpoints."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from infer_distill.teachers import create_teacher, save_teacher


def make_checkpoint(path: Path, arch: str, *, seed: int, num_classes: int = 10, in_channels: int = 1, image_size: int = 28) -> Path:
    """A randomly initialized ``arch`` whose BN running statistics were moved by one train-mode forward."""
    torch.manual_seed(seed)
    model = create_teacher(arch, num_classes, in_channels=in_channels, image_size=image_size)
    with torch.no_grad():
        model.train()(torch.rand(16, in_channels, image_size, image_size))
    return save_teacher(model, path, arch=arch, num_classes=num_classes, in_channels=in_channels,
                        image_size=image_size, meta={"seed": seed})


@pytest.fixture(scope="session")
def embedded_teachers(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two convnet checkpoints for the embedded dataset (1 x 28 x 28, 10 classes)."""
    root = tmp_path_factory.mktemp("teachers")
    return {"a": make_checkpoint(root / "a.pt", "convnet", seed=1), "b": make_checkpoint(root / "b.pt", "convnet", seed=2)}


@pytest.fixture
def teacher_checkpoint() -> Callable[..., Path]:
    """The :func:`make_checkpoint` helper, as a fixture."""
    return make_checkpoint
