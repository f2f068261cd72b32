"""Normalisation with statistics of the training split only.

Images are scaled to [0, 1] and then standardised per channel; tables are standardised per
feature. Statistics come from the train split alone so that nothing about the validation or test
data leaks into training; the same numbers are applied to every split and reported in
:class:`DataSplits` so that an exported model can be fed the same way.

Image statistics are exact and cheap: pixels are small integers, so a per-channel histogram gives
the mean and standard deviation, and a 256-entry lookup table converts to float32 in one pass.
"""

from __future__ import annotations

import numpy as np

__all__ = ["image_stats", "apply_image_stats", "table_stats", "apply_table_stats"]


def image_stats(images: np.ndarray, max_value: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and std of uint8 images ``[N, C, H, W]`` on the [0, 1] scale."""
    levels = np.arange(256, dtype=np.float64) / max_value
    means, stds = [], []
    for channel in range(images.shape[1]):
        counts = np.bincount(images[:, channel].ravel(), minlength=256).astype(np.float64)
        total = counts.sum()
        mean = float((counts * levels).sum() / total)
        var = float((counts * (levels - mean) ** 2).sum() / total)
        means.append(mean)
        stds.append(var**0.5 if var > 0 else 1.0)
    return np.array(means), np.array(stds)


def apply_image_stats(images: np.ndarray, max_value: int, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """Float32 images ``(x / max_value - mean) / std``, channel by channel."""
    out = np.empty(images.shape, dtype=np.float32)
    levels = np.arange(256, dtype=np.float64) / max_value
    for channel in range(images.shape[1]):
        table = ((levels - mean[channel]) / std[channel]).astype(np.float32)
        out[:, channel] = table[images[:, channel]]
    return out


def table_stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature mean and std (a constant feature gets std 1 rather than a division by zero)."""
    mean = features.mean(axis=0, dtype=np.float64)
    std = features.std(axis=0, dtype=np.float64)
    std[std == 0] = 1.0
    return mean, std


def apply_table_stats(features: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """Float32 features ``(x - mean) / std``."""
    return ((features - mean) / std).astype(np.float32)
