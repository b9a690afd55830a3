"""The fast ConvNet teacher: ``depth`` blocks of conv3x3-BN-ReLU-avgpool2, then a linear layer.

Depth 3 and width 128 are the usual dataset-distillation ConvNet sizes; with BatchNorm instead of
instance norm so that its BN layers feed the compensator loss. Cheap enough for CPU work.
"""

from __future__ import annotations

import torch
from torch import nn

from ._registry import register_teacher


class ConvNet(nn.Module):
    """ConvNet on (B, C, S, S) inputs; feature map side halves per block.

    Args:
        num_classes: output logits.
        in_channels: 1 or 3.
        image_size: input side S; the classifier sees width * (S // 2**depth)**2 features.
        width: channels of every conv.
        depth: number of blocks.
    """

    def __init__(self, num_classes: int, *, in_channels: int, image_size: int, width: int = 128, depth: int = 3) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c, side = in_channels, image_size
        for _ in range(depth):
            layers += [nn.Conv2d(c, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True), nn.AvgPool2d(2)]
            c, side = width, side // 2
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(width * max(side, 1) ** 2, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, S, S) normalized images -> (B, num_classes) logits."""
        return self.classifier(torch.flatten(self.features(x), 1))


@register_teacher("convnet")
def convnet(num_classes: int, *, in_channels: int = 3, image_size: int = 32) -> nn.Module:
    """ConvNet depth 3, width 128."""
    return ConvNet(num_classes, in_channels=in_channels, image_size=image_size)
