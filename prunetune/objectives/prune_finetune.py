"""One pruning step measured: apply a plan to a copy of the base, recalibrate BN, fine-tune, evaluate.

This is the work of every trial: :class:`~prunetune.objectives.classification.ClassificationObjective`
runs it inside a search, and `prunetune prune` runs it once from the command line, so a plan
re-applied by hand scores the way it scored in the search. An objective that learns or scores
otherwise (the reconstruction objective) hands it a :class:`Task`: its batches, its loss and its
scores, and the steps stay these.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from prunetune.objectives.batchnorm import (
    DEFAULT_RECALIBRATION_BATCHES,
    has_batchnorm,
    recalibrate_batchnorm,
)
from prunetune.objectives.stages import StageContext, apply_plan_staged
from prunetune.objectives.training import EpochStats, TrainConfig, evaluate, train
from prunetune.pruners import Measurement, Plan, measure, measure_latency
from prunetune.zoo.datasets import DataSplits, Loaders

__all__ = ["PruneResult", "Task", "classification_task", "prune_and_finetune", "recalibration_batches_for", "size_metrics"]


@dataclass(frozen=True)
class Task:
    """What a model learns and how it is scored: the hooks an objective gives prune-and-fine-tune.

    Attributes:
        loaders: ``seed -> (train, val, test)`` seeded batches; train is what fine-tuning sees.
        scores: ``(model, "val" | "test") -> {name: value}``, with the main score as ``"accuracy"``.
        loss_fn: The training loss (None: cross-entropy).
        epoch_score: Whether the main val score must be computed after each epoch by ``scores``
            (False when the training loop's own val accuracy is that score, as for classifiers).
    """

    loaders: Callable[[int], Loaders]
    scores: Callable[[nn.Module, str], dict[str, float]]
    loss_fn: nn.Module | None = None
    epoch_score: bool = True


def classification_task(data: DataSplits, batch_size: int, *, pin_memory: bool = False) -> Task:
    """Classifiers: cross-entropy on the data's batches, scored by top-1 accuracy."""
    cache: dict[int, Loaders] = {}

    def loaders(seed: int) -> Loaders:
        return data.loaders(batch_size, seed=seed, pin_memory=pin_memory)

    def scores(model: nn.Module, split: str) -> dict[str, float]:
        loader = cache.setdefault(0, data.loaders(batch_size, seed=0, pin_memory=pin_memory))
        return {"accuracy": evaluate(model, loader.val if split == "val" else loader.test).accuracy}

    return Task(loaders=loaders, scores=scores, loss_fn=None, epoch_score=False)


@dataclass(frozen=True)
class PruneResult:
    """The pruned model and what it costs and scores next to its base.

    Attributes:
        model: The pruned, fine-tuned model.
        base: Size and cost of the base model.
        pruned: Size and cost of the pruned model after fine-tuning.
        val_accuracy_pruned: Validation accuracy right after pruning (and BN recalibration).
        val_accuracy: Validation accuracy after fine-tuning: what searches select on.
        test_accuracy: Test accuracy after fine-tuning: for the final report only.
        seconds: Wall time of the whole step.
        latency_ms: Median CPU latency of one example, when it was asked for.
        plan: The plan as applied (plain data): differs from the plan asked for when a staged
            section stopped early (an ordered plan whose accuracy budget ran out).
        val_scores, test_scores: Every score the task gives after fine-tuning (``accuracy`` too).
    """

    model: nn.Module
    base: Measurement
    pruned: Measurement
    val_accuracy_pruned: float
    val_accuracy: float
    test_accuracy: float
    seconds: float
    latency_ms: float | None = None
    plan: dict[str, Any] | None = None
    val_scores: dict[str, float] = field(default_factory=dict)
    test_scores: dict[str, float] = field(default_factory=dict)

    def metrics(
        self, *, base_val_accuracy: float | None = None, base_test_accuracy: float | None = None
    ) -> dict[str, float]:
        """The objective's named metrics (see ``ClassificationObjective.directions``) as plain floats.

        The drops are left out when the matching base accuracy is not given, and ``latency_ms``
        when it was not measured.
        """
        values = {
            "accuracy": self.val_accuracy,
            "accuracy_pruned": self.val_accuracy_pruned,
            "test_accuracy": self.test_accuracy,
        }
        if base_val_accuracy is not None:
            values["accuracy_drop"] = 100.0 * (base_val_accuracy - self.val_accuracy)
        if base_test_accuracy is not None:
            values["test_accuracy_drop"] = 100.0 * (base_test_accuracy - self.test_accuracy)
        values.update(size_metrics(self.base, self.pruned))
        if self.latency_ms is not None:
            values["latency_ms"] = self.latency_ms
        values["seconds"] = self.seconds
        return values


def size_metrics(base: Measurement, pruned: Measurement) -> dict[str, float]:
    """Compression (nonzero parameters), MACs and bits reductions, and the pruned model's sizes."""
    return {
        "compression": base.nonzero_params / max(pruned.nonzero_params, 1),
        "params": float(pruned.params),
        "nonzero_params": float(pruned.nonzero_params),
        "macs": float(pruned.macs),
        "macs_reduction": base.macs / max(pruned.macs, 1),
        "size_bytes": float(pruned.size_bytes),
        "bits": float(pruned.bits),
        "bits_compression": base.bits / max(pruned.bits, 1),
    }


def recalibration_batches_for(model: nn.Module, requested: int | None) -> int:
    """``requested``, or when it is None the default for models with BN layers (0 for the others)."""
    if requested is not None:
        return requested
    return DEFAULT_RECALIBRATION_BATCHES if has_batchnorm(model) else 0


def prune_and_finetune(
    base: nn.Module,
    plan: Plan | Mapping[str, Any],
    data: DataSplits,
    *,
    finetune: TrainConfig,
    batch_size: int = 64,
    bn_recalibration_batches: int | None = None,
    latency: bool = False,
    latency_threads: int | None = None,
    base_measurement: Measurement | None = None,
    base_val_accuracy: float | None = None,
    on_pruned: Callable[[Measurement, float], None] | None = None,
    on_epoch: Callable[[EpochStats], None] | None = None,
    on_epoch_score: Callable[[EpochStats, float], None] | None = None,
    task: Task | None = None,
    device: torch.device | str | None = None,
) -> PruneResult:
    """Prune a copy of `base` by `plan`, recalibrate its BN layers, fine-tune it, evaluate on val and test.

    The base model is left untouched. A bad plan raises PrunetuneError before any work; a NaN or
    infinite loss raises TrainingDiverged.

    Args:
        base: The trained model.
        plan: A :class:`Plan` or its dict form.
        data: The splits: train (calibration, BN statistics, fine-tuning), val and test.
        finetune: How to fine-tune (``epochs=0`` skips it); its seed orders the batches.
        batch_size: Batch size of every loader (of the default classification task).
        bn_recalibration_batches: Training batches to re-estimate BN statistics on after pruning
            (:func:`~prunetune.objectives.batchnorm.recalibrate_batchnorm`); None picks
            :data:`DEFAULT_RECALIBRATION_BATCHES` for a model with BN layers, 0 turns it off.
        latency: Also time the pruned model's forward pass on one example.
        latency_threads: CPU threads for that timing (None keeps the current setting).
        base_measurement: ``measure(base, ...)`` when the caller has it already.
        base_val_accuracy: The base model's main validation score when the caller has it already
            (staged sections such as an ordered plan's accuracy budget read it).
        on_pruned: Called with the pruned model's measurement and its main validation score
            once pruning and recalibration are done, before fine-tuning starts.
        on_epoch: Called with each fine-tuning epoch's statistics.
        on_epoch_score: Called after each epoch with its statistics and the main validation score.
        task: What the model learns and how it is scored; None: a classifier of ``data``.
        device: Where the pruned copy is made, fine-tuned, evaluated and timed (None: the base's).
    """
    started = time.perf_counter()
    on_gpu = device is not None and torch.device(device).type == "cuda"
    task = task if task is not None else classification_task(data, batch_size, pin_memory=on_gpu)
    example = torch.zeros(1, *data.input_shape)
    train_loader, val_loader, _ = task.loaders(finetune.seed)
    # Calibration draws from its own loader, so fine-tuning sees the same batches with or without it.
    calibration_loader = task.loaders(finetune.seed).train
    calibration = [next(iter(calibration_loader))]

    def recalibrate(model: nn.Module) -> None:
        recalibrate_batchnorm(
            model, calibration_loader, num_batches=recalibration_batches_for(model, bn_recalibration_batches)
        )

    def val_score(model: nn.Module) -> float:
        return task.scores(model, "val")["accuracy"]

    context = StageContext(
        example_inputs=example,
        calibration=calibration,
        train_loader=train_loader,
        val_loader=val_loader,
        finetune=finetune,
        base_val_accuracy=base_val_accuracy if base_val_accuracy is not None else val_score(base),
        evaluate=val_score,
        recalibrate=recalibrate,
        loss_fn=task.loss_fn,
        device=torch.device(device) if device is not None else None,
    )
    pruned, applied = apply_plan_staged(base, plan, context)
    recalibrate(pruned)
    val_pruned = val_score(pruned)
    if on_pruned is not None:
        on_pruned(measure(pruned, example), val_pruned)

    def epoch_done(stats: EpochStats) -> None:
        if on_epoch is not None:
            on_epoch(stats)
        if on_epoch_score is not None and stats.val is not None:
            on_epoch_score(stats, val_score(pruned) if task.epoch_score else stats.val.accuracy)

    if finetune.epochs > 0:
        train(pruned, train_loader, config=finetune, val_loader=val_loader, on_epoch=epoch_done, loss_fn=task.loss_fn)
    latency_ms = measure_latency(pruned, example, threads=latency_threads).median_ms if latency else None
    val_scores, test_scores = task.scores(pruned, "val"), task.scores(pruned, "test")
    return PruneResult(
        model=pruned,
        base=base_measurement if base_measurement is not None else measure(base, example),
        pruned=measure(pruned, example),
        val_accuracy_pruned=val_pruned,
        val_accuracy=val_scores["accuracy"],
        test_accuracy=test_scores["accuracy"],
        seconds=time.perf_counter() - started,
        latency_ms=latency_ms,
        plan=applied,
        val_scores=val_scores,
        test_scores=test_scores,
    )
