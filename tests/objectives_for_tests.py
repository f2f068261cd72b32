"""Cheap objectives for engine tests: no training, known answers, failures on demand."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from prunetune.pruners import Plan


class ArithmeticObjective:
    """Accuracy falls with the mean filter ratio; compression rises with it. Fails on request.

    `fail_above`: raise for plans whose mean ratio is above it; `nan_above`: return NaN accuracy.
    """

    directions = {"accuracy": "maximize", "compression": "maximize", "accuracy_drop": "minimize"}

    def __init__(self, *, fail_above: float | None = None, nan_above: float | None = None, **context: Any) -> None:
        self.fail_above = fail_above
        self.nan_above = nan_above

    def __call__(self, plan: Plan, report: Callable[[int, Mapping[str, float]], None] | None = None) -> dict[str, float]:
        ratios = list(plan.sections["filters"]["ratios"].values())
        mean = sum(ratios) / len(ratios)
        if self.fail_above is not None and mean > self.fail_above:
            raise RuntimeError(f"plan too aggressive (mean ratio {mean:.2f})")
        accuracy = math.nan if self.nan_above is not None and mean > self.nan_above else 1.0 - mean**2
        compression = 1.0 / (1.0 - mean) ** 2
        if report is not None:
            report(0, {"val_accuracy": accuracy, "compression": compression})
        return {"accuracy": accuracy, "compression": compression, "accuracy_drop": 100 * mean**2}


def arithmetic(plan: Plan, report: Callable[[int, Mapping[str, float]], None] | None = None) -> dict[str, float]:
    """The same as ArithmeticObjective, as a plain function (its directions come from the experiment file)."""
    return ArithmeticObjective()(plan, report)
