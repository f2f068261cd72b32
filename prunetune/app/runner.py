"""One search from an experiment: base model, space, study, executor, front — resumable.

Running again on the same run folder resumes: the study in the folder keeps every finished
trial, trials cut off by a stopped driver are closed as interrupted, and only the rest of the
budget runs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import optuna
import torch
import yaml
from torch import nn

from prunetune.app.preflight import check_experiment, target_space
from prunetune.errors import PrunetuneError
from prunetune.files import write_text
from prunetune.search.executors import LocalExecutor, RayExecutor, StopRule
from prunetune.app.experiment import Experiment, experiment_from_dict
from prunetune.search.ledger import (
    ATTR_CURVE,
    ATTR_METRICS,
    RunLock,
    baseline_labels,
    claim_study_name,
    finished_trials,
    is_baseline,
    is_feasible,
    mark_interrupted,
    open_study,
    save_latency_model,
    storage_url,
)
from prunetune.search.progress import Progress
from prunetune.search.sampler_choice import SAMPLERS, create_sampler, population_size
from prunetune.search.space import SearchSpace
from prunetune.search.weights import keep_only, weights_dir
from prunetune.zoo.datasets import DataSplits
from prunetune.zoo.datasets.section import checkpoint_source

__all__ = ["build_objective", "front_rows", "hand_start_points", "prepare_base", "run_experiment"]

#: What must not change between a run and its resume: it defines what the trials mean.
ESSENTIAL = ("model", "data", "methods", "objective")
#: Keys of those sections that may change on resume: they keep more or less, not measure otherwise.
MAY_CHANGE = {"objective": ("keep_weights",)}


def _check_same_experiment(run_dir: Path, experiment: Experiment) -> None:
    """Refuse a resume whose essentials differ from the experiment saved in the run folder."""
    saved = run_dir / "experiment.yaml"
    if saved.exists():
        current = experiment.to_dict()
        previous = experiment_from_dict(yaml.safe_load(saved.read_text())).to_dict()
        changed = [key for key in ESSENTIAL if _essential(previous, key) != _essential(current, key)]
        if changed:
            raise PrunetuneError(
                f"{run_dir} holds a search with different {', '.join(changed)}: "
                "resume it with the same experiment, or choose another run folder."
            )


def _save_experiment(run_dir: Path, experiment: Experiment) -> None:
    write_text(run_dir / "experiment.yaml", yaml.safe_dump(experiment.to_dict(), sort_keys=False))


def _essential(experiment: Mapping[str, Any], section: str) -> Any:
    value = experiment[section]
    return {k: v for k, v in value.items() if k not in MAY_CHANGE[section]} if section in MAY_CHANGE else value


def prepare_base(
    experiment: Experiment, run_dir: Path, splits: DataSplits, echo: Callable[[str], None]
) -> tuple[nn.Module, dict[str, float]]:
    """The base model: the named checkpoint (kept from an earlier run), or a zoo model trained once into the run folder."""
    from prunetune.objectives.base_training import train_base
    from prunetune.zoo.checkpoint import load_checkpoint

    model, data = experiment.model, experiment.data
    path = Path(model.checkpoint).expanduser() if model.checkpoint else run_dir / "base.pt"
    if model.checkpoint or path.exists():
        checkpoint = load_checkpoint(path)
        if checkpoint.input_shape is not None and tuple(checkpoint.input_shape) != tuple(splits.input_shape):
            raise PrunetuneError(
                f"The checkpoint {path} was trained on inputs of shape {checkpoint.input_shape}; "
                f"{data.factory or data.spec} gives {splits.input_shape}."
            )
        echo(f"base model: {path} ({checkpoint.model_name}, test accuracy {checkpoint.metrics.get('test_accuracy', float('nan')):.2%})")
        return checkpoint.build(), dict(checkpoint.metrics)
    config = experiment.base_training_config()
    reconstruction = dict(experiment.objective.options) if experiment.objective.type == "reconstruction" else None
    what = "base autoencoder" if reconstruction is not None else "base model"
    echo(f"training the {what} {model.name} on {data.factory or data.spec} for {config.epochs} epochs (once; kept as {path})")
    shown = ("epoch", "scores", "wrote") if reconstruction is not None else ("train ", "wrote")
    return train_base(
        model.name, splits, config=config, model_kwargs=model.kwargs, reconstruction=reconstruction, output=path,
        **_checkpoint_data(experiment),
        echo=lambda line: echo("  " + line) if line.startswith(shown) else None,
        device=experiment.execution.device,
    )


def _checkpoint_data(experiment: Experiment) -> dict[str, Any]:
    spec, options = checkpoint_source(dataclasses.asdict(experiment.data), seed=experiment.seed)
    return {"data_spec": spec, "data_options": options}


def build_objective(experiment: Experiment, base: nn.Module, data: DataSplits) -> Any:
    """The experiment's objective: the classification objective, or the user's `module:attr`."""
    from prunetune.objectives import ClassificationObjective, load_objective

    section = experiment.objective
    common = {
        "base": base,
        "data": data,
        "finetune": experiment.finetune_config(),
        "batch_size": section.batch_size,
        "bn_recalibration_batches": section.bn_recalibration_batches,
        "measure_latency": section.measure_latency,
        "device": experiment.execution.device,
    }
    if section.type == "classification":
        return ClassificationObjective(**common, **section.options)
    if section.type == "reconstruction":
        from prunetune.objectives.reconstruction import ReconstructionObjective

        return ReconstructionObjective(**common, **section.options)
    return load_objective(section.type, directions=section.directions or None, context=common, **section.options)


def resume_seed(seed: int, trials_so_far: int) -> int:
    """The sampler seed of a run resumed after `trials_so_far` trials: deterministic, and not `seed`."""
    import numpy as np

    return int(np.random.SeedSequence([seed % 2**32, trials_so_far]).generate_state(1)[0])


def dominance_rule(study: optuna.Study, margin: float, min_completed: int, warmup_steps: int = 0) -> StopRule:
    """Early stopping from the ledger: completed trials' compressions and accuracy curves."""
    from prunetune.search.early_stopping import dominated

    def rule(compression: float, step: int, accuracy: float) -> bool:
        if step < warmup_steps:
            return False
        history = [
            (float(t.user_attrs[ATTR_METRICS]["compression"]), _accuracy_curve(t.user_attrs.get(ATTR_CURVE, {})))
            for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
            if "compression" in t.user_attrs.get(ATTR_METRICS, {})
        ]
        if len(history) < min_completed:
            return False
        return dominated(history, compression=compression, step=step, accuracy=accuracy, margin=margin)

    return rule


