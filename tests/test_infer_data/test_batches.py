"""batch_loader: whole batches from ds[indices], the same batches as the per-sample DataLoader."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from builders import make_groups, write_dataset
from torch.utils.data import DataLoader

from infer_data import ConfigError, InferDataset, batch_loader
from infer_data.transforms import RandomResizedCropFlip

N = 4 * 5 * 3  # G=4, K=5, M=2


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_dataset(tmp_path_factory.mktemp("batches") / "ds", make_groups(4, 5, 2, (3, 12, 10), seed=3),
                         max_shard_bytes=4000)


def _instances(ds: InferDataset, targets: torch.Tensor) -> list[int]:
    """The instance index of each target row (soft labels are distinct per instance here)."""
    every = ds.get_batch(torch.arange(N))[1]  # (N, NC)
    hits = (targets[:, None, :] == every[None]).all(-1)  # (B, N)
    assert bool((hits.sum(1) == 1).all())
    return hits.int().argmax(1).tolist()


@pytest.mark.parametrize("workers", [0, 2])
def test_each_instance_exactly_once_per_epoch(root: Path, workers: int) -> None:
    ds = InferDataset(root, batch_transform=RandomResizedCropFlip(8, seed=1))
    loader = batch_loader(ds, 7, num_workers=workers, generator=torch.Generator().manual_seed(0), persistent_workers=workers > 0)
    assert len(loader) == -(-N // 7)
    epochs = []
    for _ in range(2):
        batches = list(loader)
        assert [x.shape for x, _ in batches] == [(7, 3, 8, 8)] * (N // 7) + [(N % 7, 3, 8, 8)]
        seen = [i for _, y in batches for i in _instances(ds, y)]
        assert sorted(seen) == list(range(N))
        epochs.append(seen)
    assert epochs[0] != epochs[1]  # reshuffled each epoch
    dropped = batch_loader(ds, 7, drop_last=True, shuffle=False)
    assert len(dropped) == N // 7 and _instances(ds, next(iter(dropped))[1]) == list(range(7))


@pytest.mark.parametrize("workers", [0, 2])
def test_same_batches_as_the_per_sample_dataloader(root: Path, workers: int) -> None:
    """Same generator seed: same instances per batch and, through the same worker seeds, same crops."""
    ds, twin = (InferDataset(root, batch_transform=RandomResizedCropFlip(8, seed=1)) for _ in range(2))
    whole = batch_loader(ds, 8, num_workers=workers, generator=torch.Generator().manual_seed(5))
    per_sample = DataLoader(twin, batch_size=8, shuffle=True, num_workers=workers, generator=torch.Generator().manual_seed(5))
    pairs = list(zip(whole, per_sample, strict=True))
    assert len(pairs) == -(-N // 8)
    for (x, y), (px, py) in pairs:
        assert torch.equal(y, py)
        assert torch.allclose(x, px, atol=1e-6)


def test_spawn_workers(root: Path) -> None:
    """The dataset and its transform travel to a fresh interpreter by pickling (forkserver workers do the same)."""
    ds = InferDataset(root, batch_transform=RandomResizedCropFlip(8, seed=1))
    loader = batch_loader(ds, 16, num_workers=1, start_method="spawn", generator=torch.Generator().manual_seed(1))
    seen = [i for _, y in loader for i in _instances(ds, y)]
    assert sorted(seen) == list(range(N))


def test_errors(root: Path) -> None:
    ds = InferDataset(root)
    with pytest.raises(ConfigError, match=r"batch_loader batch_size=0 must be >= 1"):
        batch_loader(ds, 0)
    with pytest.raises(ConfigError, match=r"batch_loader num_workers=-1 must be >= 0"):
        batch_loader(ds, 4, num_workers=-1)
    with pytest.raises(ConfigError, match=r"batch_loader start_method='threads' is not valid; choose one of 'fork', 'spawn', 'forkserver'"):
        batch_loader(ds, 4, num_workers=2, start_method="threads")


def test_uint8_batches_from_workers_are_the_rounded_instances(root: Path) -> None:
    """uint8 batches travel through a worker's shared memory; a full-box crop without flips is the composite rounded."""
    crop = RandomResizedCropFlip((12, 10), scale=(1.0, 1.0), ratio=(10 / 12, 10 / 12), p=0.0, seed=1, dtype=torch.uint8)
    ds = InferDataset(root, batch_transform=crop)
    loader = batch_loader(ds, 16, num_workers=1, shuffle=False)
    plain = InferDataset(root)
    for b, (x, y) in enumerate(loader):
        want_x, want_y = plain.get_batch(torch.arange(b * 16, min(N, b * 16 + 16)))
        assert x.dtype == torch.uint8 and torch.equal(y, want_y)
        assert torch.equal(x, want_x.mul(255).round().to(torch.uint8))
