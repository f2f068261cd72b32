"""Discovery of a model's prunable units.

A unit is one Torch-Pruning dependency group rooted at the output channels of a conv or linear
layer: every layer coupled to those channels (batch norms, residual additions, the flatten into the
next linear) belongs to the same unit and loses the same channels. Units are named by the module
path of their first conv/linear layer in registration order, so a plan written today names the
same unit tomorrow.

The layers whose outputs reach the model output without passing through another conv/linear layer
(a classifier, an autoencoder's last decoder layer) are never units: removing their outputs would
change what the model computes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch_pruning as tp
from torch import nn

from prunetune.errors import PrunetuneError
from prunetune.pruners.calls import ExampleInputs, forward, layer_macs, untouched

__all__ = [
    "Unit",
    "UnitGroup",
    "build_graph",
    "discover_units",
    "output_layers",
    "unit_groups",
]

_PRUNABLE = (tp.ops.TORCH_CONV, tp.ops.TORCH_LINEAR)


@dataclass(frozen=True)
class Unit:
    """One prunable unit: the channels that must be removed together.

    Attributes:
        name: Module path of the unit's first conv/linear layer in registration order.
        kind: ``"conv"`` or ``"linear"``, the type of that layer.
        channels: Its current number of output channels.
        members: Module paths of every module in the group, in registration order.
        params: Parameters held by the member modules.
        macs: Multiply-accumulates of the root layer for one sample of the example inputs.
    """

    name: str
    kind: str
    channels: int
    members: tuple[str, ...]
    params: int
    macs: int


@dataclass(frozen=True)
class UnitGroup:
    """A unit's live modules: its root layer (the one pruned groups start from) and every coupled module."""

    name: str
    root: nn.Module
    modules: tuple[nn.Module, ...]

    def channels(self) -> int:
        """Current output channels of the root layer."""
        if isinstance(self.root, tp.ops.TORCH_CONV):
            return int(self.root.out_channels)
        return int(self.root.out_features)


def build_graph(model: nn.Module, example_inputs: ExampleInputs) -> tp.DependencyGraph:
    """Trace ``model`` once into a Torch-Pruning dependency graph, leaving its modes unchanged."""
    with untouched(model), torch.enable_grad():
        try:
            return tp.DependencyGraph().build_dependency(
                model,
                example_inputs=example_inputs,
                forward_fn=forward,
                verbose=False,
            )
        except (TypeError, RuntimeError) as error:
            raise PrunetuneError(
                f"Could not trace the model with the given example inputs: {error}"
            ) from error


def output_layers(graph: tp.DependencyGraph) -> list[nn.Module]:
    """Conv/linear layers whose outputs reach the model output through no other conv/linear layer."""
    nodes = graph.module2node.values()
    stack = [node for node in nodes if not node.outputs]
    seen: set[int] = set()
    found: list[nn.Module] = []
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node.module, _PRUNABLE):
            found.append(node.module)
            continue
        stack.extend(node.inputs)
    return found


def unit_groups(model: nn.Module, graph: tp.DependencyGraph) -> list[UnitGroup]:
    """The model's units as (name, root layer, coupled modules), in registration order."""
    order = {module: index for index, (_, module) in enumerate(model.named_modules())}
    names = {module: name for name, module in model.named_modules()}
    ignored = output_layers(graph)
    found: list[UnitGroup] = []
    for group in graph.get_all_groups(ignored_layers=ignored, root_module_types=_PRUNABLE):
        roots = [
            dep.target.module
            for dep, _ in group
            if graph.is_out_channel_pruning_fn(dep.handler)
            and isinstance(dep.target.module, _PRUNABLE)
            and dep.target.module in order
        ]
        if not roots:
            continue
        root = min(roots, key=order.__getitem__)
        members = {dep.target.module for dep, _ in group if dep.target.module in order}
        found.append(
            UnitGroup(
                name=names[root],
                root=root,
                modules=tuple(sorted(members, key=order.__getitem__)),
            )
        )
    found.sort(key=lambda unit: order[unit.root])
    return found


def discover_units(model: nn.Module, example_inputs: ExampleInputs) -> list[Unit]:
    """List the prunable units of ``model`` in registration order.

    Args:
        model: The model; it is traced, not changed.
        example_inputs: Inputs it is called with (a tensor, a tuple of tensors or a dict).

    Returns:
        One :class:`Unit` per coupled group of output channels, the output layers left out.
    """
    graph = build_graph(model, example_inputs)
    groups = unit_groups(model, graph)
    names = {module: name for name, module in model.named_modules()}
    macs = layer_macs(model, example_inputs, [group.root for group in groups])
    units = []
    for group in groups:
        units.append(
            Unit(
                name=group.name,
                kind="conv" if isinstance(group.root, tp.ops.TORCH_CONV) else "linear",
                channels=group.channels(),
                members=tuple(names[module] for module in group.modules),
                params=sum(p.numel() for m in group.modules for p in m.parameters(recurse=False)),
                macs=int(macs.get(group.root, 0)),
            )
        )
    return units
