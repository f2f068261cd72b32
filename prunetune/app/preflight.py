"""Everything an experiment can get wrong, checked before any work: nothing is written on failure.

`check_experiment` reads the data, builds the base model's architecture (the checkpoint, or the zoo
model untrained), configures every method on it, the sampler, the objective and the storage, and
returns what it found; the runner creates the run folder only after it passed. `describe` turns
the result into the text `prunetune run --check` prints.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from prunetune.app.experiment import Experiment
from prunetune.errors import PrunetuneError
from prunetune.objectives.devices import check_device, resolve_device
from prunetune.pruners import make_method
from prunetune.pruners.latency_model import LatencyModel
from prunetune.search.cluster import check_reachable
from prunetune.search.goals import Goals
from prunetune.search.ledger import saved_latency_model
from prunetune.search.storage import check_storage_url, storage_url
from prunetune.search.sampler_choice import SAMPLERS, create_sampler
from prunetune.search.space import SearchSpace
from prunetune.user_code import accepted_keywords, load_reference
from prunetune.zoo.datasets import DataSplits, open_data

__all__ = ["Checked", "check_experiment", "describe", "goals_of", "load_experiment_data", "target_space"]

#: How far an infeasible trial's values move against their direction, per unit of violation, for a
#: sampler that takes no constraints but learns from values (the table's ``constraints="penalty"``).
CONSTRAINT_PENALTY = 1.0
#: What the runner hands every objective besides its own options (not settable in `objective.options`).
PROVIDED = ("base", "data", "finetune", "batch_size", "bn_recalibration_batches", "measure_latency", "device")


@dataclass(frozen=True)
class Checked:
    """An experiment that passed every check, with what the checks built on the way."""

    experiment: Experiment
    goals: Goals
    data: DataSplits
    model: nn.Module
    base: str
    space: SearchSpace


def goals_of(experiment: Experiment) -> Goals:
    """The experiment's objectives and constraints (penalised for a sampler that takes no constraints)."""
    section = experiment.objective
    goals = Goals.from_config(section.objectives, section.constraints)
    entry = SAMPLERS.get(experiment.search.sampler)
    if entry is not None and entry.constraints == "penalty":
        goals = dataclasses.replace(goals, penalty=CONSTRAINT_PENALTY)
    return goals


def load_experiment_data(experiment: Experiment) -> DataSplits:
    return open_data(dataclasses.asdict(experiment.data), seed=experiment.seed)


def check_experiment(experiment: Experiment, run_dir: Path | None = None) -> Checked:
    """Check everything `experiment` names; raise one PrunetuneError for the first problem found.

    Nothing is written: no run folder, no saved experiment, no base model.
    """
    goals = goals_of(experiment)
    if experiment.execution.executor == "ray":
        check_reachable(experiment.execution.address)
    _check_devices(experiment)
    _check_objective(experiment, goals)
    if run_dir is not None:
        check_storage_url(storage_url(Path(run_dir), experiment.storage))
    _check_methods(experiment.methods)
    data = load_experiment_data(experiment)
    model, base = _architecture(experiment, data)
    space = SearchSpace.for_model(model, torch.zeros(1, *data.input_shape), experiment.methods)
    saved = saved_latency_model(run_dir) if run_dir is not None else None
    space = target_space(space, model, torch.zeros(1, *data.input_shape), experiment, latency=saved)
    create_sampler(  # sampler name and options, on the real space
        experiment.search.sampler, seed=experiment.seed, n_objectives=len(goals.objectives),
        search_space=space.distributions, options=experiment.search.sampler_options,
    )
    return Checked(experiment=experiment, goals=goals, data=data, model=model, base=base, space=space)


def target_space(
    space: SearchSpace, model: nn.Module, example: torch.Tensor, experiment: Experiment, *, latency: LatencyModel | None = None
) -> SearchSpace:
    """``space`` with its plans repaired onto ``objective.target`` (as is without one); a target
    the space cannot reach even with every unit at its bound is refused here. A latency_ms target
    is repaired on ``latency``, or on a latency model fitted here on the trials' device and threads."""
    target = experiment.objective.target
    if not target:
        return space
    from prunetune.pruners.target import PlanRepair, Target

    execution = experiment.execution
    if "latency_ms" in target and execution.address is not None:
        raise PrunetuneError(
            "The 'objective.target' latency_ms is predicted by a latency model timed on this machine, but "
            "'execution.address' runs the trials on a cluster's machines: use macs_reduction there, or run the search "
            "where its trials run."
        )
    gpu_ids = [] if execution.executor == "ray" and execution.gpus_per_trial == 0 else None  # as a trial's would be
    device = resolve_device(execution.device, gpu_ids)
    threads = execution.threads_per_trial or (max(1, int(execution.cpus_per_trial)) if execution.executor == "ray" else None)
    template = space.unrepaired_plan(space.params_for({}))  # the methods' own keys and options
    repair = PlanRepair(
        model, example, Target.from_config(target), space.highs(), template=template, latency=latency, device=device, threads=threads
    )
    repair.check_reachable()
    return space.with_target(repair)


def _check_devices(experiment: Experiment) -> None:
    """The device exists here (on a cluster, the workers' devices cannot be checked from here)."""
    execution = experiment.execution
    local = execution.address is None
    check_device(execution.device, where="execution.device", here=local)
    if local and execution.executor == "ray" and execution.gpus_per_trial > 0 and not torch.cuda.is_available():
        raise PrunetuneError(
            f"The 'execution.gpus_per_trial' key asks for {execution.gpus_per_trial:g} GPU per trial, but this machine "
            "has no CUDA device: set it to 0, or run on a cluster with GPUs (--address)."
        )


