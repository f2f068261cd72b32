"""Target mode: every plan repaired onto a budget the user states, before any training.

The question users ask most is "the most accurate network at no more than X MACs (parameters,
bytes) or at least Y times smaller". Constraints only reject plans that miss it, after their trial
was spent. Here each plan is moved onto the budget first: its ratios are scaled along one path

    s in [0, 1]:  r_u(s) = s * r_u                      (from no pruning to the plan itself)
    s in [1, 2]:  r_u(s) = r_u + (s - 1) * (high_u - r_u)  (from the plan to every unit at its bound)

and the smallest ``s`` whose plan meets the target is found by bisection, so the plan keeps its
proportions (what the sampler chose) and meets the target as closely as whole channels allow. Every
ratio grows with ``s``, and with it the reductions, so the search is monotone. Only the ratio-like
sections are scaled ('filters' ratios, 'weights' ratios or sensitivities); other sections (drops,
bits) stay as the plan has them and count towards the budget. A ``latency_ms`` target is repaired
on a fitted :class:`~prunetune.pruners.latency_model.LatencyModel`, not on timings.
"""

from __future__ import annotations

import copy
import json
import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from prunetune.errors import PrunetuneError, is_finite_number
from prunetune.pruners.calls import ExampleInputs
from prunetune.pruners.latency_model import LatencyModel, fit_latency_model
from prunetune.pruners.measure import Measurement, measure
from prunetune.pruners.plan import Plan, apply_plan
from prunetune.pruners.structured import channels_to_remove
from prunetune.pruners.units import discover_units

__all__ = ["SCALED_KEYS", "TARGETS", "PlanRepair", "Target"]

#: Target metric -> whether the pruned model's value must be at least or at most the target.
TARGETS: dict[str, str] = {
    "macs_reduction": "at least", "compression": "at least", "params": "at most", "size_bytes": "at most", "latency_ms": "at most",
}
#: The sections whose values the repair scales, and under which keys.
SCALED_KEYS: dict[str, tuple[str, ...]] = {"filters": ("ratios",), "weights": ("ratios", "sensitivities")}
#: Bisection stops when the bracket on the path parameter is this narrow.
TOLERANCE = 1e-4
#: The plans a latency model is fitted on: every unit at these fractions of its bound (0: the base
#: model), and this many random mixes.
UNIFORM_PROBES = (0.0, 0.25, 0.5, 0.75, 1.0)
RANDOM_PROBES = 5


@dataclass(frozen=True)
class Target:
    """One budget: ``metric`` (a key of :data:`TARGETS`) at least or at most ``value``."""

    metric: str
    value: float

    @classmethod
    def from_config(cls, config: Any, where: str = "objective.target") -> Target:
        """``{"macs_reduction": 2.0}`` -> Target; a PrunetuneError naming the key otherwise."""
        accepted = f"one of {', '.join(TARGETS)} with its value, such as {{macs_reduction: 2.0}}"
        if not isinstance(config, Mapping) or len(config) != 1:
            raise PrunetuneError(f"The '{where}' key must name {accepted}. Got {config!r} instead.")
        [(metric, value)] = config.items()
        if metric not in TARGETS:
            raise PrunetuneError(f"The '{where}' key must name {accepted}. Got {metric!r} instead.")
        low = 1.0 if TARGETS[metric] == "at least" else 0.0
        if not is_finite_number(value) or float(value) <= low:
            raise PrunetuneError(f"The '{where}.{metric}' value must be a number above {low:g}. Got {value!r} instead.")
        return cls(metric=str(metric), value=float(value))

    def reached(self, base: Measurement, pruned: Measurement, latency: LatencyModel | None = None) -> float:
        """The pruned model's value of the target metric (latency as ``latency`` predicts it)."""
        if self.metric == "latency_ms":
            if latency is None:
                raise PrunetuneError("A latency_ms target needs a latency model to predict latency from.")
            return latency.predict(pruned)
        if self.metric == "macs_reduction":
            return base.macs / max(pruned.macs, 1)
        if self.metric == "compression":
            return base.nonzero_params / max(pruned.nonzero_params, 1)
        return float(getattr(pruned, self.metric))

    def met(self, value: float) -> bool:
        return value >= self.value if TARGETS[self.metric] == "at least" else value <= self.value

    def __str__(self) -> str:
        return f"{self.metric} {'>=' if TARGETS[self.metric] == 'at least' else '<='} {self.value:g}"


