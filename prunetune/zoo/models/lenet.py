"""LeNet-300-100 and LeNet-5: the small baselines of the weight-pruning literature (Han et al. 2015).

Both keep every layer a named module so a pruning plan can address it (``classifier.0``,
``features.3``), and both flatten with :class:`nn.Flatten`, which Torch-Pruning traces as the
coupling between the last feature map and the first linear layer.
"""

from __future__ import annotations

import torch
from torch import nn

from prunetune.zoo.models._common import (
    Size,
    check_classifier_args,
    check_in_features,
    check_input_size,
    check_positive_int,
    check_width,
    conv_out,
    model_owner,
    scaled,
)

__all__ = ["LeNet300100", "LeNet5"]


class LeNet300100(nn.Module):
    """The 300-100 multilayer perceptron; on 28x28 inputs and 10 classes it has 266,610 parameters.

    Args:
        num_classes: Output units.
        in_features: Input features; when ``None`` it is ``in_channels * height * width``, so the
            same model serves images (flattened here) and tabular rows.
        in_channels: Image channels, used only when ``in_features`` is ``None``.
        input_size: Image side (or (height, width)), used only when ``in_features`` is ``None``.
        width: Multiplier for the 300 and 100 hidden units.
    """

    def __init__(
        self,
        *,
        num_classes: int = 10,
        in_features: int | None = None,
        in_channels: int = 1,
        input_size: Size = 28,
        width: float = 1.0,
    ) -> None:
        super().__init__()
        owner = model_owner(self)
        num_classes = check_positive_int(num_classes, name="num_classes", owner=owner)
        width = check_width(width, owner=owner)
        in_features = check_in_features(in_features, in_channels=in_channels, input_size=input_size, owner=owner)
        hidden1, hidden2 = scaled(300, width), scaled(100, width)
        self.flatten = nn.Flatten()
        self.classifier = nn.Sequential(
            nn.Linear(in_features, hidden1),
            nn.ReLU(),
            nn.Linear(hidden1, hidden2),
            nn.ReLU(),
            nn.Linear(hidden2, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.flatten(x))


class LeNet5(nn.Module):
    """LeNet-5 (conv 6, conv 16, fc 120, fc 84); 61,706 parameters on 28x28 MNIST.

    The first convolution pads by 2 (the MNIST convention, so 28x28 behaves like the original
    32x32). The second pads by 2 only when the map is too small to survive an unpadded 5x5 and
    a pooling (8x8 digits), which keeps the classic sizes on MNIST and CIFAR.

    Args:
        num_classes: Output units.
        in_channels: Image channels.
        input_size: Image side (or (height, width)); at least 4 so both poolings keep a pixel.
        width: Multiplier for the 6/16 channels and the 120/84 hidden units.
    """

    def __init__(
        self,
        *,
        num_classes: int = 10,
        in_channels: int = 1,
        input_size: Size = 28,
        width: float = 1.0,
    ) -> None:
        super().__init__()
        owner = model_owner(self)
        num_classes, in_channels, width = check_classifier_args(
            num_classes=num_classes, in_channels=in_channels, width=width, owner=owner
        )
        # Two 2x2 poolings need at least a 4x4 input to leave one pixel.
        sides = check_input_size(input_size, owner=owner, minimum=4)
        c1, c2 = scaled(6, width), scaled(16, width)
        f1, f2 = scaled(120, width), scaled(84, width)

        after_pool1 = [conv_out(side, kernel=2, stride=2) for side in sides]
        # Pad the second conv only where an unpadded one would leave less than a 2x2 map to pool.
        padding2 = 0 if min(after_pool1) - 4 >= 2 else 2
        final = [conv_out(conv_out(side, kernel=5, padding=padding2), kernel=2, stride=2) for side in after_pool1]

        self.features = nn.Sequential(
            nn.Conv2d(in_channels, c1, kernel_size=5, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, kernel_size=5, padding=padding2),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.flatten = nn.Flatten()
        self.classifier = nn.Sequential(
            nn.Linear(c2 * final[0] * final[1], f1),
            nn.ReLU(),
            nn.Linear(f1, f2),
            nn.ReLU(),
            nn.Linear(f2, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.flatten(self.features(x)))

