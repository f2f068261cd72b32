"""The trained models the benchmarks start from, each trained once into ``runs/benchmarks/`` (git ignores it).

Every base is trained the same way (SGD, lr 0.05, seed 0, cosine schedule), so two benchmarks that
name the same checkpoint agree on what it is whichever of them trains it first.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from prunetune.zoo.checkpoint import load_checkpoint

DATASETS = Path(os.environ.get("PRUNETUNE_DATASETS", "/work/shared/datasets"))
MNIST = f"mnist:{DATASETS / 'mnist'}"
CIFAR_SUBSET = f"cifar10:{DATASETS / 'cifar10-first4000'}"


def train_once(
    path: Path, *, model: str, data: str, epochs: int, echo: Callable[[str], None] = print,
    threads: int | None = None, **options: Any,
) -> dict[str, float]:
    """Train ``model`` on ``data`` into ``path`` unless it is there already; returns the base's metrics.

    ``options`` go to ``train_base_model`` (``limit``, ``model_kwargs``, ...).
    """
    if not path.exists():
        from prunetune.app.base_model import train_base_model
        from prunetune.objectives.training import TrainConfig

        echo(f"training the base {model} for {epochs} epochs -> {path}")
        path.parent.mkdir(parents=True, exist_ok=True)
        config = TrainConfig(
            epochs=epochs, lr=0.05, seed=0, threads=threads if threads is not None else torch.get_num_threads(),
            **{key: options.pop(key) for key in ("batch_size", "optimizer", "weight_decay", "schedule") if key in options},
        )
        train_base_model(model=model, data=data, output=path, config=config, echo=lambda line: echo("  " + line), **options)
    return dict(load_checkpoint(path).metrics)
