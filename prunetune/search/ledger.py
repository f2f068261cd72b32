"""The study as the ledger of a run: what every trial was, what it measured, and why it failed.

Everything a resume depends on lives in the study's storage (SQLite in the run folder by default,
any Optuna storage URL otherwise). This module is the one place that knows the attribute names;
:mod:`prunetune.search.storage` is the one place that reaches into Optuna's storage.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from prunetune.errors import PrunetuneError
from prunetune.files import write_text
from prunetune.pruners.latency_model import LatencyModel
from prunetune.search.goals import Goals
from prunetune.search.storage import DriverStorage, StudyAttrs, check_storage_url, open_storage, set_user_attrs, storage_url, trial_id

__all__ = [
    "ATTR_BASELINE",
    "ATTR_CURVE",
    "ATTR_DEVICE",
    "check_storage_url",
    "ATTR_FAIL_REASON",
    "ATTR_INTERRUPTED",
    "ATTR_METRICS",
    "ATTR_NODE",
    "ATTR_PLAN",
    "LATENCY_MODEL",
    "RunLock",
    "STUDY_FILE",
    "STUDY_NAME",
    "claim_study_name",
    "baseline_labels",
    "finalized_records",
    "finished_trials",
    "generation_of",
    "is_baseline",
    "is_interrupted",
    "list_runs",
    "mark_interrupted",
    "open_study",
    "record_finalized",
    "record_outcome",
    "run_study_name",
    "save_latency_model",
    "saved_latency_model",
    "store_outcome",
    "storage_url",
]

#: The study of a run folder made before each run had its own study name.
STUDY_NAME = "prunetune"
#: The file in a run folder that holds the name of the run's study in its storage.
STUDY_FILE = "study-name"
#: The file in a run folder that holds the latency model its latency_ms target is repaired on.
LATENCY_MODEL = "latency_model.json"
ATTR_PLAN = "plan"
ATTR_METRICS = "metrics"
ATTR_CURVE = "curve"
ATTR_NODE = "node"
ATTR_HOST = "hostname"
ATTR_DEVICE = "device"
ATTR_TIMES = "times"
ATTR_LOG = "log"
ATTR_ATTEMPTS = "attempts"
ATTR_FAIL_REASON = "fail_reason"
ATTR_TRACEBACK = "traceback"
ATTR_INTERRUPTED = "interrupted"
#: The study attribute prefix of a finalized trial's record (``finalized:7``): a finished trial's
#: own attributes cannot change, so finalize writes beside it, in the study.
FINALIZED = "finalized:"
#: The label of a trial that ran a baseline's plan (``"uniform:0.5"``), not a searched one.
ATTR_BASELINE = "baseline"

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


def saved_latency_model(run_dir: Path) -> LatencyModel | None:
    """The latency model a run's target was repaired on (a resume repairs on it again), if it has one."""
    path = Path(run_dir) / LATENCY_MODEL
    return LatencyModel.from_dict(json.loads(path.read_text())) if path.is_file() else None


def save_latency_model(run_dir: Path, latency: LatencyModel | None) -> None:
    """Keep ``latency`` in the run folder, once: the first run's fit stays the run's."""
    path = Path(run_dir) / LATENCY_MODEL
    if latency is not None and not path.exists():
        write_text(path, json.dumps(latency.to_dict(), indent=2) + "\n")


def run_study_name(run_dir: Path) -> str:
    """The name of a run's study in its storage: kept in the run folder (the legacy name if absent)."""
    path = Path(run_dir) / STUDY_FILE
    return path.read_text().strip() if path.is_file() else STUDY_NAME


