"""ResNet-20, the small CIFAR ResNet (He et al. 2016, section 4.2): 3 stages of 3 basic blocks.

Widths 16, 32, 64; the first conv is 3x3 at stride 1 and stages 2 and 3 halve the resolution,
so a 28-32 px image ends at 7-8 px before global average pooling. About 40 MFLOPs at 32 px in
plain 3x3 convolutions, which makes it a cheap second architecture for CPU work next to the
ConvNet. For images larger than 64 px the stem downsamples by 4 (7x7 stride 2 + max-pool).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ._registry import SMALL_IMAGE_MAX, register_teacher


class BasicBlock(nn.Module):
    """conv3x3-BN-ReLU-conv3x3-BN plus a (1x1-conv-BN when the shape changes) shortcut."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, cin, H, W) -> (B, cout, H/stride, W/stride)."""
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class CifarResNet(nn.Module):
    """ResNet-(6n+2) with widths 16, 32, 64."""

    def __init__(self, num_classes: int, *, in_channels: int, image_size: int, blocks: int = 3) -> None:
        super().__init__()
        if image_size <= SMALL_IMAGE_MAX:
            self.stem = nn.Sequential(nn.Conv2d(in_channels, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(inplace=True))
        else:
            self.stem = nn.Sequential(nn.Conv2d(in_channels, 16, 7, stride=2, padding=3, bias=False), nn.BatchNorm2d(16),
                                      nn.ReLU(inplace=True), nn.MaxPool2d(3, stride=2, padding=1))
        layers, cin = [], 16
        for stage, width in enumerate((16, 32, 64)):
            for b in range(blocks):
                layers.append(BasicBlock(cin, width, 2 if stage > 0 and b == 0 else 1))
                cin = width
        self.layers = nn.Sequential(*layers)
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) normalized images -> (B, num_classes) logits."""
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(self.layers(self.stem(x)), 1), 1))


@register_teacher("resnet20")
def resnet20(num_classes: int, *, in_channels: int = 3, image_size: int = 32) -> nn.Module:
    """CIFAR ResNet-20 (0.27 M parameters)."""
    return CifarResNet(num_classes, in_channels=in_channels, image_size=image_size)
