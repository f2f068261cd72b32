"""The one shape every dataset reader hands to the rest of prunetune.

Searches, objectives and the command line only ever see :class:`DataSplits`: three map-style
datasets (train, validation, test) plus the facts a model needs to be built for them. Keeping the
validation split separate from the test split is what lets a search select on validation accuracy
and still report an honest test accuracy at the end.

The bundled sets are tensors in memory (``TensorDataset``), shipped to Ray workers whole. Data
read from the user's own files (an image folder, a factory) carries its ``recipe`` instead: pickled,
it travels as the recipe, and each worker opens the data where it runs.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import torch
from torch.utils.data import DataLoader, Dataset

from prunetune.errors import PrunetuneError

__all__ = ["DataSplits", "Loaders", "augmented"]


class Loaders(NamedTuple):
    """Train, validation and test loaders; unpacks like a tuple, reads like a record."""

    train: DataLoader
    val: DataLoader
    test: DataLoader


@dataclass(frozen=True, repr=False)
class DataSplits:
    """A dataset split three ways, already normalised.

    Attributes:
        name: The dataset's name as :func:`~prunetune.zoo.datasets.load_data` knows it.
        train: ``(input, label)`` items to train (and fine-tune) on: float32 inputs, int labels.
        val: Carved from the training data (seeded, stratified): what searches select on.
        test: The dataset's standard test split where it has one; only for the final report.
        num_classes: Number of label values (labels are ``0 .. num_classes - 1``).
        input_shape: Shape of one input: ``(C, H, W)`` for images, ``(features,)`` for tables.
        mean: Per channel (images, on the [0, 1] scale) or per feature (tables), taken from the
            train split and subtracted from every split.
        std: The matching standard deviations the inputs were divided by.
        description: One line: where the data came from, the split sizes and how they were made.
        num_workers: Loader worker processes (0: batches are made in the training process).
        augment: Train-time augmentation of images: ``crop_padding`` (pixels of zero padding a
            random crop takes back) and ``hflip`` (random horizontal flips); empty for none.
        recipe: ``(function, keyword arguments)`` that opens this data again; set for data read
            from the user's files, which then pickles as the recipe (see the module docstring).
    """

    name: str
    train: Dataset
    val: Dataset
    test: Dataset
    num_classes: int
    input_shape: tuple[int, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    description: str
    num_workers: int = 0
    augment: Mapping[str, Any] = field(default_factory=dict)
    recipe: tuple[Callable[..., DataSplits], Mapping[str, Any]] | None = None

    def __reduce__(self) -> Any:
        if self.recipe is None:
            return super().__reduce__()
        function, kwargs = self.recipe
        return (_reopen, (function, dict(kwargs), self.num_workers, dict(self.augment)))

    def loaders(self, batch_size: int, *, seed: int, shuffle_train: bool = True, pin_memory: bool = False) -> Loaders:
        """DataLoaders over the three splits; only the train loader shuffles (and augments).

        The train loader draws its order from its own generator seeded with ``seed``, so that
        the same seed gives the same batches whatever else uses torch's global random state.
        ``num_workers`` worker processes read the batches (none for the in-memory sets by default);
        ``pin_memory`` speeds up copies to a GPU.
        """
        if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size < 1:
            raise PrunetuneError(
                "The 'batch_size' argument of DataSplits.loaders must be a positive integer. "
                f"Got {batch_size!r} instead."
            )
        generator = torch.Generator().manual_seed(int(seed))
        common: dict[str, Any] = {"batch_size": int(batch_size), "num_workers": self.num_workers, "pin_memory": pin_memory}
        if self.num_workers:
            common["persistent_workers"] = False
        train = augmented(self.train, self.augment, seed) if self.augment else self.train
        return Loaders(
            train=DataLoader(train, shuffle=shuffle_train, generator=generator, **common),
            val=DataLoader(self.val, shuffle=False, **common),
            test=DataLoader(self.test, shuffle=False, **common),
        )

    def __repr__(self) -> str:
        return (
            f"DataSplits(name={self.name!r}, train={len(self.train)}, val={len(self.val)}, "
            f"test={len(self.test)}, num_classes={self.num_classes}, input_shape={self.input_shape})"
        )


def _reopen(
    function: Callable[..., DataSplits], kwargs: dict[str, Any], num_workers: int, augment: dict[str, Any]
) -> DataSplits:
    """Open data from its recipe again (on the process that unpickles it), with the same loader settings."""
    import dataclasses

    return dataclasses.replace(function(**kwargs), num_workers=num_workers, augment=augment)


def augmented(dataset: Dataset, augment: Mapping[str, Any], seed: int) -> Dataset:
    """``dataset`` with random crops (``crop_padding``) and horizontal flips (``hflip``) of its images."""
    from prunetune.zoo.datasets.augment import Augmented

    return Augmented(dataset, crop_padding=int(augment.get("crop_padding", 0)), hflip=bool(augment.get("hflip", False)), seed=seed)
