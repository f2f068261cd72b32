"""What compression means, measured the same way for every method.

The words follow the design notes: compression = base / pruned, counting only nonzero
weights for unstructured pruning and bits for quantized layers; MACs are counted on the real,
physically smaller model. Measuring never changes the model: modes, masks, gradients and
parameters are as they were before.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn
from torch.nn.utils import parametrize

from prunetune.errors import PrunetuneError
from prunetune.pruners.calls import batch_size, forward, layer_macs, untouched
from prunetune.pruners.unstructured import masked_tensor_names
from prunetune.runtime import model_device, synchronize, to_device, torch_threads

__all__ = [
    "Latency",
    "Measurement",
    "Storage",
    "compression",
    "measure",
    "measure_latency",
]

CompressionBy = Literal["nonzero_params", "params", "bits", "macs"]
_COMPRESSION_FIELDS: tuple[str, ...] = ("nonzero_params", "params", "bits", "macs")


@dataclass(frozen=True)
class Measurement:
    """The size and cost of one model.

    Attributes:
        params: dense parameter count (every entry, masked or not).
        nonzero_params: nonzero entries of the effective parameters, i.e. after masks.
        macs: multiply-accumulates of the conv and linear layers for one example, read off the
            real tensor shapes. Masked (zeroed) weights are still multiplied, so unstructured
            pruning does not lower this number; only a physically smaller model does. Bias adds,
            activations, pooling and normalisation are not counted.
        size_bytes: dense storage of the parameters at their dtype.
        bits: bits to store the nonzero parameters: each counts the ``prunetune_bits`` of the
            module that owns it where that module declares one, else its dtype's width. A
            tensor whose parametrization declares its :class:`Storage` (a quantized layer)
            counts exactly what that says: code bits per indexed weight plus its codebook.
    """

    params: int
    nonzero_params: int
    macs: int
    size_bytes: int
    bits: int


@dataclass(frozen=True)
class Storage:
    """What one tensor held in a compressed form costs, as its parametrization declares it.

    A :mod:`torch.nn.utils.parametrize` parametrization whose ``prunetune_storage(*originals)``
    returns one of these is counted by it instead of by its trained tensors (a quantized layer
    counts its weights, its codes and its codebook, not its codebook as parameters).
    """

    params: int
    nonzero_params: int
    size_bytes: int
    bits: int


@dataclass(frozen=True)
class Latency:
    """CPU forward latency of one batch, in milliseconds, and the conditions it was taken under."""

    median_ms: float
    p90_ms: float
    batch_size: int
    threads: int
    repeats: int


def measure(model: nn.Module, example_inputs: Any) -> Measurement:
    """Count the parameters, nonzero parameters, MACs, bytes and bits of ``model``.

    Args:
        model: the model, masked or not; it is left exactly as it was.
        example_inputs: what one forward call takes (a tensor, a tuple/list of positional
            arguments, or a dict of keyword arguments) with a leading batch dimension; MACs are
            divided by that batch size.

    Why not ``torch_pruning.utils.count_ops_and_params``: it adds bias adds and one op per
    activation, pooling and normalisation element to the count (267,010 rather than 266,200
    for LeNet-300-100), matches only exact module types (a subclass of ``nn.Linear`` counts
    zero), and deep-copies the model, which fails on a masked model after a forward pass with
    gradients. Its ``params`` agree with ours.
    """
    params = nonzero = size_bytes = bits = 0
    seen: set[int] = set()
    for name, module in model.named_modules():
        declared = _declared_storage(module)
        if declared is not None:
            originals, storage = declared
            seen.update(id(original) for original in originals)
            params += storage.params
            nonzero += storage.nonzero_params
            size_bytes += storage.size_bytes
            bits += storage.bits
        module_bits = _declared_bits(name, module)
        masked = {n: module.get_buffer(f"{n}_mask") for n in masked_tensor_names(module)}
        for param_name, param in module.named_parameters(recurse=False):
            if id(param) in seen:
                continue
            seen.add(id(param))
            effective = param.detach()
            base_name = param_name[: -len("_orig")]
            if param_name.endswith("_orig") and base_name in masked:
                effective = effective * masked[base_name]
            count = int(torch.count_nonzero(effective))
            params += param.numel()
            nonzero += count
            size_bytes += param.numel() * param.element_size()
            bits += count * (module_bits if module_bits is not None else param.element_size() * 8)
    return Measurement(
        params=params,
        nonzero_params=nonzero,
        macs=sum(layer_macs(model, example_inputs).values()),
        size_bytes=size_bytes,
        bits=bits,
    )


def compression(
    base: Measurement, pruned: Measurement, *, by: CompressionBy = "nonzero_params"
) -> float:
    """How many times smaller ``pruned`` is than ``base``: ``base.<by> / pruned.<by>``."""
    if by not in _COMPRESSION_FIELDS:
        raise PrunetuneError(
            f"The 'by' parameter of compression must be one of {', '.join(_COMPRESSION_FIELDS)}; "
            f"got {by!r} instead"
        )
    numerator, denominator = getattr(base, by), getattr(pruned, by)
    if denominator <= 0:
        raise PrunetuneError(
            f"cannot compute compression by {by}: the pruned model has {denominator} {by}"
        )
    return numerator / denominator


def measure_latency(
    model: nn.Module,
    example_inputs: Any,
    *,
    repeats: int = 30,
    warmup: int = 5,
    threads: int | None = None,
) -> Latency:
    """Time forward passes in eval mode under ``torch.inference_mode``, on the device the model is on.

    On a GPU each pass is timed to its end (the device is synchronised before the clock stops).

    The batch size is the leading dimension of ``example_inputs``. ``threads`` sets
    ``torch.set_num_threads`` for the measurement only (None keeps the current setting);
    the previous thread count and the model's modes are restored afterwards. The median
    resists the odd slow pass; p90 shows the spread.
    """
    for argument, value, least in (("repeats", repeats, 1), ("warmup", warmup, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise PrunetuneError(
                f"The {argument!r} parameter of measure_latency must be an integer >= {least}; "
                f"got {value!r} instead"
            )
    bad_threads = isinstance(threads, bool) or not isinstance(threads, int) or threads < 1
    if threads is not None and bad_threads:
        raise PrunetuneError(
            f"The 'threads' parameter of measure_latency must be None or an integer >= 1; "
            f"got {threads!r} instead"
        )
    samples = batch_size(example_inputs)
    timings: list[float] = []
    with torch_threads(threads), untouched(model), torch.inference_mode():
        used_threads = torch.get_num_threads()
        device = model_device(model)
        example_inputs = to_device(example_inputs, device)
        for _ in range(warmup):
            forward(model, example_inputs)
        synchronize(device)
        for _ in range(repeats):
            start = time.perf_counter()
            forward(model, example_inputs)
            synchronize(device)
            timings.append((time.perf_counter() - start) * 1000.0)
    return Latency(
        median_ms=statistics.median(timings),
        p90_ms=_percentile(timings, 0.9),
        batch_size=samples,
        threads=used_threads,
        repeats=repeats,
    )


def _declared_storage(module: nn.Module) -> tuple[list[torch.Tensor], Storage] | None:
    """The trained tensors and declared storage of a parametrization list that declares one."""
    if not isinstance(module, parametrize.ParametrizationList) or len(module) != 1:
        return None
    declare = getattr(module[0], "prunetune_storage", None)
    if declare is None:
        return None
    if module.is_tensor:
        originals = [module.original]
    else:
        originals = [getattr(module, f"original{index}") for index in range(module.ntensors)]
    return originals, declare(*originals)


def _declared_bits(name: str, module: nn.Module) -> int | None:
    bits = getattr(module, "prunetune_bits", None)
    if bits is None:
        return None
    if isinstance(bits, bool) or not isinstance(bits, int) or bits < 1:
        raise PrunetuneError(
            f"layer {name!r} declares prunetune_bits={bits!r}; it must be an integer >= 1"
        )
    return bits


def _percentile(values: list[float], fraction: float) -> float:
    """Linear interpolation between the closest ranks (numpy's default)."""
    ordered = sorted(values)
    position = fraction * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)
