"""A pruning method of your own: zero the weakest hidden neurons of each fully connected layer.

Named in an experiment file by its path (only this file is imported):

    methods:
      "examples/neuron_pruning.py:NeuronPruning": {max_ratio: 0.8}

docs/writing-a-method.md walks through it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from numbers import Real
from typing import Any, ClassVar

import torch
from torch import nn
from torch.nn.utils import prune

from prunetune.errors import PrunetuneError
from prunetune.pruners import Dimension, PruningMethod


def hidden_linear_layers(model: nn.Module) -> list[str]:
    """Every linear layer but the last (the output layer keeps all its classes)."""
    names = [name for name, module in model.named_modules() if isinstance(module, nn.Linear)]
    return names[:-1]


class NeuronPruning(PruningMethod):
    """One ratio per hidden linear layer: that share of its neurons (weight rows), weakest by L2 norm, is zeroed.

    Section: ``{"ratios": {"classifier.0": 0.5}}``.

    Args:
        max_ratio: Upper bound of every ratio, in [0, 1).
    """

    name: ClassVar[str] = "neurons"

    def __init__(self, *, max_ratio: float = 0.8) -> None:
        self.max_ratio = max_ratio

    def check_options(self) -> None:
        if isinstance(self.max_ratio, bool) or not isinstance(self.max_ratio, Real) or not 0 <= self.max_ratio < 1:
            raise PrunetuneError(f"The 'max_ratio' parameter of NeuronPruning must be in [0, 1). Got {self.max_ratio!r} instead.")

    def dimensions(self, model: nn.Module, example_inputs: Any) -> list[Dimension]:
        return [
            Dimension(name=f"{self.name}.{layer}", unit=layer, kind="float", low=0.0, high=float(self.max_ratio))
            for layer in hidden_linear_layers(model)
        ]

    def section(self, values: Mapping[str, Any]) -> dict[str, Any]:
        prefix = self.name + "."
        return {"ratios": {key[len(prefix):]: float(value) for key, value in values.items() if key.startswith(prefix)}}

    def values(self, section: Mapping[str, Any]) -> dict[str, Any]:
        return {f"{self.name}.{layer}": float(ratio) for layer, ratio in section.get("ratios", {}).items()}

    def validate(self, section: Mapping[str, Any], model: nn.Module, example_inputs: Any) -> None:
        ratios = section.get("ratios") if isinstance(section, Mapping) else None
        if not isinstance(ratios, Mapping) or set(section) != {"ratios"}:
            raise PrunetuneError(f"The {self.name!r} section must be {{'ratios': {{layer: ratio}}}}. Got {section!r} instead.")
        layers = hidden_linear_layers(model)
        for layer, ratio in ratios.items():
            if layer not in layers:
                raise PrunetuneError(f"Unknown layer {layer!r} in the {self.name!r} section. Hidden linear layers: {', '.join(layers)}.")
            if isinstance(ratio, bool) or not isinstance(ratio, Real) or not 0 <= ratio < 1:
                raise PrunetuneError(f"The ratio of layer {layer!r} must be in [0, 1). Got {ratio!r} instead.")

    def apply(
        self,
        model: nn.Module,
        section: Mapping[str, Any],
        *,
        example_inputs: Any,
        calibration: Iterable[tuple[Any, Any]] | None = None,
        loss_fn: Any = None,
    ) -> nn.Module:
        modules = dict(model.named_modules())
        for layer, ratio in section["ratios"].items():
            linear = modules[layer]
            rows = linear.weight.shape[0]
            cut = min(int(round(ratio * rows)), rows - 1)  # keep at least one neuron
            if cut == 0:
                continue
            weakest = torch.argsort(linear.weight.detach().norm(dim=1))[:cut]
            mask = torch.ones_like(linear.weight)
            mask[weakest] = 0
            # A mask (not a plain zero) keeps the neurons at zero while the trial fine-tunes.
            prune.custom_from_mask(linear, "weight", mask)
        return model
