"""Finalize: retrain chosen trials' models for longer, as papers and users do before they report.

A search fine-tunes each trial briefly, so every figure it records is a brief-fine-tune figure.
``prunetune finalize RUN --front`` (or ``--trial N``) takes each chosen trial's model (its kept
weights, else re-created from its plan), trains it ``epochs`` more on the same data split with the
run's fine-tuning settings, holding what the plan decided: zeroed weights stay zero (masks), a
quantized layer keeps its codes and codebook structure, dropped layers stay dropped and removed
channels stay removed (the model is already the smaller one). The finalized validation and test
figures go into the run's study beside the search's (``final_accuracy``, ``final_test_accuracy``
and their drops), the weights into ``RUN/weights/final-trial-N.pt``, which ``prunetune export``
then takes. Selection stays on the search's validation figures; finalize only measures further.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from prunetune.errors import PrunetuneError, is_finite_number
from prunetune.files import write_bytes
from prunetune.results.runs import Run, load_run
from prunetune.search.weights import final_weights_path, load_kept_weights, model_bytes, weights_path

__all__ = ["chosen_trials", "finalize_trials", "recreate_model", "retrain", "trial_model"]

#: Epochs finalize retrains for when not told.
DEFAULT_EPOCHS = 10


def chosen_trials(run: Run, *, numbers: Sequence[int] = (), front: bool = False, baselines: bool = False) -> list[int]:
    """The trials to finalize: those named, the searched front's, and the baselines' front's."""
    if not numbers and not front and not baselines:
        raise PrunetuneError("Choose what to finalize: --trial N (one or more), --front, or --baselines.")
    chosen = [int(run.trial(int(number))["number"]) for number in numbers]
    if front:
        chosen += [int(number) for number in run.front().index]
    if baselines:
        chosen += [int(number) for number in run.baseline_front().index]
    for number in chosen:
        row = run.trial(number)
        if row["state"] != "COMPLETE":
            raise PrunetuneError(f"Trial {number} of {run.path} did not complete ({row['state']}): finalize a completed trial.")
    return list(dict.fromkeys(chosen))


def trial_model(
    run: Run, number: int, *, from_plan: bool = False, final: bool = True, device: torch.device | None = None,
    data: Any = None, echo: Callable[[str], None] = lambda line: None,
) -> tuple[nn.Module, str]:
    """Trial ``number``'s model and where it came from: finalized weights (with ``final``), kept
    weights, or (``from_plan``, or neither kept) re-created from its plan as the trial made it (on
    ``device``; loaded weights stay on the CPU for the caller to move). ``data``: the run's data,
    when the caller has it loaded already."""
    from prunetune.zoo.checkpoint import load_checkpoint

    plan = run.plan(number)
    run.register_methods()
    checkpoint = load_checkpoint(run.base_checkpoint)
    data = run.data() if data is None else data
    shape = tuple(data.input_shape)
    for path, source in ((final_weights_path(run.path, number), "finalized weights"), (weights_path(run.path, number), "kept weights")):
        if path.is_file() and not from_plan and (final or source == "kept weights"):
            return dataclasses.replace(checkpoint, state_dict=load_kept_weights(path), plan=plan, input_shape=shape).build(), source
    echo(f"trial {number}: no kept weights{' used' if weights_path(run.path, number).is_file() else ''}; re-creating it from its plan")
    with torch.enable_grad():  # fine-tuning trains, even when the caller runs under no_grad
        return recreate_model(run, checkpoint.build(), plan, data, device), "re-created from the plan"


def recreate_model(run: Run, base: nn.Module, plan: Mapping[str, Any], data: Any, device: torch.device | None = None) -> nn.Module:
    """The trial's work again: prune a copy of the base, calibrate, recalibrate BN, fine-tune (as the run's objective)."""
    from prunetune.objectives.prune_finetune import prune_and_finetune
    from prunetune.objectives.training import TrainConfig

    experiment = run.experiment
    section = experiment.objective
    finetune = TrainConfig(**section.finetune, seed=experiment.seed, batch_size=section.batch_size)
    result = prune_and_finetune(
        base, plan, data, finetune=finetune, batch_size=section.batch_size,
        bn_recalibration_batches=section.bn_recalibration_batches, device=device,
    )
    return result.model


