"""Which units of a model can be dropped, and how: the analysis behind drop sets.

Discriminative layer pruning (Jordao et al. 2020) removes whole layers or residual blocks and the
accordion autoencoder (A2E) removes hidden layers; a drop set is the set of units a plan removes.
Which units can go is found on the model itself, from one traced forward pass on the example
inputs: forward hooks give every module's input and output shapes, and the Torch-Pruning dependency
graph (:func:`prunetune.pruners.units.build_graph`) gives who feeds whom. Forward code is never read.

A unit can be dropped by exactly one of three rules, tried in registration order:

``block``
    A module that is not the model itself and not a container (``nn.Sequential``, ``nn.ModuleList``,
    ``nn.ModuleDict``), holds at least one conv or linear layer, is called once with a single tensor
    and returns a single tensor of the same shape, and neither is nor holds an output layer. It
    becomes ``nn.Identity``. A residual basic block with stride 1 and equal channels qualifies; a
    downsampling block does not (its output shape differs from its input shape). The layers inside
    a block are not separate units.

``identity``
    A conv or linear layer outside every block, not an output layer, called once, whose input and
    output shapes agree. It becomes ``nn.Identity``, and so do the batch norms and activation
    modules that directly follow it alone (each the only consumer of the previous one's output,
    each called once): a conv-BN-ReLU goes as a whole.

``reconnect``
    A conv or linear layer outside every block, not an output layer, called once, whose shapes
    differ, in a plain chain: its output (after its batch norms and activations, which go with it)
    reaches exactly one consumer of its own kind through parameter-free elementwise operations only
    (activations; dropout and identities vanish when traced), with no pooling, flatten, reshape,
    residual sum or fan-out on the way. A linear layer feeds a linear layer; a convolution (not
    grouped, not transposed) has stride 1 and keeps the spatial size, and feeds a convolution. The
    layer and its followers become ``nn.Identity`` and the consumer is re-shaped to take the dropped
    layer's input channels. The re-shaped consumer starts from the composition of the two linear
    maps, ignoring the nonlinearity: ``W = W2 @ W1`` and ``b = W2 @ b1 + b2`` for linear layers,
    with the dropped layer's batch norm folded into ``W1, b1`` (running statistics); for
    convolutions the dropped kernel enters through its centre tap (``W1[:, :, c, c]``, the tap just
    before the centre for an even kernel). When the consumer has no bias, the constant term shifts
    the running mean of the batch norm that follows it, or is left out if there is none.

Everything else cannot be dropped, and :func:`~prunetune.pruners.drop.drop_units` says why, naming the unit: an output
layer (its outputs reach the model output through no other conv or linear layer), a layer whose
shape changes into a pooling, a flatten or a residual sum, a downsampling block, a layer inside a
block, a layer called more than once.

How a drop set is carried out (one unit at a time, all or nothing) is told in
:mod:`prunetune.pruners.drop`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch_pruning as tp
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from prunetune.pruners.calls import ExampleInputs, layer_macs
from prunetune.pruners.units import build_graph, output_layers
from prunetune.pruners.unstructured import masked_tensor_names

__all__ = ["RULES", "Analysis", "Drop", "DropCandidate"]

#: The rules by which a unit can be dropped (see the module docstring).
RULES: tuple[str, ...] = ("block", "identity", "reconnect")

_LAYERS = (tp.ops.TORCH_CONV, tp.ops.TORCH_LINEAR)
_CONTAINERS = (nn.Sequential, nn.ModuleList, nn.ModuleDict)
_ACTIVATIONS = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.RReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU,
    nn.Mish, nn.Tanh, nn.Sigmoid, nn.Hardtanh, nn.Hardswish, nn.Hardsigmoid, nn.Softplus,
    nn.Softsign, nn.Tanhshrink, nn.Threshold, nn.LogSigmoid,
)  # fmt: skip
#: Backward nodes of functional activations, which a reconnect may pass through (``F.relu`` in forward code).
_ELEMENTWISE_GRADS = re.compile(
    r"(Relu|LeakyRelu|Elu|Gelu|Silu|Mish|Tanh|Sigmoid|Hardtanh|Hardswish|Hardsigmoid|"
    r"Softplus|Clamp\w*|Threshold)Backward\d*$"
)


@dataclass(frozen=True)
class DropCandidate:
    """One unit that can be dropped.

    Attributes:
        name: Module path of the block or layer.
        rule: ``"block"``, ``"identity"`` or ``"reconnect"`` (see :data:`RULES`).
        params: Parameters the drop removes: the unit's own with its batch norms, and for a
            reconnect also the consumer's change (negative when the consumer grows).
        macs: Multiply-accumulates per sample the drop removes, counted the same way.
    """

    name: str
    rule: str
    params: int
    macs: int


@dataclass
class _Calls:
    """What one module did in the traced forward pass."""

    count: int = 0
    shapes: tuple[tuple[int, ...], tuple[int, ...]] | None = None  # per sample (input, output), single tensors only


@dataclass(frozen=True)
class Drop:
    """How a candidate is dropped: the paths that become identity, and the consumer a reconnect re-shapes."""

    candidate: DropCandidate
    removed: tuple[str, ...]
    consumer: str | None = None
    consumer_norm: str | None = None


@dataclass
class _Trace:
    """One traced forward pass: the dependency graph plus every module's calls and shapes."""

    graph: tp.DependencyGraph
    calls: dict[nn.Module, _Calls] = field(default_factory=dict)
    producers: dict[Any, nn.Module] = field(default_factory=dict)  # grad_fn of a leaf's output -> leaf


