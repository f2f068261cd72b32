"""A prunetune objective as a plain Optuna objective: `study.optimize(OptunaObjective(...))`, no Ray.

The trial's plan comes from the search space (define-by-run), the work is the same `run_trial` a
Ray worker does, and the ledger attributes are the same, so a study built this way reads like
any prunetune run.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import optuna
from optuna.trial import TrialState

from prunetune.search.executors import StopRule, stop_check
from prunetune.search.goals import Goals
from prunetune.search.ledger import store_outcome
from prunetune.search.space import SearchSpace
from prunetune.search.trial import run_trial

__all__ = ["OptunaObjective"]


class OptunaObjective:
    """Adapts `objective(plan, report) -> metrics` to Optuna's `objective(trial) -> values`.

    Args:
        objective: A prunetune objective (e.g. ClassificationObjective) with `directions`.
        space: The search space that turns a trial's parameters into a plan.
        objectives: Metrics to optimise, in order (default: accuracy and compression).
        constraints: Bounds such as `"accuracy_drop <= 1"`, stored with `trial.set_constraint` so
            Optuna's samplers and `study.best_trials` honour them.
        stop_rule: Optional early stopping (compression, step, accuracy) -> stop.

    Example:
        >>> adapter = OptunaObjective(objective, space)
        >>> study = optuna.create_study(directions=adapter.directions)
        >>> study.optimize(adapter, n_trials=20)
    """

    def __init__(
        self,
        objective: Callable[..., Mapping[str, float]],
        space: SearchSpace,
        *,
        objectives: Sequence[str] = ("accuracy", "compression"),
        constraints: Sequence[str] = (),
        stop_rule: StopRule | None = None,
    ) -> None:
        self.objective = objective
        self.space = space
        available: Mapping[str, str] = getattr(objective, "directions", {})
        self.goals = Goals.from_config({name: available.get(name, "maximize") for name in objectives}, constraints)
        if available:
            self.goals.check_against(available)
        self.stop_rule = stop_rule

    @property
    def directions(self) -> list[str]:
        return self.goals.directions

    def __call__(self, trial: optuna.Trial) -> Any:
        self.space.suggest_params(trial)
        outcome = run_trial(self.objective, self.space, trial.params, should_stop=stop_check(self.stop_rule))
        state, values = store_outcome(trial, outcome, self.goals)
        if state == TrialState.PRUNED:
            raise optuna.TrialPruned(outcome.get("reason"))
        if state == TrialState.FAIL:
            # NaN makes Optuna record the trial as failed and go on; the reason is in `fail_reason`.
            values = [math.nan] * len(self.goals.objectives)
        return values[0] if len(values) == 1 else tuple(values)
