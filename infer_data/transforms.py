"""Batch transforms for :class:`~infer_data.dataset.InferDataset`'s ``batch_transform``.

With ``DataLoader``, ``InferDataset.__getitems__`` composes a whole batch at once; a batch
transform then augments it with per-sample parameters in one vectorized call instead of a
Python call per image. Randomness comes from a generator seeded from ``seed`` in the main
process and from the DataLoader's per-worker seed inside workers, so workers never repeat each
other and runs are reproducible given the DataLoader's ``generator``.
"""

from __future__ import annotations

import torch
from torch.utils.data import get_worker_info

from .augment import random_crop, random_flip


class _Seeded:
    """A lazily created CPU generator, re-seeded once per worker process."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self._generator: torch.Generator | None = None
        self._worker: int | None = None

    def generator(self) -> torch.Generator:
        info = get_worker_info()
        worker = None if info is None else info.id
        if self._generator is None or worker != self._worker:
            seed = self.seed if info is None else info.seed
            self._generator, self._worker = torch.Generator().manual_seed(seed), worker
        return self._generator


class RandomCropFlip(_Seeded):
    """Per-sample ``RandomCrop(H, padding)`` + ``RandomHorizontalFlip(p)`` on a (B, C, H, W) batch.

    Args:
        padding: zero border (pixels) before cropping back to H x W.
        p: flip probability.
        seed: seed in the main process (workers use the DataLoader's per-worker seed).
    """

    def __init__(self, padding: int = 4, p: float = 0.5, *, seed: int = 0) -> None:
        super().__init__(seed)
        self.padding, self.p = padding, p

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """float (B, C, H, W) -> float (B, C, H, W)."""
        g = self.generator()
        return random_flip(random_crop(x, self.padding, generator=g), self.p, generator=g)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(padding={self.padding}, p={self.p}, seed={self.seed})"
