"""Trials at given points of a search space, recorded in the run's study with a label.

Baselines (one ratio everywhere, a global ranking) are not searched: their plans are known. They run
through the same executor as the search, so that they are pruned, fine-tuned and measured exactly
like searched trials, and land in the same study, each marked with its label (the ``baseline``
user attribute) so that the budget, the front and the reports can tell them apart.

A sampler hands the points out, in order, one per trial; nothing is enqueued, so a driver that dies
halfway leaves no waiting trial for the search to pick up later.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import optuna
from optuna.distributions import BaseDistribution
from optuna.trial import FrozenTrial

from prunetune.search.goals import Goals
from prunetune.search.ledger import ATTR_BASELINE
from prunetune.search.progress import Progress
from prunetune.search.space import SearchSpace
from prunetune.search.storage import set_trial_user_attr, with_sampler

__all__ = ["FixedPointsSampler", "run_fixed_points"]


class FixedPointsSampler(optuna.samplers.BaseSampler):
    """Gives the n-th trial asked the n-th point, and labels it; no randomness, no learning."""

    def __init__(self, points: Sequence[tuple[str, Mapping[str, Any]]], key: str = ATTR_BASELINE) -> None:
        self._points = [(label, dict(params)) for label, params in points]
        self._key = key
        self._given: dict[int, int] = {}  # trial id -> index of its point

    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return {}

    def sample_relative(self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        return {}

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        index = len(self._given)
        if index >= len(self._points):
            raise RuntimeError(f"asked for a trial beyond the {len(self._points)} fixed points")
        self._given[trial._trial_id] = index
        set_trial_user_attr(study, trial, self._key, self._points[index][0])

    def sample_independent(self, study: optuna.Study, trial: FrozenTrial, param_name: str, param_distribution: BaseDistribution) -> Any:
        return self._points[self._given[trial._trial_id]][1][param_name]


def run_fixed_points(
    study: optuna.Study,
    space: SearchSpace,
    points: Sequence[tuple[str, Mapping[str, Any]]],
    *,
    executor: Any,
    objective: Callable[..., Mapping[str, float]],
    goals: Goals,
    echo: Callable[[str], None] = print,
) -> None:
    """Run one trial per ``(label, params)`` through ``executor`` into ``study``, each labelled."""
    if not points:
        return
    handle = with_sampler(study, FixedPointsSampler(points))
    progress = Progress(total=len(points), done=0, echo=echo, study=None)
    executor.run(handle, space, objective, goals, n_trials=len(points), progress=progress)
