"""Dataset readers: local copies only, split into train / validation / test tensors.

:func:`load_data` is the one entry point the rest of prunetune uses; the ``read_*`` functions
give the raw arrays for anyone who wants to split or transform them differently.
"""

from __future__ import annotations

from prunetune.zoo.datasets.base import DataSplits, Loaders
from prunetune.zoo.datasets.cifar import read_cifar10, read_cifar10_records
from prunetune.zoo.datasets.creditcard import creditcard_arrays, find_creditcard_file, read_creditcard
from prunetune.zoo.datasets.digits import read_digits
from prunetune.zoo.datasets.idx import ImageArrays, read_fashion_mnist, read_idx, read_mnist
from prunetune.zoo.datasets.factory import UserData, load_factory
from prunetune.zoo.datasets.imagefolder import ImageFiles, load_image_folder
from prunetune.zoo.datasets.section import open_data
from prunetune.zoo.datasets.spec import list_datasets, load_data

__all__ = [
    "DataSplits",
    "ImageArrays",
    "ImageFiles",
    "Loaders",
    "UserData",
    "creditcard_arrays",
    "find_creditcard_file",
    "list_datasets",
    "load_data",
    "load_factory",
    "load_image_folder",
    "open_data",
    "read_cifar10",
    "read_cifar10_records",
    "read_creditcard",
    "read_digits",
    "read_fashion_mnist",
    "read_idx",
    "read_mnist",
]
