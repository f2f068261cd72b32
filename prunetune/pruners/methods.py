"""The method contract: a pruning method declares its dimensions for a model and applies a plan section.

A searcher only ever sees :class:`Dimension` objects (plain data) and writes back a plan section
(plain data); the method turns that section into surgery on a model. The methods are applied in
the order of :data:`prunetune.pruners.registry.METHODS`, the one place that order is kept.
"""

from __future__ import annotations

import abc
import copy
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from numbers import Integral, Real
from typing import Any, ClassVar

from torch import nn

from prunetune.errors import PrunetuneError, is_finite_number
from prunetune.pruners.criteria import CRITERIA, get_criterion
from prunetune.pruners.structured import (
    LossFn,
    channels_to_remove,
    check_ratio,
    check_round_to,
    prune_filters,
)
from prunetune.pruners.calls import ExampleInputs
from prunetune.pruners.units import discover_units
from prunetune.pruners.unstructured import apply_weight_masks, prunable_weight_layers, sensitivity_limits

__all__ = [
    "DIMENSION_KINDS",
    "Dimension",
    "FilterPruning",
    "PruningMethod",
    "WeightPruning",
]

#: The kinds of search dimension a method may declare.
DIMENSION_KINDS: tuple[str, ...] = ("float", "int", "bool", "categorical")


@dataclass(frozen=True)
class Dimension:
    """One searchable knob of one method on one unit or layer.

    Attributes:
        name: Stable name, ``<method>.<unit path>`` (``filters.features.0``).
        unit: The unit or layer path it controls.
        kind: ``"float"``, ``"int"``, ``"bool"`` or ``"categorical"``.
        low, high: Inclusive bounds of a float or int dimension.
        step: Optional grid step of a float or int dimension.
        choices: The options of a categorical dimension.
    """

    name: str
    unit: str
    kind: str
    low: float | int | None = None
    high: float | int | None = None
    step: float | int | None = None
    choices: tuple[Any, ...] | None = None

    def __post_init__(self) -> None:
        if self.kind not in DIMENSION_KINDS:
            raise PrunetuneError(
                f"The 'kind' of dimension {self.name!r} must be one of {', '.join(DIMENSION_KINDS)}. "
                f"Got {self.kind!r} instead."
            )
        if self.kind in ("float", "int"):
            if self.low is None or self.high is None or not self.low <= self.high:
                raise PrunetuneError(
                    f"Dimension {self.name!r} needs low <= high. Got low={self.low!r}, high={self.high!r} instead."
                )
        if self.kind == "categorical":
            if not self.choices:
                raise PrunetuneError(f"Categorical dimension {self.name!r} needs at least one choice.")
            object.__setattr__(self, "choices", tuple(self.choices))


