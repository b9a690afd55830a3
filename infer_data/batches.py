"""Whole-batch DataLoaders: each worker builds a batch with one ``ds[indices]`` call.

A per-sample ``DataLoader`` asks the dataset for a list of samples and re-stacks them with
``collate_fn``; for a distilled set, whose batches are built vectorized anyway, that split and
re-stack is pure overhead (about a fifth of the loader's time at 224 px). Here the sampler
yields lists of indices (a ``BatchSampler`` passed as ``sampler`` with ``batch_size=None``),
so a worker calls ``ds[indices]`` once and sends the ``(images, targets)`` tensors as they are.
With the same ``generator``, the batches hold the same instances in the same order, and the
workers get the same seeds, as ``DataLoader(ds, batch_size, shuffle=..., generator=...)``.

With workers, the batches are built in shared-memory buffers that each worker reuses once the
main process no longer uses them (:mod:`infer_data.recycle`): at 224 px, allocating a fresh
segment per batch cost as much as building the crops.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler, SequentialSampler

from .errors import ConfigError
from .recycle import BatchBuffers, available

START_METHODS = ("fork", "spawn", "forkserver")


def batch_loader(
    ds: Dataset[Any],
    batch_size: int,
    *,
    shuffle: bool = True,
    drop_last: bool = False,
    num_workers: int = 0,
    generator: torch.Generator | None = None,
    start_method: str | None = None,
    pin_memory: bool = False,
    persistent_workers: bool = False,
    prefetch_factor: int | None = None,
    worker_init_fn: Callable[[int], None] | None = None,
    recycle: bool = True,
) -> DataLoader[Any]:
    """A DataLoader whose every item is a whole batch ``ds[list of indices]``.

    Args:
        ds: a map-style dataset whose ``ds[list of int]`` returns a whole batch, such as
            :class:`~infer_data.dataset.InferDataset` (images (B, C, H', W'), targets (B, ...)).
        batch_size: instances per batch.
        shuffle: a fresh permutation each epoch drawn from ``generator`` (else instance order).
        drop_last: drop the last, partial batch.
        num_workers: worker processes (0: build batches in the main process).
        generator: seeds the permutation and the workers' seeds (default: torch's global RNG).
        start_method: ``"fork"``, ``"spawn"`` or ``"forkserver"`` for the workers (default: the
            platform's); the dataset is pickled to spawn/forkserver workers.
        pin_memory, persistent_workers, prefetch_factor, worker_init_fn: as ``DataLoader``'s.
        recycle: with workers and without ``pin_memory``, let each worker reuse its shared-memory
            output buffers (``prefetch_factor + 2`` per worker) once no tensor in the main process
            uses them; a batch that is kept stays intact (the worker then takes a new buffer).
            Turn it off when batches are handed on to other processes.

    Returns:
        A ``torch.utils.data.DataLoader``; ``len()`` is the number of batches.

    Raises:
        ConfigError: batch_size < 1, num_workers < 0 or an unknown start method.
    """
    if batch_size < 1:
        raise ConfigError(f"batch_loader batch_size={batch_size} must be >= 1")
    if num_workers < 0:
        raise ConfigError(f"batch_loader num_workers={num_workers} must be >= 0")
    if start_method is not None and start_method not in START_METHODS:
        raise ConfigError(f"batch_loader start_method={start_method!r} is not valid; choose one of {', '.join(map(repr, START_METHODS))}")
    order = RandomSampler(ds, generator=generator) if shuffle else SequentialSampler(ds)  # type: ignore[arg-type]
    batches = BatchSampler(order, batch_size, drop_last)
    extra: dict[str, Any] = {} if num_workers == 0 else {
        "multiprocessing_context": start_method, "persistent_workers": persistent_workers,
        "prefetch_factor": prefetch_factor, "worker_init_fn": worker_init_fn}
    if recycle and num_workers > 0 and not pin_memory and available():
        slots = (2 if prefetch_factor is None else prefetch_factor) + 2
        return _RecyclingLoader(ds, batch_size=None, sampler=batches, num_workers=num_workers, generator=generator,
                                slots=slots, **extra)
    return DataLoader(ds, batch_size=None, sampler=batches, num_workers=num_workers, generator=generator,
                      pin_memory=pin_memory, **extra)


class _RecyclingLoader(DataLoader[Any]):
    """A DataLoader whose workers build batches in :class:`~infer_data.recycle.BatchBuffers`.

    One pool per set of worker processes: kept across epochs with persistent workers, new with
    every iterator otherwise. Iterating yields exactly what ``DataLoader`` yields.
    """

    def __init__(self, *args: Any, slots: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._slots = slots
        self._buffers: BatchBuffers | None = None

    def __iter__(self) -> Any:
        if self._buffers is None or not self.persistent_workers or self._iterator is None:
            self._buffers = BatchBuffers(self.num_workers, self._slots)
        buffers = self._buffers
        with buffers.attached(self.dataset):  # the workers started here find the pool on their dataset
            batches = super().__iter__()
        return buffers.track(batches)
