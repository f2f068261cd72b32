"""A latency model for target mode: a plan's latency predicted from its MACs.

A plan cannot be repaired onto a latency budget by timing it: timings vary by a few percent from
one run to the next and are not monotone in the ratios, while the repair's bisection needs a value
that only falls as the ratios grow, and the same value in every worker. So the base model and a
handful of pruned probes are timed once, before the search, on the device and thread count the
trials use, and

    latency_ms = intercept_ms + scale_ms * (MACs / 1e6) ** exponent

is fitted with non-negative coefficients (least squares, for each exponent on a grid in (0, 1]), so
the prediction falls as pruning removes MACs. An exponent below 1 is the curve timings follow: thin
layers run fewer MACs per second, so latency falls more slowly than MACs (a straight line fitted to
the same probes was off by up to 10% mid-range on ResNet-56). Masked weights still cost their dense
MACs, so unstructured pruning does not lower the prediction, as it does not lower a dense kernel's
latency. Each trial still times its real network; the fit's points and error are kept so a user
can judge the model.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from sklearn.linear_model import LinearRegression
from torch import nn

from prunetune.pruners.calls import ExampleInputs
from prunetune.pruners.measure import Measurement, measure, measure_latency
from prunetune.pruners.plan import Plan, apply_plan

__all__ = ["LatencyModel", "fit_latency_model"]

#: The exponents tried: latency falls at most in proportion to MACs (1.0), never faster.
EXPONENTS = np.round(np.arange(0.1, 1.0001, 0.05), 2)


@dataclass(frozen=True)
class LatencyModel:
    """``intercept_ms + scale_ms * (MACs / 1e6) ** exponent``, fitted on ``points`` (MACs, measured
    ms) timed on ``device`` with ``threads`` CPU threads."""

    intercept_ms: float
    scale_ms: float
    exponent: float
    device: str
    threads: int
    points: tuple[tuple[int, float], ...]

    def predict(self, measurement: Measurement) -> float:
        return self._predict(measurement.macs)

    def _predict(self, macs: int) -> float:
        return self.intercept_ms + self.scale_ms * (macs / 1e6) ** self.exponent

    @property
    def max_error(self) -> float:
        """The largest relative error of the fit on its own points (0.05: 5%)."""
        return max(abs(self._predict(macs) - ms) / ms for macs, ms in self.points)

    def describe(self) -> str:
        return (
            f"latency_ms = {self.intercept_ms:.4g} + {self.scale_ms:.4g} * MMACs^{self.exponent:.2f}, fitted on "
            f"{self.device} ({self.threads} threads) from {len(self.points)} timed plans, largest error {self.max_error:.0%}"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "intercept_ms": self.intercept_ms, "scale_ms": self.scale_ms, "exponent": self.exponent,
            "device": self.device, "threads": self.threads, "points": [list(point) for point in self.points],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LatencyModel:
        return cls(
            intercept_ms=float(data["intercept_ms"]), scale_ms=float(data["scale_ms"]), exponent=float(data["exponent"]),
            device=str(data["device"]), threads=int(data["threads"]),
            points=tuple((int(macs), float(ms)) for macs, ms in data["points"]),
        )


def fit_latency_model(
    model: nn.Module,
    example_inputs: ExampleInputs,
    plans: Sequence[Plan],
    *,
    device: torch.device | str = "cpu",
    threads: int | None = None,
    repeats: int = 30,
    rounds: int = 2,
) -> LatencyModel:
    """Time each plan applied to ``model`` on ``device`` and fit the model to the timings.

    Every pruned network is timed once untimed first (the first passes through a process's kernels
    run slow, which made the first probes look up to twice as slow), then ``rounds`` times in turn;
    a probe's latency is the fastest of its rounds' medians, which shrugs off a burst of other load.
    """
    pruned = [apply_plan(model, plan, example_inputs=example_inputs).to(device) for plan in plans]
    timings = [[] for _ in pruned]
    for round_ in range(rounds + 1):
        for network, times in zip(pruned, timings):
            latency = measure_latency(network, example_inputs, threads=threads, repeats=repeats, warmup=max(5, repeats // 3))
            if round_:
                times.append(latency.median_ms)
    counts = [measure(network, example_inputs).macs for network in pruned]
    macs = np.asarray(counts) / 1e6
    fastest = np.asarray([min(times) for times in timings])
    fits = []
    for exponent in EXPONENTS:
        features = np.column_stack([np.ones_like(macs), macs**exponent])
        fit = LinearRegression(fit_intercept=False, positive=True).fit(features, fastest)
        intercept, scale = fit.coef_
        residual = float(np.sum((features @ fit.coef_ - fastest) ** 2))
        fits.append((residual, float(exponent), float(intercept), float(scale)))
    _, exponent, intercept, scale = min(fits)
    return LatencyModel(
        intercept_ms=intercept, scale_ms=scale, exponent=exponent, device=str(torch.device(device)), threads=latency.threads,
        points=tuple((count, float(ms)) for count, ms in zip(counts, fastest)),
    )
