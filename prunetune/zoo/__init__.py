"""Reference models, dataset readers and base-model checkpoints: what a search starts from."""

from __future__ import annotations

from prunetune.zoo.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from prunetune.zoo.datasets import DataSplits, UserData, list_datasets, load_data, open_data
from prunetune.zoo.models import build_model, list_models, resolve_model_kwargs

__all__ = [
    "Checkpoint",
    "DataSplits",
    "UserData",
    "build_model",
    "list_datasets",
    "list_models",
    "load_checkpoint",
    "load_data",
    "open_data",
    "resolve_model_kwargs",
    "save_checkpoint",
]
