"""Batch transforms for :class:`~infer_data.dataset.InferDataset`'s ``batch_transform``.

The dataset builds a whole batch at once (``ds[indices]``, :func:`infer_data.batches.batch_loader`,
or ``__getitems__`` under a per-sample ``DataLoader``); a batch transform then augments it with
per-sample parameters in one vectorized call instead of a Python call per image:
:class:`RandomCropFlip` for CIFAR-sized images, :class:`RandomResizedCropFlip` for ImageNet-sized
ones (which builds its crops straight from the uint8 factors through ``from_factors``).
Randomness comes from a generator seeded from ``seed`` in the main process and from the
DataLoader's per-worker seed inside workers, so workers never repeat each other and runs are
reproducible given the DataLoader's ``generator``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.utils.data import get_worker_info

from .augment import crop_offsets, flip_mask, padded_crop, resized_crop_boxes
from .errors import ConfigError
from .resample import Scratch, resized_crop, resized_crop_factors


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
        offsets = crop_offsets(x.shape[0], self.padding, generator=g)  # (B, 2)
        return padded_crop(x, offsets, self.padding, flip=flip_mask(x.shape[0], self.p, generator=g))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(padding={self.padding}, p={self.p}, seed={self.seed})"


class RandomResizedCropFlip(_Seeded):
    """Per-sample ``RandomResizedCrop(size, scale, ratio)`` + ``RandomHorizontalFlip(p)`` on whole batches.

    Boxes follow torchvision's sampling rule; resampling is bilinear as torchvision's
    ``resized_crop(..., antialias=False)`` (identical for the usual upscaling crops; see
    :mod:`infer_data.resample`). :class:`~infer_data.dataset.InferDataset` calls
    :meth:`from_factors`, which crops the uint8 bases before converting anything to float;
    ``__call__`` takes an already composed batch.

    Args:
        size: output side, or (H', W').
        scale: range of the crop's area as a fraction of the image.
        ratio: range of the crop's aspect ratio (width / height).
        p: flip probability.
        seed: seed in the main process (workers use the DataLoader's per-worker seed).
        mean, std: (C,) normalize the output here, in the same pass (then build the dataset with
            ``normalize=False``); None leaves it in [0, 1].
        dtype: ``torch.float32`` output, or ``torch.uint8`` (0..255, rounded; no ``mean``/``std``
            and a dataset with ``normalize=False``): a quarter of the bytes from the workers to
            the main process and the device; normalize there with :func:`normalize_uint8`.

    Raises:
        ConfigError: an empty size, scale outside (0, 1], ratio <= 0, p outside [0, 1], or
            uint8 output with mean/std.
    """

    def __init__(self, size: int | Sequence[int], scale: tuple[float, float] = (0.08, 1.0),
                 ratio: tuple[float, float] = (3 / 4, 4 / 3), p: float = 0.5, *, seed: int = 0,
                 mean: Sequence[float] | torch.Tensor | None = None, std: Sequence[float] | torch.Tensor | None = None,
                 dtype: torch.dtype = torch.float32) -> None:
        super().__init__(seed)
        self.size = (int(size), int(size)) if isinstance(size, int) else (int(size[0]), int(size[1]))
        if min(self.size) < 1:
            raise ConfigError(f"RandomResizedCropFlip size={size} must be >= 1")
        if not 0 < scale[0] <= scale[1] <= 1:
            raise ConfigError(f"RandomResizedCropFlip scale={scale} must satisfy 0 < low <= high <= 1")
        if not 0 < ratio[0] <= ratio[1]:
            raise ConfigError(f"RandomResizedCropFlip ratio={ratio} must satisfy 0 < low <= high")
        if not 0 <= p <= 1:
            raise ConfigError(f"RandomResizedCropFlip p={p} must be in [0, 1]")
        self.scale, self.ratio, self.p = tuple(scale), tuple(ratio), p
        self.mean = None if mean is None else torch.as_tensor(mean, dtype=torch.float32)
        self.std = None if std is None else torch.as_tensor(std, dtype=torch.float32)
        if dtype not in (torch.float32, torch.uint8) or (dtype == torch.uint8 and (mean is not None or std is not None)):
            raise ConfigError(f"RandomResizedCropFlip dtype={dtype} needs torch.float32, or torch.uint8 without mean/std "
                              "(normalize uint8 batches on the device with normalize_uint8)")
        self.dtype = dtype
        self.scratch = Scratch()

    def _params(self, n: int, image: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Boxes float32 (n, 4) and flips bool (n,) for n images of ``image`` pixels."""
        g = self.generator()
        boxes = resized_crop_boxes(n, image, self.scale, self.ratio, generator=g)  # type: ignore[arg-type]
        return boxes, flip_mask(n, self.p, generator=g)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """float (B, C, H, W) in [0, 1] -> ``dtype`` (B, C, H', W') (normalized when ``mean``/``std`` are set)."""
        boxes, flip = self._params(x.shape[0], (x.shape[2], x.shape[3]))
        return resized_crop(x, boxes, self.size, flip=flip, mean=self.mean, std=self.std, scratch=self.scratch,
                            dtype=self.dtype)

    def from_factors(self, bases: torch.Tensor, base_idx: torch.Tensor, comps: torch.Tensor | None,
                     comp_idx: torch.Tensor) -> torch.Tensor:
        """Crops of instances ``clamp(bases[base_idx] / 255 + comps[comp_idx], 0, 1)`` (comp_idx -1: base alone).

        Args:
            bases: uint8 (N_b, C, H, W), possibly memory-mapped; only the crops' rows are read.
            base_idx: int64 (B,).
            comps: float16/32 (N_c, C, H, W) or None (M = 0).
            comp_idx: int64 (B,), -1 for the base alone.

        Returns:
            ``dtype`` (B, C, H', W').
        """
        boxes, flip = self._params(base_idx.shape[0], (bases.shape[2], bases.shape[3]))
        return resized_crop_factors(bases, base_idx, comps, comp_idx, boxes, self.size, flip=flip,
                                    mean=self.mean, std=self.std, scratch=self.scratch, dtype=self.dtype)

    def __repr__(self) -> str:
        norm = "" if self.mean is None and self.std is None else ", normalize=True"
        norm += ", dtype=torch.uint8" if self.dtype == torch.uint8 else ""
        return (f"{type(self).__name__}(size={self.size}, scale={self.scale}, ratio={tuple(round(r, 4) for r in self.ratio)}, "
                f"p={self.p}, seed={self.seed}{norm})")


def normalize_uint8(x: torch.Tensor, mean: Sequence[float] | torch.Tensor, std: Sequence[float] | torch.Tensor,
                    dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``(x / 255 - mean) / std`` of a uint8 batch, computed on ``x``'s device in one fused multiply-add.

    Meant for the device side of a loader that ships uint8 batches
    (``RandomResizedCropFlip(dtype=torch.uint8)``): move the batch first
    (``x.to("cuda", non_blocking=True)``), then normalize there.

    Args:
        x: uint8 (B, C, H, W) or (C, H, W).
        mean, std: (C,) in [0, 1] units.
        dtype: floating output dtype (e.g. ``torch.float16`` or ``torch.bfloat16`` for mixed precision).

    Returns:
        ``dtype`` tensor of ``x``'s shape.

    Raises:
        ConfigError: ``x`` not uint8, or mean/std not of C entries.
    """
    if x.dtype != torch.uint8 or x.dim() not in (3, 4):
        raise ConfigError(f"normalize_uint8 needs a uint8 (B, C, H, W) or (C, H, W) tensor, got {x.dtype} {tuple(x.shape)}")
    c = x.shape[-3]
    m = torch.as_tensor(mean, dtype=torch.float32, device=x.device)
    sd = torch.as_tensor(std, dtype=torch.float32, device=x.device)
    if m.shape != (c,) or sd.shape != (c,):
        raise ConfigError(f"normalize_uint8 mean and std need {c} entries (one per channel), got {tuple(m.shape)} and {tuple(sd.shape)}")
    scale = (1 / (255 * sd)).view(c, 1, 1)
    return torch.addcmul((-m / sd).view(c, 1, 1), x.to(torch.float32), scale).to(dtype)
