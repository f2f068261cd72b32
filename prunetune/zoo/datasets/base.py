"""The one shape every dataset reader hands to the rest of prunetune.

Searches, objectives and the command line only ever see :class:`DataSplits`: three tensor
datasets (train, validation, test) plus the facts a model needs to be built for them. Keeping the
validation split separate from the test split is what lets a search select on validation accuracy
and still report an honest test accuracy at the end.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch.utils.data import DataLoader, TensorDataset

from prunetune.errors import PrunetuneError

__all__ = ["DataSplits", "Loaders"]


class Loaders(NamedTuple):
    """Train, validation and test loaders; unpacks like a tuple, reads like a record."""

    train: DataLoader
    val: DataLoader
    test: DataLoader


@dataclass(frozen=True, repr=False)
class DataSplits:
    """A dataset split three ways, already normalised, in memory.

    Attributes:
        name: The dataset's name as :func:`~prunetune.zoo.datasets.load_data` knows it.
        train: Float32 inputs and int64 labels to train (and fine-tune) on.
        val: Carved from the training data (seeded, stratified): what searches select on.
        test: The dataset's standard test split where it has one; only for the final report.
        num_classes: Number of label values (labels are ``0 .. num_classes - 1``).
        input_shape: Shape of one input: ``(C, H, W)`` for images, ``(features,)`` for tables.
        mean: Per channel (images, on the [0, 1] scale) or per feature (tables), taken from the
            train split and subtracted from every split.
        std: The matching standard deviations the inputs were divided by.
        description: One line: where the data came from, the split sizes and how they were made.
    """

    name: str
    train: TensorDataset
    val: TensorDataset
    test: TensorDataset
    num_classes: int
    input_shape: tuple[int, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    description: str

    def loaders(self, batch_size: int, *, seed: int, shuffle_train: bool = True) -> Loaders:
        """DataLoaders over the three splits; only the train loader shuffles.

        The train loader draws its order from its own generator seeded with ``seed``, so that
        the same seed gives the same batches whatever else uses torch's global random state.
        Everything is in memory already, so no worker processes are started.
        """
        if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size < 1:
            raise PrunetuneError(
                "The 'batch_size' argument of DataSplits.loaders must be a positive integer. "
                f"Got {batch_size!r} instead."
            )
        generator = torch.Generator().manual_seed(int(seed))
        return Loaders(
            train=DataLoader(self.train, batch_size=int(batch_size), shuffle=shuffle_train, generator=generator),
            val=DataLoader(self.val, batch_size=int(batch_size), shuffle=False),
            test=DataLoader(self.test, batch_size=int(batch_size), shuffle=False),
        )

    def __repr__(self) -> str:
        return (
            f"DataSplits(name={self.name!r}, train={len(self.train)}, val={len(self.val)}, "
            f"test={len(self.test)}, num_classes={self.num_classes}, input_shape={self.input_shape})"
        )
