"""Structured filter pruning: physically remove output channels of units, in place.

Torch-Pruning does the surgery: its dependency graph is built once, and each unit's group is
pruned through it, so coupled layers (batch norms, residual additions, the flatten into a linear
layer) shrink together and the model stays runnable.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from numbers import Integral, Real
from typing import Any

import torch
import torch.nn.functional as F
import torch_pruning as tp
from torch import nn

from prunetune.errors import PrunetuneError
from prunetune.runtime import to_device
from prunetune.pruners.criteria import Criterion, get_criterion
from prunetune.pruners.calls import ExampleInputs, forward
from prunetune.pruners.units import UnitGroup, build_graph, unit_groups

__all__ = ["LossFn", "channels_to_remove", "check_ratio", "check_round_to", "prune_filters"]

#: ``loss_fn(outputs, targets) -> scalar`` for the calibration pass of gradient criteria.
LossFn = Callable[[Any, Any], torch.Tensor]


def check_ratio(ratio: Any, unit: str, *, what: str = "unit") -> float:
    """Return ``ratio`` as a float in [0, 1), or raise a message naming the unit (or layer)."""
    if isinstance(ratio, bool) or not isinstance(ratio, Real) or not 0.0 <= float(ratio) < 1.0:
        raise PrunetuneError(f"The ratio of {what} {unit!r} must be in [0, 1). Got {ratio!r} instead.")
    return float(ratio)


def check_round_to(round_to: Any) -> int:
    """Return ``round_to`` as an int >= 1, or raise."""
    if isinstance(round_to, bool) or not isinstance(round_to, Integral) or int(round_to) < 1:
        raise PrunetuneError(f"The 'round_to' parameter must be an integer >= 1. Got {round_to!r} instead.")
    return int(round_to)


def channels_to_remove(channels: int, ratio: float, round_to: int = 1, *, unit: str = "?") -> int:
    """How many of ``channels`` a ratio removes.

    ``keep = channels - round(ratio * channels)`` (halves round up), then rounded up to a multiple
    of ``round_to`` (hardware likes multiples of 8) and capped at ``channels``.

    Args:
        channels: Current output channels of the unit.
        ratio: Fraction to remove, in [0, 1).
        round_to: The kept count is a multiple of this (or all channels).
        unit: The unit's name, for the error message.

    Raises:
        PrunetuneError: If the ratio is outside [0, 1), ``round_to`` < 1, or nothing would be kept.
    """
    ratio = check_ratio(ratio, unit)
    round_to = check_round_to(round_to)
    keep = channels - math.floor(ratio * channels + 0.5)
    if keep <= 0:
        raise PrunetuneError(f"ratio {ratio} would empty unit {unit!r} ({channels} channels)")
    keep = min(channels, math.ceil(keep / round_to) * round_to)
    return channels - keep


def _calibrate(
    model: nn.Module,
    calibration: Iterable[tuple[Any, Any]],
    loss_fn: LossFn,
) -> None:
    """Accumulate gradients over the calibration batches, in eval mode so no statistics change."""
    training = [(m, m.training) for m in model.modules()]
    model.eval()
    model.zero_grad(set_to_none=True)
    batches = 0
    try:
        with torch.enable_grad():
            for inputs, targets in calibration:
                outputs = forward(model, inputs)
                loss_fn(outputs, to_device(targets, outputs.device)).backward()
                batches += 1
    finally:
        for module, mode in training:
            module.training = mode
    if batches == 0:
        raise PrunetuneError("The calibration data yielded no batches; a gradient criterion needs at least one.")


def _lowest(scores: torch.Tensor, count: int, unit: str) -> list[int]:
    """Indices of the ``count`` lowest scores, ties broken by index so the choice is reproducible."""
    scores = scores.detach().flatten().to(torch.float64).cpu()
    if torch.isnan(scores).any():
        raise PrunetuneError(f"The criterion gave NaN scores for unit {unit!r}.")
    order = torch.argsort(scores, stable=True)
    return sorted(int(i) for i in order[:count])


def prune_filters(
    model: nn.Module,
    ratios: Mapping[str, float],
    *,
    example_inputs: ExampleInputs,
    criterion: str | Criterion = "l1",
    round_to: int = 1,
    calibration: Iterable[tuple[Any, Any]] | None = None,
    loss_fn: LossFn | None = None,
    cap: bool = False,
) -> dict[str, int]:
    """Remove the lowest-scoring output channels of each named unit, in place.

    Args:
        model: The model; changed in place.
        ratios: Fraction of channels to remove, by unit name (see :func:`discover_units`).
        example_inputs: Inputs the model is traced with.
        criterion: A criterion name or object (see :func:`get_criterion`).
        round_to: Kept channel counts are multiples of this.
        calibration: ``(inputs, targets)`` batches for criteria that need gradients.
        loss_fn: Loss for the calibration pass; cross-entropy by default.
        cap: Lower a ratio that would empty a unit so that ``round_to`` channels stay, instead of
            raising: for plans whose earlier sections (PCA widths, drops) narrowed a unit after
            the ratios were checked against the base model.

    Returns:
        Channels removed per unit named in ``ratios``, in unit order.

    Raises:
        PrunetuneError: For an unknown unit, a bad ratio, a ratio that would empty a unit, or a
            gradient criterion without calibration data. Nothing is changed in that case.

    A gradient criterion leaves the model's gradients cleared (``None``).
    """
    scorer = get_criterion(criterion)
    round_to = check_round_to(round_to)
    graph = build_graph(model, example_inputs)
    groups = {group.name: group for group in unit_groups(model, graph)}
    unknown = [name for name in ratios if name not in groups]
    if unknown:
        raise PrunetuneError(
            f"Unknown unit {unknown[0]!r}. Available units: {', '.join(groups) or '(none)'}."
        )
    counts = {
        name: channels_to_remove(
            group.channels(), _capped(ratios[name], group.channels(), round_to) if cap else ratios[name], round_to, unit=name
        )
        for name, group in groups.items()
        if name in ratios
    }
    needs_gradients = bool(getattr(scorer, "needs_gradients", False))
    if needs_gradients and calibration is None:
        raise PrunetuneError(
            f"The criterion {getattr(scorer, 'name', scorer)!r} needs gradients: "
            "pass calibration batches (an iterable of (inputs, targets))."
        )
    try:
        if needs_gradients:
            _calibrate(model, calibration, loss_fn if loss_fn is not None else F.cross_entropy)
        for name, count in counts.items():
            if count:
                _prune_unit(graph, groups[name], count, scorer)
    finally:
        if needs_gradients:
            model.zero_grad(set_to_none=True)
    return counts


def _capped(ratio: float, channels: int, round_to: int) -> float:
    """The ratio, lowered where needed so that at least ``round_to`` of ``channels`` stay."""
    if channels <= round_to:
        return 0.0
    return min(float(ratio), (channels - round_to) / channels)


def _prune_unit(graph: tp.DependencyGraph, unit: UnitGroup, count: int, scorer: Criterion) -> None:
    """Score every channel of one unit and prune the ``count`` lowest through the graph."""
    pruner = graph.get_pruner_of_module(unit.root)
    channels = unit.channels()
    group = graph.get_pruning_group(unit.root, pruner.prune_out_channels, list(range(channels)))
    scores = scorer(group)
    if scores is None or len(scores) != channels:
        raise PrunetuneError(
            f"The criterion {scorer!r} must return one score per channel of unit {unit.name!r} "
            f"({channels}). Got {None if scores is None else len(scores)} instead."
        )
    indices = _lowest(torch.as_tensor(scores), count, unit.name)
    doomed = graph.get_pruning_group(unit.root, pruner.prune_out_channels, indices)
    if not graph.check_pruning_group(doomed):
        raise PrunetuneError(f"Removing {count} channels would empty a layer coupled to unit {unit.name!r}.")
    doomed.prune()
