"""Which metrics a search optimises and which it bounds, and what the study stores for them."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from prunetune.errors import PrunetuneError

__all__ = ["Goals", "parse_constraint"]


@dataclass(frozen=True)
class Goals:
    """Objectives `(metric, direction)` and constraints `(metric, '<=' | '>=', bound)`.

    Constraints follow Optuna's convention: a trial is feasible when every constraint value is <= 0;
    they are stored with `trial.set_constraint`, so Optuna's samplers and `study.best_trials` rank
    infeasible trials behind feasible ones with no constraints_func. For a sampler that
    takes no constraints (CMA-ES), a `penalty` > 0 moves each objective value against its direction
    by `penalty` times the total violation, so infeasible plans still look worse to it.
    """

    objectives: tuple[tuple[str, str], ...]
    constraints: tuple[tuple[str, str, float], ...] = ()
    penalty: float = 0.0

    @classmethod
    def from_config(cls, objectives: Mapping[str, str], constraints: Sequence[str] = ()) -> Goals:
        return cls(tuple(objectives.items()), tuple(parse_constraint(str(text)) for text in constraints))

    @property
    def metric_names(self) -> list[str]:
        return [name for name, _ in self.objectives]

    @property
    def directions(self) -> list[str]:
        return [direction for _, direction in self.objectives]

    def check_against(self, available: Mapping[str, str]) -> None:
        """Every metric named must be one the objective returns, in the direction it prefers."""
        for name, direction in self.objectives:
            if name not in available:
                raise PrunetuneError(
                    f"Unknown objective metric {name!r}. The objective returns: {', '.join(sorted(available))}."
                )
            if available[name] != direction:
                raise PrunetuneError(f"Metric {name!r} is better when {available[name]}d; got {direction!r}.")
        for name, _, _ in self.constraints:
            if name not in available:
                raise PrunetuneError(
                    f"Unknown constraint metric {name!r}. The objective returns: {', '.join(sorted(available))}."
                )

    def values(self, metrics: Mapping[str, float]) -> list[float]:
        values = [float(metrics[name]) for name, _ in self.objectives]
        bad = [name for (name, _), value in zip(self.objectives, values, strict=True) if not math.isfinite(value)]
        if bad:
            raise ValueError(f"objective metric(s) {', '.join(bad)} are not finite")
        if self.penalty and self.constraints:
            violation = sum(max(value, 0.0) for value in self.constraint_values(metrics))
            values = [
                value - self.penalty * violation if direction == "maximize" else value + self.penalty * violation
                for value, (_, direction) in zip(values, self.objectives, strict=True)
            ]
        return values

    @property
    def constraint_keys(self) -> list[str]:
        """How each constraint is named in the study (Optuna's `trial.set_constraint`)."""
        return [f"{name} {op} {bound:g}" for name, op, bound in self.constraints]

    def feasible(self, metrics: Mapping[str, float]) -> bool:
        """Whether every constraint holds for `metrics` (True when there are none)."""
        try:
            return all(value <= 0 for value in self.constraint_values(metrics))
        except KeyError:
            return False

    def constraint_values(self, metrics: Mapping[str, float]) -> list[float]:
        """One value per constraint, <= 0 when it holds."""
        return [
            float(metrics[name]) - bound if op == "<=" else bound - float(metrics[name])
            for name, op, bound in self.constraints
        ]


def parse_constraint(text: str) -> tuple[str, str, float]:
    """`'accuracy_drop <= 1.0'` -> ('accuracy_drop', '<=', 1.0); the bound a feasible trial keeps."""
    for op in ("<=", ">="):
        if op in text:
            name, _, bound = (part.strip() for part in text.partition(op))
            try:
                value = float(bound)
            except ValueError:
                break
            if name and math.isfinite(value):
                return name, op, value
            break
    raise PrunetuneError(
        f"The 'objective.constraints' entries must read 'METRIC <= NUMBER' or 'METRIC >= NUMBER'. Got {text!r} instead."
    )
