"""Adaptive batch norm (EagleEye, Li et al. ECCV 2020): re-estimate BN statistics after pruning.

Removing filters or zeroing weights shifts every later layer's activations, but the batch-norm
layers still normalise with the running mean and variance of the unpruned network. Those stale
statistics, not the lost weights, cause most of the accuracy collapse seen right after pruning.
A few forward passes over training batches, without gradients, re-estimate them: the pruned
model's accuracy before fine-tuning becomes a cheap and much better proxy for its accuracy after.
"""

from __future__ import annotations

from collections.abc import Iterable
from itertools import islice
from typing import Any

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from prunetune.pruners.calls import forward

__all__ = ["DEFAULT_RECALIBRATION_BATCHES", "batchnorm_layers", "has_batchnorm", "recalibrate_batchnorm"]

#: Batches a trial re-estimates BN statistics on when the model has BN layers (EagleEye uses 50
#: batches of 64 on ImageNet; small datasets and small models settle with fewer).
DEFAULT_RECALIBRATION_BATCHES = 20


def batchnorm_layers(model: nn.Module) -> list[_BatchNorm]:
    """The batch-norm layers of ``model`` that keep running statistics."""
    return [
        module
        for module in model.modules()
        if isinstance(module, _BatchNorm) and module.track_running_stats and module.running_mean is not None
    ]


def has_batchnorm(model: nn.Module) -> bool:
    """Whether ``model`` has a batch-norm layer with running statistics to recalibrate."""
    return bool(batchnorm_layers(model))


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, batches: Iterable[tuple[Any, Any]], *, num_batches: int) -> int:
    """Reset the running statistics of ``model``'s BN layers and re-estimate them on ``num_batches``.

    Only the BN layers run in train mode; everything else stays in eval mode, so dropout does not
    distort the statistics: they are estimated as the network will see its inputs at inference.
    The momentum is set to ``None`` meanwhile (a cumulative average: every batch counts equally,
    whatever ``num_batches`` is). Modes and momenta are restored afterwards, and if ``batches``
    turned out empty the old statistics are put back rather than left reset.

    Args:
        model: The (pruned) model, changed in place.
        batches: ``(inputs, targets)`` pairs, e.g. a training loader; targets are ignored.
        num_batches: How many batches to use at most; 0 does nothing.

    Returns:
        The number of batches used.
    """
    layers = batchnorm_layers(model)
    if not layers or num_batches <= 0:
        return 0
    modes = [(module, module.training) for module in model.modules()]
    momenta = [(layer, layer.momentum) for layer in layers]
    saved = [{name: buffer.clone() for name, buffer in layer.named_buffers(recurse=False)} for layer in layers]
    used = 0
    try:
        model.eval()
        for layer in layers:
            layer.reset_running_stats()
            layer.momentum = None
            layer.train()
        for inputs, _ in islice(batches, num_batches):
            forward(model, inputs)
            used += 1
    finally:
        for module, training in modes:
            module.training = training
        for layer, momentum in momenta:
            layer.momentum = momentum
        if used == 0:
            for layer, buffers in zip(layers, saved):
                for name, value in buffers.items():
                    getattr(layer, name).copy_(value)
    return used
