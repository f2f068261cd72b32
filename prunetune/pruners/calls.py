"""Calling a model on example inputs, and counting its MACs, the one way the whole package does.

Example inputs may be one tensor, a sequence of positional tensors or a mapping of keyword
tensors, always with a leading batch dimension. Discovery, measurement and pruning all go
through here, so they agree on what a forward call and a multiply-accumulate are.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from prunetune.errors import PrunetuneError
from prunetune.runtime import model_device, to_device
from prunetune.pruners.unstructured import masked_tensor_names

__all__ = ["ExampleInputs", "batch_size", "forward", "layer_macs", "untouched"]

#: What a model is called with: one tensor, a sequence of positional tensors, or keyword tensors.
ExampleInputs = Any

_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_TRANSPOSED_CONV = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
MAC_LAYERS = (nn.Linear, *_CONV, *_TRANSPOSED_CONV)


def forward(model: nn.Module, example_inputs: ExampleInputs) -> Any:
    """Call ``model`` on ``example_inputs``, moved to the device ``model`` is on."""
    example_inputs = to_device(example_inputs, model_device(model))
    if isinstance(example_inputs, torch.Tensor):
        return model(example_inputs)
    if isinstance(example_inputs, Mapping):
        return model(**example_inputs)
    if isinstance(example_inputs, Sequence):
        return model(*example_inputs)
    return model(example_inputs)


def batch_size(example_inputs: ExampleInputs) -> int:
    """The leading dimension of the first tensor in ``example_inputs``."""
    if isinstance(example_inputs, Mapping):
        values = list(example_inputs.values())
    elif isinstance(example_inputs, (tuple, list)):
        values = list(example_inputs)
    else:
        values = [example_inputs]
    for value in values:
        if isinstance(value, torch.Tensor):
            if value.dim() == 0 or value.shape[0] == 0:
                raise PrunetuneError(
                    f"example_inputs needs a leading batch dimension of at least 1; got shape {tuple(value.shape)}"
                )
            return int(value.shape[0])
    raise PrunetuneError("example_inputs must be a tensor, or a tuple, list or dict holding one")


@contextmanager
def untouched(model: nn.Module) -> Iterator[None]:
    """Eval mode for the block; then every module's mode and every masked tensor back as they were.

    Torch-Pruning's tracing leaves a model in eval mode, and the prune pre-hook rewrites a masked
    tensor attribute (``weight``) on every forward; putting the old object back keeps its autograd
    state and leaves no inference tensors behind.
    """
    modes = [(module, module.training) for module in model.modules()]
    derived = [
        (module, name, module.__dict__[name])
        for module in model.modules()
        for name in masked_tensor_names(module)
        if name in module.__dict__
    ]
    model.eval()
    try:
        yield
    finally:
        for module, training in modes:
            module.training = training
        for module, name, tensor in derived:
            setattr(module, name, tensor)


def layer_macs(
    model: nn.Module, example_inputs: ExampleInputs, layers: Iterable[nn.Module] | None = None
) -> dict[nn.Module, int]:
    """Multiply-accumulates per sample of each conv/linear layer (all, or those in ``layers``).

    Counted from the real tensor shapes in one forward pass; bias adds, activations, pooling and
    normalisation are not counted, and a layer called twice counts twice.
    """
    chosen = [m for m in model.modules() if isinstance(m, MAC_LAYERS)] if layers is None else list(layers)
    totals: dict[nn.Module, int] = {}

    def count(module: nn.Module, inputs: tuple[Any, ...], output: Any) -> None:
        weights = module.weight.numel()
        if isinstance(module, _TRANSPOSED_CONV):
            # each input element is spread over (out_channels / groups) * kernel outputs
            macs = inputs[0].numel() * weights // module.in_channels
        elif isinstance(module, _CONV):
            # each output element sums (in_channels / groups) * kernel products
            macs = output.numel() * weights // module.out_channels
        else:
            macs = output.numel() * module.in_features
        totals[module] = totals.get(module, 0) + macs

    samples = batch_size(example_inputs)
    handles = [module.register_forward_hook(count) for module in chosen]
    try:
        with untouched(model), torch.no_grad():
            forward(model, example_inputs)
    finally:
        for handle in handles:
            handle.remove()
    return {module: round(macs / samples) for module, macs in totals.items()}
