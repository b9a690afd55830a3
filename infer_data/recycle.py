"""Shared-memory batch buffers that DataLoader workers reuse once the main process lets go of them.

A worker's batch reaches the main process through shared memory. Built in a fresh shared
segment every time, a float32 batch of 256 crops at 224 px (154 MB) costs its page faults
twice, once in the worker that writes it and once when the segment is torn down, and at 224 px
that took as long as computing the crops. :class:`BatchBuffers` gives every worker a few
segments (``slots``) that it writes again and again; the main process maps each one once.

The handshake is one shared byte per (worker, slot): the worker sets it when it hands a
buffer out, and the main process clears it when no tensor in the main process uses that
buffer any more (its storage's use count is back to the pool's own reference), checked each
time the loader is asked for the next batch. A worker whose slots are all in use builds the
batch in a fresh segment, as a plain DataLoader does, so nothing ever waits and a batch a user
keeps is never overwritten. What the count cannot see is a batch handed on to another process
(say through a ``multiprocessing`` queue): copy it first, or build the loader with
``recycle=False``.

Each buffer starts with a 64-byte header (magic, the pool's token, worker and slot numbers),
followed by the batch itself, so the main process can tell a pool buffer from any other tensor.
"""

from __future__ import annotations

import math
import os
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from torch.utils.data import get_worker_info

HEADER = 64  # bytes before the batch in every buffer (a multiple of every element size)
_MAGIC = b"INFERBUF"
_LAYOUT = struct.Struct("<8s8sII")  # magic, pool token, worker id, slot
_ATTRIBUTE = "_infer_batch_buffers"  # where a worker finds its pool: on its copy of the dataset


def available() -> bool:
    """Whether this torch exposes the storage use count the handshake relies on."""
    return hasattr(torch._C, "_storage_Use_Count")


def _use_count(storage: torch.UntypedStorage) -> int:
    return int(torch._C._storage_Use_Count(storage._cdata))


class BatchBuffers:
    """``slots`` reusable shared-memory output buffers per DataLoader worker.

    Args:
        workers: the loader's ``num_workers``.
        slots: buffers per worker; a worker needs one per batch it may have in flight
            (``prefetch_factor``) plus those the main process still holds.
    """

    def __init__(self, workers: int, slots: int) -> None:
        self.flags = torch.zeros(workers, slots, dtype=torch.uint8).share_memory_()  # 1: handed out, not yet released
        self.token = os.urandom(8)
        self._own: dict[int, torch.UntypedStorage] = {}  # worker side: slot -> its buffer
        self._mapped: dict[tuple[int, int], torch.UntypedStorage] = {}  # main side: mapped once, kept mapped
        self._held: set[tuple[int, int]] = set()  # main side: received and not yet released

    def __getstate__(self) -> dict[str, Any]:
        return {"flags": self.flags, "token": self.token}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.flags, self.token = state["flags"], state["token"]
        self._own, self._mapped, self._held = {}, {}, set()

    # -- worker side -------------------------------------------------------------------------

    def take(self, worker: int, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor | None:
        """A ``dtype`` tensor of ``shape`` in a free buffer of ``worker`` (its DataLoader worker id), or None when all are in use."""
        if worker >= self.flags.shape[0]:
            return None
        flags = self.flags[worker].numpy()
        free = np.flatnonzero(flags == 0)
        if free.size == 0:
            return None
        slot = int(free[0])
        nbytes = HEADER + math.prod(shape) * dtype.itemsize
        storage = self._own.get(slot)
        if storage is None or storage.nbytes() < nbytes:
            storage = torch.UntypedStorage._new_shared(nbytes)
            header = np.frombuffer(_LAYOUT.pack(_MAGIC, self.token, worker, slot), dtype=np.uint8)
            _bytes(storage).numpy()[: header.size] = header
            self._own[slot] = storage
        flags[slot] = 1
        return torch.empty(0, dtype=dtype).set_(storage, HEADER // dtype.itemsize, shape)

    # -- main side ---------------------------------------------------------------------------

    def receive(self, batch: Any) -> None:
        """Note the pool buffers among ``batch``'s tensors (a tensor or a tuple/list/dict of them)."""
        for t in _tensors(batch):
            key = self._slot_of(t)
            if key is not None:
                self._mapped[key] = t.untyped_storage()
                self._held.add(key)

    def release(self) -> int:
        """Give back every held buffer that no tensor uses any more; returns how many."""
        freed = [key for key in self._held if _use_count(self._mapped[key]) <= 1]
        for worker, slot in freed:
            self._held.discard((worker, slot))
            self.flags[worker, slot] = 0
        return len(freed)

    def _slot_of(self, t: torch.Tensor) -> tuple[int, int] | None:
        """(worker, slot) if ``t`` is the batch of one of this pool's buffers, else None."""
        if t.device.type != "cpu" or t.storage_offset() * t.element_size() != HEADER:
            return None
        storage = t.untyped_storage()
        if storage.nbytes() < HEADER + t.numel() * t.element_size():
            return None
        magic, token, worker, slot = _LAYOUT.unpack(_bytes(storage)[: _LAYOUT.size].numpy().tobytes())
        if magic != _MAGIC or token != self.token or worker >= self.flags.shape[0] or slot >= self.flags.shape[1]:
            return None
        return worker, slot

    def track(self, batches: Iterator[Any]) -> _Tracked:
        """``batches`` (a DataLoader iterator) that releases unused buffers before each fetch and notes each batch's."""
        return _Tracked(self, batches)

    @contextmanager
    def attached(self, dataset: Any) -> Iterator[None]:
        """Make this pool visible to the workers started inside the block (through their copy of ``dataset``).

        A dataset that refuses new attributes gets no pool: its workers build every batch in a
        new segment.
        """
        try:
            setattr(dataset, _ATTRIBUTE, self)
        except (AttributeError, TypeError):
            yield
            return
        try:
            yield
        finally:
            delattr(dataset, _ATTRIBUTE)


class _Tracked:
    """A DataLoader iterator wrapped by :meth:`BatchBuffers.track`; other attributes are the wrapped iterator's."""

    def __init__(self, pool: BatchBuffers, batches: Iterator[Any]) -> None:
        self._pool, self._batches = pool, batches

    def __iter__(self) -> _Tracked:
        return self

    def __next__(self) -> Any:
        self._pool.release()
        batch = next(self._batches)
        self._pool.receive(batch)
        return batch

    def __len__(self) -> int:
        return len(self._batches)  # type: ignore[arg-type]

    def __getattr__(self, name: str) -> Any:
        return getattr(self._batches, name)


def worker_buffer(shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor | None:
    """In a DataLoader worker whose dataset carries a pool, a recycled output tensor; else None."""
    info = get_worker_info()
    pool = None if info is None else getattr(info.dataset, _ATTRIBUTE, None)
    return pool.take(info.id, shape, dtype) if isinstance(pool, BatchBuffers) else None


def _bytes(storage: torch.UntypedStorage) -> torch.Tensor:
    return torch.empty(0, dtype=torch.uint8).set_(storage, 0, (storage.nbytes(),))


def _tensors(batch: Any) -> Iterator[torch.Tensor]:
    if isinstance(batch, torch.Tensor):
        yield batch
    elif isinstance(batch, (tuple, list)):
        for item in batch:
            yield from _tensors(item)
    elif isinstance(batch, dict):
        for item in batch.values():
            yield from _tensors(item)
