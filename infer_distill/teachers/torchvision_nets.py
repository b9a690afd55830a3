"""Torchvision architectures as teachers, with small-image variants for images up to 64 px.

Small-image variants keep torchvision's blocks and change only strides, as the CIFAR versions of
these networks do: the stem convolution runs at stride 1 and the stem max-pool (ResNet,
ShuffleNetV2) is dropped; MobileNetV2 and EfficientNet-B0 also run their first stride-2 stage at
stride 1, so a 32 px input reaches the head at 4 x 4 like the CIFAR variants. Grayscale input
replaces the first convolution by one with a single input channel and otherwise equal shape.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from ._registry import SMALL_IMAGE_MAX, register_teacher


def _replace_conv(conv: nn.Conv2d, *, in_channels: int | None = None, kernel: int | None = None, stride: int | None = None) -> nn.Conv2d:
    """A fresh Conv2d like ``conv`` with some of its geometry changed (padding keeps 'same' for odd kernels)."""
    k = kernel if kernel is not None else conv.kernel_size[0]
    return nn.Conv2d(
        in_channels if in_channels is not None else conv.in_channels,
        conv.out_channels,
        k,
        stride=stride if stride is not None else conv.stride[0],
        padding=k // 2,
        groups=conv.groups,
        bias=conv.bias is not None,
    )


def _set_stride(conv: nn.Conv2d, stride: int) -> None:
    conv.stride = (stride, stride)


def _resnet(factory: Callable[..., nn.Module], num_classes: int, in_channels: int, image_size: int) -> nn.Module:
    model = factory(num_classes=num_classes)
    if image_size <= SMALL_IMAGE_MAX:
        model.conv1 = _replace_conv(model.conv1, in_channels=in_channels, kernel=3, stride=1)
        model.maxpool = nn.Identity()
    elif in_channels != 3:
        model.conv1 = _replace_conv(model.conv1, in_channels=in_channels)
    return model


@register_teacher("resnet18", weights_enum="ResNet18_Weights")
def resnet18(num_classes: int, *, in_channels: int = 3, image_size: int = 32) -> nn.Module:
    """ResNet-18; small-image stem (3x3 conv stride 1, no max-pool) up to 64 px."""
    import torchvision.models as tvm

    return _resnet(tvm.resnet18, num_classes, in_channels, image_size)


@register_teacher("resnet50", weights_enum="ResNet50_Weights")
def resnet50(num_classes: int, *, in_channels: int = 3, image_size: int = 32) -> nn.Module:
    """ResNet-50; small-image stem (3x3 conv stride 1, no max-pool) up to 64 px."""
    import torchvision.models as tvm

    return _resnet(tvm.resnet50, num_classes, in_channels, image_size)


@register_teacher("mobilenet_v2", weights_enum="MobileNet_V2_Weights")
def mobilenet_v2(num_classes: int, *, in_channels: int = 3, image_size: int = 32) -> nn.Module:
    """MobileNetV2; small images: stem and first stride-2 inverted residual at stride 1."""
    import torchvision.models as tvm

    model = tvm.mobilenet_v2(num_classes=num_classes)
    stem = model.features[0][0]
    small = image_size <= SMALL_IMAGE_MAX
    if small or in_channels != 3:
        model.features[0][0] = _replace_conv(stem, in_channels=in_channels, stride=1 if small else None)
    if small:
        _set_stride(model.features[2].conv[1][0], 1)  # depthwise conv of the 16 -> 24 block
    return model


@register_teacher("efficientnet_b0", weights_enum="EfficientNet_B0_Weights")
def efficientnet_b0(num_classes: int, *, in_channels: int = 3, image_size: int = 32) -> nn.Module:
    """EfficientNet-B0; small images: stem and first stride-2 MBConv at stride 1."""
    import torchvision.models as tvm

    model = tvm.efficientnet_b0(num_classes=num_classes)
    stem = model.features[0][0]
    small = image_size <= SMALL_IMAGE_MAX
    if small or in_channels != 3:
        model.features[0][0] = _replace_conv(stem, in_channels=in_channels, stride=1 if small else None)
    if small:
        _set_stride(model.features[2][0].block[1][0], 1)  # depthwise conv of the 16 -> 24 stage
    return model


@register_teacher("shufflenet_v2", weights_enum="ShuffleNet_V2_X1_0_Weights")
def shufflenet_v2(num_classes: int, *, in_channels: int = 3, image_size: int = 32) -> nn.Module:
    """ShuffleNetV2 x1.0; small images: stem conv at stride 1 and no max-pool."""
    import torchvision.models as tvm

    model = tvm.shufflenet_v2_x1_0(num_classes=num_classes)
    small = image_size <= SMALL_IMAGE_MAX
    if small or in_channels != 3:
        model.conv1[0] = _replace_conv(model.conv1[0], in_channels=in_channels, stride=1 if small else None)
    if small:
        model.maxpool = nn.Identity()
    return model