def _trace(model: nn.Module, example_inputs: ExampleInputs) -> _Trace:
    """Build the dependency graph while hooks record each module's calls, shapes and output node."""
    calls: dict[nn.Module, _Calls] = {}
    producers: dict[Any, nn.Module] = {}

    def record(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], output: Any) -> None:
        seen = calls.setdefault(module, _Calls())
        seen.count += 1
        single = (
            len(args) == 1
            and not kwargs
            and isinstance(args[0], torch.Tensor)
            and isinstance(output, torch.Tensor)
            and args[0].dim() > 0
            and output.dim() > 0
        )
        seen.shapes = (tuple(args[0].shape[1:]), tuple(output.shape[1:])) if single else None
        passes_through = single and output.grad_fn is args[0].grad_fn  # dropout in eval, identity
        is_leaf = next(module.children(), None) is None
        if is_leaf and isinstance(output, torch.Tensor) and output.grad_fn is not None and not passes_through:
            producers[output.grad_fn] = module

    handles = [module.register_forward_hook(record, with_kwargs=True) for module in model.modules()]
    try:
        graph = build_graph(model, example_inputs)
    finally:
        for handle in handles:
            handle.remove()
    return _Trace(graph=graph, calls=calls, producers=producers)


def _shape(shape: tuple[int, ...]) -> str:
    return "(" + ", ".join(str(size) for size in shape) + ")"


def _own_params(modules: Iterable[nn.Module]) -> int:
    return sum(p.numel() for module in modules for p in module.parameters())


def _grad_name(node: Any) -> str:
    grad_fn = getattr(node, "grad_fn", None)
    return grad_fn.name() if grad_fn is not None else type(node.module).__name__