class PruningMethod(abc.ABC):
    """A pruning method: its search dimensions for a model, and how it applies its plan section.

    Subclasses set :attr:`name` (the plan section they read) and keep constructors that only
    store their keyword arguments.
    """

    name: ClassVar[str]
    #: The training half, for a method that trains between its steps: a callable
    #: ``(model, section, context) -> (model, section as applied)`` or its ``"module:function"``
    #: (imported by :mod:`prunetune.objectives.stages` on first use, so this package never imports
    #: the training code). None: the section is plain surgery, applied by :meth:`apply`.
    stage: ClassVar[Any] = None

    def check_options(self) -> None:
        """Raise :class:`PrunetuneError` naming a bad constructor option and what it accepts.

        Called when a search is configured, before any model is read or trained, so that a wrong
        option stops the run up front instead of failing every trial. The default accepts anything.
        """

    @abc.abstractmethod
    def dimensions(self, model: nn.Module, example_inputs: ExampleInputs) -> list[Dimension]:
        """The knobs this method offers on ``model``, in a stable order."""

    @abc.abstractmethod
    def section(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """The plan section for the values a searcher chose, keyed by dimension name."""

    def values(self, section: Mapping[str, Any]) -> dict[str, Any]:
        """The dimension values that :meth:`section` turns into ``section``: its inverse.

        A search enqueues known plans (start points) through it. Dimensions the section does not
        determine are left out; the search space fills them with their low bound.
        """
        raise PrunetuneError(f"Method {self.name!r} cannot give start points: it has no values() for its sections.")

    @abc.abstractmethod
    def validate(self, section: Mapping[str, Any], model: nn.Module, example_inputs: ExampleInputs) -> None:
        """Raise :class:`PrunetuneError` naming the problem if ``section`` cannot apply to ``model``."""

    @abc.abstractmethod
    def apply(
        self,
        model: nn.Module,
        section: Mapping[str, Any],
        *,
        example_inputs: ExampleInputs,
        calibration: Iterable[tuple[Any, Any]] | None = None,
        loss_fn: LossFn | None = None,
    ) -> nn.Module:
        """Apply ``section`` to ``model`` in place and return the model.

        ``calibration`` batches and ``loss_fn`` feed criteria that need gradients.
        """


def _check_keys(section: Any, method: str, known: tuple[str, ...], required: tuple[str, ...]) -> None:
    if not isinstance(section, Mapping):
        raise PrunetuneError(f"The {method!r} section must be a mapping. Got {section!r} instead.")
    unknown = [key for key in section if key not in known]
    if unknown:
        raise PrunetuneError(
            f"Unknown key {unknown[0]!r} in the {method!r} section. Known keys: {', '.join(known)}."
        )
    missing = [key for key in required if key not in section]
    if missing:
        raise PrunetuneError(f"The {method!r} section needs the key {missing[0]!r}.")


def _check_names(values: Any, method: str, key: str, available: list[str], what: str) -> Mapping[str, Any]:
    if not isinstance(values, Mapping):
        raise PrunetuneError(
            f"The {key!r} of the {method!r} section must map {what} names to numbers. Got {values!r} instead."
        )
    for name in values:
        if name not in available:
            raise PrunetuneError(
                f"Unknown {what} {name!r} in the {method!r} section. "
                f"Available {what}s: {', '.join(available) or '(none)'}."
            )
    return values


def _check_max_ratio(value: Any, owner: str) -> float:
    if isinstance(value, bool) or not isinstance(value, Real) or not 0.0 <= float(value) < 1.0:
        raise PrunetuneError(f"The 'max_ratio' parameter of {owner} must be in [0, 1). Got {value!r} instead.")
    return float(value)


def _check_step(value: Any, owner: str) -> None:
    if value is not None and (
        not is_finite_number(value) or value <= 0
    ):
        raise PrunetuneError(f"The 'step' parameter of {owner} must be a number > 0 or null. Got {value!r} instead.")


def _dropped(model: nn.Module, path: str) -> bool:
    """Whether ``path`` or a module above it became ``nn.Identity`` (a drop section removed it)."""
    parts = path.split(".")
    for end in range(1, len(parts) + 1):
        try:
            module = model.get_submodule(".".join(parts[:end]))
        except AttributeError:
            return False
        if isinstance(module, nn.Identity):
            return True
    return False


def _not_dropped(model: nn.Module, entries: Mapping[str, Any]) -> dict[str, Any]:
    """The entries whose module an earlier ``drop`` section left in place: a searched plan names
    every layer of the base whatever its drop set, and a dropped layer has nothing left to prune."""
    return {path: value for path, value in entries.items() if not _dropped(model, path)}


def _values_by_unit(method: str, values: Mapping[str, Any]) -> dict[str, Any]:
    """Map ``{"<method>.<unit>": value}`` to ``{unit: value}``, ignoring other methods' names."""
    prefix = method + "."
    return {key[len(prefix):]: value for key, value in values.items() if key.startswith(prefix)}


class FilterPruning(PruningMethod):
    """Structured filter pruning: one removal ratio per unit.

    Section: ``{"criterion": "l1", "round_to": 1, "ratios": {"features.0": 0.5}}`` and, for the
    random criterion, an optional ``"seed"``. A unit an earlier ``drop`` section removed (its
    path, or a path above it, is now ``nn.Identity``) is skipped, so a searched plan may name
    every unit of the base whatever its drop set.

    Args:
        max_ratio: Upper bound of every ratio dimension (lowered per unit so none can empty it).
        criterion: Criterion name written into sections this method builds.
        round_to: Kept channel counts are multiples of this.
        step: Optional grid step of the ratio dimensions.
        seed: Seed written into sections, for the random criterion.
    """

    name: ClassVar[str] = "filters"
    KEYS: ClassVar[tuple[str, ...]] = ("criterion", "round_to", "ratios", "seed")

    def __init__(
        self,
        *,
        max_ratio: float = 0.9,
        criterion: str = "l1",
        round_to: int = 1,
        step: float | None = None,
        seed: int | None = None,
    ) -> None:
        self.max_ratio = max_ratio
        self.criterion = criterion
        self.round_to = round_to
        self.step = step
        self.seed = seed

    def check_options(self) -> None:
        _check_max_ratio(self.max_ratio, "FilterPruning")
        criterion = self.criterion
        if not isinstance(criterion, str) or criterion.strip().lower() not in CRITERIA:
            raise PrunetuneError(
                f"The 'criterion' parameter of FilterPruning must be one of {', '.join(CRITERIA)}. "
                f"Got {criterion!r} instead."
            )
        if isinstance(self.round_to, bool) or not isinstance(self.round_to, Integral) or self.round_to < 1:
            raise PrunetuneError(
                f"The 'round_to' parameter of FilterPruning must be an integer >= 1. Got {self.round_to!r} instead."
            )
        _check_step(self.step, "FilterPruning")
        if self.seed is not None and (isinstance(self.seed, bool) or not isinstance(self.seed, Integral)):
            raise PrunetuneError(f"The 'seed' parameter of FilterPruning must be an integer. Got {self.seed!r} instead.")

    def dimensions(self, model: nn.Module, example_inputs: ExampleInputs) -> list[Dimension]:
        """One float ratio in [0, high] per unit; units of one channel have nothing to search."""
        max_ratio = _check_max_ratio(self.max_ratio, "FilterPruning")
        dims = []
        for unit in discover_units(model, example_inputs):
            # (c - 1) / c removes c - 1 channels and keeps one; any more would empty the unit.
            high = min(max_ratio, (unit.channels - 1) / unit.channels)
            if high > 0:
                dims.append(
                    Dimension(
                        name=f"{self.name}.{unit.name}",
                        unit=unit.name,
                        kind="float",
                        low=0.0,
                        high=high,
                        step=self.step,
                    )
                )
        return dims

    def section(self, values: Mapping[str, Any]) -> dict[str, Any]:
        section: dict[str, Any] = {"criterion": self.criterion, "round_to": self.round_to}
        if self.seed is not None:
            section["seed"] = self.seed
        section["ratios"] = {unit: float(value) for unit, value in _values_by_unit(self.name, values).items()}
        return section

    def values(self, section: Mapping[str, Any]) -> dict[str, Any]:
        """``{"filters.<unit>": ratio}`` for the units the section names."""
        ratios = section.get("ratios", {}) if isinstance(section, Mapping) else None
        if not isinstance(ratios, Mapping):
            raise PrunetuneError(f"The 'ratios' of the {self.name!r} section must be a mapping. Got {ratios!r} instead.")
        return {f"{self.name}.{unit}": float(value) for unit, value in ratios.items()}

    def validate(self, section: Mapping[str, Any], model: nn.Module, example_inputs: ExampleInputs) -> None:
        _check_keys(section, self.name, self.KEYS, ("ratios",))
        criterion = section.get("criterion", "l1")
        if not isinstance(criterion, str) or criterion.strip().lower() not in CRITERIA:
            raise PrunetuneError(
                f"Unknown criterion {criterion!r} in the {self.name!r} section. "
                f"Known criteria: {', '.join(CRITERIA)}."
            )
        seed = section.get("seed", 0)
        if isinstance(seed, bool) or not isinstance(seed, Integral):
            raise PrunetuneError(
                f"The 'seed' of the {self.name!r} section must be an integer. Got {seed!r} instead."
            )
        round_to = check_round_to(section.get("round_to", 1))
        units = {unit.name: unit for unit in discover_units(model, example_inputs)}
        ratios = _check_names(section["ratios"], self.name, "ratios", list(units), "unit")
        for name, ratio in ratios.items():
            channels_to_remove(units[name].channels, ratio, round_to, unit=name)

    def apply(
        self,
        model: nn.Module,
        section: Mapping[str, Any],
        *,
        example_inputs: ExampleInputs,
        calibration: Iterable[tuple[Any, Any]] | None = None,
        loss_fn: LossFn | None = None,
    ) -> nn.Module:
        criterion = get_criterion(section.get("criterion", "l1"), seed=int(section.get("seed", 0)))
        prune_filters(
            model,
            _not_dropped(model, section["ratios"]),
            example_inputs=example_inputs,
            criterion=criterion,
            round_to=section.get("round_to", 1),
            calibration=calibration,
            loss_fn=loss_fn,
            cap=True,  # a unit narrowed by an earlier section (PCA widths) keeps round_to channels
        )
        return model


class WeightPruning(PruningMethod):
    """Unstructured magnitude pruning: one ratio or one sensitivity per conv/linear layer.

    Section: ``{"ratios": {"fc1": 0.9}}`` (fraction of weights zeroed) or
    ``{"sensitivities": {"fc1": 1.2}}`` (zero ``|w| < s * std``, Wu et al. 2021), and optionally
    the schedule of iterative pruning with recovery, which only a trial's fine-tuning carries out
    (``prunetune.objectives.recovery``; :meth:`apply` alone prunes at the final values at once):
    ``"iterations"`` (int >= 1, default 1: prune in that many steps with a brief fine-tune
    between), ``"recovery"`` (bool, default False: removed weights may come back during those
    fine-tunes), ``"regrow_fraction"`` (in [0, 0.5]; default 0.01 with recovery, 0 without: the
    share of removed weights re-enabled at random at each mask update), ``"update_every"``
    (int >= 1, default 10: optimizer steps between mask updates) and ``"seed"`` (of the regrowth).
    A layer an earlier ``drop`` section removed is skipped, as in :class:`FilterPruning`.

    Args:
        mode: ``"sensitivity"`` or ``"ratio"``: which of the two this method's dimensions search.
        max_ratio: Upper bound of ratio dimensions.
        max_sensitivity: Upper bound of sensitivity dimensions.
        step: Optional grid step of the dimensions.
        iterations, recovery, regrow_fraction, update_every, seed: Written into the sections this
            method builds (left out when not given or at their defaults).
    """

    name: ClassVar[str] = "weights"
    stage: ClassVar[str] = "prunetune.objectives.recovery:weights_stage"
    KEYS: ClassVar[tuple[str, ...]] = (
        "ratios", "sensitivities", "iterations", "recovery", "regrow_fraction", "update_every", "seed"
    )
    MODES: ClassVar[tuple[str, ...]] = ("sensitivity", "ratio")
    #: Default share of removed weights re-enabled at random at each mask update, with recovery.
    REGROW_FRACTION: ClassVar[float] = 0.01
    #: Default optimizer steps between two mask updates, with recovery.
    UPDATE_EVERY: ClassVar[int] = 10

    def __init__(
        self,
        *,
        mode: str = "sensitivity",
        max_ratio: float = 0.9,
        max_sensitivity: float = 2.0,
        step: float | None = None,
        iterations: int = 1,
        recovery: bool = False,
        regrow_fraction: float | None = None,
        update_every: int | None = None,
        seed: int | None = None,
    ) -> None:
        self.mode = mode
        self.max_ratio = max_ratio
        self.max_sensitivity = max_sensitivity
        self.step = step
        self.iterations = iterations
        self.recovery = recovery
        self.regrow_fraction = regrow_fraction
        self.update_every = update_every
        self.seed = seed

    def check_options(self) -> None:
        self.section({})  # checks the mode, the bound and the schedule options
        _check_step(self.step, "WeightPruning")

    def _high(self) -> float:
        if self.mode not in self.MODES:
            raise PrunetuneError(
                f"The 'mode' parameter of WeightPruning must be one of {', '.join(self.MODES)}. "
                f"Got {self.mode!r} instead."
            )
        if self.mode == "ratio":
            return _check_max_ratio(self.max_ratio, "WeightPruning")
        high = self.max_sensitivity
        if not is_finite_number(high) or high < 0:
            raise PrunetuneError(
                "The 'max_sensitivity' parameter of WeightPruning must be a finite number >= 0. "
                f"Got {high!r} instead."
            )
        return float(high)

    def dimensions(self, model: nn.Module, example_inputs: ExampleInputs) -> list[Dimension]:
        """One float per conv/linear layer, output layers included: zeroed weights keep every shape.

        A sensitivity's bound is lowered per layer to just under ``max |w| / std``, where the
        threshold reaches the layer's largest weight: any higher would zero the whole layer.
        """
        high = self._high()
        limits = sensitivity_limits(model) if self.mode == "sensitivity" else {}
        return [
            Dimension(
                name=f"{self.name}.{layer}",
                unit=layer,
                kind="float",
                low=0.0,
                high=min(high, limits.get(layer, high)),
                step=self.step,
            )
            for layer in prunable_weight_layers(model)
        ]

    def section(self, values: Mapping[str, Any]) -> dict[str, Any]:
        self._high()
        key = "ratios" if self.mode == "ratio" else "sensitivities"
        section: dict[str, Any] = {
            key: {layer: float(value) for layer, value in _values_by_unit(self.name, values).items()}
        }
        options = {
            "iterations": None if self.iterations == 1 and not isinstance(self.iterations, bool) else self.iterations,
            "recovery": None if self.recovery is False else self.recovery,
            "regrow_fraction": self.regrow_fraction,
            "update_every": self.update_every,
            "seed": self.seed,
        }
        section.update((name, value) for name, value in options.items() if value is not None)
        self.check_schedule(section, "parameter of WeightPruning")
        return section

    @classmethod
    def schedule(cls, section: Mapping[str, Any]) -> dict[str, Any]:
        """The section's schedule with defaults filled in: iterations, recovery, regrow_fraction, update_every, seed."""
        recovery = bool(section.get("recovery", False))
        return {
            "iterations": int(section.get("iterations", 1)),
            "recovery": recovery,
            "regrow_fraction": float(section.get("regrow_fraction", cls.REGROW_FRACTION if recovery else 0.0)),
            "update_every": int(section.get("update_every", cls.UPDATE_EVERY)),
            "seed": int(section.get("seed", 0)),
        }

    @classmethod
    def check_schedule(cls, section: Mapping[str, Any], where: str) -> None:
        """Raise :class:`PrunetuneError` for a bad schedule key; ``where`` says whose ('of the 'weights' section')."""

        def integer(name: str, low: int) -> None:
            value = section[name]
            if isinstance(value, bool) or not isinstance(value, Integral) or value < low:
                raise PrunetuneError(f"The {name!r} {where} must be an integer >= {low}. Got {value!r} instead.")

        for name in ("iterations", "update_every"):
            if name in section:
                integer(name, 1)
        if "seed" in section:
            integer("seed", 0)
        recovery = section.get("recovery", False)
        if not isinstance(recovery, bool):
            raise PrunetuneError(f"The 'recovery' {where} must be true or false. Got {recovery!r} instead.")
        fraction = section.get("regrow_fraction", 0.0)
        if isinstance(fraction, bool) or not isinstance(fraction, Real) or not 0.0 <= float(fraction) <= 0.5:
            raise PrunetuneError(f"The 'regrow_fraction' {where} must be in [0, 0.5]. Got {fraction!r} instead.")
        if not recovery:
            for name in ("regrow_fraction", "update_every"):
                if name in section and not (name == "regrow_fraction" and float(section[name]) == 0.0):
                    raise PrunetuneError(
                        f"The {name!r} {where} applies only with recovery: set 'recovery' to true or leave "
                        f"{name!r} out. Got {name}={section[name]!r} with recovery off instead."
                    )

    def values(self, section: Mapping[str, Any]) -> dict[str, Any]:
        """``{"weights.<layer>": value}`` from the key this method's mode searches."""
        self._high()
        key = "ratios" if self.mode == "ratio" else "sensitivities"
        other = "sensitivities" if key == "ratios" else "ratios"
        if not isinstance(section, Mapping) or (other in section and key not in section):
            raise PrunetuneError(
                f"The {self.name!r} section must give {key!r}: this method searches in {self.mode} mode. "
                f"Got {section!r} instead."
            )
        layers = section.get(key, {})
        if not isinstance(layers, Mapping):
            raise PrunetuneError(f"The {key!r} of the {self.name!r} section must be a mapping. Got {layers!r} instead.")
        return {f"{self.name}.{layer}": float(value) for layer, value in layers.items()}

    def validate(self, section: Mapping[str, Any], model: nn.Module, example_inputs: ExampleInputs) -> None:
        _check_keys(section, self.name, self.KEYS, ())
        self.check_schedule(section, f"of the {self.name!r} section")
        present = [key for key in ("ratios", "sensitivities") if key in section]
        if len(present) != 1:
            raise PrunetuneError(
                f"The {self.name!r} section needs exactly one of 'ratios' and 'sensitivities'. "
                f"Got {', '.join(present) or 'neither'} instead."
            )
        key = present[0]
        values = _check_names(section[key], self.name, key, prunable_weight_layers(model), "layer")
        for layer, value in values.items():
            if key == "ratios":
                check_ratio(value, layer, what="layer")
            elif not is_finite_number(value) or value < 0:
                raise PrunetuneError(
                    f"The sensitivity of layer {layer!r} must be a finite number >= 0. Got {value!r} instead."
                )
        # A threshold above every weight would zero a layer: find out on copies of the named layers.
        apply_weight_masks(_copy_layers(model, list(values)), **{key: values})

    def apply(
        self,
        model: nn.Module,
        section: Mapping[str, Any],
        *,
        example_inputs: ExampleInputs,
        calibration: Iterable[tuple[Any, Any]] | None = None,
        loss_fn: LossFn | None = None,
    ) -> nn.Module:
        key = "ratios" if "ratios" in section else "sensitivities"
        apply_weight_masks(model, **{key: _not_dropped(model, section[key])})
        return model


def _copy_layers(model: nn.Module, paths: list[str]) -> nn.Module:
    """A throwaway module holding copies of ``model``'s layers at the same paths."""
    layers = dict(model.named_modules())
    shell = nn.Module()
    for path in paths:
        parent = shell
        *parents, leaf = path.split(".")
        for part in parents:
            if not hasattr(parent, part):
                parent.add_module(part, nn.Module())
            parent = getattr(parent, part)
        parent.add_module(leaf, copy.deepcopy(layers[path]))
    return shell
