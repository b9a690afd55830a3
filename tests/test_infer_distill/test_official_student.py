"""Official mode of the student evaluation: paper_top1, MixUp 0.8, fp32, per-epoch cosine, dynamic epochs."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from builders import make_groups, write_dataset
from torch import nn

from infer_data import ConfigError, InferDataset
from infer_distill.evaluate import StudentConfig, config_for, make_config, train_student
from infer_distill.train_student import _lr_factor, paper_epoch


class Split:
    """A 4-class test split of random 8 x 8 RGB images."""

    def __init__(self, n: int = 40) -> None:
        g = torch.Generator().manual_seed(0)
        self.data = torch.randint(0, 256, (n, 3, 8, 8), generator=g, dtype=torch.uint8)
        self.targets = torch.randint(0, 4, (n,), generator=g)
        self.classes = [f"c{i}" for i in range(4)]

    def __len__(self) -> int:
        return len(self.targets)

    def images(self, indices: torch.Tensor) -> torch.Tensor:
        return self.data[torch.as_tensor(indices)]


def test_official_recipe_differs_only_where_the_official_code_does() -> None:
    default, official = make_config("cifar"), make_config("cifar", mode="official")
    changed = {k: (v, official.to_dict()[k]) for k, v in default.to_dict().items() if official.to_dict()[k] != v}
    assert changed == {"mixup_beta": (1.0, 0.8), "amp": (True, False), "schedule": ("cosine", "cosine_epoch"), "paper_every": (0, 10)}
    assert make_config("cifar", mode="official", m=4, labels="dynamic").epochs == 80  # 400 // (4 + 1)
    assert make_config("cifar", mode="official", m=1, labels="dynamic").epochs == 200
    assert make_config("cifar", m=1, labels="dynamic").epochs == 80  # default mode: the paper's fixed 80
    assert make_config("cifar", mode="official", m=4, labels="dynamic", epochs=7).epochs == 7
    assert make_config("cifar", mode="official", amp=True).amp
    with pytest.raises(ConfigError, match=r"--mode 'paper' is not known; choose one of default, official"):
        make_config("cifar", mode="paper")
    with pytest.raises(ConfigError, match=r"paper_every=-1 must be >= 0 \(0 = no paper_top1\)"):
        StudentConfig(paper_every=-1)


def test_paper_epochs_and_per_epoch_cosine() -> None:
    assert [e for e in range(1, 31) if paper_epoch(e, 10, 30)] == [1, 11, 21, 30]
    assert not any(paper_epoch(e, 0, 30) for e in range(1, 31))
    per_epoch = [_lr_factor(s, 12, 0, "cosine_epoch", 4) for s in range(12)]  # 3 epochs of 4 steps
    assert per_epoch == [1.0] * 4 + [0.5 * (1 + math.cos(math.pi / 3))] * 4 + [0.5 * (1 + math.cos(2 * math.pi / 3))] * 4


def test_paper_top1_is_the_best_of_the_official_test_epochs(tmp_path: Path) -> None:
    ds = InferDataset(write_dataset(tmp_path / "ds", make_groups(3, 4, 2, (3, 8, 8))))
    torch.manual_seed(0)
    student = nn.Sequential(nn.Flatten(), nn.Linear(192, 4))
    config = StudentConfig(epochs=7, batch_size=12, eval_every=100, paper_every=3, mixup_beta=0.8, amp=False, schedule="cosine_epoch")
    result = train_student(ds, Split(), config, student=student, device="cpu", progress=False)
    tested = {row["epoch"]: row["top1"] for row in result.history if "top1" in row}
    assert sorted(tested) == [1, 4, 7]
    assert result.paper_top1 == max(tested.values()) and result.top1 == tested[7]
    assert result.to_dict()["paper_top1"] == result.paper_top1
    off = train_student(ds, Split(), StudentConfig(epochs=2, batch_size=12), student=nn.Sequential(nn.Flatten(), nn.Linear(192, 4)),
                        device="cpu", progress=False)
    assert off.paper_top1 is None


def test_config_for_reads_m_from_the_index(tmp_path: Path) -> None:
    root = write_dataset(tmp_path / "ds", make_groups(1, 4, 2, (3, 8, 8)))  # M = 2
    assert config_for(root, "cifar", mode="official", labels="dynamic").epochs == 400 // 3


def test_evaluate_cli_official_mode_reports_paper_top1(tmp_path: Path) -> None:
    from click.testing import CliRunner
    from infer_cli.main import main

    root = write_dataset(tmp_path / "ds", make_groups(1, 10, 1, (1, 28, 28)), name="embedded")
    result = CliRunner().invoke(main, ["evaluate", str(root), "--mode", "official", "--epochs", "2", "--eval-every", "5",
                                       "--batch-size", "10", "--precision", "fp32", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "paper_top1:" in result.output and "best of epochs 1, 1+10, ... and the last" in result.output
    result = CliRunner().invoke(main, ["evaluate", str(root), "--precision", "fp8"])
    assert result.exit_code == 2 and "'fp8' is not one of 'bf16', 'fp32'" in result.output
