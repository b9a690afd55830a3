"""Per-sample batch augmentation on any device: padded random crop, random resized crop, flip.

These are the training transforms of INFER's evaluation protocol (DESIGN section 2): CIFAR-sized
images get ``RandomCrop(H, padding)`` + horizontal flip, larger ones ``RandomResizedCrop`` +
flip. Every function works on a whole batch at once with per-sample parameters (no Python loop
over samples) and draws its randomness from an explicit ``torch.Generator`` on the batch's
device, so a loader can keep the whole pipeline on the GPU.

Images are float (B, C, H, W) in [0, 1] pixel units (before normalization), so padding with 0
is a black border, as torchvision's ``RandomCrop`` applied before ``ToTensor`` gives.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .errors import ConfigError
from .resample import Scratch as Scratch
from .resample import resized_crop as resized_crop
from .resample import resized_crop_factors as resized_crop_factors

AUGMENTATIONS = ("auto", "crop", "resized-crop", "flip", "none")
SMALL_IMAGE_MAX = 64  # images up to this side use the padded crop under "auto" (as the small-image teachers)


def resolve_augmentation(name: str, image_size: int) -> str:
    """The augmentation ``name`` means for images of side ``image_size``.

    ``"auto"`` picks ``"crop"`` (padded random crop + flip) for images of side <= 64 (CIFAR,
    Tiny-ImageNet) and ``"resized-crop"`` (random resized crop + flip) for larger ones.

    Raises:
        ConfigError: an unknown name.

    Example:
        >>> resolve_augmentation("auto", 32), resolve_augmentation("auto", 224)
        ('crop', 'resized-crop')
    """
    if name not in AUGMENTATIONS:
        raise ConfigError(f"augment={name!r} is not valid; choose one of {', '.join(map(repr, AUGMENTATIONS))}")
    if name == "auto":
        return "crop" if image_size <= SMALL_IMAGE_MAX else "resized-crop"
    return name


def crop_offsets(n: int, padding: int, *, generator: torch.Generator) -> torch.Tensor:
    """Random crop offsets for :func:`padded_crop`: int64 (n, 2) rows ``(dy, dx)`` in [0, 2 * padding]."""
    return torch.randint(0, 2 * padding + 1, (n, 2), generator=generator, device=generator.device)


def padded_crop(x: torch.Tensor, offsets: torch.Tensor, padding: int, *, flip: torch.Tensor | None = None) -> torch.Tensor:
    """Crop each image of ``x`` at its own offset from a zero-padded copy, optionally mirrored.

    Args:
        x: float (B, C, H, W).
        offsets: int64 (B, 2) ``(dy, dx)`` in [0, 2 * padding], on the device of ``x``.
        padding: zero border added on every side.
        flip: bool (B,) samples to mirror left-right (folded into the column indices), or None.

    Returns:
        (B, C, H, W): sample b is ``pad(x[b])[:, dy:dy + H, dx:dx + W]`` (flipped where ``flip``).
    """
    if padding == 0:
        return x if flip is None else apply_flip(x, flip)
    b, c, h, w = x.shape
    wp = w + 2 * padding
    xp = F.pad(x, (padding, padding, padding, padding)).flatten(2)  # (B, C, (H + 2p) * (W + 2p))
    rows = offsets[:, 0:1] + torch.arange(h, device=x.device)  # (B, H)
    ar = torch.arange(w, device=x.device)
    cols = offsets[:, 1:2] + (ar if flip is None else torch.where(flip.view(-1, 1), w - 1 - ar, ar))  # (B, W)
    flat = (rows.unsqueeze(2) * wp + cols.unsqueeze(1)).view(b, 1, h * w)  # (B, 1, H * W)
    return xp.gather(2, flat.expand(b, c, h * w)).view(b, c, h, w)  # (B, C, H, W)


def random_crop(x: torch.Tensor, padding: int = 4, *, generator: torch.Generator) -> torch.Tensor:
    """``RandomCrop(H, padding)`` per sample: a random (H, W) window of the zero-padded image."""
    return padded_crop(x, crop_offsets(x.shape[0], padding, generator=generator), padding)


def flip_mask(n: int, p: float = 0.5, *, generator: torch.Generator) -> torch.Tensor:
    """bool (n,): which samples :func:`apply_flip` mirrors, each with probability ``p``."""
    return torch.rand(n, generator=generator, device=generator.device) < p


def apply_flip(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mirror left-right the samples of ``x`` (B, C, H, W) where ``mask`` (B,) is true.

    Only the flipped samples are read twice (no whole-batch ``torch.where``); ``x`` is not modified.
    """
    picked = mask.nonzero().squeeze(1)  # (F,)
    return x.index_copy(0, picked, x.index_select(0, picked).flip(3))  # (B, C, H, W)


