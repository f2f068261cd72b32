"""The measurement behind PCA widths: activations, their explained variance, and the widths they need.

Ahmed et al. (PLoS ONE 2022), after Garg, Panda & Roy (2020): the activations of a trained layer
are a data matrix with one column per channel; the number of principal components that keep a
fraction ``tau`` of its variance is how many filters the layer needs. See
:mod:`prunetune.pruners.pca` for the method that searches and applies them.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from numbers import Integral, Real
from typing import Any

import numpy as np
import torch
from sklearn.decomposition import PCA
from torch import nn

from prunetune.errors import PrunetuneError
from prunetune.pruners.calls import ExampleInputs, batch_size, forward, untouched
from prunetune.pruners.drop import drop_units, droppable_units
from prunetune.pruners.structured import prune_filters
from prunetune.pruners.units import discover_units

__all__ = [
    "DEFAULT_MAX_ROWS",
    "DEFAULT_SAMPLES",
    "check_tau",
    "drop_plateau",
    "explained_variance",
    "pca_widths",
    "plateau_units",
    "prune_to_widths",
    "reinitialize",
    "width_for",
]

#: Training samples the stage feeds through the network to measure the activations.
DEFAULT_SAMPLES = 2000

#: Rows (channel vectors) kept per unit for its PCA: enough for a stable spectrum of 512 channels.
DEFAULT_MAX_ROWS = 16384

#: Layers that may sit between a unit's root layer and the activation PCA reads.
_FOLLOWERS = (
    nn.modules.batchnorm._BatchNorm,
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.PReLU,
    nn.ELU,
    nn.SELU,
    nn.CELU,
    nn.GELU,
    nn.SiLU,
    nn.Mish,
    nn.Hardswish,
    nn.Hardtanh,
    nn.Tanh,
    nn.Sigmoid,
    nn.Identity,
)


def _activation_modules(model: nn.Module, units: Sequence[str]) -> dict[str, nn.Module]:
    """For each unit, the module whose output is its activation: the last BN/activation after it."""
    modules = dict(model.named_modules())
    found = {}
    for name in units:
        target = modules[name]
        parent_name, _, leaf = name.rpartition(".")
        parent = modules[parent_name] if parent_name else model
        if isinstance(parent, nn.Sequential):
            siblings = list(parent._modules.values())
            keys = list(parent._modules)
            for sibling in siblings[keys.index(leaf) + 1:]:
                if not isinstance(sibling, _FOLLOWERS):
                    break
                target = sibling
        found[name] = target
    return found


def _first_inputs(batch: Any) -> Any:
    """The inputs of one batch: ``(inputs, targets)`` pairs or bare inputs."""
    if isinstance(batch, (tuple, list)) and len(batch) == 2:
        return batch[0]
    return batch


def explained_variance(
    model: nn.Module,
    batches: Iterable[Any],
    *,
    units: Sequence[str] | None = None,
    max_rows: int = DEFAULT_MAX_ROWS,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Explained-variance ratios of each unit's activations, largest first (PCA per unit).

    Args:
        model: The trained model; it runs in eval mode and is left unchanged.
        batches: ``(inputs, targets)`` pairs (or bare inputs) to run through it.
        units: Unit names (see :func:`discover_units`); all conv units by default.
        max_rows: At most this many rows per unit, spread evenly over the samples.
        seed: Seeds which spatial positions are kept.

    Returns:
        ``{unit: ratios}``, one float array per unit (sums to 1, or all zeros for a unit whose
        activations never vary).
    """
    if isinstance(max_rows, bool) or not isinstance(max_rows, Integral) or max_rows < 1:
        raise PrunetuneError(
            f"The 'max_rows' parameter of explained_variance must be an integer >= 1. Got {max_rows!r} instead."
        )
    inputs = [_first_inputs(batch) for batch in batches]
    if not inputs:
        raise PrunetuneError("PCA widths need activations: the batches given yielded none.")
    known = discover_units(model, inputs[0])
    names = [unit.name for unit in known if unit.kind == "conv"] if units is None else list(units)
    available = [unit.name for unit in known]
    for name in names:
        if name not in available:
            raise PrunetuneError(f"Unknown unit {name!r}. Available units: {', '.join(available) or '(none)'}.")
    total = sum(batch_size(batch) for batch in inputs)
    per_sample = max(1, math.ceil(max_rows / total))
    generator = torch.Generator().manual_seed(int(seed))
    rows: dict[str, list[torch.Tensor]] = {name: [] for name in names}
    kept: dict[str, int] = {name: 0 for name in names}

    def hook_for(name: str):
        def hook(module: nn.Module, args: Any, output: torch.Tensor) -> None:
            if kept[name] >= max_rows:
                return
            data = output.detach()
            positions = data.movedim(1, -1).reshape(data.shape[0], -1, data.shape[1])
            if positions.shape[1] > per_sample:
                chosen = torch.randperm(positions.shape[1], generator=generator)[:per_sample]
                positions = positions[:, chosen]
            block = positions.reshape(-1, data.shape[1])[: max_rows - kept[name]].to("cpu", torch.float64).clone()
            rows[name].append(block)
            kept[name] += block.shape[0]

        return hook

    targets = _activation_modules(model, names)
    handles = [targets[name].register_forward_hook(hook_for(name)) for name in names]
    try:
        with untouched(model), torch.no_grad():
            for batch in inputs:
                forward(model, batch)
    finally:
        for handle in handles:
            handle.remove()
    return {name: _ratios(torch.cat(rows[name]).numpy()) for name in names}