class PlanRepair:
    """Moves plans onto a :class:`Target` for one base model (see the module's docstring).

    Args:
        model: The base model (never changed: each measurement prunes a copy).
        example_inputs: Inputs to trace and count MACs with.
        target: The budget.
        highs: Per section, the highest value of each unit or layer (the search space's bounds).
        template: A plan whose scaled sections carry the methods' own keys and options (a weights
            method's 'sensitivities', a filters method's round_to): what a section the plan leaves
            out becomes on the path. Without it such a section holds 'ratios' alone.
        latency: For a ``latency_ms`` target, the latency model to repair on; None fits one here,
            timing plans on ``device`` with ``threads`` CPU threads (the trials' own).
    """

    def __init__(
        self,
        model: nn.Module,
        example_inputs: ExampleInputs,
        target: Target,
        highs: Mapping[str, Mapping[str, float]],
        *,
        template: Plan | None = None,
        latency: LatencyModel | None = None,
        device: torch.device | str = "cpu",
        threads: int | None = None,
    ) -> None:
        self.model = model
        self.example_inputs = example_inputs
        self.target = target
        self.highs = {section: dict(values) for section, values in highs.items() if section in SCALED_KEYS}
        if not self.highs:
            raise PrunetuneError(
                f"A target ({target}) needs a method whose ratios can be scaled: 'filters' or 'weights'."
            )
        sections = template.sections if template is not None else {}
        self._template = {name: dict(sections.get(name) or {SCALED_KEYS[name][0]: {}}) for name in self.highs}
        self._base: Measurement | None = None
        self._seen: dict[str, float] = {}
        self._channels = {unit.name: unit.channels for unit in discover_units(model, example_inputs)} if "filters" in self.highs else {}
        layers = dict(model.named_modules())
        self._numel = {layer: int(layers[layer].weight.numel()) for layer in self.highs.get("weights", {}) if layer in layers}
        if target.metric == "latency_ms" and latency is None:
            latency = fit_latency_model(model, example_inputs, self.probes(), device=device, threads=threads)
        #: The fitted latency model (None unless the target is latency_ms).
        self.latency = latency if target.metric == "latency_ms" else None

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_seen"] = {}  # measurements of one process stay there
        return state

    @property
    def base(self) -> Measurement:
        if self._base is None:
            self._base = measure(self.model, self.example_inputs)
        return self._base

    def value(self, plan: Plan) -> float:
        """The target metric of ``plan`` applied to the base model (remembered per plan)."""
        key = self._key(plan)
        if key not in self._seen:
            pruned = apply_plan(self.model, plan, example_inputs=self.example_inputs)
            self._seen[key] = self.target.reached(self.base, measure(pruned, self.example_inputs), self.latency)
        return self._seen[key]

    def _key(self, plan: Plan) -> str:
        """What the plan does in whole channels and weights: plans along the path that differ only
        below that granularity prune the same model, and are measured once."""
        sections = copy.deepcopy(plan.sections)
        filters = sections.get("filters")
        if filters and "ratios" in filters:
            round_to = int(filters.get("round_to", 1))
            filters["ratios"] = {
                unit: channels_to_remove(self._channels[unit], float(r), round_to, unit=unit) if unit in self._channels else r
                for unit, r in filters["ratios"].items()
            }
        weights = sections.get("weights")
        if weights and "ratios" in weights:
            weights["ratios"] = {layer: round(float(r) * self._numel[layer]) if layer in self._numel else r for layer, r in weights["ratios"].items()}
        return json.dumps(sections, sort_keys=True)

    def along(self, plan: Plan, s: float) -> Plan:
        """The plan at ``s`` on the repair path (0: scaled sections empty, 1: ``plan``, 2: all at their bounds)."""
        sections = copy.deepcopy(plan.sections)
        for name, highs in self.highs.items():
            section = sections.setdefault(name, copy.deepcopy(self._template[name]))
            key = next((key for key in SCALED_KEYS[name] if key in section), SCALED_KEYS[name][0])
            given = {unit: float(value) for unit, value in (section.get(key) or {}).items()}
            section[key] = {unit: _along(min(given.get(unit, 0.0), high), high, s) for unit, high in highs.items()}
        return Plan(sections)

    def probes(self, seed: int = 0) -> list[Plan]:
        """Plans to fit a latency model on: every unit at a fraction of its bound, and random mixes."""
        rng = random.Random(seed)
        uniform = [self.along(Plan({}), 1.0 + fraction) for fraction in UNIFORM_PROBES]
        mixes = [self.along(Plan({}), 2.0) for _ in range(RANDOM_PROBES)]
        for plan in mixes:  # every unit at a random fraction of its bound
            for name in self.highs:
                section = plan.sections[name]
                values = section[next(key for key in SCALED_KEYS[name] if key in section)]
                values.update({unit: value * rng.random() for unit, value in values.items()})
        return uniform + mixes

    def check_reachable(self, plan: Plan | None = None) -> None:
        """Raise PrunetuneError when even every unit at its bound misses the target."""
        most = self.along(plan or Plan({}), 2.0)
        reached = self.value(most)
        if not self.target.met(reached):
            model = f" ({self.latency.describe()})" if self.latency is not None else ""
            raise PrunetuneError(
                f"The 'objective.target' {self.target} cannot be met in this search space: with every unit at its "
                f"bound (the methods' max_ratio / max_sensitivity) the model reaches {self.target.metric} {reached:.4g}{model}."
            )

    def repair(self, plan: Plan | Mapping[str, Any]) -> tuple[Plan, float]:
        """``(repaired plan, s)``: the plan at the smallest ``s`` that meets the target."""
        plan = plan if isinstance(plan, Plan) else Plan.from_dict(plan)
        if self.target.met(self.value(self.along(plan, 0.0))):
            return self.along(plan, 0.0), 0.0
        self.check_reachable(plan)
        low, high = 0.0, 2.0  # missed at low, met at high
        while high - low > TOLERANCE:
            middle = (low + high) / 2.0
            if self.target.met(self.value(self.along(plan, middle))):
                high = middle
            else:
                low = middle
        return self.along(plan, high), high


def _along(ratio: float, high: float, s: float) -> float:
    if s <= 1.0:
        return ratio * s
    return ratio + (s - 1.0) * (high - ratio)
