"""MixUp for dense soft labels: convex, lambda' >= 0.5, deterministic with a generator."""

from __future__ import annotations

import pytest
import torch

from infer_data import BatchMixup, ConfigError, mixup_batch


def test_mixed_batch_is_a_convex_combination_with_lambda_at_least_half() -> None:
    g = torch.Generator().manual_seed(0)
    images = torch.rand(16, 3, 4, 4)
    targets = torch.randn(16, 10)
    lams = []
    for _ in range(50):
        mixed, mixed_t, lam = mixup_batch(images, targets, beta=1.0, generator=g)
        lams.append(lam)
        assert 0.5 <= lam <= 1.0
        # recover the partner of each row: mixed = lam * x + (1 - lam) * x[perm]
        partner = (mixed - lam * images) / (1 - lam) if lam < 1 else images
        idx = torch.cdist(partner.flatten(1), images.flatten(1)).argmin(1)
        torch.testing.assert_close(mixed, lam * images + (1 - lam) * images[idx], atol=1e-5, rtol=0)
        torch.testing.assert_close(mixed_t, lam * targets + (1 - lam) * targets[idx], atol=1e-5, rtol=0)
        assert sorted(idx.tolist()) == list(range(16))
    assert min(lams) < 0.6 and max(lams) > 0.9


def test_mixup_is_deterministic_and_validates() -> None:
    x, y = torch.rand(8, 1, 2, 2), torch.randn(8, 3)
    a = BatchMixup(0.8, seed=3)(x, y)
    b = BatchMixup(0.8, seed=3)(x, y)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    with pytest.raises(ConfigError, match="mixup beta must be > 0, got 0"):
        BatchMixup(0)
    with pytest.raises(ConfigError, match="mixup: 8 images but 3 targets"):
        mixup_batch(x, y[:3], generator=torch.Generator())
