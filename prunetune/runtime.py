"""Process-wide knobs that every part sets the same way: seeds, CPU threads, and where tensors live."""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import torch

__all__ = ["model_device", "seed_everything", "synchronize", "to_device", "torch_threads"]


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch from one number; returns a torch generator for data order."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    generator = torch.Generator()
    generator.manual_seed(seed)
    return generator


@contextlib.contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """Run a block with `threads` intra-op CPU threads, restoring the previous count after.

    Trials share a machine with other trials; each one must stay within the threads it was given.
    """
    if threads is None:
        yield
        return
    if threads < 1:
        from prunetune.errors import PrunetuneError

        raise PrunetuneError(f"The 'threads' argument must be >= 1. Got {threads} instead.")
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def model_device(model: torch.nn.Module) -> torch.device:
    """Where ``model``'s weights are (its first parameter or buffer); the CPU for a model with none."""
    for tensor in model.parameters():
        return tensor.device
    for tensor in model.buffers():
        return tensor.device
    return torch.device("cpu")


def to_device(value: Any, device: torch.device) -> Any:
    """``value`` with every tensor in it (nested in tuples, lists, mappings) on ``device``.

    A tensor already there is returned as is, so on the CPU this costs nothing; pinned memory is
    copied asynchronously to a GPU.
    """
    if isinstance(value, torch.Tensor):
        return value if value.device == device else value.to(device, non_blocking=True)
    if isinstance(value, Mapping):
        return {key: to_device(item, device) for key, item in value.items()}
    if isinstance(value, (tuple, list)):
        return type(value)(to_device(item, device) for item in value)
    return value


def synchronize(device: torch.device) -> None:
    """Wait for the work queued on ``device`` (a GPU runs asynchronously); nothing on the CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()
