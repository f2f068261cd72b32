"""Start points: known plans a search evaluates first (the experiment key ``search.start_from``).

A search need not start blind. The papers' own heuristics make good first trials, and a sampler
that learns from completed trials (TPE, GP, Optuna's NSGA-II) starts from them. Each entry of
``search.start_from`` is a plan (a mapping, as ``prunetune prune --plan`` takes) or a name:

``sensitivity-order``
    The heuristic of Anik, Kelso and Lee (2024): a quick sensitivity analysis (BN recalibration
    only) of every unit at the 'order' method's ratio, and an 'order' plan pruning the units least
    sensitive first.
``uniform:R``
    Every 'filters' and 'order' ratio R (capped per unit), units ordered by depth: the hand-set
    baseline.
``dlp-drop`` or ``dlp-drop:N``
    The N (default 1) least discriminative units dropped (Jordao et al. 2020), ranked by
    :func:`prunetune.pruners.discriminative.dlp_ranking`.

The runner turns each plan into parameters with :meth:`SearchSpace.params_for` and, before the
first trial of a fresh run (never on resume), enqueues them, or hands them to a sampler that takes
start points itself (``scipy-de``); either way they are the first trials, count towards the trial
budget, and every population sampler puts them into its first generation and breeds from them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from prunetune.errors import PrunetuneError

if TYPE_CHECKING:
    from torch import nn

    from prunetune.pruners import Plan
    from prunetune.search.space import SearchSpace
    from prunetune.zoo.datasets import DataSplits

__all__ = ["START_NAMES", "check_start_from", "start_plans"]

#: The named start points (``uniform`` and ``dlp-drop`` take ``:R`` / ``:N``).
START_NAMES = ("sensitivity-order", "uniform:R", "dlp-drop", "dlp-drop:N")
#: Training batches the discriminative ranking projects.
DLP_BATCHES = 8


#: The methods a named start point needs (one of them) in the experiment's ``methods``.
NEEDS = {"sensitivity-order": ("order",), "uniform": ("filters", "order"), "dlp-drop": ("drop",)}


def check_start_from(entries: Any, methods: Mapping[str, Any] | None = None) -> list[tuple[str, Any]]:
    """Parse ``search.start_from`` without any model: ``[(kind, argument)]`` or a PrunetuneError.

    Kinds: ``("plan", dict)``, ``("sensitivity-order", None)``, ``("uniform", R)``, ``("dlp-drop", N)``.
    With ``methods`` (the experiment's), a name whose method is not searched is an error too.
    """
    if not isinstance(entries, (list, tuple)):
        raise PrunetuneError(f"The 'search.start_from' key must be a list. Got {entries!r} instead.")
    parsed = []
    for index, entry in enumerate(entries):
        where = f"search.start_from[{index}]"
        if isinstance(entry, Mapping):
            bad = [name for name, section in entry.items() if not isinstance(name, str) or not isinstance(section, Mapping)]
            if not entry or bad:
                raise PrunetuneError(
                    f"The '{where}' plan must map method names to sections (mappings). Got {entry!r} instead."
                )
            parsed.append(("plan", dict(entry)))
        elif isinstance(entry, str):
            kind, argument = _parse_name(entry.strip(), where)
            needed = NEEDS[kind]
            if methods is not None and not any(name in methods for name in needed):
                raise PrunetuneError(
                    f"The '{where}' start point {entry!r} needs the {' or '.join(repr(n) for n in needed)} method "
                    f"in 'methods'. Got {', '.join(methods) or 'none'} instead."
                )
            parsed.append((kind, argument))
        else:
            raise PrunetuneError(
                f"The '{where}' entry must be a plan (a mapping) or one of {', '.join(START_NAMES)}. Got {entry!r} instead."
            )
    return parsed


def _parse_name(text: str, where: str) -> tuple[str, Any]:
    name, sep, argument = text.partition(":")
    if name == "sensitivity-order" and not sep:
        return name, None
    if name == "uniform" and sep:
        try:
            ratio = float(argument)
        except ValueError:
            ratio = math.nan
        if not 0.0 <= ratio < 1.0:
            raise PrunetuneError(f"The '{where}' entry {text!r} needs a ratio R in [0, 1) ('uniform:0.3').")
        return name, ratio
    if name == "dlp-drop":
        if not sep:
            return name, 1
        if argument.strip().isdigit() and int(argument) >= 1:
            return name, int(argument)
        raise PrunetuneError(f"The '{where}' entry {text!r} needs a whole number N >= 1 ('dlp-drop:2').")
    raise PrunetuneError(
        f"Unknown start point {text!r} in '{where}'. Known: a plan (mapping), {', '.join(START_NAMES)}."
    )


def start_plans(
    entries: Sequence[Any],
    base: nn.Module,
    data: DataSplits,
    methods_config: Mapping[str, Mapping[str, Any] | None] | SearchSpace,
    *,
    batch_size: int = 64,
    bn_recalibration_batches: int | None = None,
    seed: int = 0,
    echo: Callable[[str], None] | None = None,
) -> list[Plan]:
    """The plans of ``search.start_from`` for ``base``, each checked against the model.

    Args:
        entries: Plans (mappings) and names (see the module's docstring).
        base: The trained base model.
        data: Its data (the sensitivity analysis and the discriminative ranking read it).
        methods_config: The experiment's ``methods`` (or the search space built from them).
        batch_size: Batch size of the quick analyses.
        bn_recalibration_batches: BN recalibration of the sensitivity analysis (None: the default).
        seed: Orders the batches of the quick analyses.
        echo: Receives one line per start point.
    """
    import torch

    from prunetune.pruners import Plan
    from prunetune.search.space import SearchSpace

    example = torch.zeros(1, *data.input_shape)
    space = methods_config if isinstance(methods_config, SearchSpace) else SearchSpace.for_model(base, example, methods_config)
    plans = []
    for kind, argument in check_start_from(list(entries)):
        if kind == "plan":
            plan = Plan.from_dict(argument)
        elif kind == "uniform":
            plan = _uniform(space, argument)
        elif kind == "sensitivity-order":
            plan = _sensitivity_order(space, base, data, batch_size, bn_recalibration_batches, seed)
        else:
            plan = _dlp_drop(space, base, data, argument, batch_size, seed)
        plan.validate(base, example)
        space.params_for(plan)  # a plan the space cannot express fails here, before any trial
        plans.append(plan)
        if echo is not None:
            label = kind if argument is None or kind == "plan" else f"{kind}:{argument:g}"
            echo(f"start point {len(plans)}: {label}")
    return plans


def _registration_priorities(method: Any, dims: Sequence[Any], order: Sequence[str] | None = None) -> dict[str, float]:
    """Priorities ``i / (n - 1)`` for the method's priority dimensions, in ``order`` (default: registration)."""
    units = [dim.unit for dim in dims if dim.name == f"{method.name}.{dim.unit}"]
    sequence = list(order) if order is not None else units
    last = max(len(sequence) - 1, 1)
    return {f"{method.name}.{unit}": index / last for index, unit in enumerate(sequence)}


def _ratios(dims: Sequence[Any], ratio: float, prefix: str) -> dict[str, float]:
    return {dim.name: min(ratio, dim.high) for dim in dims if dim.name.startswith(prefix + ".")}


def _uniform(space: SearchSpace, ratio: float) -> Plan:
    from prunetune.pruners import Plan
    from prunetune.pruners.ordering import RATIO_PREFIX

    sections = {}
    if "filters" in space.methods:
        sections["filters"] = space.methods["filters"].section(_ratios(space.dimensions["filters"], ratio, "filters"))
    if "order" in space.methods:
        method, dims = space.methods["order"], space.dimensions["order"]
        values = {**_registration_priorities(method, dims), **_ratios(dims, ratio, RATIO_PREFIX)}
        sections["order"] = method.section(values)  # without search_ratios, the method's own ratio
    if not sections:
        raise PrunetuneError("The start point 'uniform:R' needs the 'filters' or 'order' method in 'methods'.")
    return Plan(sections)


def _sensitivity_order(
    space: SearchSpace, base: nn.Module, data: DataSplits, batch_size: int, bn_batches: int | None, seed: int
) -> Plan:
    from prunetune.objectives.sensitivity import sensitivity_analysis
    from prunetune.objectives.training import TrainConfig
    from prunetune.pruners import Plan
    from prunetune.pruners.ordering import RATIO_PREFIX

    if "order" not in space.methods:
        raise PrunetuneError("The start point 'sensitivity-order' needs the 'order' method in 'methods'.")
    method, dims = space.methods["order"], space.dimensions["order"]
    ratio = method.ratio
    units = [dim.unit for dim in dims if dim.name == f"{method.name}.{dim.unit}"]
    table = sensitivity_analysis(
        base, data, method="filters", ratios=(ratio,), batch_size=batch_size,
        bn_recalibration_batches=bn_batches, criterion=method.criterion, units=units,
        finetune=TrainConfig(epochs=0, seed=seed),  # no training; the seed orders the BN batches
    )
    values = {**_registration_priorities(method, dims, table.order(ratio)), **_ratios(dims, ratio, RATIO_PREFIX)}
    return Plan({method.name: method.section(values)})


def _dlp_drop(space: SearchSpace, base: nn.Module, data: DataSplits, count: int, batch_size: int, seed: int) -> Plan:
    import itertools

    import torch

    from prunetune.pruners import Plan

    if "drop" not in space.methods:
        raise PrunetuneError("The start point 'dlp-drop' needs the 'drop' method in 'methods'.")
    try:
        from prunetune.pruners.discriminative import dlp_drop_set, dlp_ranking
    except ImportError as error:
        raise PrunetuneError(f"The start point 'dlp-drop' needs prunetune.pruners.discriminative: {error}") from error
    example = torch.zeros(1, *data.input_shape)
    batches = list(itertools.islice(data.loaders(batch_size, seed=seed).train, DLP_BATCHES))
    ranking = dlp_ranking(base, batches)
    dropped = dlp_drop_set(base, example, ranking, drop=count)
    method, dims = space.methods["drop"], space.dimensions["drop"]
    if isinstance(dropped, Mapping):
        return Plan({method.name: dict(dropped)})
    chosen = set(dropped)
    values = {dim.name: (dim.unit in chosen) if dim.kind == "bool" else dim.low for dim in dims}
    return Plan({method.name: method.section(values)})
