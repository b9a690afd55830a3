"""Universal feature compensator optimization (INFER), many groups per batch.

For a teacher f and G groups of K base images ``P^g`` (one per class), each group gets one
compensator ``u^g`` (1, C, H, W), zero-initialized and added to all its bases. Per step::

    x = clamp(P^g + u^g, 0, 1)                           # (G, K, C, H, W), [0, 1] pixels
    x = augment_g(x)                                     # per-group shift / crop / flip
    L_g = CE(f(norm(x)), classes) mean over K + r_bn * BN_g  # BN_g: per-group BN-statistics term
    loss = sum_g L_g                                     # groups do not interact

Because the teacher is frozen in eval mode, its BN layers normalize with running statistics, so
every image's logits depend on its own group's ``u`` only; with the BN term computed per group,
``d loss / d u^g = d L_g / d u^g`` exactly, and Adam is elementwise, so batching G groups gives the
same compensators as optimizing them one at a time. The optimization variable lives in
normalized-image units (as in the reference code, so ``lr`` keeps its meaning); the result is
returned in [0, 1]-pixel units, clipped to [-1, 1] after every step. With ``optim.clip="save"``
(the official code's choice) the teacher sees the unclamped ``P^g + u^g`` and nothing is
projected; only the returned compensator is clipped to [-1, 1], which changes no stored
composite ``clamp(P + u, 0, 1)`` (decision 0020).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .augment import augment_groups
from .bn import bn_statistics
from .config import AugmentConfig, OptimConfig

logger = logging.getLogger(__name__)


@dataclass
class CompensatorResult:
    """What one optimization of G compensators returns."""

    compensators: torch.Tensor  # float32 (G, C, H, W), [0, 1]-pixel deltas
    losses: torch.Tensor  # float32 (iterations, G), per-group loss at each step
    ce: torch.Tensor  # float32 (iterations, G), the cross-entropy part


def freeze(model: nn.Module) -> nn.Module:
    """Eval mode and no parameter gradients; returns the model."""
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def channel_view(values: list[float] | torch.Tensor, ndim: int = 5, device: torch.device | str | None = None) -> torch.Tensor:
    """Per-channel values as float32 of shape (1, ..., C, 1, 1) with ``ndim`` dims, on ``device``."""
    t = torch.as_tensor(values, dtype=torch.float32, device=device)
    return t.view(*([1] * (ndim - 3)), -1, 1, 1)


def cosine_lr(base: float, step: int, total: int) -> float:
    """Cosine decay from ``base`` at step 0 towards 0 at ``total``.

    Example:
        >>> cosine_lr(1.0, 0, 10), round(cosine_lr(1.0, 5, 10), 6)
        (1.0, 0.5)
    """
    return 0.5 * base * (1.0 + math.cos(math.pi * step / total))


def group_loss(teacher: nn.Module, x: torch.Tensor, classes: torch.Tensor, *, mean: torch.Tensor, std: torch.Tensor,
               optim: OptimConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-group INFER loss on already augmented images.

    Args:
        teacher: frozen, eval-mode model.
        x: float (G, K, C, H, W) in [0, 1].
        classes: int64 (G, K) target class of every image.
        mean, std: (1, 1, C, 1, 1) normalization of the source.
        optim: supplies r_bn and the first-BN multiplier.

    Returns:
        ``(loss, ce)``, both float (G,).
    """
    g, k = classes.shape
    xn = ((x - mean) / std).flatten(0, 1)  # (G*K, C, H, W)
    with bn_statistics(teacher, g) as stats:
        logits = teacher(xn)  # (G*K, NC)
        bn = stats.loss(optim.first_bn_multiplier)  # (G,)
    ce = F.cross_entropy(logits, classes.flatten(), reduction="none").view(g, k).mean(1)  # (G,)
    return ce + optim.r_bn * bn.to(ce.device), ce


def optimize_compensators(
    teacher: nn.Module,
    bases: torch.Tensor,
    classes: torch.Tensor,
    generators: list[torch.Generator],
    *,
    mean: list[float],
    std: list[float],
    optim: OptimConfig,
    augment: AugmentConfig,
    on_step: Callable[[int], None] | None = None,
) -> CompensatorResult:
    """Optimize one compensator per group against ``teacher``, all groups in one batch.

    Args:
        teacher: frozen, eval-mode model (see :func:`freeze`).
        bases: uint8 (G, K, C, H, W) base images, on the teacher's device (everything runs there).
        classes: int64 (G, K) class of each base.
        generators: G CPU generators, one per group (augmentation streams).
        mean, std: per-channel normalization of the source, [0, 1] units.
        optim, augment: settings (DESIGN section 2).
        on_step: called with the step number after every step.

    Returns:
        The compensators in [0, 1]-pixel units and the per-group loss history.
    """
    g, _, c, h, w = bases.shape
    dev = bases.device
    mean_t, std_t = channel_view(mean, device=dev), channel_view(std, device=dev)  # (1, 1, C, 1, 1)
    x0 = bases.to(torch.float32) / 255.0  # (G, K, C, H, W)
    z = torch.zeros(g, 1, c, h, w, device=dev, requires_grad=True)  # (G, 1, C, H, W), normalized units
    bound = 1.0 / std_t  # |u| <= 1 pixel range, in normalized units
    clamped = optim.clip == "forward"
    opt = torch.optim.Adam([z], lr=optim.lr, betas=optim.betas)
    losses = torch.empty(optim.iterations, g, device=dev)
    ces = torch.empty(optim.iterations, g, device=dev)
    for step in range(optim.iterations):
        for group in opt.param_groups:
            group["lr"] = cosine_lr(optim.lr, step, optim.iterations)
        x = x0 + z * std_t  # (G, K, C, H, W)
        if clamped:
            x = x.clamp(0.0, 1.0)
        x = augment_groups(x, generators, augment)
        per_group, ce = group_loss(teacher, x, classes, mean=mean_t, std=std_t, optim=optim)
        opt.zero_grad(set_to_none=True)
        per_group.sum().backward()
        opt.step()
        if clamped:
            with torch.no_grad():
                z.copy_(torch.maximum(torch.minimum(z, bound), -bound))
        losses[step], ces[step] = per_group.detach(), ce.detach()
        if on_step is not None:
            on_step(step)
    # |u| > 1 composes like |u| = 1 (clamp(base + u, 0, 1) with base in [0, 1]): clipping on save loses nothing
    u = (z.detach() * std_t).squeeze(1).clamp(-1.0, 1.0)  # (G, C, H, W), pixel units
    return CompensatorResult(u.cpu().contiguous(), losses.cpu(), ces.cpu())
