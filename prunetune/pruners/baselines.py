"""The baselines a search has to beat, as per-unit ratios: what people set by hand or rank globally.

- **uniform**: one ratio in every unit (capped where a unit cannot lose that many channels);
  what a Torch-Pruning user writes by hand.
- **global** (filters): Torch-Pruning's global ranking (``MetaPruner(global_pruning=True)``,
  ``GroupMagnitudeImportance`` normalised per group as in its recipes): channels of every unit
  compete in one ranking and the lowest ``ratio`` of all channels go. What is kept here is how many
  each unit loses; the experiment's criterion picks which, and for ``l1``/``l2`` that is the same
  set, since one unit's channels rank alike in both.
- **global-magnitude** (weights): one magnitude threshold over every conv/linear layer (Han et al.).
- **lamp** (weights): layer-adaptive magnitude pruning (Lee et al. 2021): a weight's score is its
  square over the sum of the squares of the weights of its layer at least as large, and the lowest
  scores over all layers go. Within a layer both rank by magnitude, so per-layer ratios say it all.

Each returns ``{unit or layer: ratio}``, which a method's section turns into a plan; the search
engine runs those plans as trials marked as baselines.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping

import torch
import torch_pruning as tp
from torch import nn

from prunetune.errors import PrunetuneError
from prunetune.pruners.calls import ExampleInputs
from prunetune.pruners.unstructured import prunable_weight_layers
from prunetune.pruners.units import build_graph, discover_units, output_layers

__all__ = [
    "global_filter_ratios",
    "global_magnitude_ratios",
    "lamp_ratios",
    "lamp_scores",
    "sensitivities_for_ratios",
    "uniform_ratios",
]


def _check_fraction(value: float, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= float(value) < 1.0:
        raise PrunetuneError(f"The {what} of a baseline must be in [0, 1). Got {value!r} instead.")
    return float(value)


def uniform_ratios(highs: Mapping[str, float], ratio: float) -> dict[str, float]:
    """``ratio`` in every unit, lowered to a unit's own bound (``highs``: unit -> highest ratio)."""
    ratio = _check_fraction(ratio, "ratio")
    return {unit: min(ratio, float(high)) for unit, high in highs.items()}


def global_filter_ratios(
    model: nn.Module,
    example_inputs: ExampleInputs,
    ratio: float,
    *,
    p: int = 1,
    max_ratio: float = 0.9,
    round_to: int = 1,
) -> dict[str, float]:
    """Per-unit ratios of Torch-Pruning's global ranking removing ``ratio`` of all unit channels.

    Runs ``MetaPruner`` with ``global_pruning=True`` on a copy of ``model`` (the model itself is not
    touched; output layers are left whole, as in every plan) and reads how many channels each unit
    lost. ``max_ratio`` caps any one unit, as the filter method's bound does.
    """
    ratio = _check_fraction(ratio, "ratio")
    units = discover_units(model, example_inputs)
    if not units:
        raise PrunetuneError("The model has no prunable units: the global ranking has nothing to rank.")
    if ratio == 0.0:
        return {unit.name: 0.0 for unit in units}
    pruned = copy.deepcopy(model).eval()
    pruner = tp.pruner.MetaPruner(
        pruned,
        example_inputs,
        importance=tp.importance.GroupMagnitudeImportance(p=p),
        global_pruning=True,
        pruning_ratio=ratio,
        max_pruning_ratio=max_ratio,
        ignored_layers=output_layers(build_graph(pruned, example_inputs)),
        round_to=round_to if round_to > 1 else None,
    )
    pruner.step()
    modules = dict(pruned.named_modules())
    return {unit.name: (unit.channels - _out_channels(modules[unit.name])) / unit.channels for unit in units}


def _out_channels(layer: nn.Module) -> int:
    return int(layer.out_channels if isinstance(layer, nn.modules.conv._ConvNd) else layer.out_features)


def lamp_scores(weight: torch.Tensor) -> torch.Tensor:
    """LAMP scores of one layer's weights, shaped like it: ``w_u^2 / sum of w_v^2 over |w_v| >= |w_u|``.

    Weights sorted by magnitude (ties by position) share the denominators of the larger ones, so
    the largest weight of every layer scores 1 and no layer is emptied by a global threshold.
    """
    squares = weight.detach().flatten().to(torch.float64) ** 2
    order = torch.argsort(squares, stable=True)
    ranked = squares[order]
    tails = torch.flip(torch.cumsum(torch.flip(ranked, [0]), 0), [0])  # sum of the weights at least as large
    scores = torch.empty_like(squares)
    scores[order] = torch.where(tails > 0, ranked / tails, torch.zeros_like(ranked))
    return scores.reshape(weight.shape)


def global_magnitude_ratios(model: nn.Module, sparsity: float, layers: list[str] | None = None) -> dict[str, float]:
    """Per-layer ratios of one magnitude threshold zeroing ``sparsity`` of all the layers' weights."""
    return _global_ratios(model, sparsity, layers, lambda weight: weight.detach().abs().to(torch.float64))


def lamp_ratios(model: nn.Module, sparsity: float, layers: list[str] | None = None) -> dict[str, float]:
    """Per-layer ratios of LAMP zeroing ``sparsity`` of all the layers' weights (see :func:`lamp_scores`)."""
    return _global_ratios(model, sparsity, layers, lamp_scores)


def _global_ratios(model: nn.Module, sparsity: float, layers: list[str] | None, score) -> dict[str, float]:  # noqa: ANN001
    """The lowest ``sparsity`` of all scores go; each layer's share of them is its ratio (exact counts:
    ``round(ratio * numel)`` gives the count back, as the weight method counts)."""
    sparsity = _check_fraction(sparsity, "sparsity")
    names = prunable_weight_layers(model) if layers is None else list(layers)
    modules = dict(model.named_modules())
    unknown = [name for name in names if name not in modules]
    if unknown:
        raise PrunetuneError(f"Unknown layer {unknown[0]!r} for a global baseline.")
    weights = [modules[name].weight for name in names]
    scores = torch.cat([score(weight).flatten() for weight in weights])
    count = round(sparsity * scores.numel())
    doomed = torch.zeros(scores.numel(), dtype=torch.bool)
    doomed[torch.argsort(scores, stable=True)[:count]] = True
    ratios, start = {}, 0
    for name, weight in zip(names, weights, strict=True):
        size = weight.numel()
        ratios[name] = min(int(doomed[start:start + size].sum()), size - 1) / size  # a layer keeps a weight
        start += size
    return ratios


def sensitivities_for_ratios(model: nn.Module, ratios: Mapping[str, float]) -> dict[str, float]:
    """Per-layer sensitivities ``s`` (zero ``|w| < s * std``) that zero the same weights as ``ratios``:
    the threshold halfway between the last weight a ratio removes and the first it keeps, over the
    layer's standard deviation; for a weight method that searches sensitivities (Wu et al.)."""
    modules = dict(model.named_modules())
    found = {}
    for name, ratio in ratios.items():
        weight = modules[name].weight.detach().flatten().to(torch.float64)
        count = round(_check_fraction(ratio, "ratio") * weight.numel())
        ordered = torch.sort(weight.abs()).values
        std = float(weight.std()) if weight.numel() > 1 else 0.0
        if count == 0 or std == 0.0:
            found[name] = 0.0
            continue
        threshold = (float(ordered[count - 1]) + float(ordered[count])) / 2.0
        found[name] = threshold / std
    return found