def screening_rule(study: optuna.Study, keep_fraction: float, min_screened: int, *, by_compression: bool) -> StopRule:
    """Cheap screening from the ledger: at step 0 (pruned, BN recalibrated, not yet fine-tuned), a
    plan outside the best `keep_fraction` of the screened plans stops there, with its reason."""
    from prunetune.search.early_stopping import screened_out

    def rule(compression: float, step: int, accuracy: float) -> bool | str:
        if step != 0:
            return False
        history = [
            (float(first["compression"]), float(first["val_accuracy"]))
            for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED))
            if not is_baseline(t)
            for first in [t.user_attrs.get(ATTR_CURVE, {}).get("0") or {}]
            if "compression" in first and "val_accuracy" in first
        ]
        if len(history) < min_screened or not screened_out(history, compression, accuracy, keep_fraction, by_compression=by_compression):
            return False
        return (
            f"screened out after pruning and BN recalibration: validation accuracy {accuracy:.4f} at {compression:.3g}x "
            f"is outside the best {keep_fraction:.0%} of {len(history) + 1} screened plans"
        )

    return rule


def _either(first: StopRule | None, second: StopRule | None) -> StopRule | None:
    """One rule asking `first`, then `second` (None where neither is set)."""
    if first is None or second is None:
        return first or second
    return lambda compression, step, accuracy: first(compression, step, accuracy) or second(compression, step, accuracy)