def retrain(
    run: Run, model: nn.Module, plan: Mapping[str, Any], data: Any, epochs: int, echo: Callable[[str], None],
    *, lr: float | None = None,
) -> None:
    """Train further with the run's fine-tuning settings (``lr`` if given); weights pruned to zero stay zero."""
    from torch.nn.utils import parametrize, prune

    from prunetune.objectives.training import TrainConfig, format_epoch, train
    from prunetune.pruners import make_masks_permanent, prunable_weight_layers

    experiment = run.experiment
    settings = dict(experiment.objective.finetune)
    settings.update(epochs=epochs, max_steps=None)
    if lr is not None:
        settings["lr"] = lr
    config = TrainConfig(**settings, seed=experiment.seed, batch_size=experiment.objective.batch_size)
    config.validate()
    make_masks_permanent(model)
    if "weights" in plan:  # unstructured: hold the zeros with masks while training, fold them after
        modules = dict(model.named_modules())
        for name in prunable_weight_layers(model):
            if parametrize.is_parametrized(modules[name], "weight"):
                continue  # a quantized layer's zeros have no code: they stay zero without a mask
            weight = modules[name].weight
            if bool((weight == 0).any()):
                prune.custom_from_mask(modules[name], "weight", (weight != 0).to(weight.dtype))
    train_loader, val_loader, _ = data.loaders(experiment.objective.batch_size, seed=experiment.seed)
    with torch.enable_grad():
        train(model, train_loader, config=config, val_loader=val_loader, on_epoch=lambda stats: echo("  " + format_epoch(stats, epochs)))
    make_masks_permanent(model)


def finalize_trials(
    run_dir: str | Path,
    *,
    numbers: Sequence[int] = (),
    front: bool = False,
    baselines: bool = False,
    epochs: int = DEFAULT_EPOCHS,
    lr: float | None = None,
    device: str | None = None,
    echo: Callable[[str], None] = print,
) -> dict[int, dict[str, Any]]:
    """Retrain the chosen trials for ``epochs`` and record their final figures; returns them by trial.

    Takes the run lock (not while a search runs on the folder); everything the user chose is
    checked before any training. A trial finalized again starts from its finalized weights.
    Training runs on ``device`` (default: the run's ``execution.device``; ``auto`` takes a GPU if
    there is one); the weights are saved from the CPU so they load anywhere.
    """
    from prunetune.objectives.devices import check_device, resolve_device
    from prunetune.objectives.training import evaluate
    from prunetune.search.ledger import RunLock, record_finalized

    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise PrunetuneError(f"The 'epochs' of finalize must be an integer >= 1. Got {epochs!r} instead.")
    if lr is not None and not (isinstance(lr, (int, float)) and lr > 0):
        raise PrunetuneError(f"The 'lr' of finalize must be a number > 0. Got {lr!r} instead.")
    run = load_run(run_dir)
    spec = check_device(run.experiment.execution.device if device is None else device,
                        where="execution.device" if device is None else "--device")
    chosen = chosen_trials(run, numbers=numbers, front=front, baselines=baselines)
    target = resolve_device(spec)
    base = run.base()
    data = run.data()
    _, val_loader, test_loader = data.loaders(run.experiment.objective.batch_size, seed=run.experiment.seed)
    results: dict[int, dict[str, Any]] = {}
    with RunLock(run.path):
        for number in chosen:
            started = time.perf_counter()
            model, source = trial_model(run, number, device=target, data=data, echo=echo)
            model.to(target)
            echo(f"trial {number}: retraining {epochs} epoch(s) on {target}, starting from {source}")
            retrain(run, model, run.plan(number), data, epochs, echo, lr=lr)
            model.eval()
            metrics = {
                "final_accuracy": evaluate(model, val_loader).accuracy,
                "final_test_accuracy": evaluate(model, test_loader).accuracy,
                "final_epochs": float(epochs) + float(_finalized_epochs(run, number) if source == "finalized weights" else 0),
            }
            for name, key in (("accuracy", "final_accuracy"), ("test_accuracy", "final_test_accuracy")):
                if name in base:
                    metrics[key.replace("accuracy", "accuracy_drop")] = 100.0 * (base[name] - metrics[key])
            path = final_weights_path(run.path, number)
            write_bytes(path, model_bytes(model.cpu()))
            record = {"metrics": metrics, "epochs": epochs, "lr": lr, "from": source, "weights": str(path.relative_to(run.path)),
                      "device": str(target), "seconds": time.perf_counter() - started}
            record_finalized(run.study, number, record)
            results[number] = record
            echo(f"trial {number}: final val acc. {metrics['final_accuracy']:.2%}, test acc. {metrics['final_test_accuracy']:.2%} "
                 f"(search: {run.trial(number)['accuracy']:.2%} val)")
    return results


def _finalized_epochs(run: Run, number: int) -> float:
    """Epochs earlier finalize runs already trained trial ``number`` for (0 if never)."""
    row = run.trial(number)
    return float(row["final_epochs"]) if "final_epochs" in row.index and is_finite_number(row["final_epochs"]) else 0.0
