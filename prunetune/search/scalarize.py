"""One number to minimise for a trial with several objectives: what scipy's DE searches on.

A scalarisation is a small callable ``(trial, directions, metric_names) -> float``; lower is better.
Both built-ins rank by feasibility first, in Optuna's convention (a trial is feasible when every
value in ``trial.constraints`` is <= 0):

- a feasible trial scores its objective value(s), kept below ``penalty``;
- an infeasible trial scores ``penalty * (1 + v / (1 + v))`` with ``v`` the summed violation, so it
  lies in ``[penalty, 2 * penalty)``: below every feasible trial, worse the more it violates;
- a trial without values (failed, pruned) scores ``failure_value == 2 * penalty``: the worst of all.

Scores stay finite on purpose: scipy's convergence test ignores a population that holds ``inf``.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Sequence

from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from prunetune.errors import PrunetuneError

__all__ = ["DEFAULT_PENALTY", "ConstrainedObjective", "Scalarization", "WeightedSum", "violation"]

DEFAULT_PENALTY = 1e9


def violation(trial: FrozenTrial) -> float:
    """The summed positive part of the trial's constraint values (0.0 when feasible or unconstrained)."""
    values = list(trial.constraints.values())
    if any(math.isnan(value) for value in values):
        return math.inf
    return float(sum(max(0.0, value) for value in values))


class Scalarization(abc.ABC):
    """Feasibility first, then :meth:`_feasible_score`; subclasses only say how objectives combine.

    Args:
        penalty: Where infeasible scores start. Feasible scores are clipped just below it, so every
            infeasible trial ranks behind every feasible one whatever the objective's scale.
    """

    def __init__(self, *, penalty: float = DEFAULT_PENALTY) -> None:
        self.penalty = penalty

    @property
    def failure_value(self) -> float:
        """The score of a failed or pruned trial: worse than any trial that finished."""
        return 2.0 * self._checked_penalty()

    def __call__(
        self, trial: FrozenTrial, directions: Sequence[StudyDirection], metric_names: Sequence[str] | None
    ) -> float:
        penalty = self._checked_penalty()
        if trial.state != TrialState.COMPLETE or trial.values is None:
            return 2.0 * penalty
        excess = violation(trial)
        if excess > 0.0:
            if math.isinf(excess):
                return math.nextafter(2.0 * penalty, 0.0)
            return penalty * (1.0 + excess / (1.0 + excess))
        score = float(self._feasible_score(list(trial.values), list(directions), metric_names))
        if math.isnan(score):
            return 2.0 * penalty
        return max(min(score, math.nextafter(penalty, -math.inf)), -penalty)

    @abc.abstractmethod
    def _feasible_score(
        self, values: list[float], directions: list[StudyDirection], metric_names: Sequence[str] | None
    ) -> float:
        """The score of a feasible trial, lower is better."""

    def _checked_penalty(self) -> float:
        penalty = self.penalty
        if isinstance(penalty, bool) or not isinstance(penalty, (int, float)) or not 0 < penalty < math.inf:
            raise PrunetuneError(
                f"The 'penalty' parameter of {type(self).__name__} must be a positive finite number. "
                f"Got {penalty!r} instead."
            )
        return float(penalty)


class ConstrainedObjective(Scalarization):
    """One objective under the study's constraints: the default of :class:`ScipyDESampler`.

    Wu et al. (Sensors 2021) search layer-wise pruning sensitivities by maximising compression
    subject to a limit on the accuracy drop. Here the objective is the one called ``metric`` in
    ``study.metric_names`` (else the study's last objective), in its own direction; the limit is an
    Optuna constraint (``constraints_func`` or ``trial.set_constraint``).

    Args:
        metric: The objective to optimise, by metric name.
        penalty: See :class:`Scalarization`.

    Example:
        >>> import optuna
        >>> scalarize = ConstrainedObjective()
        >>> trial = optuna.trial.create_trial(values=[0.5, 12.0], constraints={"drop": -0.4})
        >>> scalarize(trial, [optuna.study.StudyDirection.MINIMIZE, optuna.study.StudyDirection.MAXIMIZE],
        ...           ["accuracy_drop", "compression"])
        -12.0
    """

    def __init__(self, *, metric: str = "compression", penalty: float = DEFAULT_PENALTY) -> None:
        super().__init__(penalty=penalty)
        self.metric = metric

    def _feasible_score(
        self, values: list[float], directions: list[StudyDirection], metric_names: Sequence[str] | None
    ) -> float:
        index = list(metric_names).index(self.metric) if metric_names and self.metric in metric_names else -1
        return _signed(values[index], directions[index])


class WeightedSum(Scalarization):
    """A weighted sum of the objectives, each turned to "lower is better" by its direction.

    Args:
        weights: One non-negative weight per objective, in the study's order.
        penalty: See :class:`Scalarization`.

    Example:
        >>> import optuna
        >>> trial = optuna.trial.create_trial(values=[2.0, 10.0])
        >>> WeightedSum([1.0, 0.5])(trial, [optuna.study.StudyDirection.MINIMIZE,
        ...                                 optuna.study.StudyDirection.MAXIMIZE], None)
        -3.0
    """

    def __init__(self, weights: Sequence[float], *, penalty: float = DEFAULT_PENALTY) -> None:
        super().__init__(penalty=penalty)
        self.weights = tuple(weights)

    def _feasible_score(
        self, values: list[float], directions: list[StudyDirection], metric_names: Sequence[str] | None
    ) -> float:
        if len(self.weights) != len(values):
            raise PrunetuneError(
                f"The 'weights' parameter of WeightedSum must have one weight per objective ({len(values)}). "
                f"Got {list(self.weights)!r} instead."
            )
        if not all(math.isfinite(weight) and weight >= 0 for weight in self.weights):
            raise PrunetuneError(
                "The 'weights' parameter of WeightedSum must hold finite weights >= 0. "
                f"Got {list(self.weights)!r} instead."
            )
        signed = [_signed(value, direction) for value, direction in zip(values, directions, strict=True)]
        return sum(weight * value for weight, value in zip(self.weights, signed, strict=True))


def _signed(value: float, direction: StudyDirection) -> float:
    return -value if direction == StudyDirection.MAXIMIZE else value
