"""Model factories from outside the zoo, named by this file's path in tests."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class SeparableBlock(nn.Module):
    """A depthwise-separable residual block: depthwise 3x3, pointwise 1x1, added to its input."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.depthwise = nn.Conv2d(channels, channels, 3, padding=1, groups=channels, bias=False)
        self.pointwise = nn.Conv2d(channels, channels, 1, bias=False)
        self.norm = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x + self.norm(self.pointwise(self.depthwise(x))))


class SeparableNet(nn.Module):
    """A small depthwise-separable residual network; it takes no input_size (global pooling)."""

    def __init__(self, *, num_classes: int, in_channels: int, width: int = 16, blocks: int = 2) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU())
        self.blocks = nn.Sequential(*(SeparableBlock(width) for _ in range(blocks)))
        self.head = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.stem(x)).mean(dim=(2, 3)))


def separable_net(**kwargs: Any) -> nn.Module:
    """A factory that forwards everything it gets, the way wrappers around a model class do."""
    return SeparableNet(**kwargs)


def broken_factory(**kwargs: Any) -> nn.Module:
    """Forwards an argument the class does not take: the user's call raises TypeError."""
    return SeparableNet(depth=3, **kwargs)
