"""Your own model and data, in one file an experiment names (examples/own-model-and-data.yaml).

prunetune imports only this file, by its path. Replace the bodies with your own: the data factory
returns map-style torch datasets of ``(input_tensor, label)`` items; the model factory returns a
``torch.nn.Module``. Nothing here is downloaded: the stand-in data is scikit-learn's bundled digits.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset


class Images(Dataset):
    """A map-style dataset: ``len(ds)`` and ``ds[i] -> (float tensor (C, H, W), int label)``.

    Read files, decode, augment here as you would for any PyTorch training loop; prunetune streams
    the items through DataLoaders (``data.num_workers`` processes).
    """

    def __init__(self, images: np.ndarray, labels: np.ndarray) -> None:
        self.images = images
        self.labels = labels
        self.targets = labels  # optional: lets prunetune stratify without reading every item

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image = torch.from_numpy(self.images[index]).float().div(16.0)
        return (image - 0.3).div(0.37).unsqueeze(0), int(self.labels[index])


def digit_splits(*, test_share: float = 0.2) -> dict[str, Any]:
    """The data factory: ``train``, ``test`` and ``num_classes`` (add ``val`` to choose it yourself;
    without it prunetune carves a stratified, seeded share of train, ``data.val_fraction``)."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    order = np.random.default_rng(0).permutation(len(bunch.target))
    images, labels = bunch.images[order].astype(np.float32), bunch.target[order].astype(np.int64)
    cut = int(len(labels) * (1 - test_share))
    return {"train": Images(images[:cut], labels[:cut]), "test": Images(images[cut:], labels[cut:]), "num_classes": 10}


class SeparableBlock(nn.Module):
    """An inverted residual: expand 1x1, depthwise 3x3, project 1x1, added to the input.

    The expanded channels are the block's own, so each block is one unit a search prunes; the
    channels the residual sums tie together are another, shared with the stem.
    """

    def __init__(self, channels: int, expansion: int = 2) -> None:
        super().__init__()
        hidden = channels * expansion
        self.expand = nn.Sequential(nn.Conv2d(channels, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU())
        self.depthwise = nn.Sequential(
            nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden, bias=False), nn.BatchNorm2d(hidden), nn.ReLU()
        )
        self.project = nn.Sequential(nn.Conv2d(hidden, channels, 1, bias=False), nn.BatchNorm2d(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x + self.project(self.depthwise(self.expand(x))))


class SeparableNet(nn.Module):
    """A small depthwise-separable residual network (MobileNetV2-like) with global pooling: it takes
    any input size, and no input_size argument."""

    def __init__(self, *, num_classes: int, in_channels: int, width: int = 16, blocks: int = 2) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU())
        self.blocks = nn.Sequential(*(SeparableBlock(width) for _ in range(blocks)))
        self.head = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.stem(x)).mean(dim=(2, 3)))


def separable_net(**kwargs: Any) -> nn.Module:
    """The model factory. Taking ``**kwargs``, it is given ``num_classes`` and ``in_channels``;
    ``model.kwargs`` in the experiment file adds the rest (``width`` here)."""
    return SeparableNet(**kwargs)
