"""scikit-learn's bundled handwritten digits: real data that needs no download and no folder.

1,797 grey 8x8 images of the digits 0..9 with pixel values 0..16: small enough that a LeNet-5
trains on it in a fraction of a second, which makes it the data set of the demo and fast tests.
"""

from __future__ import annotations

import numpy as np

__all__ = ["DIGITS_MAX_VALUE", "read_digits"]

#: Pixel values run from 0 to 16 (counts of set pixels in 4x4 blocks of the original scans).
DIGITS_MAX_VALUE = 16


def read_digits() -> tuple[np.ndarray, np.ndarray]:
    """The images as uint8 ``[1797, 8, 8]`` (values 0..16) and the labels as int64."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return bunch.images.astype(np.uint8), bunch.target.astype(np.int64)
