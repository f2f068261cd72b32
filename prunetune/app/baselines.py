"""Baselines beside a search: the experiment key ``search.baselines`` and ``prunetune baseline``.

Each entry names a baseline and, optionally, its points (``"uniform"``, ``"global:0.3,0.5"``):

``uniform``
    One ratio in every unit of the 'filters' method (or, without it, in every layer of 'weights').
``global``
    Torch-Pruning's global ranking of filters; the point is the share of all unit channels removed.
``global-magnitude``, ``lamp``
    One magnitude threshold, or LAMP's scores, over every layer of the 'weights' method; the point
    is the share of all their weights zeroed.

Without points, filter baselines take ratios 0.1 to 0.8 and weight baselines sparsities 0.5 to
0.98. Every plan is taken within the search space's bounds (its ``max_ratio``,
``max_sensitivity``), so baselines and search compete in one space. They run after the search,
through the same executor, into the same study, labelled (``uniform:0.5``); they never count
towards the search's budget, and a resume skips those already recorded.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from prunetune.errors import PrunetuneError

if TYPE_CHECKING:
    from torch import nn

    from prunetune.search.space import SearchSpace

__all__ = ["BASELINES", "baseline_points", "check_baselines"]

#: Baseline -> the methods it prunes with (the first one present is used).
BASELINES: dict[str, tuple[str, ...]] = {
    "uniform": ("filters", "weights"),
    "global": ("filters",),
    "global-magnitude": ("weights",),
    "lamp": ("weights",),
}
FILTER_RATIOS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)
SPARSITIES = (0.5, 0.7, 0.8, 0.9, 0.95, 0.98)
#: Methods a baseline plan may leave out of its plan: their lowest value leaves the model whole.
LEFT_WHOLE = ("filters", "weights", "drop")


def check_baselines(entries: Any, methods: Mapping[str, Any] | None = None) -> list[tuple[str, tuple[float, ...] | None]]:
    """Parse ``search.baselines`` without any model: ``[(name, points or None)]``, or a PrunetuneError.

    With ``methods`` (the experiment's), a baseline needs one of its methods in the search, and every
    searched method must be one a baseline plan can leave out (filters, weights, drop).
    """
    if not isinstance(entries, (list, tuple)):
        raise PrunetuneError(f"The 'search.baselines' key must be a list such as [uniform, global]. Got {entries!r} instead.")
    parsed: list[tuple[str, tuple[float, ...] | None]] = []
    for index, entry in enumerate(entries):
        where = f"search.baselines[{index}]"
        name, sep, text = str(entry).strip().partition(":") if isinstance(entry, str) else ("", "", "")
        if name not in BASELINES:
            raise PrunetuneError(
                f"The '{where}' entry must be one of {', '.join(BASELINES)} (optionally with points, 'uniform:0.3,0.5'). "
                f"Got {entry!r} instead."
            )
        points = _points(text, where, entry) if sep else None
        if methods is not None:
            if not any(method in methods for method in BASELINES[name]):
                raise PrunetuneError(
                    f"The '{where}' baseline {name!r} needs the {' or '.join(repr(m) for m in BASELINES[name])} method "
                    f"in 'methods'. Got {', '.join(methods) or 'none'} instead."
                )
            others = [method for method in methods if method not in LEFT_WHOLE]
            if others:
                raise PrunetuneError(
                    f"The 'search.baselines' key works with the filters, weights and drop methods; this experiment "
                    f"also searches {', '.join(repr(m) for m in others)}, which a baseline plan cannot leave out."
                )
        parsed.append((name, points))
    return parsed


def _points(text: str, where: str, entry: Any) -> tuple[float, ...]:
    try:
        points = tuple(float(part) for part in text.split(","))
    except ValueError:
        points = ()
    if not points or not all(0.0 < point < 1.0 for point in points):
        raise PrunetuneError(f"The '{where}' entry {entry!r} needs points in (0, 1), comma-separated ('uniform:0.3,0.5').")
    return points


def baseline_points(
    entries: Sequence[Any], base: nn.Module, example_inputs: Any, space: SearchSpace
) -> list[tuple[str, dict[str, Any]]]:
    """``[(label, params)]`` of every baseline point: labels such as ``global:0.5``, parameters of ``space``."""
    from prunetune.pruners import Plan

    found = []
    for name, given in check_baselines(list(entries), space.methods):
        method = next(m for m in BASELINES[name] if m in space.methods)
        if method in space.shared and name != "uniform":
            raise PrunetuneError(
                f"The baseline {name!r} sets one ratio per unit, but 'methods.{method}' is searched with shared: true "
                "(one value for all units): leave 'shared' out, or use the 'uniform' baseline."
            )
        for point in given or (FILTER_RATIOS if method == "filters" else SPARSITIES):
            ratios = _ratios(name, method, point, base, example_inputs, space)
            section = space.methods[method].section(_values(method, ratios, base, space))
            found.append((f"{name}:{point:g}", space.params_for(Plan({method: section}))))
    return found


def _ratios(name: str, method: str, point: float, base: nn.Module, example_inputs: Any, space: SearchSpace) -> dict[str, float]:
    from prunetune.pruners.baselines import global_filter_ratios, global_magnitude_ratios, lamp_ratios, uniform_ratios

    dims = space.dimensions[method]
    if name == "uniform":
        return uniform_ratios({dim.unit: dim.high if method == "filters" else 1.0 for dim in dims}, point)
    if name == "global":
        filters = space.methods["filters"]
        p = 2 if str(filters.criterion).lower() == "l2" else 1
        return global_filter_ratios(base, example_inputs, point, p=p, max_ratio=float(filters.max_ratio), round_to=int(filters.round_to))
    layers = [dim.unit for dim in dims]
    return (lamp_ratios if name == "lamp" else global_magnitude_ratios)(base, point, layers)


def _values(method: str, ratios: Mapping[str, float], base: nn.Module, space: SearchSpace) -> dict[str, float]:
    """The method's parameter values for per-unit ratios, within the space's bounds."""
    from prunetune.pruners.baselines import sensitivities_for_ratios

    if method == "weights" and space.methods["weights"].mode == "sensitivity":
        ratios = sensitivities_for_ratios(base, ratios)
    highs = {dim.unit: dim.high for dim in space.dimensions[method]}
    return {f"{method}.{unit}": min(float(value), float(highs[unit])) for unit, value in ratios.items() if unit in highs}
