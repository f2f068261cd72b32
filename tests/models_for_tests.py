"""A model factory that goes wrong, named by this file's path in tests (the good ones are in
examples/my_model_and_data.py)."""

from __future__ import annotations

from typing import Any

from torch import nn


def broken_factory(**kwargs: Any) -> nn.Module:
    """Forwards an argument the class does not take: the user's own call raises TypeError."""
    return nn.Linear(depth=3, **kwargs)
