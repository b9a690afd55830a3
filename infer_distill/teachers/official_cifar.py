"""The CIFAR teacher variants of the official INFER code: MobileNetV2, EfficientNet-B0, ShuffleNet g=2.

The official code trains its CIFAR teachers with the small-image layouts popular for CIFAR
(stride-1 3x3 stems, total stride 8 or 16), which differ from torchvision's networks with changed
strides (:mod:`.torchvision_nets`):

- ``mobilenet_v2_official``: stem conv3x3 (32 ch) + 17 inverted residual blocks (expansion, out
  channels, repeats, stride) = (1,16,1,1) (6,24,2,1) (6,32,3,2) (6,64,4,2) (6,96,3,1)
  (6,160,3,2) (6,320,1,1); every block has an expansion conv, and a stride-1 block whose width
  changes gets a 1x1-conv + BN shortcut; 1x1 conv to 1280, pool, linear. 57 BN layers.
- ``efficientnet_b0_official``: stem conv3x3 (32 ch) + 16 MBConv blocks with squeeze-excitation
  (SE width = input channels / 4), kernel sizes 3,3,5,3,5,5,3, strides 1,2,2,2,1,2,1, swish;
  no 1280-channel head: pool, dropout 0.2, linear from 320. The first block (expansion 1) skips
  its expansion conv but still owns it (so the official checkpoints load).
- ``shufflenet_g2``: ShuffleNet v1 with 2 groups: 1x1 stem (24 ch), stages of 4, 8, 4
  bottlenecks with outputs 200, 400, 800; stride-2 bottlenecks concatenate an average-pooled
  shortcut, the first bottleneck's 1x1 conv is ungrouped.

Module names follow the official checkpoints' keys, so their state dicts load after
``module.`` prefixes are stripped (:mod:`.checkpoint`). Global average pooling is adaptive, which
equals the official fixed 4x4 pooling at 32 px and also serves other sizes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ._registry import register_teacher


def _bn_conv(cin: int, cout: int, k: int = 1, *, stride: int = 1, groups: int = 1) -> tuple[nn.Conv2d, nn.BatchNorm2d]:
    """A bias-free k x k convolution with 'same' padding and its BatchNorm."""
    return nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)


def _pool_flat(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, C) global average."""
    return F.adaptive_avg_pool2d(x, 1).flatten(1)


# -- MobileNetV2 ------------------------------------------------------------------------------

class InvertedResidual(nn.Module):
    """Expand 1x1 -> depthwise 3x3 -> project 1x1; residual only at stride 1."""

    def __init__(self, cin: int, cout: int, expansion: int, stride: int) -> None:
        super().__init__()
        mid = expansion * cin
        self.stride = stride
        self.conv1, self.bn1 = _bn_conv(cin, mid)
        self.conv2, self.bn2 = _bn_conv(mid, mid, 3, stride=stride, groups=mid)
        self.conv3, self.bn3 = _bn_conv(mid, cout)
        self.shortcut = nn.Sequential(*_bn_conv(cin, cout)) if stride == 1 and cin != cout else nn.Sequential()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, cin, H, W) -> (B, cout, H / stride, W / stride)."""
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return out + self.shortcut(x) if self.stride == 1 else out


class OfficialMobileNetV2(nn.Module):
    """CIFAR MobileNetV2 of the official INFER code (see the module docstring)."""

    STAGES = ((1, 16, 1, 1), (6, 24, 2, 1), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))

    def __init__(self, num_classes: int, in_channels: int = 3) -> None:
        super().__init__()
        self.conv1, self.bn1 = _bn_conv(in_channels, 32, 3)
        blocks: list[nn.Module] = []
        cin = 32
        for expansion, cout, repeats, stride in self.STAGES:
            for i in range(repeats):
                blocks.append(InvertedResidual(cin, cout, expansion, stride if i == 0 else 1))
                cin = cout
        self.layers = nn.Sequential(*blocks)
        self.conv2, self.bn2 = _bn_conv(320, 1280)
        self.linear = nn.Linear(1280, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, S, S) normalized images -> (B, num_classes) logits."""
        out = self.layers(F.relu(self.bn1(self.conv1(x))))
        return self.linear(_pool_flat(F.relu(self.bn2(self.conv2(out)))))


# -- EfficientNet-B0 --------------------------------------------------------------------------

