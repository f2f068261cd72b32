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


@pytest.fixture(scope="module")
def one_thread():
    """Small models on 8x8 digits gain nothing from a second thread and lose much when cores are busy."""
    from prunetune.runtime import torch_threads

    with torch_threads(1):
        yield


@pytest.fixture(scope="session")
def digits():
    """The bundled digits, split once for the session (a DataSplits is not changed by its users)."""
    from prunetune.zoo import load_data

    return load_data("digits", val_fraction=0.1, seed=0)


@pytest.fixture(scope="session")
def digits_example(digits) -> torch.Tensor:
    return torch.zeros(1, *digits.input_shape)


@pytest.fixture(scope="session")
def digits_lenet5(digits) -> torch.nn.Module:
    """LeNet-5 trained 8 epochs on digits, once per session: tests prune copies, never this model."""
    from prunetune.zoo.models import build_model_for
    from prunetune.objectives import TrainConfig, train
    from prunetune.runtime import torch_threads

    with torch_threads(1):
        torch.manual_seed(0)
        model = build_model_for("lenet5", digits)
        train(model, digits.loaders(64, seed=0).train, config=TrainConfig(epochs=8, seed=0))
    return model
