"""MNIST and Fashion-MNIST from the original IDX files, gzip-compressed or raw.

The IDX files are what both data sets are distributed as (and what torchvision keeps under
``raw/``), so reading them directly needs no download and no conversion. Headers are checked
against the data length so that a truncated download fails here with the file's name rather than
later as a reshape error.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path
from typing import NamedTuple

import numpy as np

from prunetune.errors import PrunetuneError
from prunetune.zoo.datasets._paths import find_folder

__all__ = ["IDX_FILES", "ImageArrays", "read_idx", "read_mnist", "read_fashion_mnist"]

#: The four files of the MNIST layout (Fashion-MNIST uses the same names).
IDX_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)

# Type byte of the IDX magic number -> big-endian numpy dtype.
_IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_IMAGES_MAGIC = 0x00000803  # unsigned bytes, three dimensions
_LABELS_MAGIC = 0x00000801  # unsigned bytes, one dimension
_NUM_CLASSES = 10


class ImageArrays(NamedTuple):
    """Images as uint8 (``[N, H, W]`` grey or ``[N, C, H, W]`` colour) and int64 labels."""

    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray


def _read_bytes(path: Path) -> bytes:
    try:
        data = path.read_bytes()
        return gzip.decompress(data) if path.suffix == ".gz" else data
    except (OSError, EOFError, zlib.error) as exc:
        raise PrunetuneError(f"Cannot read {path}: {exc}") from None


def read_idx(path: str | Path, *, expected_magic: int | None = None) -> np.ndarray:
    """One IDX file (``.gz`` or raw) as a numpy array of the shape its header states.

    Args:
        path: The file.
        expected_magic: When given, the file's magic number must equal it (for MNIST images
            0x00000803, labels 0x00000801), so that swapped or foreign files are caught.

    Raises:
        PrunetuneError: naming the file, when the magic number is wrong or the data is shorter
            or longer than the header says.
    """
    path = Path(path)
    data = _read_bytes(path)
    if len(data) < 4:
        raise PrunetuneError(f"Malformed IDX file {path}: only {len(data)} bytes, not even a magic number")
    magic = int.from_bytes(data[:4], "big")
    type_code, ndim = data[2], data[3]
    if data[:2] != b"\x00\x00" or type_code not in _IDX_TYPES or ndim == 0:
        raise PrunetuneError(f"Malformed IDX file {path}: bad magic number 0x{magic:08x} (not an IDX file)")
    if expected_magic is not None and magic != expected_magic:
        raise PrunetuneError(
            f"Malformed IDX file {path}: wrong magic number 0x{magic:08x}, expected 0x{expected_magic:08x}"
        )
    header = 4 + 4 * ndim
    if len(data) < header:
        raise PrunetuneError(f"Malformed IDX file {path}: truncated header ({len(data)} bytes)")
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(_IDX_TYPES[type_code])
    expected = int(np.prod(shape)) * dtype.itemsize
    found = len(data) - header
    if found < expected:
        raise PrunetuneError(
            f"Malformed IDX file {path}: truncated, the header {shape} needs {expected} data bytes, "
            f"found {found}"
        )
    if found > expected:
        raise PrunetuneError(
            f"Malformed IDX file {path}: {found - expected} bytes more than the header {shape} describes"
        )
    # A native-order copy: writable, and free of the decompressed bytes it was read from.
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def _file(folder: Path, name: str) -> Path | None:
    """The raw file if present (no decompression needed), else the ``.gz`` one."""
    for candidate in (name, f"{name}.gz"):
        if (folder / candidate).is_file():
            return folder / candidate
    return None


def _read_pair(folder: Path, images_name: str, labels_name: str) -> tuple[np.ndarray, np.ndarray]:
    images_path, labels_path = _file(folder, images_name), _file(folder, labels_name)
    images = read_idx(images_path, expected_magic=_IMAGES_MAGIC)
    labels = read_idx(labels_path, expected_magic=_LABELS_MAGIC)
    if len(images) != len(labels):
        raise PrunetuneError(
            f"Malformed IDX pair in {folder}: {images_path.name} has {len(images)} images "
            f"but {labels_path.name} has {len(labels)} labels"
        )
    if len(labels) and labels.max() >= _NUM_CLASSES:
        raise PrunetuneError(
            f"Malformed IDX file {labels_path}: label {int(labels.max())} is outside 0..{_NUM_CLASSES - 1}"
        )
    return images, labels.astype(np.int64)


def _read_layout(root: str | Path, what: str, subfolders: tuple[str, ...]) -> ImageArrays:
    folder = find_folder(
        root,
        what=what,
        expected=[f"{name}[.gz]" for name in IDX_FILES],
        has_files=lambda candidate: any(_file(candidate, name) for name in IDX_FILES),
        subfolders=subfolders,
    )
    missing = [f"{name}[.gz]" for name in IDX_FILES if _file(folder, name) is None]
    if missing:
        raise PrunetuneError(
            f"{what} files not found in {folder}: missing {', '.join(missing)}; "
            f"expected {', '.join(f'{name}[.gz]' for name in IDX_FILES)}"
        )
    train_x, train_y = _read_pair(folder, IDX_FILES[0], IDX_FILES[1])
    test_x, test_y = _read_pair(folder, IDX_FILES[2], IDX_FILES[3])
    return ImageArrays(train_x, train_y, test_x, test_y)


def read_mnist(root: str | Path) -> ImageArrays:
    """MNIST's 60,000 training and 10,000 test images (uint8 ``[N, 28, 28]``) and labels.

    ``root`` is the folder with the four IDX files (``.gz`` or raw), one of those files, or a
    folder holding them under ``mnist/``, ``MNIST/raw/`` (torchvision's layout) or ``raw/``.
    """
    return _read_layout(root, "MNIST", ("mnist", "MNIST/raw", "raw"))


def read_fashion_mnist(root: str | Path) -> ImageArrays:
    """Fashion-MNIST, which ships in the same IDX layout and file names as MNIST.

    Looks in ``root`` and then in ``fashion-mnist/``, ``FashionMNIST/raw/`` and ``raw/`` under it.
    """
    return _read_layout(root, "Fashion-MNIST", ("fashion-mnist", "FashionMNIST/raw", "raw"))
