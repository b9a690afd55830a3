"""BN term, per-group batching, loss descent, jitter, clipping and static labels."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from infer_distill.augment import _shift, augment_groups
from infer_distill.bases import seed_for
from infer_distill.bn import bn_statistics
from infer_distill.compensators import cosine_lr, freeze, optimize_compensators
from infer_distill.config import AugmentConfig, OptimConfig
from infer_distill.labels import group_instances, static_labels
from infer_distill.teachers import create_teacher


class TwoBN(nn.Module):
    """bn1 -> bn2 on the main path; bn_unused never fires."""

    def __init__(self) -> None:
        super().__init__()
        self.bn1, self.bn2, self.bn_unused = nn.BatchNorm2d(2), nn.BatchNorm2d(2), nn.BatchNorm2d(2)
        self.bn1.running_mean.copy_(torch.tensor([1.0, -1.0]))
        self.bn1.running_var.copy_(torch.tensor([2.0, 0.5]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn2(self.bn1(x))


def test_bn_term_equals_direct_computation() -> None:
    model = TwoBN().eval()
    x = torch.tensor([  # G=2 groups of K=2 images, C=2, H=1, W=2
        [[[0.0, 2.0]], [[1.0, 1.0]]], [[[4.0, 0.0]], [[-1.0, 3.0]]],
        [[[1.0, 1.0]], [[0.0, 0.0]]], [[[3.0, 3.0]], [[2.0, -2.0]]],
    ])
    with bn_statistics(model, groups=2) as stats:
        y = model(x)
        got = stats.loss(first_multiplier=10.0)
    assert len(stats.records) == 2  # bn_unused did not fire and does not count
    direct = []
    layer_inputs = [x.numpy(), ((x - model.bn1.running_mean.view(1, 2, 1, 1)) / torch.sqrt(model.bn1.running_var.view(1, 2, 1, 1) + 1e-5)).numpy()]
    rms = [(np.array([1.0, -1.0]), np.array([2.0, 0.5])), (np.zeros(2), np.ones(2))]
    for g in range(2):
        total = 0.0
        for layer, (inp, (rm, rv)) in enumerate(zip(layer_inputs, rms)):
            xs = inp[2 * g: 2 * g + 2]  # (K, C, H, W)
            mu = np.array([xs[:, c].mean() for c in range(2)])
            var = np.array([((xs[:, c] - xs[:, c].mean()) ** 2).mean() for c in range(2)])  # biased
            term = np.sqrt(((mu - rm) ** 2).sum()) + np.sqrt(((var - rv) ** 2).sum())
            total += term * (10.0 if layer == 0 else 1.0)
        direct.append(total)
    assert torch.allclose(got, torch.tensor(direct, dtype=torch.float32), rtol=1e-5)
    assert y.shape == x.shape


def _teacher() -> nn.Module:
    torch.manual_seed(0)
    model = create_teacher("convnet", 4, in_channels=1, image_size=12)
    with torch.no_grad():
        model.train()(torch.rand(32, 1, 12, 12))
    return freeze(model)


def _bases(g: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (g, 4, 1, 12, 12), generator=gen, dtype=torch.uint8), torch.arange(4).expand(g, 4)


def _run(teacher: nn.Module, bases: torch.Tensor, classes: torch.Tensor, groups: list[int], iterations: int = 12):
    gens = [torch.Generator().manual_seed(seed_for(7, g, 0)) for g in groups]
    return optimize_compensators(teacher, bases, classes, gens, mean=[0.4], std=[0.3],
                                 optim=OptimConfig(iterations=iterations, lr=0.1), augment=AugmentConfig(jitter=2))


def test_batched_groups_equal_one_group_at_a_time() -> None:
    teacher = _teacher()
    bases, classes = _bases(3)
    batched = _run(teacher, bases, classes, [0, 1, 2])
    for g in range(3):
        alone = _run(teacher, bases[g:g + 1], classes[g:g + 1], [g])
        assert torch.allclose(batched.compensators[g], alone.compensators[0], atol=1e-5)
        assert torch.allclose(batched.losses[:, g], alone.losses[:, 0], rtol=1e-4)
    assert batched.compensators.abs().max() > 1e-3  # it actually moved


def test_loss_falls_and_compensators_are_clipped() -> None:
    teacher = _teacher()
    bases, classes = _bases(2)
    res = _run(teacher, bases, classes, [0, 1], iterations=40)
    assert res.losses.shape == (40, 2)
    assert (res.losses[-5:].mean(0) < 0.8 * res.losses[:5].mean(0)).all()
    assert res.compensators.shape == (2, 1, 12, 12) and res.compensators.abs().max() <= 1.0 + 1e-6


def test_shift_pads_instead_of_wrapping() -> None:
    x = torch.arange(1, 17, dtype=torch.float32).view(1, 1, 4, 4)
    y = _shift(x, 1, 2, pad=2)  # down 1, right 2
    assert torch.equal(y[0, 0, 0], torch.zeros(4))  # no wrapped row at the top
    assert torch.equal(y[0, 0, :, :2], torch.zeros(4, 2))  # no wrapped columns on the left
    assert torch.equal(y[0, 0, 1:, 2:], x[0, 0, :3, :2])


def test_augment_uses_each_groups_own_stream() -> None:
    x = torch.rand(2, 3, 1, 16, 16)
    cfg = AugmentConfig(jitter=3, resized_crop=True, flip=True, crop_scale=(0.3, 1.0))
    both = augment_groups(x, [torch.Generator().manual_seed(1), torch.Generator().manual_seed(2)], cfg)
    second = augment_groups(x[1:], [torch.Generator().manual_seed(2)], cfg)
    assert both.shape == x.shape and torch.equal(both[1], second[0])


def test_cosine_schedule() -> None:
    assert cosine_lr(0.25, 0, 100) == 0.25 and cosine_lr(0.25, 100, 100) == 0.0


def test_static_labels_are_mean_teacher_logits_in_row_order() -> None:
    t1, t2 = _teacher(), freeze(create_teacher("convnet", 4, in_channels=1, image_size=12))
    bases, _ = _bases(2)
    comps = torch.rand(2, 3, 1, 12, 12) - 0.5
    labels = static_labels([t1, t2], bases, comps, mean=[0.4], std=[0.3], batch=5)
    assert labels.shape == (2, 4 * 4, 4)
    g, j, k = 1, 2, 3  # group 1, view 2 (compensator 1), slot 3
    x = ((bases[g, k].float() / 255 + comps[g, j - 1]).clamp(0, 1) - 0.4) / 0.3
    with torch.no_grad():
        want = (t1(x[None]) + t2(x[None])) / 2
    assert torch.allclose(labels[g, j * 4 + k], want[0], atol=1e-5)
    inst = group_instances(bases, comps)
    assert torch.equal(inst[0, 2], bases[0, 2].float() / 255)  # view 0 is the base alone


def test_nothing_fires_gives_zero_bn_term() -> None:
    model = nn.Sequential(nn.Conv2d(1, 1, 1))
    with bn_statistics(model, groups=3) as stats:
        model(torch.rand(6, 1, 2, 2))
    assert torch.equal(stats.loss(), torch.zeros(3))


@pytest.mark.parametrize("arch", ["shufflenet_v2", "resnet18"])
def test_real_architectures_batch_equal(arch: str) -> None:
    torch.manual_seed(0)
    teacher = create_teacher(arch, 4, in_channels=1, image_size=8)
    with torch.no_grad():
        teacher.train()(torch.rand(16, 1, 8, 8))
    teacher = freeze(teacher)
    bases = torch.randint(0, 256, (2, 4, 1, 8, 8), generator=torch.Generator().manual_seed(1), dtype=torch.uint8)
    classes = torch.arange(4).expand(2, 4)
    run = lambda b, c, gs: optimize_compensators(teacher, b, c, [torch.Generator().manual_seed(g) for g in gs], mean=[0.4], std=[0.3],
                                                 optim=OptimConfig(iterations=3), augment=AugmentConfig(jitter=1))
    batched = run(bases, classes, [0, 1])
    alone = run(bases[1:], classes[1:], [1])
    assert torch.allclose(batched.compensators[1], alone.compensators[0], atol=1e-5)