def _ratios(data: np.ndarray) -> np.ndarray:
    """scikit-learn's explained-variance ratios of ``data`` (rows x channels), padded to every channel."""
    channels = data.shape[1]
    ratios = np.zeros(channels)
    if data.shape[0] < 2 or not np.any(data.var(axis=0) > 0):
        return ratios
    solver = "covariance_eigh" if data.shape[0] > channels else "full"
    found = PCA(svd_solver=solver).fit(data).explained_variance_ratio_
    found = np.nan_to_num(np.clip(found, 0.0, None))
    ratios[: len(found)] = found
    return ratios


def width_for(ratios: np.ndarray, tau: float) -> int:
    """The smallest number of components whose explained variance reaches ``tau`` (at least 1)."""
    channels = len(ratios)
    total = float(np.sum(ratios))
    if total <= 0:
        return min(channels, 1)
    if tau >= 1.0:
        return channels
    cumulative = np.cumsum(ratios) / total
    return int(min(channels, max(1, int(np.searchsorted(cumulative, tau, side="left")) + 1)))


def pca_widths(
    model: nn.Module,
    batches: Iterable[Any],
    *,
    tau: float | Mapping[str, float],
    units: Sequence[str] | None = None,
    max_rows: int = DEFAULT_MAX_ROWS,
    seed: int = 0,
) -> dict[str, int]:
    """How many filters each unit needs to keep a variance fraction ``tau`` of its activations.

    Args:
        model: The trained model (left unchanged).
        batches: ``(inputs, targets)`` batches to measure on; more samples give steadier widths.
        tau: One fraction in (0, 1] for every unit, or one per unit (its keys are the units when
            ``units`` is not given).
        units: The units to measure; by default every conv unit (or the keys of ``tau``).
        max_rows: Rows per unit kept for its PCA.
        seed: Seeds the subsampling of spatial positions.

    Returns:
        ``{unit: width}`` in unit order, each between 1 and the unit's channels.
    """
    if isinstance(tau, Mapping):
        for name, value in tau.items():
            check_tau(value, f"tau of unit {name!r}")
        names = list(tau) if units is None else list(units)
        missing = [name for name in names if name not in tau]
        if missing:
            raise PrunetuneError(f"The 'tau' parameter of pca_widths names no fraction for unit {missing[0]!r}.")
    else:
        check_tau(tau, "'tau' parameter of pca_widths")
        names = units
    spectra = explained_variance(model, batches, units=names, max_rows=max_rows, seed=seed)
    return {
        name: width_for(ratios, float(tau[name] if isinstance(tau, Mapping) else tau))
        for name, ratios in spectra.items()
    }


def plateau_units(widths: Mapping[str, int]) -> list[str]:
    """The units, in the order given, whose width does not grow past the unit before them.

    Where the significant dimension stops growing, Garg et al. and Ahmed et al. remove layers:
    these are the candidates a ``drop`` section may name.
    """
    names = list(widths)
    return [name for before, name in itertools.pairwise(names) if widths[name] <= widths[before]]


def drop_plateau(model: nn.Module, widths: Mapping[str, int], *, example_inputs: ExampleInputs) -> list[str]:
    """Drop, in place, the :func:`plateau_units` of ``widths`` that can be dropped; returns their names.

    They are tried one at a time in order, each on the network the previous drops left, so a
    unit that only a neighbour's drop makes removable (or keeps) is judged on what is there.
    """
    dropped = []
    for name in plateau_units(widths):
        if name in {candidate.name for candidate in droppable_units(model, example_inputs)}:
            drop_units(model, [name], example_inputs)
            dropped.append(name)
    return dropped


def prune_to_widths(model: nn.Module, widths: Mapping[str, int], *, example_inputs: ExampleInputs) -> nn.Module:
    """Remove the filters nearest each unit's geometric median (FPGM) until it has its width, in place."""
    channels = {unit.name: unit.channels for unit in discover_units(model, example_inputs)}
    ratios = {}
    for name, width in widths.items():
        if name not in channels:
            raise PrunetuneError(f"Unknown unit {name!r}. Available units: {', '.join(channels) or '(none)'}.")
        if not 1 <= int(width) <= channels[name]:
            raise PrunetuneError(
                f"The width of unit {name!r} must be between 1 and its {channels[name]} channels. "
                f"Got {width!r} instead."
            )
        if int(width) < channels[name]:
            ratios[name] = 1.0 - int(width) / channels[name]
    if ratios:
        prune_filters(model, ratios, example_inputs=example_inputs, criterion="fpgm")
    return model


def reinitialize(model: nn.Module, *, seed: int = 0) -> nn.Module:
    """Give every layer fresh weights (PyTorch's default initialisation), seeded, in place.

    The rebuilt network of the paper is trained from scratch at the PCA widths; the running
    statistics of batch norms are reset too. The global random state is left as it was.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        for module in model.modules():
            reset = getattr(module, "reset_parameters", None)
            if callable(reset):
                reset()
    return model


def check_tau(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, Real) or not 0.0 < float(value) <= 1.0:
        raise PrunetuneError(f"The {what} must be in (0, 1]. Got {value!r} instead.")
    return float(value)
