"""A search space: the union of the chosen pruning methods' dimensions for one model.

It has two encodings of the same space. Optuna's define-by-run (`suggest(trial)`), with parameter
names derived from module paths so they are stable across runs; and a flat vector with bounds and
integrality (`codec`, `decode(x)`) for pymoo and scipy. Both end in the same plain-data Plan.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from torch import nn

from prunetune.errors import PrunetuneError
from prunetune.pruners import METHODS, Dimension, Plan, PruningMethod, make_method, register_method
from prunetune.pruners.target import PlanRepair
from prunetune.search.vector import VectorCodec

__all__ = ["SearchSpace"]


def _registered(method: Any) -> PruningMethod:
    """A method object handed in directly, its class registered so that its plans can be applied."""
    if not isinstance(method, PruningMethod):
        raise PrunetuneError(
            f"A search space's methods are names or prunetune.pruners.PruningMethod objects. Got {method!r} instead."
        )
    register_method(type(method))
    method.check_options()
    return method


def _distribution(dimension: Dimension) -> BaseDistribution:
    if dimension.kind == "float":
        return FloatDistribution(float(dimension.low), float(dimension.high), step=dimension.step)
    if dimension.kind == "int":
        return IntDistribution(int(dimension.low), int(dimension.high), step=int(dimension.step or 1))
    if dimension.kind == "bool":
        return CategoricalDistribution((False, True))
    return CategoricalDistribution(dimension.choices)


class SearchSpace:
    """The dimensions of the chosen methods on one model, and the plans they stand for.

    Args:
        methods: The configured methods, applied in the registry's order whatever the order here.
        dimensions: Each method's dimensions, by method name.
        shared: Methods searched with one value for all their dimensions (one shared ratio instead
            of one per unit); the shared value is capped per dimension at that dimension's bound.

    Build it with :meth:`for_model`. Example:

        >>> space = SearchSpace.for_model(model, example, {"filters": {"criterion": "l1"}})
        >>> study.optimize(lambda trial: evaluate(space.suggest(trial)), n_trials=10)
    """

    def __init__(
        self,
        *,
        methods: Sequence[PruningMethod],
        dimensions: Mapping[str, Sequence[Dimension]],
        shared: Sequence[str] = (),
    ) -> None:
        self.methods = {method.name: method for method in methods}
        self.dimensions = {name: list(dimensions.get(name, ())) for name in self.methods}
        self.shared = tuple(shared)
        #: Moves each plan onto the experiment's target (objective.target); None without one.
        self.repair: PlanRepair | None = None
        unknown = [name for name in self.shared if name not in self.methods]
        if unknown:
            raise PrunetuneError(f"Shared dimensions named for methods not in the space: {', '.join(unknown)}")
        self._distributions = self._build_distributions()
        self.codec = VectorCodec(self._distributions)

    @classmethod
    def for_model(
        cls,
        model: nn.Module,
        example_inputs: Any,
        methods: Mapping[str, Mapping[str, Any] | None] | Sequence[str | PruningMethod],
    ) -> SearchSpace:
        """The space of `methods` on `model`: names with options (a mapping) or method objects.

        An option `shared: true` in a method's options searches one value for all its dimensions.
        """
        configured: list[PruningMethod] = []
        shared: list[str] = []
        if isinstance(methods, Mapping):
            for name, options in methods.items():
                options = dict(options or {})
                if options.pop("shared", False):
                    shared.append(name)
                configured.append(make_method(name, options))
        else:
            configured = [make_method(m) if isinstance(m, str) else _registered(m) for m in methods]
        if not configured:
            raise PrunetuneError("A search space needs at least one pruning method.")
        ordered = [method for name in METHODS for method in configured if method.name == name]
        dimensions = {method.name: method.dimensions(model, example_inputs) for method in ordered}
        empty = [name for name, dims in dimensions.items() if not dims]
        if empty:
            raise PrunetuneError(f"Method(s) {', '.join(empty)} have nothing to search on this model.")
        return cls(methods=ordered, dimensions=dimensions, shared=shared)

    def register_methods(self) -> None:
        """Register this space's methods in this process (a no-op for those registered already).

        A method of the user's own travels to a Ray worker inside the space; the worker's registry
        must know it before a plan naming its section can be validated and applied there.
        """
        for method in self.methods.values():
            if method.name not in METHODS:
                register_method(type(method))

    def _build_distributions(self) -> dict[str, BaseDistribution]:
        distributions: dict[str, BaseDistribution] = {}
        for name, dims in self.dimensions.items():
            if name in self.shared:
                distributions[f"{name}.shared"] = _shared_distribution(name, dims)
            else:
                distributions.update((dim.name, _distribution(dim)) for dim in dims)
        return distributions

    @property
    def distributions(self) -> dict[str, BaseDistribution]:
        """Parameter name -> Optuna distribution, in a stable order."""
        return dict(self._distributions)

    def __len__(self) -> int:
        return len(self._distributions)

    def suggest(self, trial: optuna.trial.BaseTrial) -> Plan:
        """Define-by-run: suggest every parameter on `trial` and return the plan they make."""
        return self.plan(self.suggest_params(trial))

    def suggest_params(self, trial: optuna.trial.BaseTrial) -> dict[str, Any]:
        """Suggest every parameter on `trial`; the parameters, without building their plan (an
        engine asks in the driver and builds the plan, repaired onto a target, in the trial).

        The sampler's relative sample is asked for first, even when every parameter is fixed (an
        enqueued start point): Optuna asks it only on the first parameter that is not fixed, and a
        population sampler gives a trial its place in a generation there. Fixed values still win.
        """
        _ask_sampler(trial)
        params = {}
        for name, distribution in self._distributions.items():
            if isinstance(distribution, CategoricalDistribution):
                params[name] = trial.suggest_categorical(name, distribution.choices)
            elif isinstance(distribution, IntDistribution):
                params[name] = trial.suggest_int(name, distribution.low, distribution.high, step=distribution.step)
            else:
                params[name] = trial.suggest_float(name, distribution.low, distribution.high, step=distribution.step)
        return params

    def with_target(self, repair: PlanRepair | None) -> SearchSpace:
        """This space with every plan repaired onto a target (see :mod:`prunetune.pruners.target`)."""
        space = SearchSpace(methods=list(self.methods.values()), dimensions=self.dimensions, shared=self.shared)
        space.repair = repair
        return space

    def highs(self) -> dict[str, dict[str, float]]:
        """Per method, each unit's (or layer's) highest value: the bounds a target repair scales up to."""
        return {name: {dim.unit: float(dim.high) for dim in dims if dim.kind == "float"} for name, dims in self.dimensions.items()}

    def plan(self, params: Mapping[str, Any]) -> Plan:
        """The plan for a full parameter dict (as Optuna records it), repaired onto the space's
        target when it has one."""
        plan = self.unrepaired_plan(params)
        return plan if self.repair is None else self.repair.repair(plan)[0]

    def unrepaired_plan(self, params: Mapping[str, Any]) -> Plan:
        """The plan the parameters say, before any target repair."""
        missing = [name for name in self._distributions if name not in params]
        if missing:
            raise PrunetuneError(f"Parameters missing for this search space: {', '.join(missing[:5])}")
        sections = {}
        for name, method in self.methods.items():
            if name in self.shared:
                value = params[f"{name}.shared"]
                values = {dim.name: _capped(value, dim) for dim in self.dimensions[name]}
            else:
                values = {dim.name: params[dim.name] for dim in self.dimensions[name]}
            sections[name] = method.section(values)
        return Plan(sections)

    def decode(self, x: np.ndarray) -> Plan:
        """The plan for a flat vector (see `codec` for its bounds and integrality)."""
        return self.plan(self.codec.to_params(x))

    def params_for(self, plan: Plan | Mapping[str, Any]) -> dict[str, Any]:
        """The parameters whose :meth:`plan` is `plan`: the inverse of `plan`, for start points.

        Each method's `values(section)` gives its dimensions' values; dimensions the plan does not
        determine (a method it leaves out, a unit it does not name) take their low bound (False for
        booleans, the first choice of a categorical). A shared method takes the largest of the given
        values, which re-creates a plan made with one shared value (smaller values there are
        per-unit caps). Values on a step grid are snapped to it; a value outside the space raises.
        """
        plan = plan if isinstance(plan, Plan) else Plan.from_dict(plan)
        foreign = [name for name in plan.sections if name not in self.methods]
        if foreign:
            raise PrunetuneError(
                f"The plan has a {foreign[0]!r} section but this search space has only {', '.join(self.methods)}."
            )
        params: dict[str, Any] = {}
        for name, method in self.methods.items():
            given = method.values(plan.sections[name]) if name in plan.sections else {}
            known = {dim.name for dim in self.dimensions[name]}
            stray = [key for key in given if key not in known]
            if stray:
                raise PrunetuneError(
                    f"The plan sets {stray[0]!r}, which is not a parameter of this search space "
                    f"(a unit or layer the {name!r} method does not search on this model)."
                )
            if name in self.shared:
                key = f"{name}.shared"
                distribution = self._distributions[key]
                params[key] = _within(key, max(given.values()) if given else distribution.low, distribution)
            else:
                for dim in self.dimensions[name]:
                    distribution = self._distributions[dim.name]
                    params[dim.name] = _within(dim.name, given.get(dim.name, _lowest(distribution)), distribution)
        return {name: params[name] for name in self._distributions}


def _ask_sampler(trial: optuna.trial.BaseTrial) -> None:
    """Have the study's sampler run `sample_relative` for `trial` now (an Optuna Trial only).

    Without it, a trial whose parameters are all enqueued never reaches the sampler, so NSGA-II,
    CMA-ES and pymoo never count it in a generation and never breed from it. For any other trial
    this is what its first suggestion would do anyway.
    """
    if isinstance(trial, optuna.trial.Trial):
        trial.relative_params  # noqa: B018 -- the property asks the sampler once and caches the answer


def _shared_distribution(method: str, dims: Sequence[Dimension]) -> BaseDistribution:
    kinds = {dim.kind for dim in dims}
    if kinds - {"float", "int"}:
        raise PrunetuneError(f"Method {method!r} cannot share one value: its dimensions are {', '.join(sorted(kinds))}.")
    low = min(dim.low for dim in dims)
    high = max(dim.high for dim in dims)
    steps = {dim.step for dim in dims}
    step = steps.pop() if len(steps) == 1 else None
    if kinds == {"int"}:
        return IntDistribution(int(low), int(high), step=int(step or 1))
    return FloatDistribution(float(low), float(high), step=step)


def _lowest(distribution: BaseDistribution) -> Any:
    """What a dimension a plan leaves open starts from: its low bound, False, or the first choice."""
    if isinstance(distribution, CategoricalDistribution):
        return False if False in distribution.choices else distribution.choices[0]
    return distribution.low


def _within(name: str, value: Any, distribution: BaseDistribution) -> Any:
    """`value` as a point of `distribution` (snapped to its step grid), or a PrunetuneError."""
    if isinstance(distribution, CategoricalDistribution):
        if value not in distribution.choices:
            raise PrunetuneError(
                f"The plan's value {value!r} for {name!r} is not one of its choices {list(distribution.choices)}."
            )
        return value
    low, high = distribution.low, distribution.high
    tolerance = 1e-9 * max(1.0, abs(high - low))
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low - tolerance <= value <= high + tolerance:
        raise PrunetuneError(f"The plan's value {value!r} for {name!r} lies outside the search space [{low}, {high}].")
    if distribution.step is not None:
        steps = (value - low) / distribution.step
        if abs(steps - round(steps)) > 1e-9:  # off the grid: the nearest grid point
            value = low + round(steps) * distribution.step
    value = min(max(value, low), high)
    return int(round(value)) if isinstance(distribution, IntDistribution) else float(value)


def _capped(value: float, dimension: Dimension) -> float:
    """A shared value within one dimension's own bounds (a one-channel-short cap per unit, say)."""
    return min(max(value, dimension.low), dimension.high)
