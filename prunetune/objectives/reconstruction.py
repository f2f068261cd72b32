"""The accordion autoencoder's objective (A2E, Anik, Kelso, Lee 2024): an autoencoder pruned by a
plan, fine-tuned to reconstruct its input, and scored on the task its code serves.

A2E drops and narrows the hidden layers of an autoencoder (the ``drop`` and ``filters`` methods)
and asks how much of the task survives. Two tasks:

* ``"anomaly"`` (credit-card fraud): the autoencoder learns to reconstruct normal records only;
  a record's anomaly score is its reconstruction error. Scored with ROC-AUC and average precision
  (scikit-learn) on the validation split (selection) and the test split (report).
* ``"code-classifier"`` (MNIST): the autoencoder learns to reconstruct every record; a logistic
  regression (scikit-learn, on standardised codes of a training subset) then reads the labels
  from the encoder's code. Scored with that classifier's accuracy.

Searches, early stopping and reports speak of ``accuracy``: this objective returns the task's main
score under that name too (``accuracy``, ``test_accuracy``, ``accuracy_drop``) and reports it as
``val_accuracy`` at step 0 and after each epoch, so every part of prunetune works unchanged.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import TensorDataset

from prunetune.errors import PrunetuneError
from prunetune.objectives.classification import REPORT_ACCURACY, REPORT_COMPRESSION
from prunetune.objectives.devices import OnDevice
from prunetune.objectives.metrics import directions_of
from prunetune.objectives.options import bad_option, check_trial_options, is_int
from prunetune.objectives.protocol import Report
from prunetune.objectives.prune_finetune import Task, prune_and_finetune, size_metrics
from prunetune.objectives.base_training import train_base
from prunetune.objectives.training import EpochStats, TrainConfig
from prunetune.pruners import Measurement, Plan, measure
from prunetune.runtime import model_device, to_device, torch_threads
from prunetune.zoo.datasets import DataSplits, Loaders

__all__ = [
    "ANOMALY_METRICS",
    "DEFAULT_RECONSTRUCTION_FINETUNE",
    "OPTIONS",
    "RECONSTRUCTION_DIRECTIONS",
    "TASKS",
    "ReconstructionLoss",
    "ReconstructionObjective",
    "ReconstructionScores",
    "anomaly_scores",
    "check_reconstruction_options",
    "encoder_codes",
    "reconstruction_directions",
    "reconstruction_errors",
    "train_autoencoder",
]

TASKS: tuple[str, ...] = ("anomaly", "code-classifier")
#: The scores of the anomaly task; ``metric`` picks which one is the main score.
ANOMALY_METRICS: tuple[str, ...] = ("roc_auc", "average_precision")

#: One epoch with Adam at a small rate: autoencoders recover faster with it than with SGD.
DEFAULT_RECONSTRUCTION_FINETUNE = TrainConfig(epochs=1, optimizer="adam", lr=1e-3, weight_decay=0.0)

_COMMON = (
    "accuracy", "accuracy_pruned", "test_accuracy", "accuracy_drop", "test_accuracy_drop", "performance_drop",
    "test_performance_drop", "reconstruction_error", "test_reconstruction_error", "complexity_reduction",
    "compression", "params", "nonzero_params", "macs", "macs_reduction", "size_bytes", "bits", "bits_compression",
    "latency_ms", "seconds",
)
_ANOMALY = ("roc_auc", "average_precision", "test_roc_auc", "test_average_precision")

#: Every metric the objective can return, by task.
RECONSTRUCTION_DIRECTIONS: Mapping[str, Mapping[str, str]] = MappingProxyType(
    {
        "anomaly": directions_of(_COMMON + _ANOMALY),
        "code-classifier": directions_of(_COMMON),
    }
)


def reconstruction_directions(task: str = "anomaly") -> Mapping[str, str]:
    """The metrics ``task`` returns and their directions; PrunetuneError for an unknown task."""
    if task not in RECONSTRUCTION_DIRECTIONS:
        _bad("task", task, f"one of {', '.join(TASKS)}")
    return RECONSTRUCTION_DIRECTIONS[task]


#: What an experiment's ``objective.options`` may set; the runner gives the rest from its own keys.
OPTIONS: tuple[str, ...] = ("task", "metric", "normal_class", "code_module", "classifier_samples", "threads")


def check_reconstruction_options(options: Mapping[str, Any]) -> Mapping[str, str]:
    """Check an experiment's ``objective.options`` before any work; returns the task's directions."""
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise PrunetuneError(
            f"Unknown option {unknown[0]!r} of the reconstruction objective ('objective.options'). "
            f"Known options: {', '.join(OPTIONS)}."
        )
    metric = options.get("metric", "roc_auc")
    if metric not in ANOMALY_METRICS:
        _bad("metric", metric, f"one of {', '.join(ANOMALY_METRICS)}")
    return reconstruction_directions(options.get("task", "anomaly"))


class ReconstructionLoss(nn.Module):
    """Mean squared error between the output and the input, both flattened per row.

    Flattening lets a model that returns flat rows for image inputs train like one that
    returns the input's shape.
    """

    def forward(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return nn.functional.mse_loss(outputs.flatten(1), targets.flatten(1))


class _AsReconstruction:
    """A loader's batches as ``(inputs, inputs)``: an autoencoder's target is its input."""

    def __init__(self, loader: Any) -> None:
        self.loader = loader

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for inputs, _ in self.loader:
            yield inputs, inputs

    def __len__(self) -> int:
        return len(self.loader)


@dataclass(frozen=True)
class ReconstructionScores:
    """What the base model scores and costs; computed once per objective.

    Attributes:
        measurement: The base model's size and cost.
        val: Its scores on the validation split (``roc_auc``, ``accuracy``, ... without prefix).
        test: The same on the test split.
        metric: The name of the main score in ``val`` and ``test``.
    """

    measurement: Measurement
    val: Mapping[str, float]
    test: Mapping[str, float]
    metric: str

    @property
    def val_accuracy(self) -> float:
        """The main score on val (named so for tools that read a classifier's base scores)."""
        return self.val["accuracy"]

    @property
    def test_accuracy(self) -> float:
        return self.test["accuracy"]


@torch.no_grad()
def reconstruction_errors(model: nn.Module, inputs: torch.Tensor, *, batch_size: int = 1024) -> np.ndarray:
    """Each row's mean squared reconstruction error: the anomaly score of A2E (eval mode, restored)."""
    was_training = model.training
    model.eval()
    errors = []
    try:
        device = model_device(model)
        for start in range(0, len(inputs), batch_size):
            batch = to_device(inputs[start : start + batch_size], device)
            outputs = model(batch)
            errors.append(((outputs.flatten(1).float() - batch.flatten(1)) ** 2).mean(1).cpu())
    finally:
        model.train(was_training)
    return torch.cat(errors).double().numpy() if errors else np.zeros(0)


@torch.no_grad()
def encoder_codes(model: nn.Module, inputs: torch.Tensor, *, code_module: str, batch_size: int = 1024) -> np.ndarray:
    """The output of submodule ``code_module`` for each row, flattened: what the code classifier reads.

    Read with a forward hook, so any autoencoder works whatever its ``forward`` looks like.
    """
    module = model.get_submodule(code_module)
    codes: list[torch.Tensor] = []
    handle = module.register_forward_hook(lambda _m, _i, output: codes.append(output.flatten(1).cpu()))
    was_training = model.training
    model.eval()
    try:
        device = model_device(model)
        for start in range(0, len(inputs), batch_size):
            model(to_device(inputs[start : start + batch_size], device))
    finally:
        handle.remove()
        model.train(was_training)
    return torch.cat(codes).double().numpy() if codes else np.zeros((0, 0))


def anomaly_scores(errors: np.ndarray, labels: np.ndarray, *, normal_class: int = 0) -> dict[str, float]:
    """ROC-AUC and average precision of reconstruction errors as scores for "not ``normal_class``"."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    anomalous = np.asarray(labels) != normal_class
    if anomalous.all() or not anomalous.any():
        raise PrunetuneError(
            "ROC-AUC needs normal and anomalous rows: the split has "
            f"{int(anomalous.sum())} anomalous of {len(anomalous)} (normal_class={normal_class})."
        )
    return {
        "roc_auc": float(roc_auc_score(anomalous, errors)),
        "average_precision": float(average_precision_score(anomalous, errors)),
    }


class ReconstructionObjective(OnDevice):
    """Prune a copy of an autoencoder by a plan, fine-tune it to reconstruct, score its task.

    Args:
        base: The trained autoencoder (its output has its input's values); never changed.
        data: The splits. For ``"anomaly"``, val and test must hold rows of ``normal_class``
            and others (``creditcard:PATH`` does); train may hold both, only its normal rows
            are reconstructed.
        task: ``"anomaly"`` or ``"code-classifier"`` (see the module's description).
        metric: The anomaly task's main score, ``"roc_auc"`` or ``"average_precision"``;
            the code classifier's is always its accuracy.
        normal_class: The label of normal rows (anomaly task).
        code_module: Path of the submodule whose output is the code (code-classifier task).
        classifier_samples: Training rows (a seeded subset) the code classifier is fitted on.
        finetune: How each trial fine-tunes (``epochs``, or ``max_steps``); its seed fixes the
            batch order and the classifier's subset.
        batch_size: Batch size of the fine-tuning batches.
        bn_recalibration_batches: As in ClassificationObjective (None: 20 with BN layers, else 0).
        measure_latency: Also time one example's forward pass (``latency_ms``).
        threads: CPU threads for the whole trial (None keeps the current setting).
        device: Where trials run: ``cpu``, ``cuda``, ``cuda:N``, ``mps`` or ``auto`` (the GPU the
            executor assigned, else the CPU); the base model stays on the CPU.

    Calling it with ``(plan, report=None)`` returns the metrics named in :attr:`directions`.
    ``report(step, values)`` gets ``val_accuracy`` (the main score), ``compression`` and
    ``macs_reduction`` at step 0 (after pruning) and after each epoch (plus ``train_loss``
    and ``val_loss``, the reconstruction losses).

    Example:
        >>> objective = ReconstructionObjective(base=autoencoder, data=load_data("creditcard:data"))  # doctest: +SKIP
        >>> metrics = objective({"filters": {"ratios": {"encoder.0": 0.5, "decoder.2": 0.5}}})  # doctest: +SKIP
        >>> metrics["roc_auc"], metrics["complexity_reduction"]  # doctest: +SKIP
    """

    def __init__(
        self,
        *,
        base: nn.Module,
        data: DataSplits,
        task: str = "anomaly",
        metric: str = "roc_auc",
        normal_class: int = 0,
        code_module: str = "encoder",
        classifier_samples: int = 5000,
        finetune: TrainConfig = DEFAULT_RECONSTRUCTION_FINETUNE,
        batch_size: int = 256,
        bn_recalibration_batches: int | None = None,
        measure_latency: bool = False,
        threads: int | None = None,
        device: str = "cpu",
    ) -> None:
        self.base = base
        self.data = data
        self.task = task
        self.metric = metric
        self.normal_class = normal_class
        self.code_module = code_module
        self.classifier_samples = classifier_samples
        self.finetune = finetune
        self.batch_size = batch_size
        self.bn_recalibration_batches = bn_recalibration_batches
        self.measure_latency = measure_latency
        self.threads = threads
        self.device = device
        self._base_scores: ReconstructionScores | None = None
        self._last_model: nn.Module | None = None
        self._last_plan: dict[str, Any] | None = None

    @property
    def directions(self) -> Mapping[str, str]:
        """The metrics this task returns (the anomaly task adds ROC-AUC and average precision)."""
        return reconstruction_directions(self.task)

    @property
    def main_metric(self) -> str:
        """The score returned as ``accuracy``: ``metric`` for anomalies, the classifier's accuracy otherwise."""
        return self.metric if self.task == "anomaly" else "accuracy"

    def validate(self) -> None:
        """Raise PrunetuneError naming the first bad parameter; called before the first trial's work."""
        check_trial_options("ReconstructionObjective", self)
        reconstruction_directions(self.task)
        if self.metric not in ANOMALY_METRICS:
            _bad("metric", self.metric, f"one of {', '.join(ANOMALY_METRICS)}")
        if not _is_int(self.normal_class):
            _bad("normal_class", self.normal_class, "an integer label")
        if self.task == "code-classifier":
            if not isinstance(self.code_module, str) or not _has_submodule(self.base, self.code_module):
                _bad("code_module", self.code_module, "the path of a submodule of base whose output is the code")
            if not _is_int(self.classifier_samples) or self.classifier_samples < 2:
                _bad("classifier_samples", self.classifier_samples, "an integer >= 2")

    def base_scores(self) -> ReconstructionScores:
        """The base model's scores on val and test and its measurement, computed on first use.

        Also checks what only the data can tell: that the model reconstructs its input's shape,
        and that the anomaly task has normal and anomalous rows in val and test.
        """
        if self._base_scores is None:
            self.validate()
            with torch_threads(self.threads):
                example = torch.zeros(1, *self.data.input_shape)
                self._check_output(example)
                if self.task == "anomaly" and len(self._train_rows()) == 0:
                    _bad("normal_class", self.normal_class, "the label of the training split's normal rows")
                self._base_scores = ReconstructionScores(
                    measurement=measure(self.base, example),
                    val=self.scores(self.base, "val"),
                    test=self.scores(self.base, "test"),
                    metric=self.main_metric,
                )
        return self._base_scores

    def scores(self, model: nn.Module, split: str) -> dict[str, float]:
        """The task's scores of ``model`` on ``split`` ("val" or "test"), without prefix.

        ``reconstruction_error`` always; ``roc_auc`` and ``average_precision`` for anomalies;
        ``accuracy`` (the main score) in both tasks.
        """
        inputs, labels = _tensors(self.data.val if split == "val" else self.data.test)
        errors = reconstruction_errors(model, inputs)
        if self.task == "anomaly":
            normal = labels.numpy() == self.normal_class
            values = anomaly_scores(errors, labels.numpy(), normal_class=self.normal_class)
            values["reconstruction_error"] = float(errors[normal].mean())
            values["accuracy"] = values[self.metric]
            return values
        return {
            "accuracy": self._code_accuracy(model, inputs, labels),
            "reconstruction_error": float(errors.mean()),
        }

    def __call__(self, plan: Plan | Mapping[str, Any], report: Report | None = None) -> dict[str, float]:
        """Run one trial: prune a copy of the base by ``plan``, fine-tune it, and return its metrics."""
        self._last_model = None
        self._last_plan = None
        self.validate()
        base = self.base_scores()
        with torch_threads(self.threads):
            model, applied, metrics = self._prune_and_finetune(plan, base, report)
        self._last_model = model
        self._last_plan = applied
        return metrics

    def take_model(self) -> nn.Module | None:
        """The pruned, fine-tuned model of the last successful call, handed over once (None after)."""
        model, self._last_model = self._last_model, None
        return model

    def take_applied_plan(self) -> dict[str, Any] | None:
        """The plan as the last successful call applied it, handed over once (None after)."""
        plan, self._last_plan = self._last_plan, None
        return plan

    def loaders(self) -> Loaders:
        """Seeded ``(inputs, inputs)`` batches: train (normal rows only for anomalies), val, test."""
        train_rows, val_rows = self._train_rows(), self._val_rows()
        splits = dataclasses.replace(self.data, train=train_rows, val=val_rows)
        plain = splits.loaders(self.batch_size, seed=self.finetune.seed)
        return Loaders(*(_AsReconstruction(loader) for loader in plain))  # type: ignore[arg-type]

    # --- one trial ----------------------------------------------------------------------------------

    def as_task(self) -> Task:
        """This objective's hooks for prune-and-fine-tune: reconstruct, and score the task."""
        return Task(
            loaders=lambda seed: self.loaders(),
            scores=self.scores,
            loss_fn=ReconstructionLoss(),
        )

    def _prune_and_finetune(
        self, plan: Plan | Mapping[str, Any], base: ReconstructionScores, report: Report | None
    ) -> tuple[nn.Module, dict[str, Any], dict[str, float]]:
        """The trial's steps (prune_and_finetune) with a reconstruction loss and the task's scores."""
        progress: dict[str, float] = {}

        def on_pruned(pruned: Measurement, score: float) -> None:
            sizes = size_metrics(base.measurement, pruned)
            progress.update({REPORT_COMPRESSION: sizes["compression"], "macs_reduction": sizes["macs_reduction"]})
            if report is not None:
                report(0, {REPORT_ACCURACY: score, **progress})

        def on_epoch_score(stats: EpochStats, score: float) -> None:
            if report is not None and stats.val is not None:
                report(stats.epoch, {REPORT_ACCURACY: score, **progress, "train_loss": stats.train_loss, "val_loss": stats.val.loss})

        result = prune_and_finetune(
            self.base, plan, self.data, finetune=self.finetune, batch_size=self.batch_size,
            bn_recalibration_batches=self.bn_recalibration_batches, latency=self.measure_latency,
            latency_threads=self.threads, base_measurement=base.measurement, base_val_accuracy=base.val_accuracy,
            on_pruned=on_pruned, on_epoch_score=on_epoch_score if report is not None else None, task=self.as_task(),
            device=self.trial_device(),
        )
        metrics = self._metrics(base, result.val_scores, result.test_scores, accuracy_pruned=result.val_accuracy_pruned)
        metrics.update(size_metrics(base.measurement, result.pruned))
        metrics["complexity_reduction"] = 1.0 - 1.0 / metrics["compression"]
        if result.latency_ms is not None:
            metrics["latency_ms"] = result.latency_ms
        metrics["seconds"] = result.seconds
        return result.model, result.plan or {}, metrics

    def _metrics(
        self, base: ReconstructionScores, val: Mapping[str, float], test: Mapping[str, float], *, accuracy_pruned: float
    ) -> dict[str, float]:
        drop = 100.0 * (base.val_accuracy - val["accuracy"])
        test_drop = 100.0 * (base.test_accuracy - test["accuracy"])
        metrics = {
            "accuracy": val["accuracy"],
            "accuracy_pruned": accuracy_pruned,
            "test_accuracy": test["accuracy"],
            "accuracy_drop": drop,
            "test_accuracy_drop": test_drop,
            "performance_drop": drop,
            "test_performance_drop": test_drop,
            "reconstruction_error": val["reconstruction_error"],
            "test_reconstruction_error": test["reconstruction_error"],
        }
        if self.task == "anomaly":
            for name in ANOMALY_METRICS:
                metrics[name] = val[name]
                metrics[f"test_{name}"] = test[name]
        return metrics

    # --- data and scores ------------------------------------------------------------------------------

    def _train_rows(self) -> TensorDataset:
        """The rows the autoencoder learns to reconstruct: the normal ones for anomalies, else all."""
        if self.task != "anomaly":
            return self.data.train
        inputs, labels = _tensors(self.data.train)
        keep = labels == self.normal_class
        return TensorDataset(inputs[keep], labels[keep])

    def _val_rows(self) -> TensorDataset:
        """The validation rows whose reconstruction loss is reported: as :meth:`_train_rows` picks."""
        if self.task != "anomaly":
            return self.data.val
        inputs, labels = _tensors(self.data.val)
        keep = labels == self.normal_class
        return TensorDataset(inputs[keep], labels[keep])

    def _code_accuracy(self, model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor) -> float:
        """Accuracy on ``inputs`` of a logistic regression fitted on the codes of a training subset."""
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        train_inputs, train_labels = _tensors(self.data.train)
        generator = torch.Generator().manual_seed(self.finetune.seed)
        subset = torch.randperm(len(train_inputs), generator=generator)[: self.classifier_samples]
        fit_codes = encoder_codes(model, train_inputs[subset], code_module=self.code_module)
        classifier = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            classifier.fit(fit_codes, train_labels[subset].numpy())
        predicted = classifier.predict(encoder_codes(model, inputs, code_module=self.code_module))
        return float((predicted == labels.numpy()).mean())

    def _check_output(self, example: torch.Tensor) -> None:
        was_training = self.base.training
        self.base.eval()
        try:
            with torch.no_grad():
                output = self.base(example)
        finally:
            self.base.train(was_training)
        if not isinstance(output, torch.Tensor) or output.numel() != example.numel():
            shown = tuple(output.shape) if isinstance(output, torch.Tensor) else type(output).__name__
            _bad(
                "base",
                f"a model whose output has shape {shown}",
                f"an autoencoder whose output has its input's {example.numel()} values per row",
            )

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(base={type(self.base).__name__}, data={self.data!r}, task={self.task!r}, "
            f"metric={self.metric!r}, finetune={self.finetune!r}, batch_size={self.batch_size!r}, "
            f"threads={self.threads!r})"
        )


def train_autoencoder(
    model: str,
    data: DataSplits,
    *,
    config: TrainConfig,
    batch_size: int = 256,
    model_kwargs: Mapping[str, Any] | None = None,
    output: str | Path | None = None,
    data_spec: str | None = None,
    data_options: Mapping[str, Any] | None = None,
    echo: Callable[[str], None] = lambda line: None,
    **objective_options: Any,
) -> tuple[nn.Module, dict[str, float]]:
    """Train zoo model ``model`` to reconstruct ``data``, score it as the objective will, save it.

    The base an A2E search starts from, trained by the one base-training path
    (:func:`~prunetune.objectives.base_training.train_base`): it learns on the rows a
    :class:`ReconstructionObjective` built with ``objective_options`` (``task``, ``normal_class``,
    ...) fine-tunes on, so the base and every trial agree on what normal looks like.

    Returns:
        The trained model and its metrics: ``train_loss``, ``val_loss`` (reconstruction), the
        task's scores on val and test (``val_roc_auc``, ``test_accuracy``, ...), and
        ``val_accuracy`` / ``test_accuracy`` = the main score, as the checkpoint records them.
    """
    return train_base(
        model, data, config=dataclasses.replace(config, batch_size=batch_size), model_kwargs=model_kwargs,
        reconstruction=objective_options, output=output, data_spec=data_spec, data_options=data_options, echo=echo,
    )


def _tensors(dataset: TensorDataset) -> tuple[torch.Tensor, torch.Tensor]:
    inputs, labels = dataset.tensors[:2]
    return inputs, labels


def _has_submodule(model: object, path: str) -> bool:
    if not isinstance(model, nn.Module):
        return False
    try:
        model.get_submodule(path)
    except AttributeError:
        return False
    return True


_is_int = is_int


def _bad(name: str, value: object, allowed: str) -> None:
    bad_option("ReconstructionObjective", name, value, allowed)
