"""``load_data("mnist:~/data/mnist")``: one string names a data set and where it lies.

A spec string is what experiment files and the command line carry, so the data set is chosen
the same way everywhere. Every argument is checked before anything is read, and every problem
is one :class:`~prunetune.errors.PrunetuneError` that names it.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prunetune.errors import PrunetuneError
from prunetune.zoo.datasets._assemble import image_splits, table_splits
from prunetune.zoo.datasets._paths import as_path
from prunetune.zoo.datasets.base import DataSplits
from prunetune.zoo.datasets.cifar import read_cifar10
from prunetune.zoo.datasets.creditcard import creditcard_arrays, find_creditcard_file, read_creditcard
from prunetune.zoo.datasets.digits import DIGITS_MAX_VALUE, read_digits
from prunetune.zoo.datasets.idx import read_fashion_mnist, read_mnist
from prunetune.zoo.datasets.imagefolder import load_image_folder

__all__ = ["list_datasets", "load_data"]


def _load_digits(path: Path | None, common: dict[str, Any], options: dict[str, Any]) -> DataSplits:
    images, labels = read_digits()
    empty_x, empty_y = images[:0], labels[:0]
    return image_splits(
        "digits", "scikit-learn digits (8x8)", "sklearn.datasets.load_digits", images, labels, empty_x, empty_y,
        max_value=DIGITS_MAX_VALUE, num_classes=10, **common, **options,
    )


def _idx_loader(name: str, title: str, reader: Callable[[Path], Any]) -> Callable[..., DataSplits]:
    def load(path: Path, common: dict[str, Any], options: dict[str, Any]) -> DataSplits:
        arrays = reader(path)
        return image_splits(name, title, str(path), *arrays, max_value=255, num_classes=10, **common, **options)

    return load


def _load_cifar10(path: Path, common: dict[str, Any], options: dict[str, Any]) -> DataSplits:
    arrays = read_cifar10(path)
    return image_splits(
        "cifar10", "CIFAR-10", str(path), *arrays, max_value=255, num_classes=10, **common, **options
    )


def _load_creditcard(path: Path, common: dict[str, Any], options: dict[str, Any]) -> DataSplits:
    file = find_creditcard_file(path)
    features, labels = creditcard_arrays(read_creditcard(file))
    return table_splits(
        "creditcard", "Credit-card fraud", str(file), features, labels, num_classes=2, **common, **options
    )


def _is_int(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _check_bool(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise PrunetuneError(f"The '{name}' option of load_data must be True or False. Got {value!r} instead.")
    return value


def _check_fraction(name: str, value: object, kind: str = "argument") -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 < value < 1:
        raise PrunetuneError(f"The '{name}' {kind} of load_data must be in (0, 1). Got {value!r} instead.")
    return float(value)


def _check_seed(name: str, value: object, kind: str = "argument") -> int:
    if not _is_int(value) or value < 0:
        raise PrunetuneError(
            f"The '{name}' {kind} of load_data must be a non-negative integer. Got {value!r} instead."
        )
    return int(value)


def _check_size(name: str, value: object) -> int:
    if not _is_int(value) or not 4 <= value <= 4096:
        raise PrunetuneError(f"The '{name}' option of load_data must be an integer in [4, 4096]. Got {value!r} instead.")
    return int(value)


def _load_image_folder(path: Path, common: dict[str, Any], options: dict[str, Any]) -> DataSplits:
    if not path.is_dir():
        raise PrunetuneError(f"The image folder {path} does not exist (imagefolder:PATH names a folder with train/<class>/).")
    return load_image_folder(path, **common, **options)


_OPTION_CHECKS: dict[str, Callable[[str, object], object]] = {
    "image_size": _check_size,
    "normalize": _check_bool,
    "test_fraction": lambda name, value: _check_fraction(name, value, "option"),
    "test_seed": lambda name, value: _check_seed(name, value, "option"),
    "train_normal_only": _check_bool,
}
_IMAGE_DEFAULTS = {"normalize": True, "test_fraction": 0.2, "test_seed": 0}


@dataclass(frozen=True)
class _Entry:
    needs_path: bool
    load: Callable[..., DataSplits]
    defaults: dict[str, Any]


_DATASETS: dict[str, _Entry] = {
    "digits": _Entry(False, _load_digits, _IMAGE_DEFAULTS),
    "mnist": _Entry(True, _idx_loader("mnist", "MNIST", read_mnist), _IMAGE_DEFAULTS),
    "fashion-mnist": _Entry(
        True, _idx_loader("fashion-mnist", "Fashion-MNIST", read_fashion_mnist), _IMAGE_DEFAULTS
    ),
    "cifar10": _Entry(True, _load_cifar10, _IMAGE_DEFAULTS),
    "creditcard": _Entry(True, _load_creditcard, {**_IMAGE_DEFAULTS, "train_normal_only": False}),
    "imagefolder": _Entry(True, _load_image_folder, {**_IMAGE_DEFAULTS, "image_size": 32}),
}


def _forms() -> str:
    return ", ".join(name if not entry.needs_path else f"{name}:PATH" for name, entry in _DATASETS.items())


def list_datasets() -> list[str]:
    """The names :func:`load_data` knows, in the order the documentation lists them."""
    return list(_DATASETS)


def _parse(spec: object) -> tuple[str, _Entry, Path | None]:
    if not isinstance(spec, str) or not spec.strip():
        raise PrunetuneError(
            "The 'spec' argument of load_data must be a string such as 'digits' or 'mnist:PATH'. "
            f"Got {spec!r} instead."
        )
    name, _, path = spec.strip().partition(":")
    key = name.strip().lower().replace("_", "-")
    entry = _DATASETS.get(key)
    if entry is None:
        raise PrunetuneError(f"Unknown dataset {name!r} in spec {spec!r}. Known datasets: {_forms()}.")
    path = path.strip()
    if entry.needs_path and not path:
        raise PrunetuneError(
            f"The dataset {key!r} needs the path of its local copy: write '{key}:PATH' with PATH its folder "
            f"or file (nothing is downloaded). Got {spec!r}."
        )
    if not entry.needs_path and path:
        raise PrunetuneError(
            f"The dataset {key!r} is bundled with scikit-learn and takes no PATH: write '{key}'. Got {spec!r}."
        )
    return key, entry, as_path(path) if path else None


def load_data(
    spec: str,
    *,
    val_fraction: float = 0.1,
    seed: int = 0,
    limit: int | None = None,
    **options: Any,
) -> DataSplits:
    """Read a local data set and split it into train, validation and test tensors.

    Args:
        spec: ``digits``, ``mnist:PATH``, ``fashion-mnist:PATH``, ``cifar10:PATH``,
            ``creditcard:PATH`` or ``imagefolder:PATH`` (the class-per-folder layout, see
            :mod:`prunetune.zoo.datasets.imagefolder`); PATH is the data's folder or file
            (``~`` is expanded).
            Nothing is ever downloaded.
        val_fraction: Share of the training records carved (stratified, seeded) into the
            validation split, which searches select on; the test split stays for the report.
        seed: Seeds the ``limit`` subsample and the validation split.
        limit: At most this many training records (stratified, seeded), before the validation
            split; for fast runs. The test split is not limited.
        **options: Per data set. All: ``normalize`` (default True: per-channel or per-feature
            mean/std of the train split). Where there is no standard test split (digits,
            credit card, CIFAR-10 without ``test_batch.bin``): ``test_fraction`` (default 0.2)
            and ``test_seed`` (default 0; fixed, so that the test set does not move with
            ``seed``). Credit card: ``train_normal_only`` (default False) keeps only normal
            transactions in train, for an autoencoder; val and test keep the frauds. Image
            folder: ``image_size`` (default 32: every image is resized to it, square).

    Returns:
        The :class:`DataSplits`, whose ``description`` states the source, the sizes and how
        the splits were made.

    Raises:
        PrunetuneError: an unknown data set or option, a spec without its PATH, an argument out
            of range, a missing folder or file, or a malformed file.

    Example:
        >>> splits = load_data("digits", seed=0)
        >>> splits.input_shape, splits.num_classes
        ((1, 8, 8), 10)
    """
    val_fraction = _check_fraction("val_fraction", val_fraction)
    seed = _check_seed("seed", seed)
    if limit is not None and (not _is_int(limit) or limit < 1):
        raise PrunetuneError(
            f"The 'limit' argument of load_data must be a positive integer or None. Got {limit!r} instead."
        )
    key, entry, path = _parse(spec)
    unknown = sorted(set(options) - set(entry.defaults))
    if unknown:
        raise PrunetuneError(
            f"Unknown option {unknown[0]!r} of load_data for the dataset {key!r}. "
            f"Known options: {', '.join(entry.defaults)}."
        )
    chosen = {name: _OPTION_CHECKS[name](name, value) for name, value in {**entry.defaults, **options}.items()}
    common = {"val_fraction": val_fraction, "seed": seed, "limit": limit}
    return entry.load(path, common, chosen)
