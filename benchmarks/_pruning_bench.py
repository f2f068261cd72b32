"""What the search benchmarks share: the LeNet-5/MNIST base, experiments, fronts and hypervolumes.

Hypervolume follows DESIGN.md's measurement words: pymoo's HV of the feasible front in the
normalised objective space (error = 1 - accuracy, inverse compression = 1 / compression, both
minimised, both in [0, 1]) against the reference point (1, 1).
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import optuna

from _bases import MNIST, train_once

from prunetune.app.experiment import Experiment
from prunetune.search.ledger import ATTR_METRICS
from prunetune.search.pareto import error_and_inverse_compression, hypervolume, nondominated_mask

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = (1.0, 1.0)
COSTS = ("minimize", "minimize")
HV_NOTE = (
    "Hypervolume: pymoo's `HV` (via `prunetune.search.pareto.hypervolume`) of the feasible front in the "
    "normalised space error = 1 - validation accuracy, inverse compression = 1 / compression (both minimised, "
    "both in [0, 1]), reference point (1, 1); the largest possible value is 1."
)
FINISHED = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED, optuna.trial.TrialState.FAIL)


def ensure_base(path: Path, *, limit: int | None, epochs: int, echo: Callable[[str], None] = print) -> dict[str, float]:
    """Train LeNet-5 on `limit` MNIST training records (None: all) once (kept at `path`); returns its metrics."""
    return train_once(path, model="lenet5", data=MNIST, epochs=epochs, limit=limit, echo=echo)


def base_line(metrics: dict[str, float], path: Path, limit: int, epochs: int) -> str:
    return (
        f"base: LeNet-5 (61,706 parameters) trained {epochs} epochs on {limit:,} MNIST training records "
        f"(`{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}`): validation accuracy "
        f"{metrics.get('val_accuracy', float('nan')):.2%}, test accuracy {metrics.get('test_accuracy', float('nan')):.2%}"
    )


def experiment(
    *, name: str, checkpoint: Path, limit: int, sampler: str, trials: int, workers: int, executor: str,
    finetune: dict[str, Any], early_stopping: bool, sampler_options: dict[str, Any] | None = None, seed: int = 0,
) -> Experiment:
    changes: dict[str, Any] = {
        "name": name,
        "seed": seed,
        "model.checkpoint": str(checkpoint),
        "data.spec": MNIST,
        "data.limit": limit,
        "methods": {"filters": {"criterion": "l1", "max_ratio": 0.9}},
        "objective.objectives": {"accuracy": "maximize", "compression": "maximize"},
        "search.sampler": sampler,
        "search.sampler_options": dict(sampler_options or {}),
        "search.trials": trials,
        "search.early_stopping.enabled": early_stopping,
        "execution.executor": executor,
        "execution.workers": workers,
        "execution.cpus_per_trial": 1.0,
        "execution.threads_per_trial": 1,
    }
    changes.update({f"objective.finetune.{key}": value for key, value in finetune.items()})
    return Experiment().replace(**changes)


def fresh(run_dir: Path) -> Path:
    """An empty run folder (a left-over one would be resumed, not rerun)."""
    if run_dir.exists():
        shutil.rmtree(run_dir)
    return run_dir


def run(exp: Experiment, run_dir: Path, echo: Callable[[str], None]) -> tuple[optuna.Study, float, float]:
    """Run `exp` in a fresh `run_dir`; returns the study, its start time (epoch seconds) and its wall time."""
    from prunetune.app.runner import run_experiment

    started = time.time()
    study = run_experiment(exp, fresh(run_dir), echo=echo)
    return study, started, time.time() - started


def point(trial: optuna.trial.FrozenTrial) -> tuple[float, float] | None:
    """(accuracy, compression) of a completed, feasible trial; None for the others."""
    if trial.state != optuna.trial.TrialState.COMPLETE:
        return None
    # Optuna 5's trial.set_constraint stores one system attribute per bound: "constraints:<bound>".
    if any(value > 0 for key, value in trial.system_attrs.items() if key.startswith("constraints:")):
        return None
    metrics = trial.user_attrs.get(ATTR_METRICS, {})
    if "accuracy" not in metrics or "compression" not in metrics:
        return None
    return float(metrics["accuracy"]), float(metrics["compression"])


def finished_by_number(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    return sorted(study.get_trials(deepcopy=False, states=FINISHED), key=lambda t: t.number)


def feasible_points(trials: Sequence[optuna.trial.FrozenTrial]) -> list[tuple[float, float]]:
    return [p for p in (point(t) for t in trials) if p is not None]


def front(points: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    if not points:
        return []
    mask = nondominated_mask(points, ["maximize", "maximize"])
    return sorted({p for p, keep in zip(points, mask, strict=True) if keep}, key=lambda p: -p[1])


def hv(points: Sequence[tuple[float, float]]) -> float:
    return hypervolume([error_and_inverse_compression(a, c) for a, c in points], COSTS, REFERENCE)


def hv_region(points: Sequence[tuple[float, float]], accuracy: float = 0.9) -> float:
    """HV in the same normalised space, counting only accuracy above `accuracy`: reference (1 - accuracy, 1)."""
    return hypervolume([error_and_inverse_compression(a, c) for a, c in points], COSTS, (1.0 - accuracy, 1.0))


def dominated_fraction(front_points: Sequence[tuple[float, float]], others: Sequence[tuple[float, float]]) -> float:
    """Share of `others` that some point of `front_points` dominates (no worse in both, better in one)."""
    if not others:
        return float("nan")

    def beaten(o: tuple[float, float]) -> bool:
        return any(a >= o[0] and c >= o[1] and (a > o[0] or c > o[1]) for a, c in front_points)

    return sum(beaten(o) for o in others) / len(others)


def echo_to(prefix: str) -> Callable[[str], None]:
    def echo(line: str) -> None:
        print(f"{prefix} {line}", flush=True)

    return echo


def init_ray(executor: str, workers: int) -> None:
    """Start Ray once for all runs (each run would otherwise start and stop its own)."""
    if executor != "ray":
        return
    import logging
    import os

    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    import ray

    if not ray.is_initialized():
        ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)


def shutdown_ray() -> None:
    try:
        import ray

        if ray.is_initialized():
            ray.shutdown()
    except ImportError:
        pass
