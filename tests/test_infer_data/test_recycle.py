"""Recycled worker output buffers: same batches as without them, and a kept batch is never overwritten."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from builders import make_groups, write_dataset
from torch.utils.data import DataLoader

from infer_data import InferDataset, batch_loader
from infer_data.recycle import HEADER, BatchBuffers, worker_buffer
from infer_data.transforms import RandomResizedCropFlip

N = 6 * 5 * 3  # G=6, K=5, M=2
BATCH = 8
SLOTS = 2 + 2  # default prefetch_factor + 2


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_dataset(tmp_path_factory.mktemp("recycle") / "ds", make_groups(6, 5, 2, (3, 12, 10), seed=4))


def _loader(root: Path, *, recycle: bool, dtype: torch.dtype = torch.float32, **kw: object) -> DataLoader:
    ds = InferDataset(root, batch_transform=RandomResizedCropFlip(9, seed=2, dtype=dtype), normalize=False)
    return batch_loader(ds, BATCH, num_workers=2, generator=torch.Generator().manual_seed(3), recycle=recycle, **kw)


def _pooled(x: torch.Tensor) -> bool:
    """Whether ``x`` sits in a recycled buffer (after the header) rather than a segment of its own."""
    return x.storage_offset() * x.element_size() == HEADER


@pytest.mark.parametrize("dtype", [torch.float32, torch.uint8])
def test_same_batches_with_and_without_recycling_over_epochs(root: Path, dtype: torch.dtype) -> None:
    plain = _loader(root, recycle=False, dtype=dtype, persistent_workers=True)
    pooled = _loader(root, recycle=True, dtype=dtype, persistent_workers=True)
    assert type(plain) is DataLoader and type(pooled) is not DataLoader
    for _ in range(3):  # persistent workers keep their pool across epochs
        n = 0
        for (x, y), (px, py) in zip(plain, pooled, strict=True):
            assert torch.equal(x, px) and torch.equal(y, py)
            assert _pooled(px) and not _pooled(x)  # dropped every step: each worker always finds a free buffer
            n += x.shape[0]
        assert n == N


def test_kept_batches_are_never_overwritten(root: Path) -> None:
    """Keeping every batch of two epochs: workers run out of free buffers and fall back to new ones."""
    reference = _loader(root, recycle=False)
    expected = [b for _ in range(2) for b in reference]
    loader = _loader(root, recycle=True)
    kept = [b for _ in range(2) for b in loader]  # a new iterator (and pool) per epoch
    assert len(kept) == len(expected) == 2 * -(-N // BATCH)
    for (x, y), (ex, ey) in zip(kept, expected, strict=True):
        assert torch.equal(x, ex) and torch.equal(y, ey)
    per_epoch = len(kept) // 2
    first = [_pooled(x) for x, _ in kept[:per_epoch]]
    assert first == [True] * (2 * SLOTS) + [False] * (per_epoch - 2 * SLOTS)  # 2 workers x SLOTS buffers, then new ones


def test_a_buffer_is_reused_only_after_its_last_view_is_gone(root: Path) -> None:
    loader = _loader(root, recycle=True)
    it = iter(loader)
    assert len(it) == len(loader) and len(it._workers) == 2  # the DataLoader iterator's own attributes pass through
    first, _ = next(it)
    view = first[1:3]  # a view keeps the buffer in use after the batch itself is dropped
    snapshot = view.clone()
    del first
    rest = [_pooled(x) for x, _ in it]  # 11 more batches: worker 0's other buffers are reused meanwhile
    assert len(rest) == -(-N // BATCH) - 1 and all(rest)
    assert torch.equal(view, snapshot)


def test_spawn_workers_recycle(root: Path) -> None:
    """The pool travels to spawn workers by pickling; its flags stay shared."""
    plain = _loader(root, recycle=False, start_method="spawn")
    pooled = _loader(root, recycle=True, start_method="spawn")
    got = list(pooled)
    assert [_pooled(x) for x, _ in got[:2]] == [True, True]
    for (x, y), (px, py) in zip(list(plain), got, strict=True):
        assert torch.equal(x, px) and torch.equal(y, py)


def test_plain_dataloader_when_recycling_cannot_apply(root: Path) -> None:
    ds = InferDataset(root, batch_transform=RandomResizedCropFlip(9, seed=2))
    assert type(batch_loader(ds, 4)) is DataLoader  # no workers
    assert type(batch_loader(ds, 4, num_workers=2, pin_memory=True)) is DataLoader  # the pin thread drops the buffers
    assert type(batch_loader(ds, 4, num_workers=2, recycle=False)) is DataLoader


def test_pool_handshake_in_one_process() -> None:
    pool = BatchBuffers(workers=1, slots=2)
    assert worker_buffer((2, 3), torch.float32) is None  # outside a worker there is nothing to recycle
    assert pool.take(1, (2, 3), torch.float32) is None  # no such worker
    assert pool.release() == 0
    pool.receive((torch.zeros(3), "not a tensor"))  # tensors that are not pool buffers are ignored
    assert pool.release() == 0 and int(pool.flags.sum()) == 0
    x = pool.take(0, (2, 3), torch.float32)  # as worker 0 would
    assert x is not None and _pooled(x) and pool.flags.tolist() == [[1, 0]]
    pool.receive((x, torch.zeros(2)))
    view = x[1]
    del x
    assert pool.release() == 0 and pool.flags.tolist() == [[1, 0]]  # the view still uses the buffer
    del view
    assert pool.release() == 1 and pool.flags.tolist() == [[0, 0]]


class _Frozen(torch.utils.data.Dataset):
    """A dataset that refuses new attributes: its loader works, without recycled buffers."""

    def __init__(self, ds: InferDataset) -> None:
        object.__setattr__(self, "ds", ds)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"{type(self).__name__} is frozen")

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, idx: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        return self.ds[idx]


def test_a_dataset_without_room_for_the_pool_still_loads(root: Path) -> None:
    ds = InferDataset(root, batch_transform=RandomResizedCropFlip(9, seed=2))
    got = list(batch_loader(_Frozen(ds), BATCH, num_workers=2, generator=torch.Generator().manual_seed(3)))
    assert sum(x.shape[0] for x, _ in got) == N and not any(_pooled(x) for x, _ in got)