def _check_methods(methods: Mapping[str, Mapping[str, Any] | None]) -> None:
    """Every method is known (or imports from the reference given) and takes the options given."""
    for name, options in methods.items():
        try:
            make_method(name, {key: value for key, value in (options or {}).items() if key != "shared"})
        except PrunetuneError as error:
            raise PrunetuneError(f"The 'methods.{name}' entry: {error}") from None


def _architecture(experiment: Experiment, data: DataSplits) -> tuple[nn.Module, str]:
    """The base model's architecture (trained weights for a checkpoint) and a line saying where it comes from."""
    from prunetune.zoo.checkpoint import load_checkpoint
    from prunetune.zoo.models import build_model_for

    section = experiment.model
    if section.checkpoint:
        path = Path(section.checkpoint).expanduser()
        if not path.is_file():
            raise PrunetuneError(f"Checkpoint not found: {section.checkpoint} (the 'model.checkpoint' key)")
        checkpoint = load_checkpoint(path)
        if checkpoint.input_shape is not None and tuple(checkpoint.input_shape) != tuple(data.input_shape):
            raise PrunetuneError(
                f"The checkpoint {path} was trained on inputs of shape {checkpoint.input_shape}; "
                f"{experiment.data.factory or experiment.data.spec} gives {data.input_shape}."
            )
        return checkpoint.build(), f"checkpoint {path} ({checkpoint.model_name})"
    try:
        model = build_model_for(section.name, data, section.kwargs)
    except PrunetuneError as error:
        raise PrunetuneError(f"The 'model' section: {error}") from None
    train = section.train
    return model, f"{section.name}, trained once into the run folder ({train.epochs} epochs, lr {train.lr:g})"


def _check_objective(experiment: Experiment, goals: Goals) -> None:
    """The objective type exists, takes the options given, and offers the metrics searched on."""
    from prunetune.objectives import ClassificationObjective
    from prunetune.objectives.reconstruction import check_reconstruction_options

    section = experiment.objective
    if section.type == "classification":
        _check_options("classification", ClassificationObjective, section.options)
        goals.check_against(ClassificationObjective.directions)
    elif section.type == "reconstruction":
        goals.check_against(check_reconstruction_options(section.options))
    else:
        target, _ = load_reference(section.type, label="objective ('objective.type')", callable_only=True)
        if inspect.isclass(target):
            _check_options(section.type, target, section.options)
        elif section.options:
            raise PrunetuneError(
                f"The objective {section.type!r} is a function: it takes no 'objective.options'. "
                f"Got {', '.join(sorted(section.options))}."
            )
        directions = section.directions or getattr(target, "directions", None)
        if isinstance(directions, Mapping):
            goals.check_against(directions)


def _check_options(label: str, target: Any, options: Mapping[str, Any]) -> None:
    accepted = accepted_keywords(target)
    if accepted is None or accepted[1]:
        return  # **kwargs: the objective checks its own options when it is built
    allowed = sorted(name for name in accepted[0] if name not in PROVIDED)
    unknown = sorted(key for key in options if key not in allowed)
    if unknown:
        raise PrunetuneError(
            f"Unknown key 'objective.options.{unknown[0]}' for the {label} objective. "
            f"Accepted options: {', '.join(allowed) or '(none)'}."
        )


def describe(checked: Checked) -> str:
    """What a run of this experiment would do, for `prunetune run --check`."""
    experiment, space = checked.experiment, checked.space
    search, execution, objective = experiment.search, experiment.execution, experiment.objective
    finetune = objective.finetune
    lines = [
        f"experiment {experiment.name}: every check passed; nothing was written",
        f"  model: {checked.base}",
        f"  data: {checked.data.description}",
        f"  search space: {len(space)} parameters",
    ]
    for name, dims in space.dimensions.items():
        units = ", ".join(dim.unit for dim in dims[:6]) + (f", ... ({len(dims)} in all)" if len(dims) > 6 else "")
        shared = " (one shared value)" if name in space.shared else ""
        lines.append(f"    {name}: {len(dims)} dimensions{shared} on {units}")
    goals = ", ".join(f"{metric} ({direction})" for metric, direction in checked.goals.objectives)
    lines.append(f"  objectives: {goals}")
    if objective.constraints:
        lines.append(f"  constraints: {'; '.join(map(str, objective.constraints))}")
    if space.repair is not None:
        lines.append(f"  target: {space.repair.target}; every plan's ratios are scaled onto it before training")
        if space.repair.latency is not None:
            lines.append(f"    {space.repair.latency.describe()}")
    if search.baselines:
        lines.append(f"  baselines after the search: {', '.join(map(str, search.baselines))}")
    where = "a plain loop, no Ray" if execution.executor == "local" else f"Ray, {execution.workers} at once"
    lines.append(f"  sampler: {search.sampler}; {search.trials} trials on {where}")
    gpus = f", {execution.gpus_per_trial:g} GPU each" if execution.executor == "ray" and execution.gpus_per_trial else ""
    lines.append(f"  device: {execution.device}{gpus}; precision {objective.finetune.precision}")
    steps = f"{finetune.max_steps} steps" if finetune.max_steps else f"{finetune.epochs} epoch(s)"
    lines.append(
        f"  each trial: prune -> recalibrate BN ({objective.bn_recalibration_batches} batches) -> "
        f"fine-tune {steps} (lr {finetune.lr:g}) -> evaluate ({objective.type})"
    )
    if not finetune.max_steps:
        lines.append(f"  budget: {search.trials} trials x {finetune.epochs} fine-tune epoch(s) = {search.trials * finetune.epochs} epochs")
    return "\n".join(lines)
