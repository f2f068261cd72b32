"""The built-in objective: a classifier pruned by a plan, briefly fine-tuned, scored and measured.

It holds the base model and the data as plain attributes and does nothing until it is called, so
a search can pickle it once, ship it to its workers, and call it there with one plan per trial.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from prunetune.objectives.devices import OnDevice
from prunetune.objectives.metrics import directions_of
from prunetune.objectives.options import check_trial_options
from prunetune.objectives.protocol import Report
from prunetune.objectives.prune_finetune import prune_and_finetune, size_metrics
from prunetune.objectives.training import EpochStats, TrainConfig, evaluate
from prunetune.pruners import Measurement, Plan, measure
from prunetune.runtime import torch_threads
from prunetune.zoo.datasets import DataSplits

__all__ = [
    "DEFAULT_FINETUNE",
    "DIRECTIONS",
    "REPORT_ACCURACY",
    "REPORT_COMPRESSION",
    "BaseScores",
    "ClassificationObjective",
]

#: One epoch at a tenth of the usual base learning rate: enough to recover most of a plan's loss.
DEFAULT_FINETUNE = TrainConfig(epochs=1, lr=0.01)

#: The intermediate value a search's early stopping watches, reported at step 0 and after each epoch.
REPORT_ACCURACY = "val_accuracy"
#: Reported alongside from step 0: pruning fixes it before fine-tuning starts.
REPORT_COMPRESSION = "compression"

#: Every metric the objective can return and whether a search should raise or lower it (see the
#: catalogue, prunetune.objectives.metrics, for what each means).
DIRECTIONS: Mapping[str, str] = directions_of((
    "accuracy", "accuracy_pruned", "test_accuracy", "accuracy_drop", "test_accuracy_drop", "compression", "params",
    "nonzero_params", "macs", "macs_reduction", "size_bytes", "bits", "bits_compression", "latency_ms", "seconds",
))


@dataclass(frozen=True)
class BaseScores:
    """What the base model scores and costs; computed once per objective."""

    measurement: Measurement
    val_accuracy: float
    test_accuracy: float


class ClassificationObjective(OnDevice):
    """Prune a copy of ``base`` by a plan, recalibrate BN, fine-tune, evaluate and measure it.

    Args:
        base: The trained classifier; never changed.
        data: The splits: train (fine-tuning, BN statistics), val (selection), test (report).
        finetune: How each trial fine-tunes (``epochs``, or ``max_steps`` to cap the batches);
            its ``seed`` fixes the batch order, so one plan gives the same metrics every time.
        batch_size: Batch size of every loader.
        bn_recalibration_batches: Training batches to re-estimate batch-norm statistics on after
            pruning (EagleEye's adaptive BN); None means 20 for a model with BN layers, 0 disables.
        measure_latency: Also time one example's forward pass (``latency_ms``).
        threads: CPU threads for the whole trial (None keeps the current setting).
        device: Where trials run: ``cpu``, ``cuda``, ``cuda:N``, ``mps`` or ``auto`` (the GPU the
            executor assigned, else the CPU); the base model stays on the CPU.

    Calling it with ``(plan, report=None)`` returns the metrics named in :attr:`directions`;
    :meth:`take_model` then hands over the model those metrics were measured on.
    ``report(step, values)`` is called at step 0 (after pruning, before fine-tuning) and after
    each fine-tuning epoch, with ``val_accuracy``, ``compression`` and ``macs_reduction``
    (plus ``train_loss`` and ``val_loss`` after epochs). A bad plan raises PrunetuneError; a NaN
    or infinite loss raises TrainingDiverged.

    Example:
        >>> objective = ClassificationObjective(base=model, data=load_data("digits"))  # doctest: +SKIP
        >>> metrics = objective({"filters": {"ratios": {"features.0": 0.5}}})  # doctest: +SKIP
        >>> metrics["accuracy"], metrics["compression"]  # doctest: +SKIP
    """

    directions: ClassVar[Mapping[str, str]] = DIRECTIONS

    def __init__(
        self,
        *,
        base: nn.Module,
        data: DataSplits,
        finetune: TrainConfig = DEFAULT_FINETUNE,
        batch_size: int = 64,
        bn_recalibration_batches: int | None = None,
        measure_latency: bool = False,
        threads: int | None = None,
        device: str = "cpu",
    ) -> None:
        self.base = base
        self.data = data
        self.finetune = finetune
        self.batch_size = batch_size
        self.bn_recalibration_batches = bn_recalibration_batches
        self.measure_latency = measure_latency
        self.threads = threads
        self.device = device
        self._base_scores: BaseScores | None = None
        self._last_model: nn.Module | None = None
        self._last_plan: dict[str, Any] | None = None

    def validate(self) -> None:
        """Raise PrunetuneError naming the first bad parameter; called before the first trial's work."""
        check_trial_options("ClassificationObjective", self)

    def base_scores(self) -> BaseScores:
        """The base model's validation and test accuracy and its measurement, computed on first use.

        Computed once and kept (it travels with the objective when pickled): replace ``base`` or
        ``data`` by building a new objective, not by assigning to these attributes.
        """
        if self._base_scores is None:
            self.validate()
            with torch_threads(self.threads):
                _, val_loader, test_loader = self.data.loaders(self.batch_size, seed=self.finetune.seed)
                self._base_scores = BaseScores(
                    measurement=measure(self.base, torch.zeros(1, *self.data.input_shape)),
                    val_accuracy=evaluate(self.base, val_loader).accuracy,
                    test_accuracy=evaluate(self.base, test_loader).accuracy,
                )
        return self._base_scores

    def __call__(self, plan: Plan | Mapping[str, Any], report: Report | None = None) -> dict[str, float]:
        """Run one trial: prune a copy of the base by ``plan``, fine-tune it, and return its metrics."""
        self._last_model = None
        self._last_plan = None
        self.validate()
        base = self.base_scores()
        progress: dict[str, float] = {}

        def on_pruned(pruned: Measurement, val_accuracy: float) -> None:
            sizes = size_metrics(base.measurement, pruned)
            progress[REPORT_COMPRESSION] = sizes["compression"]
            progress["macs_reduction"] = sizes["macs_reduction"]
            if report is not None:
                report(0, {REPORT_ACCURACY: val_accuracy, **progress})

        def on_epoch(stats: EpochStats) -> None:
            if report is not None and stats.val is not None:
                report(
                    stats.epoch,
                    {
                        REPORT_ACCURACY: stats.val.accuracy,
                        **progress,
                        "train_loss": stats.train_loss,
                        "val_loss": stats.val.loss,
                    },
                )

        with torch_threads(self.threads):
            result = prune_and_finetune(
                self.base,
                plan,
                self.data,
                finetune=self.finetune,
                batch_size=self.batch_size,
                bn_recalibration_batches=self.bn_recalibration_batches,
                latency=self.measure_latency,
                latency_threads=self.threads,
                base_measurement=base.measurement,
                base_val_accuracy=base.val_accuracy,
                on_pruned=on_pruned,
                on_epoch=on_epoch,
                device=self.trial_device(),
            )
        self._last_model = result.model
        self._last_plan = result.plan
        return result.metrics(base_val_accuracy=base.val_accuracy, base_test_accuracy=base.test_accuracy)

    def take_model(self) -> nn.Module | None:
        """The pruned, fine-tuned model of the last successful call, handed over once (None after).

        A search that keeps trial weights saves it, so an export returns exactly the evaluated
        model; handing it over (rather than keeping it) leaves a worker holding one model at most.
        """
        model, self._last_model = self._last_model, None
        return model

    def take_applied_plan(self) -> dict[str, Any] | None:
        """The plan as the last successful call applied it, handed over once (None after).

        It differs from the plan asked for when a staged section stopped early (an ordered plan
        whose accuracy budget ran out after three units records the three), so a search records
        the plan that re-creates the evaluated model.
        """
        plan, self._last_plan = self._last_plan, None
        return plan

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(base={type(self.base).__name__}, data={self.data!r}, "
            f"finetune={self.finetune!r}, batch_size={self.batch_size!r}, "
            f"bn_recalibration_batches={self.bn_recalibration_batches!r}, "
            f"measure_latency={self.measure_latency!r}, threads={self.threads!r})"
        )
