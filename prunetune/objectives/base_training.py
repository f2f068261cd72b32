"""Training the base model a search starts from: classifiers and autoencoders, one path.

Nothing can be downloaded, so users train their base here. The base learns exactly as a trial's
fine-tune will: the same loop, the same task hooks (batches, loss, scores) as
:func:`~prunetune.objectives.prune_finetune.prune_and_finetune`, so a classifier is trained with
cross-entropy and scored by accuracy, an autoencoder reconstructs the rows its objective uses and
is scored on its task.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from prunetune.objectives.devices import resolve_device
from prunetune.objectives.prune_finetune import Task, classification_task
from prunetune.objectives.training import EpochStats, TrainConfig, evaluate, format_epoch, train
from prunetune.runtime import model_device, torch_threads
from prunetune.zoo.checkpoint import save_checkpoint
from prunetune.zoo.datasets import DataSplits
from prunetune.zoo.models import build_model_for

__all__ = ["train_base"]


def train_base(
    model: str,
    data: DataSplits,
    *,
    config: TrainConfig,
    model_kwargs: Mapping[str, Any] | None = None,
    reconstruction: Mapping[str, Any] | None = None,
    output: str | os.PathLike[str] | None = None,
    data_spec: str | None = None,
    data_options: Mapping[str, Any] | None = None,
    echo: Callable[[str], None] = lambda line: None,
    device: str = "cpu",
) -> tuple[nn.Module, dict[str, float]]:
    """Build zoo model ``model`` for ``data``, train it, score it, and save it to ``output``.

    ``reconstruction`` (the reconstruction objective's options: ``task``, ``normal_class``, ...)
    trains an autoencoder on the rows that objective fine-tunes on; None trains a classifier.
    ``config.batch_size`` sizes the batches, ``config.seed`` the initial weights and their order.
    ``device`` (``cpu``, ``cuda``, ``cuda:N``, ``mps``, ``auto``) is where it trains; the model
    returned and saved is on the CPU.

    Returns:
        The model and the metrics written into the checkpoint: ``train_loss``, ``val_loss``, the
        task's scores on val and test with a ``val_`` / ``test_`` prefix (``val_accuracy`` and
        ``test_accuracy`` are the main score) and, for a classifier, ``train_accuracy``.
    """
    config.validate()
    with torch_threads(config.threads):
        torch.manual_seed(config.seed)
        net = build_model_for(model, data, model_kwargs).to(resolve_device(device))
        task, describe = _task(net, data, config, reconstruction)
        echo(f"{model}: {sum(p.numel() for p in net.parameters()):,} parameters; {data.description}")
        train_loader, val_loader, _ = task.loaders(config.seed)
        train(net, train_loader, config=config, val_loader=val_loader, loss_fn=task.loss_fn,
              on_epoch=lambda stats: echo(describe(stats)))
        metrics = {
            "train_loss": evaluate(net, train_loader, loss_fn=task.loss_fn).loss,
            "val_loss": evaluate(net, val_loader, loss_fn=task.loss_fn).loss,
        }
        if reconstruction is None:
            metrics["train_accuracy"] = evaluate(net, train_loader).accuracy
        for split in ("val", "test"):
            metrics.update({f"{split}_{name}": value for name, value in task.scores(net, split).items()})
    net = net.cpu()
    if reconstruction is None:
        echo("  ".join(f"{split} {metrics[f'{split}_accuracy']:.2%}" for split in ("train", "val", "test")))
    else:
        echo(f"scores: val {metrics['val_accuracy']:.4f}  test {metrics['test_accuracy']:.4f}")
    if output is not None:
        path = save_checkpoint(
            Path(output), net, data_spec=data_spec, data_options=dict(data_options or {}),
            input_shape=tuple(data.input_shape), num_classes=data.num_classes, metrics=metrics,
        )
        echo(f"wrote {path}")
    return net, metrics


def _task(
    net: nn.Module, data: DataSplits, config: TrainConfig, reconstruction: Mapping[str, Any] | None
) -> tuple[Task, Callable[[EpochStats], str]]:
    """The task hooks and the progress line of one epoch."""
    if reconstruction is None:
        pin = model_device(net).type == "cuda"
        return classification_task(data, config.batch_size, pin_memory=pin), lambda stats: format_epoch(stats, config.epochs)
    from prunetune.objectives.reconstruction import ReconstructionObjective

    objective = ReconstructionObjective(base=net, data=data, finetune=config, batch_size=config.batch_size, **reconstruction)
    objective.validate()

    def line(stats: EpochStats) -> str:
        val = f"  val loss {stats.val.loss:.4f}" if stats.val is not None else ""
        return f"epoch {stats.epoch:>3}/{config.epochs}  train loss {stats.train_loss:.4f}{val}  ({stats.seconds:.1f}s)"

    return objective.as_task(), line
