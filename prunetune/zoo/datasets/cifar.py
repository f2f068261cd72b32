"""CIFAR-10 from its official binary layout (``cifar-10-batches-bin``) or from loose record files.

The binary layout is a plain array of 3,073-byte records (one label byte, then 1,024 red,
1,024 green and 1,024 blue bytes, row-major), so ``numpy.fromfile`` reads it at disk speed with
no unpickling. Any ``*.bin`` of whole records is accepted too, so that a subset such as the first
4,000 training records can stand in for the full set where that is all there is.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from prunetune.errors import PrunetuneError
from prunetune.zoo.datasets._paths import as_path
from prunetune.zoo.datasets.idx import ImageArrays

__all__ = [
    "CIFAR10_FOLDER",
    "CIFAR10_TEST_FILE",
    "CIFAR10_TRAIN_FILES",
    "RECORD_BYTES",
    "read_cifar10",
    "read_cifar10_records",
]

CIFAR10_FOLDER = "cifar-10-batches-bin"
CIFAR10_TRAIN_FILES = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
CIFAR10_TEST_FILE = "test_batch.bin"
RECORD_BYTES = 1 + 3 * 32 * 32
_NUM_CLASSES = 10
_EXPECTED = (
    f"{CIFAR10_FOLDER}/ with {', '.join(CIFAR10_TRAIN_FILES)} and {CIFAR10_TEST_FILE}, "
    f"or *.bin files of {RECORD_BYTES}-byte records"
)


def read_cifar10_records(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """The records of one binary file: uint8 images ``[N, 3, 32, 32]`` and int64 labels.

    Raises:
        PrunetuneError: naming the file, when its size is not a whole number of records, it holds
            none, or a label byte is outside 0..9 (a sign that it is not a CIFAR-10 file).
    """
    path = as_path(path)
    try:
        raw = np.fromfile(path, dtype=np.uint8)
    except OSError as exc:
        raise PrunetuneError(f"Cannot read CIFAR-10 file {path}: {exc}") from None
    if raw.size == 0 or raw.size % RECORD_BYTES:
        raise PrunetuneError(
            f"Malformed CIFAR-10 file {path}: its size {raw.size} bytes is not a positive multiple "
            f"of {RECORD_BYTES} (one label byte + 3,072 pixel bytes per record)"
        )
    records = raw.reshape(-1, RECORD_BYTES)
    labels = records[:, 0].astype(np.int64)
    bad = np.flatnonzero(labels >= _NUM_CLASSES)
    if bad.size:
        raise PrunetuneError(
            f"Malformed CIFAR-10 file {path}: record {int(bad[0])} has label byte {int(labels[bad[0]])}, "
            f"outside 0..{_NUM_CLASSES - 1}"
        )
    images = np.ascontiguousarray(records[:, 1:]).reshape(-1, 3, 32, 32)
    return images, labels


def _concat(paths: list[Path]) -> tuple[np.ndarray, np.ndarray]:
    parts = [read_cifar10_records(path) for path in paths]
    return np.concatenate([x for x, _ in parts]), np.concatenate([y for _, y in parts])


def _no_test() -> tuple[np.ndarray, np.ndarray]:
    return np.empty((0, 3, 32, 32), dtype=np.uint8), np.empty(0, dtype=np.int64)


def read_cifar10(root: str | Path) -> ImageArrays:
    """CIFAR-10 images (uint8 ``[N, 3, 32, 32]``) and labels from a local copy.

    ``root`` may be:

    * the official ``cifar-10-batches-bin`` folder, or its parent: ``data_batch_1..5.bin`` are
      the training records (50,000) and ``test_batch.bin`` the test records (10,000);
    * a folder without the official names: every ``*.bin`` in it (sorted by name) is read as
      training records and the test arrays are empty;
    * one ``*.bin`` file: its records are the training records and the test arrays are empty.

    Empty test arrays tell :func:`~prunetune.zoo.datasets.load_data` to carve a test split.
    """
    path = as_path(root)
    if path.is_file():
        return ImageArrays(*read_cifar10_records(path), *_no_test())
    if not path.is_dir():
        raise PrunetuneError(f"CIFAR-10 folder not found: {path} does not exist; expected {_EXPECTED}")
    folder = path / CIFAR10_FOLDER if (path / CIFAR10_FOLDER).is_dir() else path
    official = (*CIFAR10_TRAIN_FILES, CIFAR10_TEST_FILE)
    if any((folder / name).is_file() for name in official):
        missing = [name for name in official if not (folder / name).is_file()]
        if missing:
            raise PrunetuneError(
                f"CIFAR-10 files not found in {folder}: missing {', '.join(missing)}; "
                f"expected {', '.join(official)}"
            )
        train = _concat([folder / name for name in CIFAR10_TRAIN_FILES])
        test = read_cifar10_records(folder / CIFAR10_TEST_FILE)
        return ImageArrays(*train, *test)
    loose = sorted(p for p in folder.glob("*.bin") if p.is_file())
    if not loose:
        raise PrunetuneError(f"CIFAR-10 files not found in {folder}: expected {_EXPECTED}")
    return ImageArrays(*_concat(loose), *_no_test())
