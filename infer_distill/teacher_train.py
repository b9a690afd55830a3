"""Train a teacher where no pretrained weights exist (``infer teacher train``).

A plain supervised recipe: SGD with Nesterov momentum, one-cycle learning rate, random crop
(zero padding of size/8) and horizontal flip, images normalized with the source statistics or a
named constant set (``normalization="cifar10"``: the official code's constants, for official mode).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from infer_data.errors import ConfigError

from .compensators import channel_view
from .sources import Source, normalization
from .teachers import create_teacher

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TeacherTrainConfig:
    """Recipe of :func:`train_teacher`."""

    arch: str = "convnet"  # registered architecture
    epochs: int = 10  # passes over the training split
    batch_size: int = 128  # images per step
    lr: float = 0.05  # peak learning rate of the one-cycle schedule
    weight_decay: float = 5e-4  # SGD weight decay
    label_smoothing: float = 0.0  # cross-entropy label smoothing
    augment: bool = True  # random crop (pad size/8) + horizontal flip
    seed: int = 0  # initialization, shuffling and augmentation
    normalization: str = "source"  # "source" statistics or a name of infer_distill.sources.NORMALIZATIONS

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.lr <= 0:
            raise ConfigError(f"teacher training needs --epochs >= 1, batch size >= 1 and lr > 0; got {self.epochs}, {self.batch_size}, {self.lr}")


def all_images(source: Source) -> torch.Tensor:
    """The whole split as uint8 (N, C, H, W)."""
    load_all = getattr(source, "load_all", None)
    return load_all() if callable(load_all) else source.images(torch.arange(len(source)))


def random_crop_flip(x: torch.Tensor, pad: int, gen: torch.Generator) -> torch.Tensor:
    """Per-sample random crop from a zero-padded copy and random horizontal flip.

    Args:
        x: float (B, C, H, W).
        pad: padding in pixels on every side.
        gen: CPU generator.

    Returns:
        float (B, C, H, W).
    """
    b, _, h, w = x.shape
    xp = F.pad(x, (pad, pad, pad, pad))  # (B, C, H+2p, W+2p)
    oy = torch.randint(0, 2 * pad + 1, (b,), generator=gen)
    ox = torch.randint(0, 2 * pad + 1, (b,), generator=gen)
    rows = (oy[:, None] + torch.arange(h)[None])[:, :, None]  # (B, H, 1)
    cols = (ox[:, None] + torch.arange(w)[None])[:, None, :]  # (B, 1, W)
    flip = torch.rand(b, generator=gen) < 0.5
    cols = torch.where(flip[:, None, None], cols.flip(-1), cols)  # (B, 1, W)
    out = xp[torch.arange(b)[:, None, None], :, rows, cols]  # (B, H, W, C)
    return out.permute(0, 3, 1, 2).contiguous()


@torch.no_grad()
def accuracy(model: nn.Module, source: Source, *, batch: int = 500,
             stats: tuple[list[float], list[float]] | None = None) -> float:
    """Top-1 accuracy in [0, 1] of ``model`` (switched to eval mode, on its own device) on ``source``.

    ``stats``: the (mean, std) the model was trained with; default the source's own.
    """
    model.eval()
    dev = next(model.parameters()).device
    mean_l, std_l = stats if stats is not None else (source.mean, source.std)
    mean, std = channel_view(mean_l, 4, dev), channel_view(std_l, 4, dev)
    images, correct = all_images(source), 0
    for i in range(0, len(source), batch):
        x = (images[i:i + batch].to(dev).float() / 255 - mean) / std
        correct += int((model(x).argmax(1).cpu() == source.targets[i:i + batch]).sum())
    return correct / max(len(source), 1)


def train_teacher(cfg: TeacherTrainConfig, train: Source, test: Source | None = None, *,
                  on_epoch: Callable[[int, float], None] | None = None,
                  on_batch: Callable[[int, int, int], None] | None = None,
                  device: torch.device | str = "cpu") -> tuple[nn.Module, float | None]:
    """Train ``cfg.arch`` on ``train``; returns the model (eval mode, on ``device``) and its test accuracy.

    Args:
        on_epoch: called with (epoch, mean training loss) after each epoch.
        on_batch: called with (epoch, batches done in it, batches per epoch) after each step, for
            progress within an epoch (epochs count from 1).
        device: where the model trains; batches are augmented on the CPU and moved there.

    Raises:
        RegistryError: unknown architecture.
    """
    c, h, _ = train.image_shape
    with torch.random.fork_rng(devices=[]):  # seeded initialization without touching the caller's RNG
        torch.manual_seed(cfg.seed)
        model = create_teacher(cfg.arch, len(train.classes), in_channels=c, image_size=h).to(device)
    gen = torch.Generator().manual_seed(cfg.seed)
    loader = DataLoader(TensorDataset(all_images(train), train.targets), batch_size=cfg.batch_size, shuffle=True,
                        generator=gen, drop_last=len(train) > cfg.batch_size)
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=0.9, nesterov=True, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.epochs * len(loader), pct_start=0.25)
    stats = normalization(cfg.normalization, train)
    mean, std = channel_view(stats[0], 4, device), channel_view(stats[1], 4, device)
    for epoch in range(cfg.epochs):
        model.train()
        total, steps = 0.0, 0
        for images, targets in loader:
            x = images.float() / 255
            if cfg.augment:
                x = random_crop_flip(x, max(1, h // 8), gen)
            x, targets = x.to(device, non_blocking=True), targets.to(device, non_blocking=True)
            loss = F.cross_entropy(model((x - mean) / std), targets, label_smoothing=cfg.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total, steps = total + float(loss.detach()), steps + 1
            if on_batch is not None:
                on_batch(epoch + 1, steps, len(loader))
        logger.info("teacher %s epoch %d: loss %.4f", cfg.arch, epoch + 1, total / max(steps, 1))
        if on_epoch is not None:
            on_epoch(epoch + 1, total / max(steps, 1))
    model.eval()
    return model, (accuracy(model, test, stats=stats) if test is not None else None)
