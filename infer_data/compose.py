"""Composite instances x_i + u_j from stored factors, vectorized, on any device."""

from __future__ import annotations

import torch


def compose(bases: torch.Tensor, comps: torch.Tensor, group: torch.Tensor, view: torch.Tensor, slot: torch.Tensor) -> torch.Tensor:
    """Build a batch of instances ``clamp(base / 255 + u, 0, 1)``.

    Args:
        bases: uint8 (G, K, C, H, W) base images.
        comps: float (G, M, C, H, W) compensators, [0, 1]-range pixel deltas.
        group, view, slot: int64 (B,) coordinates from :func:`infer_data.indexing.expand`;
            view 0 is the base alone, view j >= 1 adds compensator j - 1.

    Returns:
        float32 (B, C, H, W) in [0, 1], on the device of ``bases``.
    """
    k, m = bases.shape[1], comps.shape[1]
    x = bases.flatten(0, 1).index_select(0, group * k + slot).to(torch.float32).div_(255.0)  # (B, C, H, W)
    if m == 0:
        return x
    u = comps.flatten(0, 1).index_select(0, group * m + (view - 1).clamp(min=0))  # (B, C, H, W)
    x.addcmul_(u.to(torch.float32), (view > 0).to(torch.float32).view(-1, 1, 1, 1))
    return x.clamp_(0.0, 1.0)


def normalize(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """``(x - mean) / std`` per channel; x (B, C, H, W) or (C, H, W), mean/std (C,)."""
    shape = (-1, 1, 1)
    return (x - mean.view(shape)) / std.view(shape)
