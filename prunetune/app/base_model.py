"""`prunetune train` and a run's own base model: read the data a spec names, then train by the one
base-training path (:func:`prunetune.objectives.base_training.train_base`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from torch import nn

from prunetune.objectives.base_training import train_base
from prunetune.objectives.devices import check_device
from prunetune.objectives.training import TrainConfig
from prunetune.zoo.datasets import DataSplits, load_data

__all__ = ["train_base_model"]


def train_base_model(
    *,
    model: str,
    data: str,
    output: str | Path | None,
    config: TrainConfig,
    model_kwargs: Mapping[str, Any] | None = None,
    val_fraction: float = 0.1,
    limit: int | None = None,
    reconstruction: Mapping[str, Any] | None = None,
    echo: Callable[[str], None] = lambda line: None,
    device: str = "cpu",
) -> tuple[nn.Module, DataSplits, dict[str, float]]:
    """Read `data` (a spec), train `model` on it by `config`, and write a checkpoint to `output`.

    Everything the user named is checked (config, data, model) before the first epoch.
    Returns the trained model, the data and the metrics written into the checkpoint.
    """
    config.validate()
    check_device(device, where="--device")
    splits = load_data(data, val_fraction=val_fraction, seed=config.seed, limit=limit)
    net, metrics = train_base(
        model, splits, config=config, model_kwargs=model_kwargs, reconstruction=reconstruction, output=output,
        data_spec=data, data_options={"val_fraction": val_fraction, "seed": config.seed, "limit": limit}, echo=echo,
        device=device,
    )
    return net, splits, metrics