def claim_study_name(run_dir: Path, run_name: str) -> str:
    """The run's study name, made on its first start: the run's name and a short random id, so that
    runs sharing one storage (one database for a team) never share a study. A run folder from
    before per-run names keeps the study it has. Call it with the run lock held."""
    path = Path(run_dir) / STUDY_FILE
    if path.is_file():
        return path.read_text().strip()
    if (Path(run_dir) / "experiment.yaml").is_file():
        return STUDY_NAME
    name = f"{run_name}-{secrets.token_hex(4)}"
    write_text(path, name + "\n")
    return name


def open_study(
    storage: str,
    *,
    goals: Goals,
    sampler: optuna.samplers.BaseSampler,
    pruner: optuna.pruners.BasePruner | None = None,
    study_name: str = STUDY_NAME,
) -> optuna.Study:
    """Create the run's study, or load it to resume; its objectives must be those of the experiment."""
    try:
        opened = open_storage(storage)
        study = optuna.create_study(
            storage=DriverStorage(optuna.storages.get_storage(opened) if isinstance(opened, str) else opened),
            study_name=study_name,
            directions=goals.directions,
            sampler=sampler,
            pruner=pruner,
            load_if_exists=True,
        )
    except ValueError as error:
        raise PrunetuneError(f"Cannot open the run's study at {storage}: {error}") from None
    names = study.metric_names
    if names is None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(goals.metric_names)
    elif list(names) != goals.metric_names:
        raise PrunetuneError(
            f"The run's study optimises {', '.join(names)}, the experiment {', '.join(goals.metric_names)}: "
            "use another run folder for other objectives."
        )
    return study


def generation_of(study: optuna.Study, trial: optuna.trial.Trial) -> int | None:
    """The generation a population sampler gave `trial` (its `<Sampler>:generation` system attribute), if any."""
    key = f"{type(study.sampler).__name__}:generation"
    generation = StudyAttrs(study).trial_attrs(trial).get(key)
    return generation if isinstance(generation, int) else None


def is_interrupted(trial: FrozenTrial) -> bool:
    return bool(trial.user_attrs.get(ATTR_INTERRUPTED))


def is_baseline(trial: FrozenTrial) -> bool:
    return trial.user_attrs.get(ATTR_BASELINE) is not None


def is_feasible(trial: FrozenTrial) -> bool:
    """Whether the trial met every constraint it recorded (Optuna's convention: a value <= 0 is met)."""
    return all(value <= 0 for value in trial.constraints.values())


def finished_trials(study: optuna.Study) -> list[FrozenTrial]:
    """Trials that count towards the budget: searched (not baselines), finished, and not cut off by a stopped driver."""
    return [t for t in study.get_trials(deepcopy=False, states=FINISHED) if not is_interrupted(t) and not is_baseline(t)]


def baseline_labels(study: optuna.Study) -> set[str]:
    """The labels of the baselines the study holds, finished and not interrupted (a resume skips them)."""
    return {str(t.user_attrs[ATTR_BASELINE]) for t in study.get_trials(deepcopy=False, states=FINISHED)
            if is_baseline(t) and not is_interrupted(t)}


def mark_interrupted(study: optuna.Study) -> list[int]:
    """Close trials left running by a driver that died: FAIL, flagged interrupted (they do not count).

    Population samplers hand such a trial's individual out again; nothing it measured was recorded,
    so nothing is lost and no finished trial is run twice.
    """
    numbers = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        live = optuna.trial.Trial(study, trial_id(trial))
        live.set_user_attr(ATTR_INTERRUPTED, True)
        live.set_user_attr(ATTR_FAIL_REASON, "interrupted: the search stopped before this trial finished")
        study.tell(trial.number, state=TrialState.FAIL)
        numbers.append(trial.number)
    return numbers


