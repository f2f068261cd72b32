"""The credit-card fraud data set (ULB, September 2013) from its CSV, plain or compressed.

284,807 transactions, 492 of them frauds: ``Time``, the PCA components ``V1..V28``, ``Amount``
and the label ``Class`` (1 = fraud). pandas reads ``.gz`` and ``.xz`` directly, so the file is
used as downloaded; decompressing the xz copy dominates the read time (about 5 s).
"""

from __future__ import annotations

import lzma
import zlib
from pathlib import Path

import numpy as np
import pandas as pd

from prunetune.errors import PrunetuneError
from prunetune.zoo.datasets._paths import as_path, find_folder

__all__ = [
    "CREDITCARD_COLUMNS",
    "CREDITCARD_FEATURES",
    "CREDITCARD_FILES",
    "creditcard_arrays",
    "find_creditcard_file",
    "read_creditcard",
]

CREDITCARD_FILES = ("creditcard.csv", "creditcard.csv.gz", "creditcard.csv.xz")
CREDITCARD_FEATURES = ("Time", *(f"V{i}" for i in range(1, 29)), "Amount")
CREDITCARD_COLUMNS = (*CREDITCARD_FEATURES, "Class")
_COLUMNS_TEXT = "Time, V1..V28, Amount, Class"
# What a damaged, truncated or non-CSV file raises while pandas reads (and decompresses) it.
_READ_ERRORS = (
    pd.errors.ParserError,
    pd.errors.EmptyDataError,
    UnicodeDecodeError,
    lzma.LZMAError,
    EOFError,
    OSError,
    zlib.error,
)


def find_creditcard_file(path: str | Path) -> Path:
    """The CSV itself: ``path`` when it is a file, else ``creditcard.csv[.gz|.xz]`` in the folder.

    The folder's ``creditcard/`` subfolder is searched too, so the datasets' parent folder works.
    """
    given = as_path(path)
    if given.is_file():
        return given
    folder = find_folder(
        given,
        what="Credit-card",
        expected=[" or ".join(CREDITCARD_FILES)],
        has_files=lambda candidate: any((candidate / name).is_file() for name in CREDITCARD_FILES),
        subfolders=("creditcard",),
    )
    return next(folder / name for name in CREDITCARD_FILES if (folder / name).is_file())


def read_creditcard(path: str | Path) -> pd.DataFrame:
    """The transactions as a DataFrame with the columns ``Time, V1..V28, Amount, Class``.

    ``path`` is the CSV (``.csv``, ``.csv.gz`` or ``.csv.xz``) or a folder holding
    ``creditcard.csv[.gz|.xz]`` directly or under ``creditcard/``.

    Raises:
        PrunetuneError: when no file is found (naming the folder and the file names), or the file
            cannot be parsed, lacks a column, has non-numeric or missing values, or a ``Class``
            other than 0/1 (naming the file and the problem).
    """
    file = find_creditcard_file(path)
    try:
        frame = pd.read_csv(file)
    except _READ_ERRORS as exc:
        raise PrunetuneError(f"Cannot read credit-card file {file}: {exc}") from None
    missing = [column for column in CREDITCARD_COLUMNS if column not in frame.columns]
    if missing:
        raise PrunetuneError(
            f"Malformed credit-card file {file}: missing column(s) {', '.join(missing)}; "
            f"expected the columns {_COLUMNS_TEXT}"
        )
    frame = frame.loc[:, list(CREDITCARD_COLUMNS)]
    not_numeric = [column for column in CREDITCARD_COLUMNS if not pd.api.types.is_numeric_dtype(frame[column])]
    if not_numeric:
        raise PrunetuneError(
            f"Malformed credit-card file {file}: non-numeric values in {', '.join(not_numeric)}"
        )
    if frame.isna().to_numpy().any():
        row = int(np.flatnonzero(frame.isna().any(axis=1).to_numpy())[0])
        raise PrunetuneError(f"Malformed credit-card file {file}: missing values, first in data row {row + 1}")
    if not frame["Class"].isin((0, 1)).all():
        raise PrunetuneError(f"Malformed credit-card file {file}: 'Class' must be 0 (normal) or 1 (fraud)")
    frame["Class"] = frame["Class"].astype(np.int64)
    return frame


def creditcard_arrays(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """All 30 features as float64 ``[N, 30]`` and ``Class`` as int64 labels."""
    features = frame.loc[:, list(CREDITCARD_FEATURES)].to_numpy(dtype=np.float64)
    return features, frame["Class"].to_numpy(dtype=np.int64)
