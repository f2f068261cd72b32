"""Out-of-order filter pruning: units pruned one at a time in a searched order (Anik, Kelso, Lee 2024).

The paper prunes conv layers one after another, fine-tuning after each, in the order of their
sensitivity rather than their depth, until an accuracy budget is spent. Here the order is a search
dimension: one priority in [0, 1] per unit, and the units are pruned by ascending priority (ties
by registration order). Optionally the per-unit ratio is searched too.

Dimension names: ``order.<unit>`` for priorities and ``order_ratio.<unit>`` for ratios. Unit paths
contain dots, so the two kinds get different prefixes rather than a suffix or infix that a unit
path could also contain.

This module is pure surgery (:meth:`OrderedPruning.apply` prunes ``sequence[:steps]`` one unit at a
time, no training). The fine-tune between units and the budget check are the stage
:func:`prunetune.objectives.ordered.order_stage`, which records how many units it pruned as
``steps`` so the plan as applied re-creates the architecture.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from numbers import Integral, Real
from typing import Any, ClassVar

from torch import nn

from prunetune.errors import PrunetuneError, is_finite_number
from prunetune.pruners.calls import ExampleInputs
from prunetune.pruners.criteria import CRITERIA, get_criterion
from prunetune.pruners.methods import (
    Dimension,
    PruningMethod,
    _check_keys,
    _check_max_ratio,
    _values_by_unit,
)
from prunetune.pruners.structured import LossFn, channels_to_remove, check_ratio, check_round_to, prune_filters
from prunetune.pruners.units import discover_units

__all__ = ["DEFAULT_FINETUNE_STEPS", "RATIO_PREFIX", "OrderedPruning", "prune_in_order"]

#: Prefix of the per-unit ratio dimensions (``order_ratio.<unit>``).
RATIO_PREFIX = "order_ratio"
#: Fine-tuning batches after each unit in the stage, unless the section says otherwise.
DEFAULT_FINETUNE_STEPS = 20


class OrderedPruning(PruningMethod):
    """Filter pruning one unit at a time, in an order set by searched priorities.

    Section::

        {"sequence": ["features.3", "features.0"],      # pruning order
         "ratios": {"features.3": 0.5, "features.0": 0.5},
         "criterion": "l1", "round_to": 1,
         "budget": 1.0,            # accuracy drop (pp) the stage may spend; it stops before exceeding it
         "steps": None,            # None: prune while the budget lasts; N: exactly the first N units
         "finetune_steps": 20}     # fine-tuning batches after each unit in the stage (0: BN only)

    and, for the random criterion, an optional ``"seed"``.

    Args:
        ratio: Removal ratio of every unit when ratios are not searched (a ratio that would empty a
            unit of two or three channels makes the plan invalid).
        criterion: Criterion name written into sections.
        budget: Accuracy budget in percentage points written into sections.
        round_to: Kept channel counts are multiples of this.
        search_ratios: Also search one ratio per unit (``order_ratio.<unit>``).
        max_ratio: Upper bound of the searched ratios.
        finetune_steps: Fine-tuning batches after each unit, written into sections.
        seed: Seed written into sections, for the random criterion.
    """

    name: ClassVar[str] = "order"
    stage: ClassVar[str] = "prunetune.objectives.ordered:order_stage"
    KEYS: ClassVar[tuple[str, ...]] = (
        "sequence",
        "ratios",
        "criterion",
        "round_to",
        "budget",
        "steps",
        "finetune_steps",
        "seed",
    )

    def __init__(
        self,
        *,
        ratio: float = 0.5,
        criterion: str = "l1",
        budget: float = 1.0,
        round_to: int = 1,
        search_ratios: bool = False,
        max_ratio: float = 0.9,
        finetune_steps: int = DEFAULT_FINETUNE_STEPS,
        seed: int | None = None,
    ) -> None:
        self.ratio = ratio
        self.criterion = criterion
        self.budget = budget
        self.round_to = round_to
        self.search_ratios = search_ratios
        self.max_ratio = max_ratio
        self.finetune_steps = finetune_steps
        self.seed = seed

    def dimensions(self, model: nn.Module, example_inputs: ExampleInputs) -> list[Dimension]:
        """A priority in [0, 1] per unit of two or more channels; with ``search_ratios`` also its ratio."""
        self.check_options()
        max_ratio = _check_max_ratio(self.max_ratio, "OrderedPruning")
        units = [unit for unit in discover_units(model, example_inputs) if unit.channels > 1]
        dims = [Dimension(name=f"{self.name}.{u.name}", unit=u.name, kind="float", low=0.0, high=1.0) for u in units]
        if self.search_ratios:
            dims += [
                Dimension(
                    name=f"{RATIO_PREFIX}.{u.name}",
                    unit=u.name,
                    kind="float",
                    low=0.0,
                    high=min(max_ratio, (u.channels - 1) / u.channels),
                )
                for u in units
            ]
        return dims

    def section(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """Units sorted by ascending priority (ties by the order of ``values``, i.e. registration)."""
        self.check_options()
        priorities = _values_by_unit(self.name, values)
        position = {unit: index for index, unit in enumerate(priorities)}
        sequence = sorted(priorities, key=lambda unit: (float(priorities[unit]), position[unit]))
        if self.search_ratios:
            searched = _values_by_unit(RATIO_PREFIX, values)
            missing = [unit for unit in sequence if unit not in searched]
            if missing:
                raise PrunetuneError(f"No {RATIO_PREFIX!r} value for unit {missing[0]!r}.")
            ratios = {unit: float(searched[unit]) for unit in sequence}
        else:
            ratios = {unit: float(self.ratio) for unit in sequence}
        section: dict[str, Any] = {
            "sequence": sequence,
            "ratios": ratios,
            "criterion": self.criterion,
            "round_to": self.round_to,
            "budget": float(self.budget),
            "steps": None,
            "finetune_steps": self.finetune_steps,
        }
        if self.seed is not None:
            section["seed"] = self.seed
        return section

    def values(self, section: Mapping[str, Any]) -> dict[str, Any]:
        """Priorities ``i / (n - 1)`` by position in the sequence, and the ratios when they are searched."""
        sequence = section.get("sequence") if isinstance(section, Mapping) else None
        if not isinstance(sequence, (list, tuple)):
            raise PrunetuneError(f"The 'sequence' of the {self.name!r} section must be a list. Got {sequence!r} instead.")
        last = max(len(sequence) - 1, 1)
        values: dict[str, Any] = {f"{self.name}.{unit}": index / last for index, unit in enumerate(sequence)}
        if self.search_ratios:
            ratios = section.get("ratios", {})
            if not isinstance(ratios, Mapping):
                raise PrunetuneError(f"The 'ratios' of the {self.name!r} section must be a mapping. Got {ratios!r} instead.")
            values.update({f"{RATIO_PREFIX}.{unit}": float(ratio) for unit, ratio in ratios.items()})
        return values

    def validate(self, section: Mapping[str, Any], model: nn.Module, example_inputs: ExampleInputs) -> None:
        _check_keys(section, self.name, self.KEYS, ("sequence", "ratios"))
        sequence = section["sequence"]
        if not isinstance(sequence, (list, tuple)) or not all(isinstance(unit, str) for unit in sequence):
            raise PrunetuneError(
                f"The 'sequence' of the {self.name!r} section must be a list of unit names. Got {sequence!r} instead."
            )
        repeated = sorted({unit for unit in sequence if sequence.count(unit) > 1})
        if repeated:
            raise PrunetuneError(f"Unit {repeated[0]!r} appears more than once in the 'sequence' of the {self.name!r} section.")
        units = {unit.name: unit for unit in discover_units(model, example_inputs)}
        for unit in sequence:
            if unit not in units:
                raise PrunetuneError(
                    f"Unknown unit {unit!r} in the {self.name!r} section. Available units: {', '.join(units) or '(none)'}."
                )
        ratios = section["ratios"]
        if not isinstance(ratios, Mapping):
            raise PrunetuneError(
                f"The 'ratios' of the {self.name!r} section must map unit names to numbers. Got {ratios!r} instead."
            )
        extra = [unit for unit in ratios if unit not in sequence]
        if extra:
            raise PrunetuneError(f"Unit {extra[0]!r} has a ratio in the {self.name!r} section but is not in its 'sequence'.")
        missing = [unit for unit in sequence if unit not in ratios]
        if missing:
            raise PrunetuneError(f"Unit {missing[0]!r} is in the 'sequence' of the {self.name!r} section but has no ratio.")
        criterion = section.get("criterion", "l1")
        if not isinstance(criterion, str) or criterion.strip().lower() not in CRITERIA:
            raise PrunetuneError(
                f"Unknown criterion {criterion!r} in the {self.name!r} section. Known criteria: {', '.join(CRITERIA)}."
            )
        round_to = check_round_to(section.get("round_to", 1))
        for unit in sequence:
            channels_to_remove(units[unit].channels, check_ratio(ratios[unit], unit), round_to, unit=unit)
        _check_number(section.get("budget", 0.0), "budget", "a finite number >= 0 (percentage points)")
        steps = section.get("steps")
        if steps is not None and (isinstance(steps, bool) or not isinstance(steps, Integral) or not 0 <= steps <= len(sequence)):
            raise PrunetuneError(
                f"The 'steps' of the {self.name!r} section must be null or an integer in [0, {len(sequence)}]. "
                f"Got {steps!r} instead."
            )
        for key in ("finetune_steps", "seed"):
            value = section.get(key, 0)
            if isinstance(value, bool) or not isinstance(value, Integral) or value < 0:
                raise PrunetuneError(
                    f"The {key!r} of the {self.name!r} section must be an integer >= 0. Got {value!r} instead."
                )

    def apply(
        self,
        model: nn.Module,
        section: Mapping[str, Any],
        *,
        example_inputs: ExampleInputs,
        calibration: Iterable[tuple[Any, Any]] | None = None,
        loss_fn: LossFn | None = None,
    ) -> nn.Module:
        """Prune ``sequence[:steps]`` (all when ``steps`` is None) one unit at a time, without training."""
        steps = section.get("steps")
        sequence = list(section["sequence"])[: len(section["sequence"]) if steps is None else int(steps)]
        prune_in_order(model, section, sequence, example_inputs=example_inputs, calibration=calibration, loss_fn=loss_fn)
        return model

    def check_options(self) -> None:
        """Raise :class:`PrunetuneError` for a bad constructor option (before any model is read)."""
        if self.search_ratios not in (True, False):
            raise PrunetuneError(
                f"The 'search_ratios' parameter of OrderedPruning must be true or false. Got {self.search_ratios!r} instead."
            )
        if not self.search_ratios:
            if isinstance(self.ratio, bool) or not isinstance(self.ratio, Real) or not 0.0 <= float(self.ratio) < 1.0:
                raise PrunetuneError(f"The 'ratio' parameter of OrderedPruning must be in [0, 1). Got {self.ratio!r} instead.")
        if isinstance(self.criterion, bool) or not isinstance(self.criterion, str) or self.criterion.strip().lower() not in CRITERIA:
            raise PrunetuneError(
                f"The 'criterion' parameter of OrderedPruning must be one of {', '.join(CRITERIA)}. Got {self.criterion!r} instead."
            )
        if not is_finite_number(self.budget) or self.budget < 0:
            raise PrunetuneError(
                f"The 'budget' parameter of OrderedPruning must be a finite number >= 0 (percentage points). Got {self.budget!r} instead."
            )
        check_round_to(self.round_to)
        if isinstance(self.finetune_steps, bool) or not isinstance(self.finetune_steps, Integral) or self.finetune_steps < 0:
            raise PrunetuneError(
                f"The 'finetune_steps' parameter of OrderedPruning must be an integer >= 0. Got {self.finetune_steps!r} instead."
            )


def prune_in_order(
    model: nn.Module,
    section: Mapping[str, Any],
    units: Iterable[str],
    *,
    example_inputs: ExampleInputs,
    calibration: Iterable[tuple[Any, Any]] | None = None,
    loss_fn: LossFn | None = None,
) -> None:
    """Prune ``units`` of ``model`` in place, one after another, by the section's ratios and criterion.

    Each unit is scored on the network as the earlier units left it, so the order changes which
    channels go.
    """
    criterion = get_criterion(section.get("criterion", "l1"), seed=int(section.get("seed", 0)))
    round_to = section.get("round_to", 1)
    for unit in units:
        prune_filters(
            model,
            {unit: section["ratios"][unit]},
            example_inputs=example_inputs,
            criterion=criterion,
            round_to=round_to,
            calibration=calibration,
            loss_fn=loss_fn,
        )


def _check_number(value: Any, key: str, allowed: str) -> float:
    if not is_finite_number(value) or value < 0:
        raise PrunetuneError(f"The {key!r} of the 'order' section must be {allowed}. Got {value!r} instead.")
    return float(value)
