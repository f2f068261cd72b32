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

import contextlib
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch_pruning as tp
from torch import nn

from prunetune.errors import PrunetuneError

__all__ = [
    "ExampleInputs",
    "Unit",
    "UnitGroup",
    "build_graph",
    "discover_units",
    "forward",
    "output_layers",
    "unit_groups",
]

#: What a model is called with: one tensor, a sequence of positional tensors, or keyword tensors.
ExampleInputs = Any

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


def forward(model: nn.Module, example_inputs: ExampleInputs) -> Any:
    """Call ``model`` on ``example_inputs`` the one way the whole package does."""
    if isinstance(example_inputs, torch.Tensor):
        return model(example_inputs)
    if isinstance(example_inputs, Mapping):
        return model(**example_inputs)
    if isinstance(example_inputs, Sequence):
        return model(*example_inputs)
    return model(example_inputs)


@contextlib.contextmanager
def _preserved_modes(model: nn.Module) -> Iterator[None]:
    """Restore every submodule's train/eval flag: Torch-Pruning's tracing leaves the model in eval."""
    modes = [(m, m.training) for m in model.modules()]
    try:
        yield
    finally:
        for module, training in modes:
            module.training = training


def build_graph(model: nn.Module, example_inputs: ExampleInputs) -> tp.DependencyGraph:
    """Trace ``model`` once into a Torch-Pruning dependency graph, leaving its modes unchanged."""
    with _preserved_modes(model), torch.enable_grad():
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


def _root_macs(
    model: nn.Module, roots: Sequence[nn.Module], example_inputs: ExampleInputs
) -> dict[nn.Module, int]:
    """Per-sample multiply-accumulates of each root layer, from one forward pass."""
    macs: dict[nn.Module, int] = {}

    def hook(module: nn.Module, inputs: tuple[Any, ...], output: torch.Tensor) -> None:
        batch = output.shape[0] if output.dim() > 1 else 1
        if isinstance(module, tp.ops.TORCH_CONV):
            kernel = math.prod(module.kernel_size)
            if module.transposed:
                per_output = module.out_channels // module.groups * kernel
                count = inputs[0].numel() * per_output
            else:
                per_output = module.in_channels // module.groups * kernel
                count = output.numel() * per_output
        else:
            count = output.numel() * module.in_features
        macs[module] = macs.get(module, 0) + count // batch

    handles = [root.register_forward_hook(hook) for root in roots]
    try:
        with _preserved_modes(model), torch.no_grad():
            model.eval()
            forward(model, example_inputs)
    finally:
        for handle in handles:
            handle.remove()
    return macs


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
    macs = _root_macs(model, [group.root for group in groups], example_inputs)
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
