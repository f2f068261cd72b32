"""Train-time augmentation of image batches: random crops from zero-padded images, random flips."""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import Dataset

from prunetune.errors import PrunetuneError

__all__ = ["AUGMENT_KEYS", "Augmented", "check_augment"]

#: What ``data.augment`` may hold.
AUGMENT_KEYS = ("crop_padding", "hflip")


def check_augment(augment: Any, input_shape: tuple[int, ...] | None = None) -> dict[str, Any]:
    """``augment`` checked: known keys, a padding >= 0, a flag; images only when the shape is known."""
    if not isinstance(augment, dict):
        raise PrunetuneError(f"The 'data.augment' key must be a mapping of {', '.join(AUGMENT_KEYS)}. Got {augment!r} instead.")
    unknown = sorted(set(augment) - set(AUGMENT_KEYS))
    if unknown:
        raise PrunetuneError(f"Unknown key 'data.augment.{unknown[0]}'. Known keys: {', '.join(AUGMENT_KEYS)}.")
    padding = augment.get("crop_padding", 0)
    if isinstance(padding, bool) or not isinstance(padding, int) or padding < 0:
        raise PrunetuneError(f"The 'data.augment.crop_padding' key must be an integer >= 0. Got {padding!r} instead.")
    flip = augment.get("hflip", False)
    if not isinstance(flip, bool):
        raise PrunetuneError(f"The 'data.augment.hflip' key must be true or false. Got {flip!r} instead.")
    if augment and input_shape is not None and len(input_shape) != 3:
        raise PrunetuneError(f"The 'data.augment' key applies to images (channels, height, width); this data is shaped {input_shape}.")
    return dict(augment)


class Augmented(Dataset):
    """Items of ``dataset`` randomly cropped (after zero padding) and flipped, each time they are read.

    The randomness is drawn from a generator seeded with ``seed`` and the item's index and read
    count, so a run with the same seed augments the same way.
    """

    def __init__(self, dataset: Dataset, *, crop_padding: int = 0, hflip: bool = False, seed: int = 0) -> None:
        self.dataset = dataset
        self.crop_padding = crop_padding
        self.hflip = hflip
        self.seed = seed
        self._reads: dict[int, int] = {}

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, Any]:
        image, label = self.dataset[index]
        count = self._reads.get(index, 0)
        self._reads[index] = count + 1
        generator = torch.Generator().manual_seed(hash((self.seed, int(index), count)) & 0x7FFF_FFFF)
        if self.crop_padding:
            pad = self.crop_padding
            height, width = image.shape[-2:]
            padded = torch.nn.functional.pad(image, (pad, pad, pad, pad))
            top, left = (int(v) for v in torch.randint(0, 2 * pad + 1, (2,), generator=generator))
            image = padded[..., top : top + height, left : left + width]
        if self.hflip and bool(torch.rand(1, generator=generator) < 0.5):
            image = image.flip(-1)
        return image, label
