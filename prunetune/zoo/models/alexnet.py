"""The 32x32 AlexNet used by CIFAR pruning papers: five convs (64-192-384-256-256), three pools.

Its three fully connected layers hold about 90% of its ~23M parameters, which is why papers
that quantize or prune the classifier report their largest compression on it.
"""

from __future__ import annotations

import torch
from torch import nn

from prunetune.zoo.models._common import (
    Size,
    check_classifier_args,
    check_fraction,
    check_input_size,
    check_positive_int,
    conv_out,
    model_owner,
    scaled,
)

__all__ = ["AlexNet"]


class AlexNet(nn.Module):
    """AlexNet for small images: a stride-2 3x3 stem instead of the 11x11/4 one meant for 224x224.

    A pool is left out once the map is one pixel, so 8x8 and 28x28 inputs also build; the
    classifier input is computed from the final map.

    Args:
        num_classes: Output units.
        in_channels: Image channels.
        input_size: Image side (or (height, width)).
        width: Multiplier for every conv's channels and the classifier's hidden units.
        hidden_features: Units of each of the two hidden linear layers (before ``width``).
        dropout: Dropout rate before each hidden linear layer.
    """

    def __init__(
        self,
        *,
        num_classes: int = 10,
        in_channels: int = 3,
        input_size: Size = 32,
        width: float = 1.0,
        hidden_features: int = 4096,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        owner = model_owner(self)
        num_classes, in_channels, width = check_classifier_args(
            num_classes=num_classes, in_channels=in_channels, width=width, owner=owner
        )
        hidden_features = check_positive_int(hidden_features, name="hidden_features", owner=owner)
        dropout = check_fraction(dropout, name="dropout", owner=owner)
        height, wide = check_input_size(input_size, owner=owner)

        # (out channels, stride, pool after): pools follow conv1, conv2 and conv5, as in AlexNet.
        plan = ((64, 2, True), (192, 1, True), (384, 1, False), (256, 1, False), (256, 1, True))
        layers: list[nn.Module] = []
        channels = in_channels
        for base, stride, pool in plan:
            out = scaled(base, width)
            layers += [nn.Conv2d(channels, out, kernel_size=3, stride=stride, padding=1), nn.ReLU()]
            height, wide = (conv_out(side, kernel=3, stride=stride, padding=1) for side in (height, wide))
            if pool and min(height, wide) >= 2:
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
                height, wide = height // 2, wide // 2
            channels = out
        self.features = nn.Sequential(*layers)
        self.flatten = nn.Flatten()
        hidden = scaled(hidden_features, width)
        self.classifier = nn.Sequential(
            nn.Dropout(dropout),
            nn.Linear(channels * height * wide, hidden),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.flatten(self.features(x)))
