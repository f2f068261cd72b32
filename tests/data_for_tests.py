"""Data factories from outside prunetune, named by this file's path in tests."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from sklearn.datasets import load_digits
from torch.utils.data import Dataset

from prunetune.zoo.datasets import UserData


class DigitsItems(Dataset):
    """scikit-learn's digits as a map-style dataset of (1x8x8 float tensor, int label) items."""

    def __init__(self, images: np.ndarray, labels: np.ndarray) -> None:
        self.images = images
        self.labels = labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image = torch.from_numpy(self.images[index]).float().div(16.0).sub(0.3).div(0.37).unsqueeze(0)  # about standardised
        return image, int(self.labels[index])


def digits(*, test_share: float = 0.25, with_val: bool = False) -> dict[str, Any]:
    """Digits split in two (or three) by position; no val unless asked: prunetune carves it."""
    bunch = load_digits()
    images, labels = bunch.images.astype(np.float32), bunch.target.astype(np.int64)
    cut = int(len(labels) * (1 - test_share))
    result: dict[str, Any] = {"test": DigitsItems(images[cut:], labels[cut:]), "num_classes": 10}
    if with_val:
        result["train"], result["val"] = DigitsItems(images[: cut - 150], labels[: cut - 150]), DigitsItems(images[cut - 150 : cut], labels[cut - 150 : cut])
    else:
        result["train"] = DigitsItems(images[:cut], labels[:cut])
    return result


def digits_as_dataclass() -> UserData:
    splits = digits()
    return UserData(train=splits["train"], test=splits["test"], num_classes=10)


def a_list() -> list[int]:
    return [1, 2, 3]


def no_test() -> dict[str, Any]:
    splits = digits()
    return {"train": splits["train"], "num_classes": 10}


def tuples_not_tensors() -> dict[str, Any]:
    return {"train": [(1.0, 0), (2.0, 1)], "test": [(1.0, 0)], "num_classes": 2}