class SqueezeExcite(nn.Module):
    """Channel gate: pool -> 1x1 (swish) -> 1x1 (sigmoid) -> scale; convs with bias (names se1, se2)."""

    def __init__(self, channels: int, squeezed: int) -> None:
        super().__init__()
        self.se1 = nn.Conv2d(channels, squeezed, 1)
        self.se2 = nn.Conv2d(squeezed, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> same shape, each channel scaled by a gate in (0, 1)."""
        gate = F.adaptive_avg_pool2d(x, 1)
        return x * torch.sigmoid(self.se2(F.silu(self.se1(gate))))


class MBConv(nn.Module):
    """Expand 1x1 (skipped at expansion 1) -> depthwise k x k -> SE -> project 1x1; residual when shapes agree."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expansion: int) -> None:
        super().__init__()
        mid = expansion * cin
        self.expand = expansion != 1
        self.conv1, self.bn1 = _bn_conv(cin, mid)  # unused at expansion 1 (kept: the official checkpoints hold it)
        self.conv2, self.bn2 = _bn_conv(mid, mid, kernel, stride=stride, groups=mid)
        self.se = SqueezeExcite(mid, int(cin * 0.25))
        self.conv3, self.bn3 = _bn_conv(mid, cout)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, cin, H, W) -> (B, cout, H / stride, W / stride)."""
        out = F.silu(self.bn1(self.conv1(x))) if self.expand else x
        out = self.se(F.silu(self.bn2(self.conv2(out))))
        out = self.bn3(self.conv3(out))
        return out + x if self.residual else out


class OfficialEfficientNetB0(nn.Module):
    """CIFAR EfficientNet-B0 of the official INFER code (see the module docstring)."""

    # (repeats, expansion, out channels, kernel, stride) per stage
    STAGES = ((1, 1, 16, 3, 1), (2, 6, 24, 3, 2), (2, 6, 40, 5, 2), (3, 6, 80, 3, 2), (3, 6, 112, 5, 1),
              (4, 6, 192, 5, 2), (1, 6, 320, 3, 1))

    def __init__(self, num_classes: int, in_channels: int = 3, dropout: float = 0.2) -> None:
        super().__init__()
        self.conv1, self.bn1 = _bn_conv(in_channels, 32, 3)
        blocks: list[nn.Module] = []
        cin = 32
        for repeats, expansion, cout, kernel, stride in self.STAGES:
            for i in range(repeats):
                blocks.append(MBConv(cin, cout, kernel, stride if i == 0 else 1, expansion))
                cin = cout
        self.layers = nn.Sequential(*blocks)
        self.dropout = nn.Dropout(dropout)
        self.linear = nn.Linear(320, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, S, S) normalized images -> (B, num_classes) logits."""
        out = self.layers(F.silu(self.bn1(self.conv1(x))))
        return self.linear(self.dropout(_pool_flat(out)))


# -- ShuffleNet (v1), 2 groups ----------------------------------------------------------------

def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """Interleave the channels of ``groups`` groups: (B, g*n, H, W) -> (B, n*g, H, W)."""
    b, c, h, w = x.shape
    return x.view(b, groups, c // groups, h, w).transpose(1, 2).reshape(b, c, h, w)


class ShuffleBottleneck(nn.Module):
    """Grouped 1x1 -> shuffle -> depthwise 3x3 -> grouped 1x1; add (stride 1) or concat a pooled input (stride 2)."""

    def __init__(self, cin: int, cout: int, stride: int, groups: int, *, first: bool) -> None:
        super().__init__()
        mid = cout // 4
        self.stride, self.groups_in = stride, 1 if first else groups
        self.conv1, self.bn1 = _bn_conv(cin, mid, groups=self.groups_in)
        self.conv2, self.bn2 = _bn_conv(mid, mid, 3, stride=stride, groups=mid)
        self.conv3, self.bn3 = _bn_conv(mid, cout, groups=groups)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, cin, H, W) -> (B, cout, H, W) at stride 1, (B, cout + cin, H / 2, W / 2) at stride 2."""
        out = channel_shuffle(F.relu(self.bn1(self.conv1(x))), self.groups_in)
        out = self.bn3(self.conv3(F.relu(self.bn2(self.conv2(out)))))
        if self.stride == 2:
            return F.relu(torch.cat([out, F.avg_pool2d(x, 3, stride=2, padding=1)], 1))
        return F.relu(out + x)


class OfficialShuffleNetG2(nn.Module):
    """CIFAR ShuffleNet v1 (g = 2) of the official INFER code (see the module docstring)."""

    STAGES = ((200, 4), (400, 8), (800, 4))  # (output channels, bottlenecks) per stage
    GROUPS = 2
    STEM = 24

    def __init__(self, num_classes: int, in_channels: int = 3) -> None:
        super().__init__()
        self.conv1, self.bn1 = _bn_conv(in_channels, self.STEM)
        cin = self.STEM
        for s, (cout, repeats) in enumerate(self.STAGES, start=1):
            blocks = []
            for i in range(repeats):
                # a stride-2 bottleneck produces cout - cin channels and concatenates its cin-channel input
                blocks.append(ShuffleBottleneck(cin, cout - cin if i == 0 else cout, 2 if i == 0 else 1, self.GROUPS,
                                                first=cin == self.STEM))
                cin = cout
            setattr(self, f"layer{s}", nn.Sequential(*blocks))
        self.linear = nn.Linear(cin, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, S, S) normalized images -> (B, num_classes) logits."""
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        return self.linear(_pool_flat(out))


@register_teacher("mobilenet_v2_official")
def mobilenet_v2_official(num_classes: int, *, in_channels: int = 3, image_size: int = 32) -> nn.Module:
    """The official INFER code's CIFAR MobileNetV2 (total stride 8; 57 BN layers)."""
    return OfficialMobileNetV2(num_classes, in_channels)


@register_teacher("efficientnet_b0_official")
def efficientnet_b0_official(num_classes: int, *, in_channels: int = 3, image_size: int = 32) -> nn.Module:
    """The official INFER code's CIFAR EfficientNet-B0 (total stride 16, no 1280-channel head)."""
    return OfficialEfficientNetB0(num_classes, in_channels)


@register_teacher("shufflenet_g2")
def shufflenet_g2(num_classes: int, *, in_channels: int = 3, image_size: int = 32) -> nn.Module:
    """The official INFER code's CIFAR ShuffleNet v1 with 2 groups (total stride 8)."""
    return OfficialShuffleNetG2(num_classes, in_channels)
