"""A pruning method defined outside prunetune, named in experiment files by this file's path."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

import torch
from torch import nn
from torch.nn.utils import prune

from prunetune.errors import PrunetuneError
from prunetune.pruners import Dimension, PruningMethod


class HalveConvs(PruningMethod):
    """One yes/no per conv layer: yes zeroes the half of its weights smallest in magnitude."""

    name: ClassVar[str] = "halve"

    def __init__(self, *, share: float = 0.5) -> None:
        self.share = share

    def check_options(self) -> None:
        if not isinstance(self.share, float) or not 0.0 < self.share < 1.0:
            raise PrunetuneError(f"The 'share' parameter of HalveConvs must be in (0, 1). Got {self.share!r} instead.")

    def dimensions(self, model: nn.Module, example_inputs: Any) -> list[Dimension]:
        return [Dimension(name=f"halve.{name}", unit=name, kind="bool") for name in _convs(model)]

    def section(self, values: Mapping[str, Any]) -> dict[str, Any]:
        return {"layers": [key.removeprefix("halve.") for key, value in values.items() if value], "share": self.share}

    def values(self, section: Mapping[str, Any]) -> dict[str, Any]:
        return {f"halve.{name}": True for name in section["layers"]}

    def validate(self, section: Mapping[str, Any], model: nn.Module, example_inputs: Any) -> None:
        unknown = [name for name in section.get("layers", []) if name not in _convs(model)]
        if unknown:
            raise PrunetuneError(f"Unknown conv layer {unknown[0]!r} in the 'halve' section.")

    def apply(
        self, model: nn.Module, section: Mapping[str, Any], *, example_inputs: Any,
        calibration: Iterable[tuple[Any, Any]] | None = None, loss_fn: Any = None,
    ) -> nn.Module:
        modules = dict(model.named_modules())
        for name in section["layers"]:
            weight = modules[name].weight.detach()
            cut = torch.quantile(weight.abs().flatten(), float(section["share"]))
            prune.custom_from_mask(modules[name], "weight", (weight.abs() > cut).to(weight.dtype))
        return model


class NotAMethod:
    """Named as a method by mistake."""


def _convs(model: nn.Module) -> list[str]:
    return [name for name, module in model.named_modules() if isinstance(module, nn.Conv2d)]
