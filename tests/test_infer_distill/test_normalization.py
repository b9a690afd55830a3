"""Which mean/std a run feeds its teachers: the source's statistics, or the constants pretrained weights expect."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from infer_cli.main import main
from PIL import Image

from infer_data import read_index
from infer_data.errors import ConfigError
from infer_distill import imagefolder
from infer_distill.config import TeacherSpec, create_preset
from infer_distill.pipeline import distill, run_normalization
from infer_distill.sources import NORMALIZATIONS, create_source
from infer_distill.teachers import resolve_weights, weights_normalization

TORCHVISION_IMAGENET = ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])


def _folder(root: Path) -> Path:
    """Three classes of three 20 x 16 RGB images each, in train/ and val/."""
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for c in ("cat", "dog", "eel"):
            (root / split / c).mkdir(parents=True)
            for i in range(3):
                Image.fromarray(rng.integers(0, 256, (20, 16, 3), dtype=np.uint8)).save(root / split / c / f"{i}.png")
    return root


def _imagenet_cfg(data: Path, ckpt: Path, **kw: object):  # type: ignore[no-untyped-def]
    cfg = create_preset("imagenet1k", dataset=f"imagefolder:{data}", image_size=12, ipc=2, teachers=(TeacherSpec("convnet", str(ckpt)),), **kw)
    return dataclasses.replace(cfg, optim=dataclasses.replace(cfg.optim, iterations=2))


def test_imagenet_preset_uses_torchvision_statistics_and_never_computes_the_folders(
        tmp_path: Path, teacher_checkpoint, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    data = _folder(tmp_path / "data")
    ckpt = teacher_checkpoint(tmp_path / "t.pt", "convnet", seed=0, num_classes=3, in_channels=3, image_size=12)
    assert create_preset("imagenet1k").normalization == "imagenet"
    assert [list(v) for v in NORMALIZATIONS["imagenet"]] == list(TORCHVISION_IMAGENET)

    def no_stats(*_: object) -> None:
        raise AssertionError("image-folder statistics computed although the run does not use them")

    with monkeypatch.context() as m:
        m.setattr(imagefolder, "channel_stats", no_stats)
        index = distill(_imagenet_cfg(data, ckpt), tmp_path / "in")
    assert (index.dataset.mean, index.dataset.std) == TORCHVISION_IMAGENET
    assert read_index(tmp_path / "in").dataset.mean == TORCHVISION_IMAGENET[0]
    src = create_source(f"imagefolder:{data}", image_size=12)  # a teacher trained on the folder: its own statistics
    own = run_normalization(_imagenet_cfg(data, ckpt, normalization="source"), src, [{"sha256": "0" * 64}])
    assert own == (src.mean, src.std) != TORCHVISION_IMAGENET


def test_torchvision_weights_carry_their_normalization() -> None:
    for arch in ("resnet18", "mobilenet_v2", "efficientnet_b0", "shufflenet_v2"):
        member = resolve_weights(arch, "IMAGENET1K_V1", num_classes=1000, in_channels=3, image_size=224)
        assert weights_normalization(member) == TORCHVISION_IMAGENET, arch


def test_weights_under_another_normalization_are_refused(tmp_path: Path) -> None:
    mean, std = weights_normalization(resolve_weights("resnet18", "IMAGENET1K_V1", num_classes=1000, in_channels=3, image_size=224))
    info = {"sha256": "0" * 64, "weights": "ResNet18_Weights.IMAGENET1K_V1", "mean": mean, "std": std}
    src = create_source(f"imagefolder:{_folder(tmp_path / 'data')}", image_size=12)
    cfg = create_preset("cifar10", dataset=src.spec, ipc=2, teachers=(TeacherSpec("resnet18", "IMAGENET1K_V1"),))
    with pytest.raises(ConfigError, match=r"^--teacher resnet18=IMAGENET1K_V1: these weights expect images normalized with mean "
                                          r"\[0.485, 0.456, 0.406\] and std \[0.229, 0.224, 0.225\], but this run uses "
                                          r"--normalization source; pass --normalization imagenet$"):
        run_normalization(cfg, src, [info])
    assert run_normalization(dataclasses.replace(cfg, normalization="imagenet"), src, [info]) == TORCHVISION_IMAGENET
    with pytest.raises(ConfigError, match=r"--normalization imagenet holds 3-channel statistics but embedded has 1 channel\(s\); "
                                          r"use --normalization source"):
        run_normalization(create_preset("embedded", normalization="imagenet"), create_source("embedded"), [])


def test_cli_normalization_and_shard_size_errors(tmp_path: Path) -> None:
    def run(*args: str) -> tuple[int, str]:
        result = CliRunner().invoke(main, ["distill", "--ipc", "2", "--teacher", "convnet=x.pt", "--out", str(tmp_path / "o"), *args])
        return result.exit_code, result.output

    code, out = run("--normalization", "cifar")
    assert code == 1 and "Error: --normalization 'cifar' is not known; choose one of cifar10, cifar100, imagenet, source, tinyimagenet" in out
    code, out = run("--shard-size", "-1")
    assert code == 1 and "Error: --shard-size must be a number of groups >= 1 (or 0 for the default), got -1" in out
    code, out = run("--help")
    assert code == 0 and "--shard-size" in out and "--normalization" in out
