"""Static soft labels: the teachers' mean raw logits on every un-augmented instance.

For a group with K bases and M compensators the instances are ``x_k`` (view 0) and
``clamp(x_k + u_j, 0, 1)`` (view j + 1); the label rows follow ``infer_data.indexing``: row
``r = view * K + k``.
"""

from __future__ import annotations

import torch
from torch import nn

from .compensators import channel_view


def group_instances(bases: torch.Tensor, compensators: torch.Tensor) -> torch.Tensor:
    """All instances of G groups in label-row order.

    Args:
        bases: uint8 (G, K, C, H, W).
        compensators: float (G, M, C, H, W), [0, 1]-pixel deltas (M may be 0).

    Returns:
        float32 (G, (M + 1) * K, C, H, W) in [0, 1].
    """
    x0 = bases.to(torch.float32) / 255.0  # (G, K, C, H, W)
    views = [x0] + [(x0 + compensators[:, j:j + 1].to(torch.float32)).clamp(0.0, 1.0) for j in range(compensators.shape[1])]
    return torch.cat(views, dim=1)  # (G, (M+1)*K, C, H, W)


@torch.no_grad()
def static_labels(teachers: list[nn.Module], bases: torch.Tensor, compensators: torch.Tensor, *,
                  mean: list[float], std: list[float], batch: int = 256) -> torch.Tensor:
    """Mean logits of ``teachers`` (eval mode) on every instance of G groups.

    Args:
        teachers: at least one frozen model.
        bases: uint8 (G, K, C, H, W).
        compensators: float (G, M, C, H, W).
        mean, std: per-channel normalization, [0, 1] units.
        batch: instances per forward.

    Returns:
        float32 (G, (M + 1) * K, NC) label logits.
    """
    x = group_instances(bases, compensators)  # (G, R, C, H, W)
    g, r = x.shape[:2]
    flat = ((x - channel_view(mean, 5, x.device)) / channel_view(std, 5, x.device)).flatten(0, 1)  # (G*R, C, H, W)
    total: torch.Tensor | None = None
    for teacher in teachers:
        logits = torch.cat([teacher(flat[i:i + batch]).float() for i in range(0, flat.shape[0], batch)])  # (G*R, NC)
        total = logits if total is None else total + logits
    if total is None:
        raise ValueError("static_labels needs at least one teacher")
    return (total / len(teachers)).view(g, r, -1)
