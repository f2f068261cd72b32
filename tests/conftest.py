"""Shared fixtures: the real-data folder, named by PRUNETUNE_DATASETS (the test command sets it)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

torch.set_num_threads(2)


@pytest.fixture(scope="session")
def datasets_root() -> Path:
    """The folder with mnist/, creditcard/ and cifar10-first4000/; skips when it is not there."""
    root = os.environ.get("PRUNETUNE_DATASETS")
    if not root:
        pytest.skip("PRUNETUNE_DATASETS is not set: it names the folder with the real datasets")
    path = Path(root)
    if not path.is_dir():
        pytest.skip(f"PRUNETUNE_DATASETS={root} is not a folder")
    return path
