"""CIFAR-style ResNet-20/56/110 (He et al. 2016): three stages of ``n`` basic blocks, 16/32/64 channels.

Where a block changes shape its shortcut is a 1x1 conv + BN (option B) rather than zero padding
(option A): the padding trick hides the channel coupling from Torch-Pruning's dependency graph,
while a real conv makes every residual sum an explicit, prunable group. ResNet-20 thus has
272,474 parameters (option A: 269,722). Blocks are addressable as ``layer2.4`` for layer pruning.
"""

from __future__ import annotations

import torch
from torch import nn

from prunetune.zoo.models._common import check_choice, check_classifier_args, model_owner, scaled

__all__ = ["BasicBlock", "CifarResNet", "RESNET_DEPTHS"]

#: Supported depths; depth = 6n + 2 with n blocks per stage.
RESNET_DEPTHS: tuple[int, ...] = (20, 32, 44, 56, 110)


class BasicBlock(nn.Module):
    """Two 3x3 convs with a residual sum; each ReLU is its own module so tracing stays unambiguous."""

    def __init__(self, *, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.relu2 = nn.ReLU()
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu2(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """ResNet for small images; global average pooling makes it work for any input side.

    Args:
        depth: 6n + 2 (20, 32, 44, 56 or 110).
        num_classes: Output units.
        in_channels: Image channels.
        width: Multiplier for the 16/32/64 stage channels.
    """

    def __init__(
        self,
        *,
        depth: int = 20,
        num_classes: int = 10,
        in_channels: int = 3,
        width: float = 1.0,
    ) -> None:
        super().__init__()
        owner = model_owner(self)
        check_choice(depth, name="depth", owner=owner, choices=RESNET_DEPTHS)
        num_classes, in_channels, width = check_classifier_args(
            num_classes=num_classes, in_channels=in_channels, width=width, owner=owner
        )
        blocks = (depth - 2) // 6
        stem, c2, c3 = scaled(16, width), scaled(32, width), scaled(64, width)

        self.conv1 = nn.Conv2d(in_channels, stem, kernel_size=3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(stem)
        self.relu = nn.ReLU()
        self.layer1 = self._stage(stem, stem, blocks, stride=1)
        self.layer2 = self._stage(stem, c2, blocks, stride=2)
        self.layer3 = self._stage(c2, c3, blocks, stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(c3, num_classes)
        self._init_weights()

    @staticmethod
    def _stage(in_channels: int, out_channels: int, blocks: int, *, stride: int) -> nn.Sequential:
        layers = [BasicBlock(in_channels=in_channels, out_channels=out_channels, stride=stride)]
        layers += [BasicBlock(in_channels=out_channels, out_channels=out_channels) for _ in range(blocks - 1)]
        return nn.Sequential(*layers)

    def _init_weights(self) -> None:
        # He initialisation, as in the paper; deep plain-default ResNets (110) train poorly.
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(self.flatten(self.avgpool(x)))
