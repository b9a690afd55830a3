"""The BatchNorm-statistics term of the compensator loss, with per-group statistics.

Forward hooks on every ``BatchNorm2d`` record the statistics of the layer's *input*: for an input
of G groups of K images, (G*K, C, H, W) is viewed as (G, K, C, H*W) and reduced over the K images
and the H*W positions, giving a mean and a biased variance per group and channel. A group's term
is the sum over the layers that fired in this forward of
``w_l * (||mu - running_mean||_2 + ||var - running_var||_2)`` with ``w`` = first-BN multiplier for
the first layer that fired and 1 for the others (INFER / SRe2L). Layers that did not fire add
nothing, so unused branches cannot inflate the loss.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn


class BNStatistics:
    """Collects per-group BN input statistics during one forward; see the module docstring."""

    def __init__(self, groups: int) -> None:
        self.groups = groups
        self.records: list[tuple[nn.BatchNorm2d, torch.Tensor, torch.Tensor]] = []  # (layer, mean (G,C), var (G,C))

    def hook(self, module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        """Forward hook: record the per-group mean and biased variance of the layer input."""
        x = inputs[0]  # (G*K, C, H, W)
        b, c = x.shape[:2]
        xg = x.reshape(self.groups, b // self.groups, c, -1)  # (G, K, C, H*W)
        # E[x] and E[x^2] reduced over the contiguous H*W axis first: about 2x faster on CPU than
        # var_mean over (K, H*W), forward and backward; fp32 cancellation stays far below the loss scale
        mean = xg.mean(dim=3).mean(dim=1)  # (G, C)
        var = ((xg * xg).mean(dim=3).mean(dim=1) - mean * mean).clamp_min(0.0)  # (G, C), biased
        self.records.append((module, mean, var))  # type: ignore[arg-type]

    def loss(self, first_multiplier: float = 10.0) -> torch.Tensor:
        """Per-group BN term, float (G,); zeros if no layer fired."""
        total = torch.zeros(self.groups)
        for i, (layer, mean, var) in enumerate(self.records):
            rm = layer.running_mean.to(mean.dtype)  # (C,)
            rv = layer.running_var.to(var.dtype)  # (C,)
            term = torch.linalg.vector_norm(mean - rm, dim=1) + torch.linalg.vector_norm(var - rv, dim=1)  # (G,)
            total = total.to(term.device) + term * (first_multiplier if i == 0 else 1.0)
        return total

    def clear(self) -> None:
        """Forget the statistics of the previous forward."""
        self.records.clear()


def bn_layers(model: nn.Module) -> list[nn.BatchNorm2d]:
    """The model's BatchNorm2d layers that track running statistics, in module order."""
    return [m for m in model.modules() if isinstance(m, nn.BatchNorm2d) and m.track_running_stats and m.running_mean is not None]


@contextmanager
def bn_statistics(model: nn.Module, groups: int) -> Iterator[BNStatistics]:
    """Attach recording hooks to every BN layer for the duration of the ``with`` block."""
    stats = BNStatistics(groups)
    handles = [layer.register_forward_hook(stats.hook) for layer in bn_layers(model)]
    try:
        yield stats
    finally:
        for h in handles:
            h.remove()
