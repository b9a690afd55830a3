"""Teacher registry: every architecture builds, runs, fires its BN hooks; checkpoints round-trip."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from infer_data.errors import ConfigError, RegistryError
from infer_distill.teachers import (
    create_teacher,
    list_teachers,
    load_teacher,
    resolve_weights,
    save_teacher,
)


@pytest.mark.parametrize("arch", list_teachers())
@pytest.mark.parametrize("in_channels,size", [(1, 16), (3, 12)])
def test_teacher_builds_runs_and_fires_bn_hooks(arch: str, in_channels: int, size: int) -> None:
    torch.manual_seed(0)
    model = create_teacher(arch, 5, in_channels=in_channels, image_size=size).eval()
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    fired: list[nn.Module] = []
    handles = [m.register_forward_hook(lambda mod, inp, out: fired.append(mod)) for m in bns]
    with torch.no_grad():
        out = model(torch.rand(2, in_channels, size, size))
    for h in handles:
        h.remove()
    assert out.shape == (2, 5)
    assert torch.isfinite(out).all()
    assert len(bns) >= 3 and len(fired) >= 3
    assert set(map(id, fired)) <= set(map(id, bns))


def test_small_variant_keeps_resolution_and_imagenet_variant_downsamples() -> None:
    small = create_teacher("resnet18", 10, image_size=32)
    big = create_teacher("resnet18", 10, image_size=96)
    assert small.conv1.stride == (1, 1) and isinstance(small.maxpool, nn.Identity)
    assert big.conv1.stride == (2, 2) and isinstance(big.maxpool, nn.MaxPool2d)
    gray = create_teacher("mobilenet_v2", 10, in_channels=1, image_size=96)
    assert gray.features[0][0].in_channels == 1 and gray.features[0][0].stride == (2, 2)


def test_weights_by_name_are_validated_without_download() -> None:
    member = resolve_weights("resnet18", "IMAGENET1K_V1", num_classes=1000, in_channels=3, image_size=224)
    assert "ResNet18_Weights.IMAGENET1K_V1" in str(member)
    with pytest.raises(ConfigError, match="unknown weights 'IMAGENET9'; choose one of IMAGENET1K_V1"):
        resolve_weights("resnet18", "IMAGENET9", num_classes=1000, in_channels=3, image_size=224)
    with pytest.raises(ConfigError, match="need 3-channel images larger than 64 px and 1000 classes"):
        create_teacher("efficientnet_b0", 10, image_size=32, weights="IMAGENET1K_V1")
    with pytest.raises(ConfigError, match="convnet: has no torchvision weights"):
        create_teacher("convnet", 10, weights="IMAGENET1K_V1")


def test_unknown_arch_and_bad_sizes() -> None:
    with pytest.raises(RegistryError, match="unknown teacher architecture 'resnet17'.*Did you mean resnet18"):
        create_teacher("resnet17", 10)
    with pytest.raises(ConfigError, match="in_channels must be 1 or 3, got 2"):
        create_teacher("convnet", 10, in_channels=2)


def test_checkpoint_roundtrip_is_eval_and_frozen(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = create_teacher("convnet", 4, in_channels=1, image_size=16)
    model.train()(torch.rand(8, 1, 16, 16))  # move the BN running stats off their init
    path = save_teacher(model, tmp_path / "t.pt", arch="convnet", num_classes=4, in_channels=1, image_size=16, meta={"acc": 0.5})
    loaded = load_teacher("convnet", path, num_classes=4, in_channels=1, image_size=16)
    assert not loaded.training and not any(p.requires_grad for p in loaded.parameters())
    x = torch.rand(3, 1, 16, 16)
    with torch.no_grad():
        assert torch.equal(model.eval()(x), loaded(x))
    assert not list(tmp_path.glob(".*.tmp"))


def test_checkpoint_of_another_architecture_is_a_one_line_error(tmp_path: Path) -> None:
    path = save_teacher(create_teacher("convnet", 4, image_size=16), tmp_path / "c.pt", arch="convnet",
                        num_classes=4, in_channels=3, image_size=16, meta={})
    with pytest.raises(ConfigError, match=r"c\.pt holds a convnet but architecture resnet18 was requested"):
        load_teacher("resnet18", path, num_classes=4, in_channels=3, image_size=16)
    with pytest.raises(ConfigError, match=r"c\.pt \(convnet\) does not fit the convnet requested here: num_classes=4 \(need 10\)"):
        load_teacher("convnet", path, num_classes=10, in_channels=3, image_size=16)
    bare = tmp_path / "bare.pt"
    torch.save(create_teacher("convnet", 4, image_size=16).state_dict(), bare)
    with pytest.raises(ConfigError, match=r"bare\.pt \(unknown \(bare state_dict\)\) does not fit architecture shufflenet_v2"):
        load_teacher("shufflenet_v2", bare, num_classes=4, in_channels=3, image_size=16)
    with pytest.raises(ConfigError, match=r"missing\.pt does not exist; train one with `infer teacher train`"):
        load_teacher("convnet", tmp_path / "missing.pt", num_classes=4, in_channels=3, image_size=16)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(ConfigError, match=r"junk\.pt cannot be read safely"):
        load_teacher("convnet", junk, num_classes=4, in_channels=3, image_size=16)


def test_named_weights_load_from_torchvisions_cache_without_network(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from infer_distill.teachers import open_teacher, weights_cache_dir

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    cache = Path(weights_cache_dir())
    cache.mkdir(parents=True)
    (cache / "shufflenetv2_x1-5666bf0f80.pth").write_bytes(b"damaged")
    with pytest.raises(ConfigError, match=r"cannot load torchvision weights IMAGENET1K_V1 .*put shufflenetv2_x1-5666bf0f80\.pth into"):
        open_teacher("shufflenet_v2", "IMAGENET1K_V1", num_classes=1000, in_channels=3, image_size=224)
    torch.manual_seed(0)
    reference = create_teacher("shufflenet_v2", 1000, image_size=224)
    torch.save(reference.state_dict(), cache / "shufflenetv2_x1-5666bf0f80.pth")
    model, info = open_teacher("shufflenet_v2", "IMAGENET1K_V1", num_classes=1000, in_channels=3, image_size=224)
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    assert torch.equal(model.conv1[0].weight, reference.conv1[0].weight)
    assert info["weights"] == "ShuffleNet_V2_X1_0_Weights.IMAGENET1K_V1" and info["url"].endswith("shufflenetv2_x1-5666bf0f80.pth")
    assert len(info["sha256"]) == 64