def random_flip(x: torch.Tensor, p: float = 0.5, *, generator: torch.Generator) -> torch.Tensor:
    """``RandomHorizontalFlip(p)`` per sample."""
    return apply_flip(x, flip_mask(x.shape[0], p, generator=generator))


def resized_crop_boxes(
    n: int,
    size: tuple[int, int],
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    *,
    generator: torch.Generator,
    attempts: int = 10,
) -> torch.Tensor:
    """Crop boxes with torchvision's ``RandomResizedCrop`` sampling rule, for n images of ``size``.

    Each sample takes the first of ``attempts`` draws (area fraction ~ U(scale), log aspect
    ratio ~ U(log ratio)) that fits the image, else the central crop clamped to ``ratio``.

    Returns:
        float32 (n, 4) boxes ``(top, left, height, width)`` in pixels.
    """
    h, w = size
    dev = generator.device
    area = torch.empty(n, attempts, device=dev).uniform_(scale[0], scale[1], generator=generator) * (h * w)
    log_r = torch.empty(n, attempts, device=dev).uniform_(math.log(ratio[0]), math.log(ratio[1]), generator=generator)
    aspect = torch.exp(log_r)  # (n, A) width / height
    cw = torch.sqrt(area * aspect).round()  # (n, A)
    ch = torch.sqrt(area / aspect).round()  # (n, A)
    ok = (cw > 0) & (ch > 0) & (cw <= w) & (ch <= h)  # (n, A)
    first = torch.where(ok.any(1), ok.int().argmax(1), torch.full((n,), -1, device=dev))  # (n,)
    pick = first.clamp(min=0).view(-1, 1)
    cw = cw.gather(1, pick).squeeze(1)  # (n,)
    ch = ch.gather(1, pick).squeeze(1)  # (n,)
    fw, fh = _central_box(h, w, ratio)
    cw = torch.where(first >= 0, cw, torch.full_like(cw, fw))
    ch = torch.where(first >= 0, ch, torch.full_like(ch, fh))
    u = torch.rand(n, 2, generator=generator, device=dev)  # (n, 2)
    top = torch.floor(u[:, 0] * (h - ch + 1))
    left = torch.floor(u[:, 1] * (w - cw + 1))
    return torch.stack([top, left, ch, cw], 1)  # (n, 4)


def _central_box(h: int, w: int, ratio: tuple[float, float]) -> tuple[float, float]:
    """torchvision's fallback crop size (width, height) when no attempt fits."""
    in_ratio = w / h
    if in_ratio < ratio[0]:
        return float(w), float(round(w / ratio[0]))
    if in_ratio > ratio[1]:
        return float(round(h * ratio[1])), float(h)
    return float(w), float(h)


def random_resized_crop(
    x: torch.Tensor,
    size: tuple[int, int] | None = None,
    scale: tuple[float, float] = (0.08, 1.0),
    *,
    generator: torch.Generator,
) -> torch.Tensor:
    """``RandomResizedCrop(size, scale)`` per sample; ``size`` defaults to the input size."""
    out = size or (x.shape[2], x.shape[3])
    boxes = resized_crop_boxes(x.shape[0], (x.shape[2], x.shape[3]), scale, generator=generator)
    return resized_crop(x, boxes, out)