def _accuracy_curve(curve: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    return {step: values["val_accuracy"] for step, values in curve.items() if "val_accuracy" in values}


def run_experiment(
    experiment: Experiment, run_dir: Path, *, echo: Callable[[str], None] = print, only_baselines: list[Any] | None = None
) -> optuna.Study:
    """Run (or resume) `experiment` in `run_dir` until its trial budget is spent, then its baselines;
    returns the study. With `only_baselines`, run just those baselines (no search trial)."""
    run_dir = Path(run_dir)
    checked = check_experiment(experiment, run_dir)  # raises before anything is written
    goals, data = checked.goals, checked.data
    _check_same_experiment(run_dir, experiment)
    run_dir.mkdir(parents=True, exist_ok=True)
    with RunLock(run_dir):
        _check_same_experiment(run_dir, experiment)
        study_name = claim_study_name(run_dir, experiment.name)
        _save_experiment(run_dir, experiment)
        base, _ = prepare_base(experiment, run_dir, data, echo)
        objective = build_objective(experiment, base, data)
        if callable(getattr(objective, "base_scores", None)):
            objective.base_scores()  # once, here: the scores travel with the objective to every worker
        goals.check_against(objective.directions)
        example = torch.zeros(1, *data.input_shape)
        latency = checked.space.repair.latency if checked.space.repair is not None else None  # timed once, in the checks
        space = target_space(SearchSpace.for_model(base, example, experiment.methods), base, example, experiment, latency=latency)
        save_latency_model(run_dir, latency)
        search = experiment.search

        def make_sampler(seed: int) -> optuna.samplers.BaseSampler:
            return create_sampler(
                search.sampler,
                seed=seed,
                n_objectives=len(goals.objectives),
                search_space=space.distributions,
                options=search.sampler_options,
            )

        sampler = make_sampler(experiment.seed)
        study = open_study(storage_url(run_dir, experiment.storage), goals=goals, sampler=sampler, study_name=study_name)
        before = len(study.get_trials(deepcopy=False))
        if before and SAMPLERS[search.sampler].reseed_on_resume:
            # Restarted on its seed, such a sampler replays its random stream from the start and hands
            # out the plans of the first run again: go on with a stream drawn from the seed and the ledger.
            sampler = study.sampler = make_sampler(resume_seed(experiment.seed, before))
        interrupted = mark_interrupted(study)
        done = len(finished_trials(study))
        searching = only_baselines is None
        remaining = max(search.trials - done, 0) if searching else 0
        if searching and (done or interrupted):
            echo(f"resuming: {done} trials finished, {len(interrupted)} interrupted (closed), {remaining} to run")
        if searching:
            echo(f"search: {len(space)} parameters ({', '.join(space.methods)}), sampler {search.sampler}, {search.trials} trials")
        if not before and search.start_from and searching:
            _start_search_from(experiment, study, space, base, data, echo)
        progress = Progress(total=search.trials, done=done, echo=echo, study=study)
        stopping = search.early_stopping
        rule = dominance_rule(study, stopping.margin, stopping.min_completed, stopping.warmup_steps) if stopping.enabled else None
        screening = search.screening
        if screening.enabled:
            by_compression = "compression" in goals.metric_names
            rule = _either(screening_rule(study, screening.keep_fraction, screening.min_screened, by_compression=by_compression), rule)
        execution = experiment.execution
        keep = weights_dir(run_dir) if experiment.objective.keep_weights != "none" else None
        if execution.executor == "local":
            executor: LocalExecutor | RayExecutor = LocalExecutor(threads=execution.threads_per_trial, weights_dir=keep)
        else:
            executor = RayExecutor(
                workers=execution.workers,
                cpus_per_trial=execution.cpus_per_trial,
                gpus_per_trial=execution.gpus_per_trial,
                threads=execution.threads_per_trial,
                address=execution.address,
                retries=execution.retries,
                population_size=population_size(sampler),
                batch_generations=search.batch_generations,
                log_dir=run_dir / "trials",
                weights_dir=keep,
            )
        if remaining:
            executor.run(study, space, objective, goals, n_trials=remaining, progress=progress, stop_rule=rule)
        entries = search.baselines if searching else only_baselines
        if entries:
            _run_baselines(entries, study, space, base, example, objective, goals, executor, echo)
        if experiment.objective.keep_weights == "front":
            keep_only(run_dir, [row["trial"] for row in front_rows(study)])
        return study


def _run_baselines(
    entries: list[Any], study: optuna.Study, space: SearchSpace, base: nn.Module, example: torch.Tensor,
    objective: Any, goals: Any, executor: LocalExecutor | RayExecutor, echo: Callable[[str], None],
) -> None:
    """The baselines' plans as labelled trials of the run's study (those already recorded are skipped)."""
    from prunetune.app.baselines import baseline_points
    from prunetune.search.fixed_points import run_fixed_points

    recorded = baseline_labels(study)
    points = [(label, params) for label, params in baseline_points(entries, base, example, space) if label not in recorded]
    if not points:
        return
    echo(f"baselines: {len(points)} plans ({', '.join(label for label, _ in points)})")
    if isinstance(executor, RayExecutor):
        executor = dataclasses.replace(executor, population_size=None)  # no generations to batch
    run_fixed_points(study, space, points, executor=executor, objective=objective, goals=goals, echo=echo)


def _start_search_from(
    experiment: Experiment, study: optuna.Study, space: SearchSpace, base: nn.Module, data: DataSplits,
    echo: Callable[[str], None],
) -> None:
    """Hand `search.start_from` to the search (a fresh run only): the first trials evaluate these plans."""
    from prunetune.app.priors import start_plans

    plans = start_plans(
        experiment.search.start_from, base, data, space, batch_size=experiment.objective.batch_size,
        bn_recalibration_batches=experiment.objective.bn_recalibration_batches, seed=experiment.seed, echo=echo,
    )
    hand_start_points(study, [space.params_for(plan) for plan in plans])


def hand_start_points(study: optuna.Study, points: list[dict[str, Any]]) -> None:
    """Make `points` (parameter dicts) the study's first trials, in the sampler's first generation.

    A sampler with `set_start_points` (scipy-de) takes them as the first candidates of its initial
    population: scipy scores the candidates it proposed, so a start point must be one. Any other
    sampler gets them enqueued; `SearchSpace.suggest` asks the sampler for each, so NSGA-II and
    pymoo give it its place in their first generation and breed from it (CMA-ES too, after its
    first trial).
    """
    takes_them = getattr(study.sampler, "set_start_points", None)
    if callable(takes_them):
        takes_them(points)
        return
    for params in points:
        study.enqueue_trial(params, skip_if_exists=True)


def front_rows(study: optuna.Study) -> list[Mapping[str, Any]]:
    """The searched Pareto front's trials (baselines left out), most compressed first, as plain rows."""
    from prunetune.search.pareto import nondominated_mask

    done = [
        t for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
        if not is_baseline(t) and is_feasible(t)
    ]
    if not done:
        return []
    mask = nondominated_mask([t.values for t in done], [d.name.lower() for d in study.directions])
    rows = [{"trial": t.number, **t.user_attrs.get(ATTR_METRICS, {})} for t, keep in zip(done, mask, strict=True) if keep]
    return sorted(rows, key=lambda row: -row.get("compression", 0.0))
