"""Training the base model a search starts from (nothing can be downloaded, so users train it here)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from torch import nn

from prunetune.objectives.training import TrainConfig, evaluate, format_epoch, train
from prunetune.zoo.checkpoint import save_checkpoint
from prunetune.zoo.datasets import DataSplits, load_data
from prunetune.zoo.models import build_model_for

__all__ = ["train_base_model"]


def train_base_model(
    *,
    model: str,
    data: str,
    output: str | Path | None,
    model_kwargs: Mapping[str, Any] | None = None,
    epochs: int = 10,
    batch_size: int = 64,
    optimizer: str = "sgd",
    lr: float = 0.05,
    weight_decay: float = 5e-4,
    schedule: str = "cosine",
    seed: int = 0,
    threads: int | None = None,
    val_fraction: float = 0.1,
    limit: int | None = None,
    echo: Callable[[str], None] = lambda line: None,
) -> tuple[nn.Module, DataSplits, dict[str, float]]:
    """Read `data`, train `model` on it, report accuracies, and write a checkpoint to `output`.

    Everything the user named is checked (data, model, config) before the first epoch.
    Returns the trained model, the data and the metrics written into the checkpoint.
    """
    config = TrainConfig(
        epochs=epochs, optimizer=optimizer, lr=lr, weight_decay=weight_decay, schedule=schedule, seed=seed, threads=threads
    )
    config.validate()
    splits = load_data(data, val_fraction=val_fraction, seed=seed, limit=limit)
    net = build_model_for(model, splits, model_kwargs)
    echo(f"{model}: {sum(p.numel() for p in net.parameters()):,} parameters; {splits.description}")
    train_loader, val_loader, test_loader = splits.loaders(batch_size, seed=seed)
    train(net, train_loader, config=config, val_loader=val_loader, on_epoch=lambda s: echo(format_epoch(s, epochs)))
    metrics = {
        "train_accuracy": evaluate(net, train_loader).accuracy,
        "val_accuracy": evaluate(net, val_loader).accuracy,
        "test_accuracy": evaluate(net, test_loader).accuracy,
    }
    echo("  ".join(f"{name.split('_')[0]} {value:.2%}" for name, value in metrics.items()))
    if output is not None:
        path = save_checkpoint(
            output,
            net,
            data_spec=data,
            data_options={"val_fraction": val_fraction, "seed": seed, "limit": limit},
            input_shape=tuple(splits.input_shape), num_classes=splits.num_classes, metrics=metrics
        )
        echo(f"wrote {path}")
    return net, splits, metrics