def store_outcome(
    trial: optuna.trial.Trial, outcome: Mapping[str, Any], goals: Goals
) -> tuple[TrialState, list[float] | None]:
    """Write a trial's plan, metrics, node, timings and reason; say how it ended (and its values)."""
    kept = (ATTR_PLAN, ATTR_METRICS, ATTR_CURVE, ATTR_NODE, ATTR_HOST, ATTR_DEVICE, ATTR_TIMES, ATTR_LOG, ATTR_ATTEMPTS, ATTR_TRACEBACK)
    set_user_attrs(trial, {key: outcome[key] for key in kept if outcome.get(key) is not None})
    status = outcome.get("status")
    metrics = outcome.get(ATTR_METRICS) or {}
    reason = outcome.get("reason")
    if status in ("complete", "pruned") and goals.constraints and all(n in metrics for n, _, _ in goals.constraints):
        for key, value in zip(goals.constraint_keys, goals.constraint_values(metrics), strict=True):
            trial.set_constraint(key, value)
    if status == "complete":
        try:
            return TrialState.COMPLETE, goals.values(metrics)
        except (KeyError, ValueError) as error:
            reason = f"bad metrics: {error}"
    elif status == "pruned":
        trial.set_user_attr(ATTR_FAIL_REASON, reason or "stopped early: dominated")
        return TrialState.PRUNED, None
    trial.set_user_attr(ATTR_FAIL_REASON, str(reason or "unknown failure"))
    return TrialState.FAIL, None


def record_outcome(study: optuna.Study, trial: optuna.trial.Trial, outcome: Mapping[str, Any], goals: Goals) -> TrialState:
    """Store a trial's outcome, then tell the study how it ended."""
    state, values = store_outcome(trial, outcome, goals)
    study.tell(trial, values, state=state)
    return state


def record_finalized(study: optuna.Study, number: int, record: Mapping[str, Any]) -> None:
    """Keep what finalize measured for trial ``number`` (its metrics, epochs, weights file)."""
    study.set_user_attr(f"{FINALIZED}{int(number)}", dict(record))


def finalized_records(study: optuna.Study) -> dict[int, dict[str, Any]]:
    """Trial number -> its finalize record, for the trials that were finalized."""
    return {
        int(key[len(FINALIZED):]): value for key, value in study.user_attrs.items()
        if key.startswith(FINALIZED) and key[len(FINALIZED):].isdigit() and isinstance(value, dict)
    }


class RunLock:
    """One driver per run folder: a second `prunetune run` on a live run stops with a clear message."""

    def __init__(self, run_dir: Path) -> None:
        self.path = run_dir / ".lock"

    def __enter__(self) -> RunLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        me = f"{socket.gethostname()} {os.getpid()}"
        try:
            handle = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            host, _, pid = self.path.read_text().partition(" ")
            if host == socket.gethostname() and pid.strip().isdigit() and _alive(int(pid)):
                raise PrunetuneError(f"{self.path.parent} is in use by process {pid.strip()}: one search per run folder.") from None
            self.path.write_text(me)  # stale: its driver is gone
            return self
        with os.fdopen(handle, "w") as file:
            file.write(me)
        return self

    def __exit__(self, *exc: object) -> None:
        self.path.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def list_runs(url: str) -> list[dict[str, Any]]:
    """Every run's study in storage ``url``, oldest first: its name, start and trials per outcome."""
    storage = open_storage(url)
    rows = []
    for summary in optuna.get_all_study_summaries(storage, include_best_trial=False):
        study = optuna.load_study(study_name=summary.study_name, storage=storage)
        trials = study.get_trials(deepcopy=False)
        counts = {state: sum(1 for t in trials if t.state == state) for state in TrialState}
        interrupted = sum(1 for t in trials if is_interrupted(t))
        rows.append({
            "study": summary.study_name,
            "started": summary.datetime_start,
            "trials": len(trials),
            "complete": counts[TrialState.COMPLETE],
            "pruned": counts[TrialState.PRUNED],
            "failed": counts[TrialState.FAIL] - interrupted,
            "interrupted": interrupted,
            "running": counts[TrialState.RUNNING] + counts[TrialState.WAITING],
        })
    return sorted(rows, key=lambda row: (row["started"] is None, row["started"] or 0))
