"""The user's own data: ``data: {factory: "package.module:callable", options: {...}}``.

The callable (or ``path/to/file.py:callable``; only that file is imported) is called with the
options and returns the splits as a mapping ``{"train": Dataset, "test": Dataset, "num_classes":
int}`` with an optional ``"val": Dataset``, or a :class:`UserData` with the same fields. Each
Dataset is any map-style torch dataset (``len`` and ``[i]``) whose items are ``(input_tensor,
label)``. The data is used as given (no normalisation; do it in the dataset). Without ``val`` a
validation split is carved from train, seeded and stratified by the labels.

Data from a factory pickles as its recipe (the reference and options): a Ray worker calls the
factory where it runs instead of receiving the data through the object store.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, Subset

from prunetune.errors import PrunetuneError
from prunetune.user_code import load_reference
from prunetune.zoo.datasets._split import stratified_split, stratified_subset
from prunetune.zoo.datasets.base import DataSplits

__all__ = ["UserData", "load_factory"]

CONTRACT = (
    "a mapping {'train': Dataset, 'test': Dataset, 'num_classes': int} with an optional 'val': Dataset "
    "(or a prunetune.zoo.datasets.UserData), each Dataset map-style with (input_tensor, label) items"
)


@dataclass(frozen=True)
class UserData:
    """What a data factory may return instead of a mapping."""

    train: Dataset
    test: Dataset
    num_classes: int
    val: Dataset | None = None


def _bad(reference: str, problem: str) -> PrunetuneError:
    return PrunetuneError(f"The data factory {reference!r} {problem}. It must return {CONTRACT}.")


def _fields(reference: str, result: Any) -> dict[str, Any]:
    if isinstance(result, UserData):
        return {"train": result.train, "val": result.val, "test": result.test, "num_classes": result.num_classes}
    if not isinstance(result, Mapping):
        raise _bad(reference, f"returned a {type(result).__name__}")
    missing = [key for key in ("train", "test", "num_classes") if key not in result]
    if missing:
        raise _bad(reference, f"returned no {missing[0]!r}")
    unknown = sorted(set(result) - {"train", "val", "test", "num_classes"})
    if unknown:
        raise _bad(reference, f"returned the unknown key {unknown[0]!r}")
    return {"val": None, **result}


def _check_split(reference: str, name: str, dataset: Any, num_classes: int) -> tuple[int, ...]:
    """The input shape of the split's first item, after checking the split is usable."""
    if not (hasattr(dataset, "__len__") and hasattr(dataset, "__getitem__")):
        raise _bad(reference, f"returned a {type(dataset).__name__} as {name!r}, which is not a map-style Dataset")
    if len(dataset) == 0:
        raise _bad(reference, f"returned an empty {name!r} split")
    item = dataset[0]
    if not (isinstance(item, (tuple, list)) and len(item) >= 2 and isinstance(item[0], torch.Tensor)):
        raise _bad(reference, f"returned a {name!r} split whose items are {type(item).__name__}, not (input_tensor, label)")
    label = item[1]
    label = int(label.item()) if isinstance(label, torch.Tensor) and label.numel() == 1 else label
    if isinstance(label, bool) or not isinstance(label, numbers.Integral) or not 0 <= int(label) < num_classes:
        raise _bad(reference, f"returned a {name!r} split whose first label is {item[1]!r}, not a class in 0..{num_classes - 1}")
    return tuple(int(d) for d in item[0].shape)


def labels_of(dataset: Any) -> np.ndarray:
    """Every label of ``dataset``: its ``targets`` / ``labels`` attribute where it has one, else read item by item."""
    for attribute in ("targets", "labels"):
        values = getattr(dataset, attribute, None)
        if values is not None and len(values) == len(dataset):
            return np.asarray([int(v) for v in values], dtype=np.int64)
    return np.asarray([int(dataset[i][1]) for i in range(len(dataset))], dtype=np.int64)


def load_factory(
    reference: str, *, options: Mapping[str, Any] | None = None, val_fraction: float = 0.1, seed: int = 0,
    limit: int | None = None,
) -> DataSplits:
    """Call the user's data factory and check what it returned (see the module docstring)."""
    factory, recorded = load_reference(reference, label="data factory ('data.factory')", callable_only=True)
    try:
        result = factory(**dict(options or {}))
    except TypeError as error:
        raise PrunetuneError(
            f"The data factory {reference!r} raised TypeError when called with {dict(options or {})!r} "
            f"('data.options'): {error}"
        ) from error
    fields = _fields(reference, result)
    num_classes = fields["num_classes"]
    if isinstance(num_classes, bool) or not isinstance(num_classes, numbers.Integral) or num_classes < 2:
        raise _bad(reference, f"returned num_classes={num_classes!r}, not an integer >= 2")
    shape = _check_split(reference, "train", fields["train"], num_classes)
    for name in ("val", "test"):
        if fields[name] is not None and _check_split(reference, name, fields[name], num_classes) != shape:
            raise _bad(reference, f"returned a {name!r} split whose inputs differ in shape from train's {shape}")
    train, val, notes = fields["train"], fields["val"], []
    if limit is not None or val is None:
        labels = labels_of(train)
        rng = np.random.default_rng(seed)
        pool = np.arange(len(train))
        if limit is not None and limit < len(pool):
            pool = pool[stratified_subset(labels, limit, rng)]
            notes.append(f"train limited to {limit:,} (stratified, seed {seed})")
        if val is None:
            kept, carved = stratified_split(labels[pool], val_fraction, rng)
            val = Subset(train, pool[carved].tolist())
            pool = pool[kept]
            notes.append(f"val = stratified {val_fraction * 100:g}% of train (seed {seed})")
        train = Subset(train, pool.tolist())
    recipe = (load_factory, {"reference": recorded, "options": dict(options or {}), "val_fraction": val_fraction,
                             "seed": seed, "limit": limit})
    return DataSplits(
        name="factory",
        train=train,
        val=val,
        test=fields["test"],
        num_classes=int(num_classes),
        input_shape=shape,
        mean=(),
        std=(),
        description=(
            f"data from {recorded}: {len(train):,} train / {len(val):,} val / {len(fields['test']):,} test"
            + ("; " + "; ".join(notes) if notes else "")
        ),
        recipe=recipe,
    )
