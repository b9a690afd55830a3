"""The official INFER code's CIFAR teachers: layer and parameter counts, and its checkpoint layout."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from infer_data.errors import ConfigError
from infer_distill.teachers import create_teacher, load_teacher


def _counts(arch: str) -> tuple[int, int]:
    model = create_teacher(arch, 10, image_size=32)
    return sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()), sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("arch,bns,params", [
    ("mobilenet_v2_official", 57, 2_296_922),  # the torchvision-based mobilenet_v2 has 52 BN layers
    ("efficientnet_b0_official", 49, 3_599_686),  # efficientnet_b0 (1280-channel head) has 4,020,358 parameters
    ("shufflenet_g2", 49, 887_582),
])
def test_official_architectures_have_the_official_sizes(arch: str, bns: int, params: int) -> None:
    assert _counts(arch) == (bns, params)


def test_official_counts_differ_from_the_torchvision_variants() -> None:
    assert _counts("mobilenet_v2")[0] == 52
    assert _counts("efficientnet_b0")[1] == 4_020_358


@pytest.mark.parametrize("arch", ["mobilenet_v2_official", "efficientnet_b0_official", "shufflenet_g2"])
def test_official_nets_reach_the_head_at_the_official_resolution(arch: str) -> None:
    model = create_teacher(arch, 10, image_size=32).eval()
    seen: list[tuple[int, ...]] = []
    model.linear.register_forward_hook(lambda mod, inp, out: seen.append(tuple(inp[0].shape)))
    with torch.no_grad():
        assert model(torch.rand(2, 3, 32, 32)).shape == (2, 10)
    assert seen == [(2, model.linear.in_features)]


def _official_file(tmp_path: Path, arch: str, key: str) -> tuple[Path, nn.Module]:
    """A checkpoint laid out as the official code saves it: DataParallel keys inside a dict."""
    torch.manual_seed(1)
    model = create_teacher(arch, 10, image_size=32)
    model.train()(torch.rand(4, 3, 32, 32))  # move the BN running statistics off their init
    state = {f"module.{k}": v for k, v in model.state_dict().items()}
    path = tmp_path / f"{arch}-{key}.pth"
    torch.save({key: state, "acc": 91.5, "epoch": 199}, path)
    return path, model.eval()


@pytest.mark.parametrize("key", ["state_dict", "net"])
def test_official_checkpoints_load_with_module_prefix(tmp_path: Path, key: str) -> None:
    path, reference = _official_file(tmp_path, "shufflenet_g2", key)
    loaded = load_teacher("shufflenet_g2", path, num_classes=10, in_channels=3, image_size=32)
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded(x), reference(x))
    assert not loaded.training and not any(p.requires_grad for p in loaded.parameters())


def test_official_checkpoint_for_another_architecture_is_a_one_line_error(tmp_path: Path) -> None:
    path, _ = _official_file(tmp_path, "mobilenet_v2_official", "state_dict")
    with pytest.raises(ConfigError, match=r"mobilenet_v2_official-state_dict\.pth \(unknown \(bare state_dict\)\) does not fit "
                                          r"architecture mobilenet_v2: \d+ missing key\(s\) \(first classifier\.1\.bias\), "
                                          r"\d+ unexpected key\(s\) \(first bn1\.bias\)") as info:
        load_teacher("mobilenet_v2", path, num_classes=10, in_channels=3, image_size=32)
    assert "\n" not in str(info.value)
    with pytest.raises(ConfigError, match=r"does not fit architecture mobilenet_v2_official: 2 shape mismatch\(es\) "
                                          r"\(first linear\.weight \(10, 1280\) vs \(100, 1280\)\)"):
        load_teacher("mobilenet_v2_official", path, num_classes=100, in_channels=3, image_size=32)
