"""DeviceLoader: the whole distilled set resident on one device, yielding augmented, mixed batches.

A distilled dataset is small (stored factors, not the K * (M + 1) * G expanded instances), so
the loader keeps the uint8 bases, the compensators and the labels on the training device and
does everything else there, per batch, with no worker processes and no per-sample Python:

    seeded permutation -> slice a batch -> compose x_i + u_j -> per-sample crop / resized crop
    + flip -> normalize -> batch MixUp on images and dense soft labels

Resized crops skip the full-size composite: :func:`infer_data.resample.resized_crop_factors`
gathers only the rows each crop needs from the uint8 bases and does compose, crop, flip and
normalization in one pass into a reused buffer; MixUp then writes the yielded batch.

Ranks split each epoch like ``DistributedSampler``: the permutation is the same on every rank,
padded by repeating its first entries to a multiple of ``world_size`` (or truncated with
``drop_last``), and rank r takes every ``world_size``-th entry from r, so all ranks run the same
number of batches.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass, fields, replace
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from . import augment as aug
from .compose import compose
from .dataset import InferDataset
from .errors import ConfigError
from .indexing import expand
from .mixup import sample_lambda
from .resample import one_thread

logger = logging.getLogger(__name__)

TARGET_KINDS = ("soft", "class")


@dataclass(frozen=True)
class LoaderConfig:
    """What a :class:`DeviceLoader` does to each batch; every field can be overridden."""

    batch_size: int = 256  # instances per batch and rank
    shuffle: bool = True  # a fresh seeded permutation each epoch (else instance order)
    drop_last: bool = False  # drop the partial last batch and the rank-split remainder
    augment: str = "auto"  # "auto" | "crop" | "resized-crop" | "flip" | "none" (see infer_data.augment)
    padding: int = 4  # zero border in pixels for "crop"
    scale: tuple[float, float] = (0.08, 1.0)  # area fraction range for "resized-crop"
    normalize: bool | None = None  # subtract the dataset mean, divide by its std; None: the InferDataset's setting (True for DeviceData)
    mixup_beta: float = 1.0  # Beta(beta, beta) MixUp per batch; 0 turns MixUp off
    targets: str | None = None  # "soft": stored logits (B, NC); "class": one-hot probabilities (B, NC); None: the InferDataset's target ("soft" for DeviceData)
    seed: int = 0  # seeds the permutation, augmentation and MixUp of every epoch
    return_indices: bool = False  # also yield the int64 (B,) instance indices of the batch
    channels_last: bool = False  # yield images in channels_last memory format

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ConfigError(f"batch_size={self.batch_size} must be >= 1")
        if self.padding < 0:
            raise ConfigError(f"padding={self.padding} must be >= 0")
        if self.mixup_beta < 0:
            raise ConfigError(f"mixup_beta={self.mixup_beta} must be >= 0 (0 turns MixUp off)")
        if not 0 < self.scale[0] <= self.scale[1] <= 1:
            raise ConfigError(f"scale={self.scale} must satisfy 0 < low <= high <= 1")
        if self.targets is not None and self.targets not in TARGET_KINDS:
            raise ConfigError(f"targets={self.targets!r} is not valid; choose one of {', '.join(map(repr, TARGET_KINDS))}")
        aug.resolve_augmentation(self.augment, 32)


@dataclass
class DeviceData:
    """The stored factors of a distilled set as tensors (one device)."""

    bases: torch.Tensor  # uint8 (G, K, C, H, W)
    compensators: torch.Tensor  # float32 (G, M, C, H, W), [0, 1]-range pixel deltas
    labels: torch.Tensor | None  # fp16/fp32 (G, K * (M + 1), NC) logits, or None
    class_ids: torch.Tensor  # int64 (G, K)
    mean: torch.Tensor  # float32 (C,)
    std: torch.Tensor  # float32 (C,)
    num_classes: int  # NC

    def __post_init__(self) -> None:
        b, c, lab = self.bases, self.compensators, self.labels
        if b.dtype != torch.uint8 or b.dim() != 5:
            raise ConfigError(f"DeviceData bases must be uint8 (G, K, C, H, W), got {b.dtype} {tuple(b.shape)}")
        if c.dim() != 5 or c.shape[0] != b.shape[0] or c.shape[2:] != b.shape[2:]:
            raise ConfigError(f"DeviceData compensators {tuple(c.shape)} do not fit bases {tuple(b.shape)}; need (G, M, C, H, W)")
        rows = b.shape[1] * (c.shape[1] + 1)
        if lab is not None and tuple(lab.shape) != (b.shape[0], rows, self.num_classes):
            raise ConfigError(f"DeviceData labels {tuple(lab.shape)} do not fit: need (G, K * (M + 1), NC) = "
                              f"{(b.shape[0], rows, self.num_classes)}")
        if tuple(self.class_ids.shape) != tuple(b.shape[:2]):
            raise ConfigError(f"DeviceData class_ids {tuple(self.class_ids.shape)} do not fit: need (G, K) = {tuple(b.shape[:2])}")

    @classmethod
    def from_dataset(cls, dataset: InferDataset) -> DeviceData:
        """The factors of an :class:`InferDataset`: every group decoded once into its shared cache, not copied."""
        f = dataset.factors(decode_all=True)
        return cls(f.bases, f.compensators, f.labels, f.class_ids, dataset.mean, dataset.std, dataset.index.dataset.num_classes)

    def to(self, device: torch.device) -> DeviceData:
        """A copy with every tensor on ``device``."""
        moved = {f.name: getattr(self, f.name) for f in fields(self)}
        for name, value in moved.items():
            if isinstance(value, torch.Tensor):
                moved[name] = value.to(device)
        return DeviceData(**moved)

    @property
    def num_instances(self) -> int:
        """G * K * (M + 1)."""
        g, k = self.bases.shape[:2]
        return g * k * (self.compensators.shape[1] + 1)


def derive_seed(*keys: int) -> int:
    """A 63-bit seed mixed from integer keys (seed, epoch, rank, stream)."""
    return int(np.random.SeedSequence([int(k) for k in keys]).generate_state(1, np.uint64)[0] >> np.uint64(1))


def _dist_rank_world() -> tuple[int, int]:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class DeviceLoader:
    """Yield augmented, MixUp-ed batches of a distilled set, built on ``device``.

    Iterating yields ``(images, targets)`` (plus ``indices`` when ``return_indices``):
    images float32 (B, C, H, W), normalized when ``normalize``; targets float32 (B, NC), MixUp-mixed stored
    logits (``targets="soft"``) or one-hot class probabilities (``"class"``, mixed as one-hot
    vectors, as torchvision's and timm's MixUp do; ``F.cross_entropy`` takes them as
    probabilities). Each full pass advances the epoch; :meth:`set_epoch` sets it explicitly, as
    with ``DistributedSampler``. Built from an :class:`InferDataset`, the loader follows the
    dataset's ``normalize`` and ``target`` unless the config sets ``normalize``/``targets``;
    a dataset with a ``transform``, ``batch_transform`` or ``target_transform`` is refused (the
    loader augments on the device with the config's ``augment``).

    Args:
        data: an :class:`InferDataset` or its :class:`DeviceData`.
        config: a :class:`LoaderConfig`; keyword ``overrides`` replace its fields.
        device: where the data lives and batches are built (default CPU); a CUDA device this
            machine lacks is a ConfigError.
        rank, world_size: this process's share of each epoch; default from
            ``torch.distributed`` when it is initialized, else 0 and 1.

    Raises:
        ConfigError: an unknown or invalid option, a bad rank or device, soft targets without
            labels, or a dataset with transforms the loader would ignore.
    """

    def __init__(self, data: InferDataset | DeviceData, config: LoaderConfig | None = None, *,
                 device: str | torch.device | None = None, rank: int | None = None,
                 world_size: int | None = None, **overrides: Any) -> None:
        self.config = _resolve(_with_overrides(config or LoaderConfig(), overrides), data)
        self.device = check_device(device)
        dr, dw = _dist_rank_world()
        self.rank, self.world_size = (dr if rank is None else rank), (dw if world_size is None else world_size)
        if self.world_size < 1 or not 0 <= self.rank < self.world_size:
            raise ConfigError(f"rank={self.rank}, world_size={self.world_size}: need 0 <= rank < world_size")
        host = DeviceData.from_dataset(data) if isinstance(data, InferDataset) else data
        if self.config.targets == "soft" and host.labels is None:
            raise ConfigError("DeviceLoader targets='soft' but the dataset stores no soft labels; use targets='class'")
        self.data = host.to(self.device)
        self.k, self.m = self.data.bases.shape[1], self.data.compensators.shape[1]
        self.image_size = (int(self.data.bases.shape[-2]), int(self.data.bases.shape[-1]))
        self.augment = aug.resolve_augmentation(self.config.augment, max(self.image_size))
        self.epoch = 0
        self._scratch = aug.Scratch()  # work buffers reused by every batch

    # -- epoch bookkeeping ---------------------------------------------------------------

    @property
    def num_instances(self) -> int:
        """Instances of the whole dataset (all ranks)."""
        return self.data.num_instances

    @property
    def num_samples(self) -> int:
        """Instances this rank yields per epoch (after padding or dropping for the rank split)."""
        n, w = self.num_instances, self.world_size
        return n // w if self.config.drop_last else math.ceil(n / w)

    def __len__(self) -> int:
        """Batches per epoch on this rank (the same on every rank)."""
        s, b = self.num_samples, self.config.batch_size
        return s // b if self.config.drop_last else math.ceil(s / b)

    def set_epoch(self, epoch: int) -> None:
        """Use epoch ``epoch``'s permutation and augmentation on the next pass."""
        self.epoch = int(epoch)

    def indices(self, epoch: int | None = None) -> torch.Tensor:
        """int64 (num_samples,): this rank's instance indices for ``epoch``, in yield order."""
        epoch = self.epoch if epoch is None else epoch
        n, w, cfg = self.num_instances, self.world_size, self.config
        if cfg.shuffle:
            g = torch.Generator().manual_seed(derive_seed(cfg.seed, epoch, 0))
            order = torch.randperm(n, generator=g)  # (N,) same on every rank
        else:
            order = torch.arange(n)
        total = self.num_samples * w
        if total > n:
            order = order.repeat(math.ceil(total / n))
        return order[:total][self.rank::w]  # (num_samples,)

    # -- iteration -----------------------------------------------------------------------

    def __iter__(self) -> Iterator[tuple[torch.Tensor, ...]]:
        cfg, epoch = self.config, self.epoch
        order = self.indices(epoch).to(self.device)  # (S,)
        coords = expand(order, self.k, self.m)  # (group, view, slot), each (S,), once per epoch
        aug_gen = torch.Generator(device=self.device).manual_seed(derive_seed(cfg.seed, epoch, self.rank + 1, 1))
        mix_gen = torch.Generator().manual_seed(derive_seed(cfg.seed, epoch, self.rank + 1, 2))
        params = self._draw_params(len(order), aug_gen)
        b = cfg.batch_size
        for s in range(len(self)):
            sl = slice(s * b, (s + 1) * b)
            batch = self._build(*(c[sl] for c in coords), {k: v[sl] for k, v in params.items()}, mix_gen)
            yield (*batch, order[sl]) if cfg.return_indices else batch
        self.epoch = epoch + 1

    def _draw_params(self, n: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """Per-sample augmentation parameters for a whole epoch, drawn on the device."""
        params: dict[str, torch.Tensor] = {}
        if self.augment == "crop":
            params["offsets"] = aug.crop_offsets(n, self.config.padding, generator=generator)  # (S, 2)
        elif self.augment == "resized-crop":
            params["boxes"] = aug.resized_crop_boxes(n, self.image_size, self.config.scale, generator=generator)  # (S, 4)
        if self.augment != "none":
            params["flip"] = aug.flip_mask(n, generator=generator)  # (S,)
        return params

    def _build(self, group: torch.Tensor, view: torch.Tensor, slot: torch.Tensor, params: dict[str, torch.Tensor],
               mix_gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Images and targets of instances (group, view, slot), each (B,), with per-sample ``params``.

        ``params`` holds ``offsets`` (B, 2), ``boxes`` (B, 4) and/or ``flip`` (B,); a missing key
        skips that step. Resized crops are built from the uint8 factors in one fused pass (flip
        and normalization included); the only full-size tensor allocated per batch is the one
        yielded, everything before it lives in reused buffers. On the CPU the batch is built
        with one intra-op thread (see :func:`infer_data.resample.one_thread`).
        """
        with one_thread(self.device):
            return self._build_batch(group, view, slot, params, mix_gen)

    def _build_batch(self, group: torch.Tensor, view: torch.Tensor, slot: torch.Tensor, params: dict[str, torch.Tensor],
                     mix_gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        d, cfg = self.data, self.config
        mixing = cfg.mixup_beta > 0
        if "boxes" in params:
            x = self._resized(group, view, slot, params, into_scratch=mixing)
        else:
            x = compose(d.bases, d.compensators, group, view, slot)  # (B, C, H, W) in [0, 1], fresh
            if "offsets" in params:
                x = aug.padded_crop(x, params["offsets"], cfg.padding, flip=params.get("flip"))
            elif "flip" in params:
                x = aug.apply_flip(x, params["flip"])
            if cfg.normalize:
                x.sub_(d.mean.view(-1, 1, 1)).div_(d.std.view(-1, 1, 1))
        y = self.targets_of(group, view, slot)  # (B, NC)
        if mixing:
            x, y = self._mix(x, y, mix_gen)
        if cfg.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x, y

    def _resized(self, group: torch.Tensor, view: torch.Tensor, slot: torch.Tensor, params: dict[str, torch.Tensor], *,
                 into_scratch: bool) -> torch.Tensor:
        """float32 (B, C, H, W): fused resized crop + flip (+ normalize) of the instances, from the factors."""
        d, b = self.data, group.shape[0]
        comps = d.compensators.flatten(0, 1) if self.m else None  # (G * M, C, H, W)
        comp_idx = torch.where(view > 0, group * self.m + view - 1, -1)  # (B,)
        shape = (b, d.bases.shape[2], *self.image_size)
        out = self._scratch.get("batch", shape, torch.float32, self.device) if into_scratch else None
        norm = self.config.normalize
        return aug.resized_crop_factors(d.bases.flatten(0, 1), group * self.k + slot, comps, comp_idx, params["boxes"],
                                        self.image_size, flip=params.get("flip"), mean=d.mean if norm else None,
                                        std=d.std if norm else None, out=out, scratch=self._scratch)

    def _mix(self, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """MixUp as :func:`infer_data.mixup.mixup_batch` (same draws), written straight into one fresh batch."""
        lam = sample_lambda(self.config.mixup_beta, generator)
        perm = torch.randperm(x.shape[0], generator=generator).to(x.device, non_blocking=True)  # (B,)
        mixed = torch.index_select(x, 0, perm).lerp_(x, lam)  # lam * x + (1 - lam) * x[perm]
        mixed_y = y.index_select(0, perm).lerp_(y, lam)  # (B, NC)
        return mixed, mixed_y

    def targets_of(self, group: torch.Tensor, view: torch.Tensor, slot: torch.Tensor) -> torch.Tensor:
        """float32 (B, NC) un-mixed targets: stored logits or one-hot class probabilities."""
        d = self.data
        if self.config.targets == "soft" and d.labels is not None:  # (checked at construction)
            return d.labels[group, view * self.k + slot].to(torch.float32)
        return F.one_hot(d.class_ids[group, slot], d.num_classes).to(torch.float32)

    def __repr__(self) -> str:
        return (f"DeviceLoader(instances={self.num_instances}, batches={len(self)}, device={self.device}, "
                f"rank={self.rank}/{self.world_size}, augment={self.augment!r}, config={self.config})")


def check_device(device: str | torch.device | None) -> torch.device:
    """``device`` as a ``torch.device`` (default CPU), checked to exist here.

    Raises:
        ConfigError: not a device name, or a CUDA device this machine does not have.
    """
    if device is None:
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ConfigError(f"device={str(device)!r} is not a device; use 'cpu', 'cuda' or 'cuda:N'") from exc
    if dev.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ConfigError(f"device={str(device)!r}: CUDA is not available here (no GPU, or a CPU-only torch); use device='cpu'")
        if dev.index is not None and dev.index >= count:
            raise ConfigError(f"device={str(device)!r}: this machine has {count} CUDA device(s), cuda:0..cuda:{count - 1}; pick one of them")
    return dev


def _resolve(config: LoaderConfig, data: InferDataset | DeviceData) -> LoaderConfig:
    """``config`` with ``normalize``/``targets`` left at None taken from the dataset.

    An :class:`InferDataset` gives its own ``normalize`` and ``target``; :class:`DeviceData`
    gives ``normalize=True`` and ``targets="soft"``. The loader applies its own augmentation, so
    a dataset with per-sample or batch transforms is refused rather than silently ignored.

    Raises:
        ConfigError: the dataset has a ``transform``, ``batch_transform`` or ``target_transform``.
    """
    if not isinstance(data, InferDataset):
        return replace(config, normalize=True if config.normalize is None else config.normalize,
                       targets=config.targets or "soft")
    used = [n for n in ("transform", "batch_transform", "target_transform") if getattr(data, n) is not None]
    if used:
        raise ConfigError(f"DeviceLoader: the dataset's {', '.join(used)} would be ignored (the loader augments on the "
                          "device itself, see LoaderConfig.augment); build the InferDataset without it or use a DataLoader")
    return replace(config, normalize=data.normalize if config.normalize is None else config.normalize,
                   targets=config.targets or data.target)


def _with_overrides(config: LoaderConfig, overrides: dict[str, Any]) -> LoaderConfig:
    known = {f.name for f in fields(LoaderConfig)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ConfigError(f"unknown DeviceLoader option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    return replace(config, **overrides) if overrides else config
