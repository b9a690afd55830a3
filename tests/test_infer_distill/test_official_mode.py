"""Official mode of the producer: unclamped forward with clip on save, roll jitter, fixed normalization."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from infer_data.errors import ConfigError
from infer_distill.augment import augment_groups
from infer_distill.compensators import freeze, optimize_compensators
from infer_distill.config import AugmentConfig, OptimConfig, create_preset, official
from infer_distill.sources import NORMALIZATIONS
from infer_distill.teachers import create_teacher


class Probe(nn.Module):
    """Records what the teacher is fed; a BN layer so the loss has its BN term."""

    def __init__(self) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(1)
        self.head = nn.Linear(16, 2)
        self.seen: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(x.detach().clone())
        return self.head(self.bn(x).flatten(1))


def _optimize(teacher: nn.Module, clip: str, *, iterations: int = 30, lr: float = 2.0):
    bases = torch.full((1, 2, 1, 4, 4), 250, dtype=torch.uint8)  # nearly white: + u saturates quickly
    return optimize_compensators(teacher, bases, torch.tensor([[0, 1]]), [torch.Generator().manual_seed(0)],
                                 mean=[0.5], std=[0.25], optim=OptimConfig(iterations=iterations, lr=lr, clip=clip),
                                 augment=AugmentConfig(jitter=0))


def test_clip_save_feeds_the_teacher_unclamped_and_stores_clipped_deltas() -> None:
    torch.manual_seed(0)
    forward, save = freeze(Probe()), freeze(Probe())
    save.load_state_dict(forward.state_dict())
    res_forward, res_save = _optimize(forward, "forward"), _optimize(save, "save")
    lo, hi = (0 - 0.5) / 0.25, (1 - 0.5) / 0.25  # [0, 1] pixels in normalized units
    assert all(lo - 1e-6 <= float(x.min()) and float(x.max()) <= hi + 1e-6 for x in forward.seen)
    assert max(float(x.max()) for x in save.seen) > hi + 0.5 or min(float(x.min()) for x in save.seen) < lo - 0.5
    for res in (res_forward, res_save):
        assert res.compensators.abs().max() <= 1.0
    assert not torch.equal(res_forward.compensators, res_save.compensators)


def test_clip_forward_is_the_default_and_unknown_modes_are_errors() -> None:
    assert OptimConfig().clip == "forward" and AugmentConfig().jitter_mode == "shift"
    with pytest.raises(ConfigError, match=r"--clip 'never' is not known; choose one of forward, save"):
        OptimConfig(clip="never")
    with pytest.raises(ConfigError, match=r"--jitter-mode 'wrap' is not known; choose one of shift, roll"):
        AugmentConfig(jitter_mode="wrap")
    with pytest.raises(ConfigError, match=r"--mode 'paper' is not known; choose one of default, official"):
        create_preset("cifar10", mode="paper")


def test_roll_jitter_wraps_by_zero_to_jitter_pixels() -> None:
    x = torch.arange(2 * 36, dtype=torch.float32).view(1, 2, 1, 6, 6)
    cfg = AugmentConfig(jitter=2, jitter_mode="roll")
    seen = set()
    for seed in range(40):
        y = augment_groups(x, [torch.Generator().manual_seed(seed)], cfg)
        shift = next((dy, dx) for dy in range(3) for dx in range(3) if torch.equal(y[0], x[0].roll((dy, dx), (-2, -1))))
        seen.add(shift)
        assert torch.equal(torch.sort(y.flatten()).values, torch.sort(x.flatten()).values)  # nothing lost: wrapped
    assert seen == {(dy, dx) for dy in range(3) for dx in range(3)}


def test_official_preset_uses_the_official_constants() -> None:
    cfg = create_preset("cifar10", mode="official", ipc=10)
    assert (cfg.normalization, cfg.optim.clip, cfg.augment.jitter_mode, cfg.preset) == ("cifar10", "save", "roll", "cifar10+official")
    assert NORMALIZATIONS["cifar10"] == ((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010))
    assert NORMALIZATIONS["cifar100"] == ((0.5071, 0.4867, 0.4408), (0.2675, 0.2565, 0.2761))
    assert official(create_preset("cifar100")).normalization == "cifar100"
    assert official(create_preset("imagenet1k")).normalization == "imagenet"
    assert official(create_preset("embedded")).normalization == "source"  # grayscale: no official constants
    assert create_preset("cifar10", mode="official", normalization="source").normalization == "source"  # overrides win
    assert create_preset("cifar10") == create_preset("cifar10", mode="default")


def test_official_mode_runs_on_a_real_teacher() -> None:
    torch.manual_seed(0)
    teacher = create_teacher("shufflenet_g2", 3, image_size=8)
    with torch.no_grad():
        teacher.train()(torch.randn(16, 3, 8, 8))
    bases = torch.randint(0, 256, (2, 3, 3, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    res = optimize_compensators(freeze(teacher), bases, torch.arange(3).expand(2, 3), [torch.Generator().manual_seed(g) for g in range(2)],
                                mean=[0.5] * 3, std=[0.2] * 3, optim=OptimConfig(iterations=5, clip="save"),
                                augment=AugmentConfig(jitter=2, jitter_mode="roll"))
    assert res.compensators.shape == (2, 3, 8, 8) and res.compensators.abs().max() <= 1.0
    assert torch.isfinite(res.losses).all()


def test_distill_cli_official_mode_records_its_choices(tmp_path: Path, embedded_teachers: dict[str, Path]) -> None:
    from click.testing import CliRunner
    from infer_cli.main import main

    from infer_data import read_index

    args = ["distill", "--ipc", "2", "--teacher", f"convnet={embedded_teachers['a']}", "--iterations", "2", "--no-progress"]
    result = CliRunner().invoke(main, [*args, "--mode", "official", "--jitter", "3", "--out", str(tmp_path / "o")])
    assert result.exit_code == 0, result.output
    cfg = read_index(tmp_path / "o").provenance["config"]
    assert (cfg["preset"], cfg["optim"]["clip"], cfg["augment"]["jitter_mode"], cfg["augment"]["jitter"]) == ("embedded+official", "save", "roll", 3)
    result = CliRunner().invoke(main, [*args, "--clip", "save", "--jitter-mode", "shift", "--out", str(tmp_path / "c")])
    cfg = read_index(tmp_path / "c").provenance["config"]
    assert result.exit_code == 0 and (cfg["preset"], cfg["optim"]["clip"], cfg["augment"]["jitter_mode"]) == ("embedded", "save", "shift")
    result = CliRunner().invoke(main, [*args, "--mode", "paper", "--out", str(tmp_path / "p")])
    assert result.exit_code == 2 and "'paper' is not one of 'default', 'official'" in result.output


def test_teacher_training_uses_the_named_normalization() -> None:
    from infer_distill.sources import create_source
    from infer_distill.teacher_train import TeacherTrainConfig, train_teacher

    with pytest.raises(ConfigError, match=r"--normalization cifar10 holds 3-channel statistics but embedded has 1 channel\(s\); "
                                          r"use --normalization source"):
        train_teacher(TeacherTrainConfig(epochs=1, normalization="cifar10"), create_source("embedded", "train"))
