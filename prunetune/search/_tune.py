"""The Ray Tune parts of the Ray executor: the worker function, the ledger searcher, the stopper.

Imported only when a search runs on Ray, so the rest of prunetune starts without Ray Tune.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from ray import tune
from ray.tune.schedulers import FIFOScheduler, TrialScheduler
from ray.tune.search import Searcher

from prunetune.search.goals import Goals
from prunetune.search.ledger import ATTR_ATTEMPTS, record_outcome
from prunetune.search.progress import Progress
from prunetune.search.space import SearchSpace
from prunetune.search.trial import run_trial

__all__ = ["ErrorLog", "LedgerSearcher", "StopScheduler", "trainable"]


class _DriverOnly:
    """Ray Tune pickles its searcher, scheduler and callbacks with the experiment state. Ours hold the
    live study and locks, and a run resumes from the study (not from Tune's state), so what Tune keeps
    of them is only their class: an unpickled copy is inert.
    """

    def __getstate__(self) -> dict[str, Any]:
        return {}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

# Tune flattens nested results for searchers; these travel as JSON text instead.
VALUES, OUTCOME = "prunetune_values", "prunetune_outcome"
STOPPED_REASON = "stopped early: dominated by a completed trial at equal or higher compression"


def trainable(config: dict[str, Any], objective: Any = None, space: SearchSpace | None = None, threads: int = 1) -> None:
    """What a Ray worker runs for one trial: intermediate reports, then the outcome as the last result."""
    import ray

    node = ray.get_runtime_context().get_node_id()
    outcome = run_trial(
        objective,
        space,
        config["params"],
        threads=threads,
        node=node,
        sink=lambda step, values: tune.report({"step": step, VALUES: json.dumps({k: float(v) for k, v in values.items()})}),
    )
    outcome["log"] = tune.get_context().get_trial_dir()
    tune.report({"step": -1, OUTCOME: json.dumps(outcome)})


class ErrorLog(_DriverOnly, tune.Callback):
    """Keeps why a trial's worker failed and how often it was retried, for the ledger."""

    def __init__(self) -> None:
        self.reasons: dict[str, str] = {}
        self.attempts: dict[str, int] = {}
        self.lock = threading.Lock()

    def on_trial_recover(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        with self.lock:
            self.attempts[trial.trial_id] = self.attempts.get(trial.trial_id, 1) + 1

    def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        with self.lock:
            self.reasons[trial.trial_id] = _error_text(trial)

    def reason(self, trial_id: str) -> str:
        with self.lock:
            return self.reasons.get(trial_id, "the trial's worker failed and its retries ran out")


def _error_text(trial: Any) -> str:
    path = getattr(trial, "error_file", None) or ""
    try:
        lines = Path(path).read_text().strip().splitlines() if path else []
    except OSError:
        lines = []
    return "worker failed after retries: " + (lines[-1] if lines else "no error text")


@dataclass
class _Live:
    trial: optuna.trial.Trial
    curve: dict[str, dict[str, float]] = field(default_factory=dict)


class LedgerSearcher(_DriverOnly, Searcher):
    """Ray Tune's searcher, backed by the study: asks it for trials, tells it their outcomes.

    With `batch` set, at most `batch` trials start before all of them have finished, so a
    population sampler's generation runs as one batch.
    """

    def __init__(
        self,
        *,
        study: optuna.Study,
        space: SearchSpace,
        goals: Goals,
        n_trials: int,
        progress: Progress,
        errors: ErrorLog,
        batch: int | None = None,
    ) -> None:
        super().__init__()
        self.study, self.space, self.goals = study, space, goals
        self.n_trials, self.progress, self.errors, self.batch = n_trials, progress, errors, batch
        self.live: dict[str, _Live] = {}
        self.stopped: set[str] = set()
        self.launched = 0
        self.in_batch = 0

    def set_search_properties(self, metric: str | None, mode: str | None, config: dict, **spec: Any) -> bool:
        return True

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        if self.launched >= self.n_trials:
            return Searcher.FINISHED
        if self.batch and self.in_batch >= self.batch:
            if self.live:
                return None  # the generation is still running
            self.in_batch = 0
        trial = self.study.ask()
        self.space.suggest(trial)
        self.live[trial_id] = _Live(trial)
        self.launched += 1
        self.in_batch += 1
        return {"params": trial.params, "number": trial.number}

    def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        live = self.live.get(trial_id)
        step, values = result.get("step"), result.get(VALUES)
        if live is not None and isinstance(step, int) and step >= 0 and isinstance(values, str):
            live.curve[str(step)] = json.loads(values)

    def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False) -> None:
        if result:
            self.on_trial_result(trial_id, result)
        live = self.live.pop(trial_id, None)
        if live is None:
            return
        text = (result or {}).get(OUTCOME)
        outcome: Mapping[str, Any] | None = json.loads(text) if isinstance(text, str) else None
        if error:
            outcome = {"status": "fail", "reason": self.errors.reason(trial_id), "curve": live.curve}
        elif outcome is None:
            last = live.curve[max(live.curve, key=int)] if live.curve else {}
            outcome = {"status": "pruned", "reason": STOPPED_REASON, "metrics": last, "curve": live.curve}
        attempts = self.errors.attempts.get(trial_id)
        if attempts:
            outcome = {**outcome, ATTR_ATTEMPTS: attempts}
        state = record_outcome(self.study, live.trial, outcome, self.goals)
        metrics = outcome.get("metrics") or {}
        self.progress.trial_finished(self.study, live.trial.number, state, metrics, feasible=self.goals.feasible(metrics))


class StopScheduler(_DriverOnly, FIFOScheduler):
    """Stops a trial whose accuracy at a step is dominated at equal or higher compression."""

    def __init__(self, *, searcher: LedgerSearcher, rule: Any = None) -> None:
        super().__init__()
        self.searcher = searcher
        self.rule = rule

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict[str, Any]) -> str:
        step, values = result.get("step"), json.loads(result.get(VALUES) or "{}")
        if (
            self.rule is not None
            and isinstance(step, int)
            and step >= 0
            and "compression" in values
            and "val_accuracy" in values
            and self.rule(float(values["compression"]), step, float(values["val_accuracy"]))
        ):
            self.searcher.stopped.add(trial.trial_id)
            return TrialScheduler.STOP
        return TrialScheduler.CONTINUE