class Analysis:
    """Every droppable unit of one model as it is now, and the reason any other module is not one."""

    def __init__(self, model: nn.Module, example_inputs: ExampleInputs) -> None:
        self.model = model
        self.trace = _trace(model, example_inputs)
        self.paths = {module: path for path, module in model.named_modules()}
        self.modules = dict(model.named_modules())
        self.order = {path: index for index, path in enumerate(self.modules)}
        self.outputs = set(output_layers(self.trace.graph))
        self.macs = layer_macs(model, example_inputs)
        self.blocks: list[str] = []
        self.drops: dict[str, Drop] = {}
        for path, module in self.modules.items():
            if self._inside_block(path) is not None:
                continue
            if next(module.children(), None) is not None:
                if self._block_problem(path, module) is None:
                    self.blocks.append(path)
                    self.drops[path] = self._block(path, module)
            elif isinstance(module, _LAYERS):
                found = self._layer(path, module)
                if isinstance(found, Drop):
                    self.drops[path] = found

    # ---- what each rule finds -------------------------------------------------------------

    def candidates(self) -> list[DropCandidate]:
        return [drop.candidate for drop in self.drops.values()]

    def reason(self, path: str) -> str:
        """Why the module at ``path`` cannot be dropped (it exists and is not a candidate)."""
        module = self.modules[path]
        block = self._inside_block(path)
        if block is not None:
            return f"it is part of block {block!r}, which is dropped as a whole"
        if next(module.children(), None) is not None or path == "":
            return self._block_problem(path, module) or "it cannot be dropped"
        if isinstance(module, _LAYERS):
            found = self._layer(path, module)
            return found if isinstance(found, str) else "it cannot be dropped"
        if isinstance(module, nn.Identity):
            return "it is an identity (already dropped, or never anything else)"
        return (
            f"it is a {type(module).__name__}; only blocks and conv or linear layers are dropped "
            "(batch norms and activations go with their layer)"
        )

    def _inside_block(self, path: str) -> str | None:
        return next((block for block in self.blocks if path.startswith(block + ".")), None)

    def _calls(self, module: nn.Module) -> _Calls:
        return self.trace.calls.get(module, _Calls())

    def _call_problem(self, module: nn.Module) -> str | None:
        count = self._calls(module).count
        if count == 0:
            return "it is not called in the model's forward on the example inputs"
        if count > 1:
            return f"it is called {count} times in one forward pass"
        if self._calls(module).shapes is None:
            return "its input and output are not single tensors"
        return None

    def _block_problem(self, path: str, module: nn.Module) -> str | None:
        if path == "":
            return "it is the whole model"
        if isinstance(module, _CONTAINERS):
            return f"it is a container ({type(module).__name__}); name the blocks or layers inside it"
        layers = [m for m in module.modules() if isinstance(m, _LAYERS)]
        if not layers:
            return "it holds no conv or linear layer"
        held = [m for m in layers if m in self.outputs]
        if held:
            return f"it holds the output layer {self.paths[held[0]]!r}"
        problem = self._call_problem(module)
        if problem is not None:
            return problem
        shape_in, shape_out = self._calls(module).shapes  # type: ignore[misc]
        if shape_in != shape_out:
            return f"its output shape {_shape(shape_out)} differs from its input shape {_shape(shape_in)}"
        return None

    def _block(self, path: str, module: nn.Module) -> Drop:
        macs = sum(self.macs.get(m, 0) for m in module.modules())
        candidate = DropCandidate(name=path, rule="block", params=_own_params([module]), macs=int(macs))
        return Drop(candidate=candidate, removed=(path,))

    def _module_of(self, node: Any) -> nn.Module | None:
        """The model's module behind a graph node: a layer Torch-Pruning knows, or a leaf found by its output."""
        if node.module in self.paths:
            return node.module
        return self.trace.producers.get(node.grad_fn)

    def _followers(self, node: Any) -> list[Any]:
        """Graph nodes of the batch norms and activation modules that directly follow ``node`` alone."""
        chain = []
        while len(node.outputs) == 1:
            following = node.outputs[0]
            module = self._module_of(following)
            if (
                not isinstance(module, (_BatchNorm, *_ACTIVATIONS))
                or len(following.inputs) != 1
                or self._calls(module).count != 1
            ):
                break
            chain.append(following)
            node = following
        return chain

    def _layer(self, path: str, layer: nn.Module) -> Drop | str:
        """The identity or reconnect drop of a conv/linear leaf, or why it has none."""
        if layer in self.outputs:
            return "it is an output layer: its outputs reach the model output through no other conv or linear layer"
        problem = self._call_problem(layer)
        if problem is not None:
            return problem
        node = self.trace.graph.module2node.get(layer)
        if node is None:
            return "the dependency graph does not reach it from the model output"
        followers = self._followers(node)
        removed = (path, *(self.paths[self._module_of(f)] for f in followers))  # type: ignore[index]
        removed_params = _own_params(self.modules[p] for p in removed)
        shape_in, shape_out = self._calls(layer).shapes  # type: ignore[misc]
        macs = int(self.macs.get(layer, 0))
        if shape_in == shape_out:
            candidate = DropCandidate(name=path, rule="identity", params=removed_params, macs=macs)
            return Drop(candidate=candidate, removed=removed)
        found = self._consumer(layer, followers[-1] if followers else node)
        if isinstance(found, str):
            return f"its output shape {_shape(shape_out)} differs from its input shape {_shape(shape_in)} and {found}"
        consumer, consumer_node = found
        is_conv = isinstance(layer, tp.ops.TORCH_CONV)
        if is_conv and (layer.transposed or layer.groups != 1):
            return f"its shape changes and it is a {'transposed' if layer.transposed else 'grouped'} convolution"
        if is_conv and (any(s != 1 for s in layer.stride) or shape_in[1:] != shape_out[1:]):
            return (
                f"its output shape {_shape(shape_out)} differs from its input shape {_shape(shape_in)} "
                "in spatial size, so no consumer can take its input instead"
            )
        hidden, inputs = int(layer.weight.shape[0]), int(layer.weight.shape[1])
        consumer_macs = int(self.macs.get(consumer, 0))
        consumer_weights = consumer.weight.numel()
        candidate = DropCandidate(
            name=path,
            rule="reconnect",
            params=removed_params + consumer_weights - consumer_weights // hidden * inputs,
            macs=macs + consumer_macs - round(consumer_macs * inputs / hidden),
        )
        norm = None
        if consumer.bias is None and len(consumer_node.outputs) == 1:
            following = self._module_of(consumer_node.outputs[0])
            if isinstance(following, _BatchNorm) and following.running_mean is not None:
                norm = self.paths[following]
        return Drop(candidate=candidate, removed=removed, consumer=self.paths[consumer], consumer_norm=norm)

    def _consumer(self, layer: nn.Module, node: Any) -> tuple[nn.Module, Any] | str:
        """The one conv/linear layer the chain from ``node`` reaches, or why the chain is not plain."""
        while True:
            if not node.outputs:
                return "its output is a model output"
            if len(node.outputs) > 1:
                return "its output feeds more than one layer"
            following = node.outputs[0]
            module = self._module_of(following)
            if isinstance(module, _LAYERS):
                return self._check_consumer(layer, module, following)
            if len(following.inputs) > 1:
                return f"it feeds an operation with several inputs ({_grad_name(following)}), such as a residual sum"
            if isinstance(module, nn.Flatten) or following.type == tp.ops.OPTYPE.RESHAPE:
                return "it feeds a flatten" if isinstance(module, nn.Flatten) else "it feeds a reshape"
            grad = _grad_name(following)
            if "Pool" in type(module).__name__ or "Pool" in grad:
                return f"it feeds a pooling ({type(module).__name__ if module is not None else grad})"
            parameter_free = module is not None and not any(True for _ in module.parameters())
            if isinstance(module, _ACTIVATIONS) and parameter_free:
                node = following
                continue
            if module is None and _ELEMENTWISE_GRADS.match(grad):
                node = following
                continue
            what = type(module).__name__ if module is not None else grad
            return f"it feeds {what}, which a re-shaped consumer cannot follow"

    def _check_consumer(self, layer: nn.Module, consumer: nn.Module, node: Any) -> tuple[nn.Module, Any] | str:
        name = self.paths[consumer]
        if isinstance(layer, tp.ops.TORCH_CONV) != isinstance(consumer, tp.ops.TORCH_CONV):
            kind = "a convolution" if isinstance(layer, tp.ops.TORCH_CONV) else "a linear layer"
            return f"its consumer {name!r} is a {type(consumer).__name__}, not {kind} like it"
        if isinstance(consumer, tp.ops.TORCH_CONV) and (
            consumer.transposed or consumer.groups != 1 or consumer.weight.dim() != layer.weight.dim()
        ):
            return f"its consumer {name!r} is a grouped, transposed or differently shaped convolution"
        if self._calls(consumer).count != 1:
            return f"its consumer {name!r} is called {self._calls(consumer).count} times"
        if masked_tensor_names(consumer):
            return f"its consumer {name!r} holds a weight mask and cannot be re-shaped"
        return consumer, node
