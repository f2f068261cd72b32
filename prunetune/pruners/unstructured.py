"""Magnitude weight pruning: zero individual weights of conv and linear layers.

Two ways to say how much of a layer goes:

- a *ratio* r zeroes the fraction r of the layer's weights with the smallest magnitude
  (Han et al. 2015), exactly ``round(r * numel)`` of them;
- a *sensitivity* s zeroes the weights with ``|w| < s * std`` (Wu et al. 2021, whose
  differential evolution searches one s per layer).

Masks live in :mod:`torch.nn.utils.prune` form (a ``weight_orig`` parameter, a ``weight_mask``
buffer and a forward pre-hook), so pruned weights stay zero however an optimizer moves
``weight_orig``. Applying masks again combines with the existing ones: iterative pruning
only ever removes more. :func:`make_masks_permanent` folds the masks into plain weights.

Recovery (later): Wu et al. let pruned connections come back during fine-tuning. Because
``weight_orig`` keeps every value, that needs only (1) a gradient that reaches masked
entries (a straight-through backward instead of the plain mask product) and (2) a mask
recomputed from ``|weight_orig|`` against the threshold instead of combined with the old one.
Combining lives in one place (:func:`_combine`), which a recovery mode would bypass.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from numbers import Real

import torch
from torch import nn
from torch.nn.utils import prune

from prunetune.errors import PrunetuneError

__all__ = [
    "WEIGHT_LAYER_TYPES",
    "apply_weight_masks",
    "make_masks_permanent",
    "masked_tensor_names",
    "preview_weight_masks",
    "prunable_weight_layers",
    "weight_masks",
]

#: Layer types whose ``weight`` this module prunes (subclasses included).
WEIGHT_LAYER_TYPES: tuple[type[nn.Module], ...] = (
    nn.Linear,
    nn.Conv1d,
    nn.Conv2d,
    nn.Conv3d,
    nn.ConvTranspose1d,
    nn.ConvTranspose2d,
    nn.ConvTranspose3d,
)


def prunable_weight_layers(model: nn.Module) -> list[str]:
    """Module paths (``features.3``) of the conv and linear layers, in registration order."""
    return [
        name for name, module in model.named_modules() if isinstance(module, WEIGHT_LAYER_TYPES)
    ]


def apply_weight_masks(
    model: nn.Module,
    *,
    ratios: Mapping[str, float] | None = None,
    sensitivities: Mapping[str, float] | None = None,
) -> dict[str, float]:
    """Zero the smallest-magnitude weights of the named layers, in place.

    Args:
        model: the model to prune; its layers are named by module path.
        ratios: layer path -> fraction in [0, 1) of the layer's weights that is zero afterwards.
            Already masked weights count first; among equal magnitudes the lower flat index goes
            first, so the result is deterministic. A ratio below the layer's current sparsity
            removes nothing.
        sensitivities: layer path -> s >= 0; zeroes every weight with ``|w| < s * std``, where
            std is the sample standard deviation (``torch.std``) of the layer's surviving
            (not yet masked) weights.

    Exactly one of ``ratios`` and ``sensitivities`` is given. Every entry is checked and every
    mask computed before the model is touched, so a bad entry leaves the model as it was.
    Biases are not pruned.

    Returns:
        Layer path -> fraction of the layer's weights that is zero after this call.

    Raises:
        PrunetuneError: unknown layer, both or neither mapping, a ratio outside [0, 1), a
            negative sensitivity, or a value that would zero every weight of a layer.
    """
    layers = dict(model.named_modules())
    achieved: dict[str, float] = {}
    for name, mask in _new_masks(model, ratios, sensitivities).items():
        _install_mask(layers[name], mask)
        achieved[name] = _sparsity(mask)
    return achieved


def preview_weight_masks(
    model: nn.Module,
    *,
    ratios: Mapping[str, float] | None = None,
    sensitivities: Mapping[str, float] | None = None,
) -> dict[str, float]:
    """What :func:`apply_weight_masks` would do, without touching the model.

    Same arguments, checks and errors; returns the per-layer sparsity it would reach. Use it to
    validate a plan (a threshold above every weight of a layer is only found this way) without
    copying the model.
    """
    return {name: _sparsity(mask) for name, mask in _new_masks(model, ratios, sensitivities).items()}


def weight_masks(model: nn.Module) -> dict[str, torch.Tensor]:
    """Layer path -> copy of its weight mask as a bool tensor (True = kept), masked layers only."""
    return {
        name: module.weight_mask.detach().clone().bool()
        for name, module in model.named_modules()
        if "weight" in masked_tensor_names(module)
    }


def make_masks_permanent(model: nn.Module) -> list[str]:
    """Fold every mask into its tensor and drop the reparametrisation; returns the layer paths.

    The weights keep their zeros and the state_dict keys become plain ``weight`` again, so the
    state loads into a fresh model of the same architecture. Nothing keeps them at zero
    afterwards, and an optimizer built earlier still holds the old ``weight_orig``: build a new one.
    """
    done = []
    for name, module in model.named_modules():
        tensor_names = masked_tensor_names(module)
        for tensor_name in tensor_names:
            prune.remove(module, tensor_name)
        if tensor_names:
            done.append(name)
    return done


def masked_tensor_names(module: nn.Module) -> list[str]:
    """Names of the module's own tensors under a torch.nn.utils.prune mask (``["weight"]``).

    Recognised by torch's layout (an ``x_orig`` parameter beside an ``x_mask`` buffer), so masks
    applied with torch's own pruning functions count too.
    """
    buffers = {name for name, _ in module.named_buffers(recurse=False)}
    return [
        name[: -len("_orig")]
        for name, _ in module.named_parameters(recurse=False)
        if name.endswith("_orig") and name[: -len("_orig")] + "_mask" in buffers
    ]


def _new_masks(
    model: nn.Module,
    ratios: Mapping[str, float] | None,
    sensitivities: Mapping[str, float] | None,
) -> dict[str, torch.Tensor]:
    """Check every entry and compute every combined mask; the model is only read."""
    if (ratios is None) == (sensitivities is None):
        raise PrunetuneError(
            "weight pruning needs exactly one of 'ratios' and 'sensitivities'; got "
            + ("both" if ratios is not None else "neither")
        )
    if ratios is not None:
        kind, argument, values = "ratio", "ratios", ratios
    else:
        kind, argument, values = "sensitivity", "sensitivities", sensitivities
    if not isinstance(values, Mapping):
        raise PrunetuneError(
            f"'{argument}' must map layer paths to numbers; got {type(values).__name__}"
        )

    layers = dict(model.named_modules())
    available = prunable_weight_layers(model)
    new_masks: dict[str, torch.Tensor] = {}
    for name, value in values.items():
        if name not in available:
            raise PrunetuneError(
                f"unknown layer {name!r}; prunable layers are: {', '.join(available) or '(none)'}"
            )
        _check_value(kind, name, value)
        module = layers[name]
        weight = _raw_weight(module)
        old = _current_mask(module)
        if kind == "ratio":
            mask = _combine(old, _ratio_keep(weight, old, float(value)))
        else:
            mask = _combine(old, _sensitivity_keep(weight, old, float(value)))
        if not bool(mask.any()):
            raise PrunetuneError(f"{kind} {value} would zero every weight of layer {name!r}")
        new_masks[name] = mask
    return new_masks


def _sparsity(mask: torch.Tensor) -> float:
    return 1.0 - float(mask.sum()) / mask.numel()


def _check_value(kind: str, name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, Real) or math.isnan(float(value)):
        raise PrunetuneError(f"{kind} for layer {name!r} must be a number; got {value!r}")
    if kind == "ratio" and not 0.0 <= float(value) < 1.0:
        raise PrunetuneError(f"ratio for layer {name!r} must be in [0, 1); got {value!r}")
    if kind == "sensitivity" and float(value) < 0.0:
        raise PrunetuneError(f"sensitivity for layer {name!r} must be >= 0; got {value!r}")


def _raw_weight(module: nn.Module) -> torch.Tensor:
    """The stored weight values, masked entries included."""
    if "weight" in masked_tensor_names(module):
        return module.weight_orig.detach()
    return module.weight.detach()


def _current_mask(module: nn.Module) -> torch.Tensor:
    if "weight" in masked_tensor_names(module):
        return module.weight_mask.detach().clone()
    weight = module.weight.detach()
    return torch.ones_like(weight)


def _ratio_keep(weight: torch.Tensor, old: torch.Tensor, ratio: float) -> torch.Tensor:
    """Keep-mask with the round(ratio * numel) smallest weights out, already masked ones first."""
    count = round(ratio * weight.numel())
    scores = weight.abs().flatten().clone()
    scores[old.flatten() == 0] = -1.0  # masked weights rank below every magnitude
    order = torch.sort(scores, stable=True).indices
    keep = torch.ones(weight.numel(), dtype=old.dtype, device=old.device)
    keep[order[:count]] = 0
    return keep.view_as(old)


def _sensitivity_keep(weight: torch.Tensor, old: torch.Tensor, sensitivity: float) -> torch.Tensor:
    """Keep-mask of the weights with |w| >= sensitivity * std(surviving weights)."""
    surviving = weight[old != 0]
    std = float(surviving.std()) if surviving.numel() > 1 else 0.0
    threshold = sensitivity * std
    return (weight.abs() >= threshold).to(old.dtype)


def _combine(old: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """A weight stays only if both masks keep it: iterative pruning never restores weights."""
    return old * keep


def _install_mask(module: nn.Module, mask: torch.Tensor) -> None:
    if "weight" in masked_tensor_names(module):
        with torch.no_grad():
            module.weight_mask.copy_(mask)
    else:
        prune.custom_from_mask(module, "weight", mask)
    # The pre-hook recomputes ``weight`` with autograd on every forward; until then a detached
    # copy keeps the model deep-copyable (a non-leaf tensor attribute is not).
    with torch.no_grad():
        setattr(module, "weight", module.weight_orig * module.weight_mask)
