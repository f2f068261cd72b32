"""Drop sets: whole units removed from a model, the layer-pruning half of the seed papers.

Discriminative layer pruning (Jordao et al. 2020) removes whole layers or residual blocks and the
accordion autoencoder (A2E) removes hidden layers; a drop set is the set of units a plan removes.
Which units can go, and by which rule (``block``, ``identity``, ``reconnect``), is decided in
:mod:`prunetune.pruners.drop_analysis`; this module carries the drops out and offers them to a
search (:class:`DropLayers`).

Dropping several units applies them one at a time in registration order, finding the units again
after each drop, so adjacent layers of a chain can go together. A drop set can fail as a whole
even when each of its units could go alone (a reconnect whose consumer is also dropped and whose
new consumer lies behind a pooling); :func:`drop_units` then raises before changing anything.

Dropped modules become ``nn.Identity`` at the same path, so module paths of the units that remain
do not move, and re-applying a plan to a freshly built model gives the same structure, into which
the dropped model's state dict loads.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping, Sequence
from numbers import Integral
from typing import Any, ClassVar

import torch
import torch_pruning as tp
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from prunetune.errors import PrunetuneError
from prunetune.pruners.calls import ExampleInputs, forward, untouched
from prunetune.pruners.methods import (
    Dimension,
    PruningMethod,
    _check_keys,
    _values_by_unit,
)
from prunetune.pruners.structured import LossFn
from prunetune.pruners.drop_analysis import RULES, Analysis, Drop, DropCandidate

__all__ = ["RULES", "DropCandidate", "DropLayers", "drop_units", "droppable_units"]

def _replace(model: nn.Module, path: str, new: nn.Module) -> None:
    parent, _, leaf = path.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, leaf, new)


def _norm_affine(norm: _BatchNorm) -> tuple[torch.Tensor, torch.Tensor]:
    """``(scale, shift)`` per channel of a batch norm in eval mode: ``y = scale * x + shift``."""
    channels = norm.num_features
    scale = torch.ones(channels, dtype=torch.float64)
    shift = torch.zeros(channels, dtype=torch.float64)
    if norm.running_var is not None and norm.running_mean is not None:
        scale = 1.0 / torch.sqrt(norm.running_var.double().cpu() + norm.eps)
        shift = -norm.running_mean.double().cpu() * scale
    if norm.weight is not None:
        gamma = norm.weight.detach().double().cpu()
        scale, shift = scale * gamma, shift * gamma
    if norm.bias is not None:
        shift = shift + norm.bias.detach().double().cpu()
    return scale, shift


@torch.no_grad()
def _reconnect(model: nn.Module, drop: Drop) -> None:
    """Re-shape the consumer to take the dropped layer's input, initialised with the composed linear maps."""
    layer = model.get_submodule(drop.candidate.name)
    consumer = model.get_submodule(drop.consumer)  # type: ignore[arg-type]
    weight = layer.weight.detach().double().cpu()  # (hidden, inputs, *kernel)
    bias = layer.bias.detach().double().cpu() if layer.bias is not None else torch.zeros(weight.shape[0], dtype=torch.float64)
    for path in drop.removed[1:]:
        follower = model.get_submodule(path)
        if isinstance(follower, _BatchNorm):
            scale, shift = _norm_affine(follower)
            weight = weight * scale.view(-1, *([1] * (weight.dim() - 1)))
            bias = bias * scale + shift
    if weight.dim() > 2:
        centre = tuple((size - 1) // 2 for size in weight.shape[2:])
        weight = weight[(slice(None), slice(None), *centre)]
    old = consumer.weight.detach().double().cpu()  # (outputs, hidden, *kernel)
    new = torch.einsum("oh...,hi->oi...", old, weight)
    offset = old.reshape(old.shape[0], old.shape[1], -1).sum(2) @ bias
    target = consumer.weight
    consumer.weight = nn.Parameter(
        new.to(dtype=target.dtype, device=target.device), requires_grad=target.requires_grad
    )
    if isinstance(consumer, tp.ops.TORCH_CONV):
        consumer.in_channels = int(weight.shape[1])
    else:
        consumer.in_features = int(weight.shape[1])
    if consumer.bias is not None:
        consumer.bias.add_(offset.to(dtype=consumer.bias.dtype, device=consumer.bias.device))
    elif drop.consumer_norm is not None:
        mean = model.get_submodule(drop.consumer_norm).running_mean
        mean.sub_(offset.to(dtype=mean.dtype, device=mean.device))


def _apply(model: nn.Module, drop: Drop) -> None:
    if drop.candidate.rule == "reconnect":
        _reconnect(model, drop)
    for path in drop.removed:
        _replace(model, path, nn.Identity())


def droppable_units(model: nn.Module, example_inputs: ExampleInputs) -> list[DropCandidate]:
    """The units of ``model`` that can be dropped, in registration order.

    Args:
        model: The model; it is traced, not changed.
        example_inputs: Inputs it is called with (a tensor, a tuple of tensors or a dict).

    Returns:
        One :class:`DropCandidate` per block or layer that one of :data:`RULES` can remove.
    """
    return Analysis(model, example_inputs).candidates()


def _requested(names: Any, analysis: Analysis, owner: str) -> list[str]:
    """``names`` checked against ``analysis``, without repeats, in registration order."""
    if isinstance(names, (str, bytes)) or not isinstance(names, Iterable):
        raise PrunetuneError(f"The 'names' parameter of {owner} must be a list of unit names. Got {names!r} instead.")
    names = list(names)
    for name in names:
        if not isinstance(name, str) or name not in analysis.modules:
            droppable = ", ".join(analysis.drops) or "(none)"
            raise PrunetuneError(f"Unknown unit {name!r}. Droppable units: {droppable}.")
        if name not in analysis.drops:
            raise PrunetuneError(f"{name!r} cannot be dropped: {analysis.reason(name)}.")
    return sorted(set(names), key=analysis.order.__getitem__)


def _drop_in_order(
    model: nn.Module, names: Sequence[str], example_inputs: ExampleInputs, first: Analysis | None = None
) -> None:
    """Drop ``names`` one at a time, finding the droppable units again after each drop."""
    analysis = first
    done: list[str] = []
    for name in names:
        if analysis is None:
            analysis = Analysis(model, example_inputs)
        drop = analysis.drops.get(name)
        if drop is None:
            reason = analysis.reason(name) if name in analysis.modules else "it is gone"
            raise PrunetuneError(
                f"{name!r} cannot be dropped together with {', '.join(repr(d) for d in done)}: "
                f"after those drops, {reason}."
            )
        _apply(model, drop)
        done.append(name)
        analysis = None


def _drop(model: nn.Module, names: Any, example_inputs: ExampleInputs, *, rehearse: bool) -> nn.Module:
    analysis = Analysis(model, example_inputs)
    ordered = _requested(names, analysis, "drop_units")
    if rehearse and len(ordered) > 1:
        # A set can fail part-way (a later unit stops being droppable): find out on a copy.
        _drop_in_order(copy.deepcopy(model), ordered, example_inputs)
    _drop_in_order(model, ordered, example_inputs, first=analysis)
    return model


def drop_units(model: nn.Module, names: Iterable[str], example_inputs: ExampleInputs) -> nn.Module:
    """Drop the named units from ``model``, in place, and return it.

    Every name is checked before anything changes; several names are dropped one at a time in
    registration order (tried first on a copy), so a set that fails part-way changes nothing.

    Args:
        model: The model; changed in place.
        names: Module paths of units from :func:`droppable_units`.
        example_inputs: Inputs the model is traced with.

    Raises:
        PrunetuneError: For an unknown name (listing the droppable units), a unit that cannot be
            dropped (saying why), or a set whose units cannot all go together.
    """
    return _drop(model, names, example_inputs, rehearse=True)


class DropLayers(PruningMethod):
    """Drop sets: one yes/no dimension per droppable unit (layer pruning; A2E's removed hidden layers).

    Section: ``{"units": ["layer1.1", "layer3.2"]}``, the units dropped, in registration order.

    Args:
        max_drops: At most this many units are dropped; a search's choice of more keeps the first
            ones in dimension (registration) order. ``None`` for no limit.
    """

    name: ClassVar[str] = "drop"
    KEYS: ClassVar[tuple[str, ...]] = ("units",)

    def __init__(self, *, max_drops: int | None = None) -> None:
        self.max_drops = max_drops

    def check_options(self) -> None:
        self._max_drops()

    def _max_drops(self) -> int | None:
        value = self.max_drops
        if value is not None and (isinstance(value, bool) or not isinstance(value, Integral) or value < 0):
            raise PrunetuneError(
                f"The 'max_drops' parameter of DropLayers must be an integer >= 0 or None. Got {value!r} instead."
            )
        return None if value is None else int(value)

    def dimensions(self, model: nn.Module, example_inputs: ExampleInputs) -> list[Dimension]:
        """One boolean per droppable unit, in registration order."""
        if self._max_drops() == 0:
            return []
        return [
            Dimension(name=f"{self.name}.{unit.name}", unit=unit.name, kind="bool")
            for unit in droppable_units(model, example_inputs)
        ]

    def section(self, values: Mapping[str, Any]) -> dict[str, Any]:
        limit = self._max_drops()
        units = [unit for unit, chosen in _values_by_unit(self.name, values).items() if bool(chosen)]
        return {"units": units if limit is None else units[:limit]}

    def values(self, section: Mapping[str, Any]) -> dict[str, Any]:
        """``{"drop.<unit>": True}`` for the units the section drops; the others stay open (False)."""
        units = section.get("units") if isinstance(section, Mapping) else None
        if not isinstance(units, (list, tuple)):
            raise PrunetuneError(f"The 'units' of the {self.name!r} section must be a list. Got {units!r} instead.")
        return {f"{self.name}.{unit}": True for unit in units}

    def validate(self, section: Mapping[str, Any], model: nn.Module, example_inputs: ExampleInputs) -> None:
        _check_keys(section, self.name, self.KEYS, ("units",))
        units = section["units"]
        if not isinstance(units, (list, tuple)) or not all(isinstance(unit, str) for unit in units):
            raise PrunetuneError(
                f"The 'units' of the {self.name!r} section must be a list of unit names. Got {units!r} instead."
            )
        repeated = [unit for index, unit in enumerate(units) if unit in units[:index]]
        if repeated:
            raise PrunetuneError(f"The 'units' of the {self.name!r} section names {repeated[0]!r} twice.")
        if not units:
            return
        trial = _drop(copy.deepcopy(model), units, example_inputs, rehearse=False)
        try:
            with untouched(trial), torch.no_grad():
                forward(trial, example_inputs)
        except (RuntimeError, ValueError) as error:
            raise PrunetuneError(
                f"Dropping {', '.join(units)} leaves a model that fails on the example inputs: {error}"
            ) from error

    def apply(
        self,
        model: nn.Module,
        section: Mapping[str, Any],
        *,
        example_inputs: ExampleInputs,
        calibration: Iterable[tuple[Any, Any]] | None = None,
        loss_fn: LossFn | None = None,
    ) -> nn.Module:
        if section.get("units"):
            # validate() has tried this set on a copy (apply_plan validates first), so no rehearsal here.
            _drop(model, section["units"], example_inputs, rehearse=False)
        return model
