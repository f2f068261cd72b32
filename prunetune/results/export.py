"""Export: one trial of a run as a real, smaller model — a prunetune checkpoint with its plan, and TorchScript.

After `prunetune finalize` the export is the finalized model (retrained for longer). With kept
weights (`objective.keep_weights` in the experiment) it is exactly the model the trial evaluated, so
its accuracies equal the ledger's. Without them the model is re-created: the
trial's plan is applied to the base model with the same calibration, BN recalibration and
fine-tuning the trial had. The parameter count then still equals the ledger's, the accuracies come
close (fine-tuning is not bit-for-bit repeatable across thread counts and machines).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from prunetune.errors import PrunetuneError, is_finite_number
from prunetune.files import replacing
from prunetune.results.runs import Run, load_run
from prunetune.results.finalize import retrain, trial_model

__all__ = ["ExportResult", "export_trial", "select_trial", "torchscript_path"]

#: What an export prints next to the ledger, in this order.
COMPARED = ("params", "nonzero_params", "compression", "bits_compression", "macs_reduction", "accuracy", "test_accuracy")
#: Largest difference between the TorchScript module's outputs and the model's that still counts as equal.
SCRIPT_TOLERANCE = 1e-5


@dataclass(frozen=True)
class ExportResult:
    """What an export wrote and measured.

    Attributes:
        trial: The trial's number in the run.
        path: The prunetune checkpoint (its plan included).
        torchscript: The TorchScript file next to it.
        source: ``"finalized weights"``, ``"kept weights"`` or ``"re-created from the plan"``.
        metrics: The exported model's figures (the objective's metric names).
        ledger: The trial's figures as the search recorded them.
        finetune_epochs: Extra fine-tuning epochs the export ran.
    """

    trial: int
    path: Path
    torchscript: Path
    source: str
    metrics: dict[str, float]
    ledger: dict[str, float]
    finetune_epochs: int = 0

    def rows(self) -> list[tuple[str, float | None, float | None]]:
        """(metric, exported, ledger) for the figures worth comparing, in a fixed order."""
        return [(name, self.metrics.get(name), self.ledger.get(name)) for name in COMPARED if name in self.metrics]


def torchscript_path(output: Path) -> Path:
    """`model.pt` -> `model.torchscript.pt` (any other name gets `.torchscript.pt` appended)."""
    output = Path(output)
    stem = output.stem if output.suffix == ".pt" else output.name
    return output.with_name(f"{stem}.torchscript.pt")


def select_trial(run: Run, *, trial: int | None = None, knee: bool = False, max_drop: float | None = None) -> int:
    """The trial number an export asks for: a given number, the front's knee, or the most
    compressed trial within an accuracy drop (percentage points)."""
    chosen = [name for name, given in (("trial", trial is not None), ("knee", knee), ("max_drop", max_drop is not None)) if given]
    if len(chosen) != 1:
        raise PrunetuneError(f"Choose exactly one of trial, knee or max_drop. Got {', '.join(chosen) or 'none'} instead.")
    if trial is not None:
        return int(run.trial(int(trial))["number"])
    if knee or max_drop is None:
        return int(run.knee()["number"])
    if not math.isfinite(max_drop):
        raise PrunetuneError(f"The 'max_drop' must be a finite number of percentage points. Got {max_drop!r} instead.")
    row = run.most_compressed(max_drop=max_drop)
    if row is None:
        best = run.candidates()["accuracy_drop"].min() if "accuracy_drop" in run.trials.columns else math.nan
        raise PrunetuneError(
            f"No completed trial of {run.path} has an accuracy drop of at most {max_drop:g} pp "
            f"(the smallest is {best:.2f} pp): raise --max-drop."
        )
    return int(row["number"])


def export_trial(
    run: Run | str | os.PathLike[str],
    number: int,
    output: str | os.PathLike[str],
    *,
    finetune_epochs: int = 0,
    from_plan: bool = False,
    echo: Callable[[str], None] = lambda line: None,
) -> ExportResult:
    """Write trial `number` of `run` as a checkpoint at `output` and TorchScript beside it.

    Uses the trial's finalized weights, else its kept weights, when the run has them (unless
    `from_plan`), else re-creates the model from the base checkpoint and the plan. `finetune_epochs` > 0 trains it further with the
    run's fine-tuning settings (pruned weights stay zero). Every check runs before anything is
    written; a bad choice raises PrunetuneError and writes nothing.
    """
    from prunetune.objectives.prune_finetune import size_metrics
    from prunetune.objectives.training import evaluate
    from prunetune.pruners import make_masks_permanent, measure, method_source
    from prunetune.zoo.checkpoint import load_checkpoint, save_checkpoint
    from prunetune.zoo.datasets.section import checkpoint_source

    run = run if isinstance(run, Run) else load_run(run)
    output = Path(output).expanduser()
    if output.is_dir():
        raise PrunetuneError(f"-o {output} is a folder; name the checkpoint file to write.")
    if finetune_epochs < 0:
        raise PrunetuneError(f"The 'finetune_epochs' must be >= 0. Got {finetune_epochs!r} instead.")
    row = run.trial(number)
    if row["state"] != "COMPLETE":
        why = row.get("fail_reason") or "no reason recorded"
        raise PrunetuneError(f"Trial {number} of {run.path} did not complete ({row['state']}: {why}); export a completed trial.")
    plan = run.plan(number)
    experiment = run.experiment
    data = run.data()
    base = load_checkpoint(run.base_checkpoint).build()
    model, source = trial_model(run, number, from_plan=from_plan, data=data, echo=echo)
    section = experiment.objective
    _, val_loader, test_loader = data.loaders(section.batch_size, seed=experiment.seed)
    if finetune_epochs:
        retrain(run, model, plan, data, finetune_epochs, echo)
    make_masks_permanent(model)
    model.eval()
    example = torch.zeros(1, *data.input_shape)
    metrics = {
        "accuracy": evaluate(model, val_loader).accuracy,
        "test_accuracy": evaluate(model, test_loader).accuracy,
        **size_metrics(measure(base, example), measure(model, example)),
    }
    base_figures = run.base()
    for name, drop in (("accuracy", "accuracy_drop"), ("test_accuracy", "test_accuracy_drop")):
        if name in base_figures:
            metrics[drop] = 100.0 * (base_figures[name] - metrics[name])
    inputs = next(iter(val_loader))[0][:8].cpu()
    scripted = _torchscript(model.cpu(), inputs)
    ledger = {key: float(row[key]) for key in COMPARED + ("accuracy_drop", "test_accuracy_drop") if key in row.index and is_finite_number(row[key])}
    if source == "finalized weights":  # compare with what finalize recorded, not the brief fine-tune's figures
        for key in ("accuracy", "test_accuracy", "accuracy_drop", "test_accuracy_drop"):
            final = f"final_{key}"
            if final in row.index and is_finite_number(row[final]):
                ledger[key] = float(row[final])
    script_file = torchscript_path(output)
    data_spec, data_options = checkpoint_source(experiment.data, seed=experiment.seed)
    with replacing(script_file) as temporary:  # the TorchScript file lands only once the checkpoint did
        torch.jit.save(scripted, str(temporary))
        save_checkpoint(
            output,
            model,
            data_spec=data_spec,
            data_options=data_options,
            input_shape=tuple(data.input_shape),
            num_classes=data.num_classes,
            metrics=metrics,
            plan=plan,
            method_sources={name: method_source(name) for name in plan if method_source(name)},
        )
    return ExportResult(
        trial=number, path=output, torchscript=script_file, source=source, metrics=metrics, ledger=ledger,
        finetune_epochs=finetune_epochs,
    )


def _torchscript(model: nn.Module, inputs: torch.Tensor) -> torch.jit.ScriptModule:
    """The model traced on CPU (scripted where tracing fails), checked to give the model's outputs."""
    model.eval()
    with torch.no_grad():
        expected = model(inputs)
        try:
            scripted = torch.jit.trace(model, inputs[:1], check_trace=False)
        except Exception as trace_error:  # noqa: BLE001 - tracing fails in many ways; scripting is the fallback
            try:
                scripted = torch.jit.script(model)
            except Exception as script_error:
                raise PrunetuneError(
                    f"The model could not be made TorchScript: tracing failed ({trace_error}), scripting failed ({script_error})."
                ) from script_error
        got = scripted(inputs)
    if got.shape != expected.shape or not torch.allclose(got, expected, rtol=0.0, atol=SCRIPT_TOLERANCE):
        raise PrunetuneError("The TorchScript module's outputs differ from the model's; nothing was written.")
    return scripted


