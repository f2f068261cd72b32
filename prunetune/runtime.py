"""Process-wide knobs that every part sets the same way: seeds and CPU threads."""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator

import numpy as np
import torch

__all__ = ["seed_everything", "torch_threads"]


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
