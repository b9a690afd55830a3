"""The budget table of DESIGN section 2, base selection, and the config dataclasses."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from infer_data.errors import ConfigError, RegistryError
from infer_distill.bases import seed_for, select_bases
from infer_distill.budget import num_groups, stored_images
from infer_distill.config import (
    DistillConfig,
    OptimConfig,
    TeacherSpec,
    create_preset,
    list_presets,
)


@pytest.mark.parametrize("k,m,ipc,g", [
    (10, 4, 10, 7), (100, 4, 10, 9), (1000, 3, 10, 9), (1000, 3, 50, 49), (10, 4, 50, 35), (100, 4, 50, 48),
    (10, 0, 10, 10), (10, 2, 10, 8), (10, 4, 2, 1),
])
def test_budget_table(k: int, m: int, ipc: int, g: int) -> None:
    assert num_groups(ipc, k, m) == g
    assert stored_images(g, k, m) <= ipc * k
    assert stored_images(g + 1, k, m) > ipc * k  # G is the largest that fits


def test_cifar10_ipc10_stores_98_images() -> None:
    assert stored_images(num_groups(10, 10, 4), 10, 4) == 98


def test_budget_too_small_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match=r"--ipc 1 is too small for one group: a group stores K\+M=14 images .* use --ipc 2 or more"):
        num_groups(1, 10, 4)
    with pytest.raises(ConfigError, match="--ipc must be >= 1"):
        num_groups(0, 10, 0)


def test_bases_one_per_class_never_reused_and_seeded() -> None:
    targets = torch.arange(60) % 6  # 10 images of each of 6 classes
    plan = select_bases(targets, 6, 10, seed=3)
    assert plan.shape == (10, 6)
    assert (targets[plan] == torch.arange(6)).all()  # column k holds class k
    assert plan.unique().numel() == 60  # nothing used twice
    assert torch.equal(plan, select_bases(targets, 6, 10, seed=3))
    assert not torch.equal(plan, select_bases(targets, 6, 10, seed=4))
    assert torch.equal(select_bases(targets, 6, 4, seed=3), plan[:4])  # a smaller budget is a prefix
    with pytest.raises(ConfigError, match=r"class 0 has 10 training images but 11 groups need one each; lower --ipc \(at most 10"):
        select_bases(targets, 6, 11, seed=0)
    assert seed_for(1, 2, 3) != seed_for(1, 3, 2)


def test_presets_match_design_settings() -> None:
    assert list_presets() == ["cifar10", "cifar100", "embedded", "imagenet1k", "tinyimagenet"]
    c10 = create_preset("cifar10")
    assert (c10.optim.lr, c10.optim.iterations, c10.optim.r_bn, c10.augment.jitter, c10.optim.betas) == (0.25, 1000, 1.0, 4, (0.5, 0.9))
    inet = create_preset("imagenet1k")
    assert (inet.optim.iterations, inet.optim.r_bn, inet.augment.jitter, inet.image_size) == (2000, 0.01, 32, 224)
    assert inet.augment.resized_crop and inet.augment.flip and not c10.augment.resized_crop
    with pytest.raises(RegistryError, match="unknown preset 'cifar'"):
        create_preset("cifar")
    with pytest.raises(ConfigError, match="unknown config field"):
        create_preset("cifar10", lr=0.1)


def test_config_roundtrip_and_validation() -> None:
    cfg = create_preset("embedded", ipc=3, teachers=(TeacherSpec("convnet", "a.pt"),), seed=5)
    cfg = dataclasses.replace(cfg, optim=OptimConfig(iterations=7))
    assert DistillConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.m == 1 and dataclasses.replace(cfg, compensators=False).m == 0
    with pytest.raises(ConfigError, match="must look like ARCH=CHECKPOINT"):
        TeacherSpec.parse("resnet18")
    assert TeacherSpec.parse("resnet18=x/y.pt") == TeacherSpec("resnet18", "x/y.pt")
    with pytest.raises(ConfigError, match="optim: need lr > 0"):
        OptimConfig(lr=0)
    assert create_preset("embedded").codecs == {"base": {"name": "npy"}}
    assert create_preset("cifar10", label_codec="topk:5").codecs == {"labels": {"name": "topk", "k": 5}}
    with pytest.raises(ConfigError, match=r"--base-codec: codec base/jpeg: bad parameters .*quality must be in 1..100"):
        create_preset("cifar10", base_codec="jpeg:0")
    with pytest.raises(ConfigError, match="--base-codec 'gif' is not a base codec; choose one of jpeg, npy, png"):
        create_preset("cifar10", base_codec="gif")
    with pytest.raises(ConfigError, match="--label-codec 'fp8' is not a labels codec"):
        create_preset("cifar10", label_codec="fp8")
    with pytest.raises(ConfigError, match="--base-codec 'passthrough' is for sets packed by `infer import`; choose one of jpeg, npy, png, webp"):
        create_preset("cifar10", base_codec="passthrough")  # `infer import`'s codec: distill has no files to pass through
    with pytest.raises(ConfigError, match="unexpected keyword argument 'bogus'"):
        DistillConfig.from_dict({"bogus": 1})


def test_resolve_device_messages() -> None:
    import torch

    from infer_distill.pipeline import resolve_device

    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(None).type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ConfigError, match="--device 'gpu0' is not a device; use cpu, cuda or cuda:N"):
        resolve_device("gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="--device cuda: CUDA is not available here; use --device cpu"):
            resolve_device("cuda")
