"""Batch MixUp for dense soft labels (INFER's evaluation protocol, no relabeling).

One lambda ~ Beta(beta, beta) per batch, folded to lambda' = max(lambda, 1 - lambda) >= 0.5,
so each mixed sample stays closer to its own image; images and their label logits are mixed
with the same lambda' against a shuffled copy of the batch.
"""

from __future__ import annotations

import numpy as np
import torch

from .errors import ConfigError


def sample_lambda(beta: float, generator: torch.Generator) -> float:
    """lambda' = max(lambda, 1 - lambda) with lambda ~ Beta(beta, beta), from a CPU generator."""
    seed = int(torch.randint(0, 2**62, (1,), generator=generator).item())
    lam = float(np.random.default_rng(seed).beta(beta, beta))
    return max(lam, 1.0 - lam)


def mixup_batch(
    images: torch.Tensor, targets: torch.Tensor, *, beta: float = 1.0, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Mix a batch with a shuffled copy of itself.

    Args:
        images: float (B, C, H, W) on any device.
        targets: float (B, NC) soft-label logits (or probabilities), same device.
        beta: Beta distribution parameter, > 0.
        generator: a CPU ``torch.Generator``; draws lambda and the permutation.

    Returns:
        ``(mixed_images, mixed_targets, lambda')``; the inputs are not modified.

    Raises:
        ConfigError: beta <= 0, or images and targets of different batch sizes.
    """
    if beta <= 0:
        raise ConfigError(f"mixup beta must be > 0, got {beta}")
    if images.shape[0] != targets.shape[0]:
        raise ConfigError(f"mixup: {images.shape[0]} images but {targets.shape[0]} targets")
    lam = sample_lambda(beta, generator)
    perm = torch.randperm(images.shape[0], generator=generator).to(images.device, non_blocking=True)
    mixed = images.mul(lam).add_(images[perm], alpha=1.0 - lam)  # (B, C, H, W)
    mixed_t = targets.to(torch.float32).mul(lam).add_(targets[perm].to(torch.float32), alpha=1.0 - lam)  # (B, NC)
    return mixed, mixed_t, lam


class BatchMixup:
    """Callable MixUp holding its own seeded CPU generator.

    Args:
        beta: Beta(beta, beta) parameter (1.0 = uniform lambda).
        seed: seed of the generator, or pass ``generator``.
    """

    def __init__(self, beta: float = 1.0, *, seed: int = 0, generator: torch.Generator | None = None) -> None:
        if beta <= 0:
            raise ConfigError(f"mixup beta must be > 0, got {beta}")
        self.beta = beta
        self.generator = generator if generator is not None else torch.Generator().manual_seed(seed)

    def __call__(self, images: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mixed ``(images, targets)``; see :func:`mixup_batch`."""
        mixed, mixed_t, _ = mixup_batch(images, targets, beta=self.beta, generator=self.generator)
        return mixed, mixed_t
