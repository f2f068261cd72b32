"""One pruning step measured: apply a plan to a copy of the base, fine-tune briefly, evaluate.

This is the work of every trial; the search's objective wraps it, and `prunetune prune` runs it
once from the command line.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from prunetune.objectives.training import EpochStats, TrainConfig, evaluate, train
from prunetune.pruners import Measurement, Plan, apply_plan, measure
from prunetune.zoo.datasets import DataSplits

__all__ = ["PruneResult", "prune_and_finetune"]


@dataclass(frozen=True)
class PruneResult:
    """The pruned model and what it costs and scores next to its base."""

    model: nn.Module
    base: Measurement
    pruned: Measurement
    val_accuracy_pruned: float
    val_accuracy: float
    test_accuracy: float
    seconds: float

    def metrics(self, base_test_accuracy: float | None = None) -> dict[str, float]:
        """Plain numbers for reports: accuracies, compression (nonzero parameters), MACs reduction, size."""
        values = {
            "val_accuracy_pruned": self.val_accuracy_pruned,
            "val_accuracy": self.val_accuracy,
            "test_accuracy": self.test_accuracy,
            "params": float(self.pruned.params),
            "nonzero_params": float(self.pruned.nonzero_params),
            "compression": self.base.nonzero_params / max(self.pruned.nonzero_params, 1),
            "macs": float(self.pruned.macs),
            "macs_reduction": self.base.macs / max(self.pruned.macs, 1),
            "size_bytes": float(self.pruned.size_bytes),
            "seconds": self.seconds,
        }
        if base_test_accuracy is not None:
            values["accuracy_drop_pp"] = 100.0 * (base_test_accuracy - self.test_accuracy)
        return values


def prune_and_finetune(
    base: nn.Module,
    plan: Plan | Mapping[str, Any],
    data: DataSplits,
    *,
    finetune: TrainConfig,
    batch_size: int = 64,
    on_epoch: Callable[[EpochStats], None] | None = None,
) -> PruneResult:
    """Prune a copy of `base` by `plan`, fine-tune it per `finetune`, and evaluate on val and test.

    The base model is left untouched. A bad plan raises PrunetuneError before any work.
    """
    started = time.perf_counter()
    example = torch.zeros(1, *data.input_shape)
    train_loader, val_loader, test_loader = data.loaders(batch_size, seed=finetune.seed)
    calibration = [next(iter(train_loader))]
    pruned = apply_plan(base, plan, example_inputs=example, calibration=calibration)
    val_pruned = evaluate(pruned, val_loader).accuracy
    if finetune.epochs > 0:
        train(pruned, train_loader, config=finetune, val_loader=val_loader, on_epoch=on_epoch)
    return PruneResult(
        model=pruned,
        base=measure(base, example),
        pruned=measure(pruned, example),
        val_accuracy_pruned=val_pruned,
        val_accuracy=evaluate(pruned, val_loader).accuracy,
        test_accuracy=evaluate(pruned, test_loader).accuracy,
        seconds=time.perf_counter() - started,
    )
