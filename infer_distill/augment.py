"""Per-group random augmentation for compensator optimization, with one generator per group.

Each group draws its own parameters from its own ``torch.Generator`` every step, so a group sees
the same augmentation whether it is optimized alone or batched with others. Shifts pad with
zeros and crop (no wrap-around); ``jitter_mode="roll"`` reproduces the official code instead:
``torch.roll`` by 0..jitter pixels per axis, wrapping the image. Large images can also get a
random-resized crop back to full size and a horizontal flip.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .config import AugmentConfig


def _crop_box(h: int, w: int, scale: tuple[float, float], gen: torch.Generator) -> tuple[int, int, int, int]:
    """(top, left, height, width) of a random-resized crop, aspect ratio in [3/4, 4/3]."""
    area = h * w
    for _ in range(10):
        u = torch.rand(2, generator=gen, dtype=torch.float64).tolist()
        target = area * (scale[0] + (scale[1] - scale[0]) * u[0])
        ratio = math.exp(math.log(3 / 4) + (math.log(4 / 3) - math.log(3 / 4)) * u[1])
        cw, ch = round(math.sqrt(target * ratio)), round(math.sqrt(target / ratio))
        if 0 < cw <= w and 0 < ch <= h:
            top = int(torch.randint(0, h - ch + 1, (1,), generator=gen))
            left = int(torch.randint(0, w - cw + 1, (1,), generator=gen))
            return top, left, ch, cw
    return 0, 0, h, w


def _shift(x: torch.Tensor, dy: int, dx: int, pad: int) -> torch.Tensor:
    """Shift (K, C, H, W) by (dy, dx) pixels, filling with zeros; |dy|, |dx| <= pad."""
    h, w = x.shape[-2:]
    xp = F.pad(x, (pad, pad, pad, pad))  # (K, C, H + 2p, W + 2p)
    return xp[..., pad - dy: pad - dy + h, pad - dx: pad - dx + w]


def augment_groups(x: torch.Tensor, gens: list[torch.Generator], cfg: AugmentConfig) -> torch.Tensor:
    """Augment each group of ``x`` with its own generator.

    Args:
        x: float (G, K, C, H, W) images in [0, 1].
        gens: G CPU generators, advanced by this call.
        cfg: what to apply.

    Returns:
        float (G, K, C, H, W), differentiable w.r.t. ``x``.
    """
    out = []
    h, w = x.shape[-2:]
    for g, gen in enumerate(gens):
        xg = x[g]  # (K, C, H, W)
        if cfg.resized_crop:
            top, left, ch, cw = _crop_box(h, w, cfg.crop_scale, gen)
            xg = F.interpolate(xg[..., top:top + ch, left:left + cw], size=(h, w), mode="bilinear", align_corners=False)
        if cfg.flip and bool(torch.rand(1, generator=gen) < 0.5):
            xg = xg.flip(-1)
        if cfg.jitter > 0 and cfg.jitter_mode == "roll":
            dy, dx = torch.randint(0, cfg.jitter + 1, (2,), generator=gen).tolist()
            xg = torch.roll(xg, shifts=(dy, dx), dims=(-2, -1))  # official: wraps around, offsets 0..jitter
        elif cfg.jitter > 0:
            dy, dx = torch.randint(-cfg.jitter, cfg.jitter + 1, (2,), generator=gen).tolist()
            xg = _shift(xg, dy, dx, cfg.jitter)
        out.append(xg)
    return torch.stack(out)  # (G, K, C, H, W)
