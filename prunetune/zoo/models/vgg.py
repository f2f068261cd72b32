"""CIFAR-style VGG-11/16/19 with batch norm, the workhorse of filter-pruning papers.

The network is a plain chain, ``features`` (conv-BN-ReLU blocks and max pools) then
``classifier``, because that is the shape Torch-Pruning, per-layer ordering and per-layer
quantization all address by index (``features.0``, ``classifier.3``).
"""

from __future__ import annotations

import torch
from torch import nn

from prunetune.zoo.models._common import (
    Size,
    check_choice,
    check_classifier_args,
    check_fraction,
    check_input_size,
    model_owner,
    scaled,
)

__all__ = ["VGG", "VGG_CONFIGS"]

#: Output channels per conv layer, "M" for a 2x2 max pool (Simonyan & Zisserman, configs A/D/E).
VGG_CONFIGS: dict[int, tuple[int | str, ...]] = {
    11: (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    16: (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"),
    19: (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"),
}


class VGG(nn.Module):
    """VGG with batch norm and a two-layer classifier sized for small images.

    A max pool is left out once the map is down to one pixel, so 28x28 or 8x8 inputs build the
    same layer stack (minus those pools) instead of failing; the classifier input is computed
    from the final map, so larger inputs work too.

    Args:
        depth: 11, 16 or 19.
        num_classes: Output units.
        in_channels: Image channels.
        input_size: Image side (or (height, width)).
        width: Multiplier for every conv's channels and the classifier's hidden units.
        dropout: Dropout rate before the last linear layer.
    """

    def __init__(
        self,
        *,
        depth: int = 16,
        num_classes: int = 10,
        in_channels: int = 3,
        input_size: Size = 32,
        width: float = 1.0,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        owner = model_owner(self)
        check_choice(depth, name="depth", owner=owner, choices=tuple(VGG_CONFIGS))
        num_classes, in_channels, width = check_classifier_args(
            num_classes=num_classes, in_channels=in_channels, width=width, owner=owner
        )
        dropout = check_fraction(dropout, name="dropout", owner=owner)
        height, wide = check_input_size(input_size, owner=owner)

        layers: list[nn.Module] = []
        channels = in_channels
        for item in VGG_CONFIGS[depth]:
            if item == "M":
                if min(height, wide) >= 2:
                    layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
                    height, wide = height // 2, wide // 2
                continue
            out = scaled(int(item), width)
            layers += [nn.Conv2d(channels, out, kernel_size=3, padding=1, bias=False), nn.BatchNorm2d(out), nn.ReLU()]
            channels = out
        self.features = nn.Sequential(*layers)
        self.flatten = nn.Flatten()
        hidden = scaled(512, width)
        self.classifier = nn.Sequential(
            nn.Linear(channels * height * wide, hidden),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, num_classes),
        )
        self._init_weights()

    def _init_weights(self) -> None:
        # He initialisation: VGG with ReLU trains from scratch far better than with PyTorch's default.
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.flatten(self.features(x)))
