"""Arrays in, :class:`DataSplits` out: the splitting and normalisation policy in one place.

* The validation split is carved from the training records (seeded, stratified) so that a search
  never selects on the test set.
* The test split is the data set's standard one where it has one. Where it has none (digits,
  credit card, a partial CIFAR-10 file) it is carved first with its own ``test_seed``, so that the
  test set stays the same whatever ``seed`` a search runs with.
* ``limit`` subsamples the remaining training records (stratified, seeded) before the validation
  split, so fast runs keep the class balance; the test split is never limited.
* Normalisation uses statistics of the final train split only.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import TensorDataset

from prunetune.errors import PrunetuneError
from prunetune.zoo.datasets._normalize import apply_image_stats, apply_table_stats, image_stats, table_stats
from prunetune.zoo.datasets._split import stratified_split, stratified_subset
from prunetune.zoo.datasets.base import DataSplits

__all__ = ["image_splits", "table_splits"]


def _split_plan(
    name: str,
    labels: np.ndarray,
    *,
    has_test: bool,
    val_fraction: float,
    seed: int,
    limit: int | None,
    test_fraction: float,
    test_seed: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, list[str]]:
    """Indices into the training records for train, val and (when carved) test, and how."""
    total = len(labels)
    pool = np.arange(total)
    carved = None
    notes: list[str] = []
    if not has_test:
        pool, carved = stratified_split(labels, test_fraction, np.random.default_rng(test_seed))
        notes.append(
            f"test = stratified {test_fraction * 100:g}% of the {total:,} records (test_seed {test_seed}), "
            "there being no standard test split"
        )
    else:
        notes.append("test = the standard test split")
    rng = np.random.default_rng(seed)
    if limit is not None and limit < len(pool):
        notes.append(f"training records limited to {limit:,} of {len(pool):,} (stratified, seed {seed})")
        pool = pool[stratified_subset(labels[pool], limit, rng)]
    kept, val = stratified_split(labels[pool], val_fraction, rng)
    if len(kept) == 0 or len(val) == 0:
        raise PrunetuneError(
            f"Too few training records in {name!r} ({len(pool)}) to carve a validation split of "
            f"{val_fraction:g}: raise 'limit' or check the data"
        )
    notes.insert(
        0, f"val = stratified {val_fraction * 100:g}% of the {len(pool):,} training records (seed {seed})"
    )
    return pool[kept], pool[val], carved, notes


def _dataset(inputs: np.ndarray, labels: np.ndarray) -> TensorDataset:
    targets = np.ascontiguousarray(labels, dtype=np.int64)
    return TensorDataset(torch.from_numpy(inputs), torch.from_numpy(targets))


def _sizes(train: np.ndarray, val: np.ndarray, test: np.ndarray) -> str:
    return f"{len(train):,} train / {len(val):,} val / {len(test):,} test"


def image_splits(
    name: str,
    title: str,
    source: str,
    train_x: np.ndarray,
    train_y: np.ndarray,
    test_x: np.ndarray,
    test_y: np.ndarray,
    *,
    max_value: int,
    num_classes: int,
    val_fraction: float,
    seed: int,
    limit: int | None,
    normalize: bool,
    test_fraction: float,
    test_seed: int,
) -> DataSplits:
    """Splits of uint8 images (``[N, H, W]`` or ``[N, C, H, W]``); empty test arrays mean none."""
    if train_x.ndim == 3:
        train_x, test_x = train_x[:, None], test_x[:, None]
    train_idx, val_idx, carved, notes = _split_plan(
        name, train_y, has_test=len(test_y) > 0, val_fraction=val_fraction, seed=seed,
        limit=limit, test_fraction=test_fraction, test_seed=test_seed,
    )
    if carved is not None:
        test_x, test_y = train_x[carved], train_y[carved]
    train_images = train_x[train_idx]
    channels = train_x.shape[1]
    if normalize:
        mean, std = image_stats(train_images, max_value)
        notes.append(
            f"pixels scaled to [0, 1] by /{max_value}, then standardised per channel "
            "with the train split's mean/std"
        )
    else:
        mean, std = np.zeros(channels), np.ones(channels)
        notes.append(f"pixels scaled to [0, 1] by /{max_value}, not standardised")
    return DataSplits(
        name=name,
        train=_dataset(apply_image_stats(train_images, max_value, mean, std), train_y[train_idx]),
        val=_dataset(apply_image_stats(train_x[val_idx], max_value, mean, std), train_y[val_idx]),
        test=_dataset(apply_image_stats(test_x, max_value, mean, std), test_y),
        num_classes=num_classes,
        input_shape=tuple(int(d) for d in train_x.shape[1:]),
        mean=tuple(float(m) for m in mean),
        std=tuple(float(s) for s in std),
        description=f"{title} from {source}: {_sizes(train_idx, val_idx, test_y)}; " + "; ".join(notes),
    )


def table_splits(
    name: str,
    title: str,
    source: str,
    features: np.ndarray,
    labels: np.ndarray,
    *,
    num_classes: int,
    val_fraction: float,
    seed: int,
    limit: int | None,
    normalize: bool,
    test_fraction: float,
    test_seed: int,
    train_normal_only: bool = False,
) -> DataSplits:
    """Splits of a table with no standard test split; ``train_normal_only`` keeps class 0 in train.

    Dropping the other classes from train only (val and test keep them, and are the same
    records as without the option) is what an autoencoder trained to reconstruct normal data,
    and judged on how it flags the rest, needs.
    """
    train_idx, val_idx, test_idx, notes = _split_plan(
        name, labels, has_test=False, val_fraction=val_fraction, seed=seed,
        limit=limit, test_fraction=test_fraction, test_seed=test_seed,
    )
    if train_normal_only:
        train_idx = train_idx[labels[train_idx] == 0]
        notes.append("train keeps class 0 (normal) only; val and test keep every class")
    train_features = features[train_idx]
    if normalize:
        mean, std = table_stats(train_features)
        notes.append("features standardised with the train split's mean/std")
    else:
        mean, std = np.zeros(features.shape[1]), np.ones(features.shape[1])
        notes.append("features not standardised")
    return DataSplits(
        name=name,
        train=_dataset(apply_table_stats(train_features, mean, std), labels[train_idx]),
        val=_dataset(apply_table_stats(features[val_idx], mean, std), labels[val_idx]),
        test=_dataset(apply_table_stats(features[test_idx], mean, std), labels[test_idx]),
        num_classes=num_classes,
        input_shape=(int(features.shape[1]),),
        mean=tuple(float(m) for m in mean),
        std=tuple(float(s) for s in std),
        description=f"{title} from {source}: {_sizes(train_idx, val_idx, test_idx)}; " + "; ".join(notes),
    )
