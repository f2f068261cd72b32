"""Small helpers the model families share: argument checks, width scaling, spatial sizes.

Every check raises :class:`PrunetuneError` in one shape ("The 'x' argument of Owner must be ...
Got ... instead.") so a bad experiment file stops with a message that names the problem. The
constructors are the one place a model's arguments are checked; the registry only sets, with
:func:`owner_name`, the name those messages give the model.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, TypeVar, Union

from torch import nn

from prunetune.errors import PrunetuneError

__all__ = [
    "ACTIVATIONS",
    "Size",
    "check_choice",
    "check_classifier_args",
    "check_fraction",
    "check_in_features",
    "check_input_size",
    "check_positive_int",
    "check_width",
    "conv_out",
    "make_activation",
    "model_owner",
    "owner_name",
    "scaled",
]

_T = TypeVar("_T")

#: An image side: one int for square inputs, or (height, width).
Size = Union[int, Sequence[int]]

#: Activation names a model accepts, mapped to their module classes.
ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "leaky_relu": nn.LeakyReLU,
    "elu": nn.ELU,
    "selu": nn.SELU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "identity": nn.Identity,
}


#: The name argument errors give the model being built; None means its class name.
_OWNER: ContextVar[str | None] = ContextVar("prunetune_model_owner", default=None)


@contextmanager
def owner_name(name: str) -> Iterator[None]:
    """Within this block, models give ``name`` (the registry's zoo name) as theirs in argument errors."""
    token = _OWNER.set(name)
    try:
        yield
    finally:
        _OWNER.reset(token)


def model_owner(model: nn.Module) -> str:
    """The name ``model``'s argument errors use: the one :func:`owner_name` set, else the class name."""
    return _OWNER.get() or type(model).__name__


def _fail(name: str, owner: str, requirement: str, value: Any) -> PrunetuneError:
    return PrunetuneError(f"The {name!r} argument of {owner} must be {requirement}. Got {value!r} instead.")


def _is_int(value: Any) -> bool:
    # bool is an int subclass, but `num_classes=True` is a mistake, not a count.
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_positive_int(value: Any, *, name: str, owner: str, minimum: int = 1) -> int:
    """Return ``value`` when it is an integer >= ``minimum``."""
    if not _is_int(value) or value < minimum:
        raise _fail(name, owner, f"an integer >= {minimum}", value)
    return int(value)


def check_width(value: Any, *, owner: str, name: str = "width") -> float:
    """Return a width multiplier; it must be a finite number > 0."""
    if not isinstance(value, numbers.Real) or isinstance(value, bool):
        raise _fail(name, owner, "a number > 0", value)
    if not math.isfinite(value) or value <= 0:
        raise _fail(name, owner, "> 0", value)
    return float(value)


def check_fraction(value: Any, *, name: str, owner: str) -> float:
    """Return a probability in [0, 1) such as a dropout rate."""
    if not isinstance(value, numbers.Real) or isinstance(value, bool) or not 0 <= value < 1:
        raise _fail(name, owner, "a number in [0, 1)", value)
    return float(value)


def check_input_size(value: Any, *, owner: str, name: str = "input_size", minimum: int = 1) -> tuple[int, int]:
    """Return (height, width) from one int or a pair of ints, each >= ``minimum``."""
    requirement = f"an integer >= {minimum} or a pair (height, width) of them"
    if _is_int(value):
        pair: tuple[Any, ...] = (value, value)
    elif isinstance(value, Sequence) and not isinstance(value, str) and len(value) == 2:
        pair = tuple(value)
    else:
        raise _fail(name, owner, requirement, value)
    if not all(_is_int(side) and side >= minimum for side in pair):
        raise _fail(name, owner, requirement, value)
    return int(pair[0]), int(pair[1])


def check_classifier_args(
    *, num_classes: Any, in_channels: Any, width: Any, owner: str
) -> tuple[int, int, float]:
    """``(num_classes, in_channels, width)`` checked: the arguments every zoo image classifier takes."""
    return (
        check_positive_int(num_classes, name="num_classes", owner=owner),
        check_positive_int(in_channels, name="in_channels", owner=owner),
        check_width(width, owner=owner),
    )


def check_in_features(in_features: Any, *, in_channels: Any, input_size: Any, owner: str) -> int:
    """``in_features``, or ``in_channels * height * width`` when it is None (a model that flattens).

    ``in_channels`` and ``input_size`` are checked even when ``in_features`` leaves them unused:
    the registry records them in ``zoo_spec``, so a bad one must not be recorded.
    """
    channels = check_positive_int(in_channels, name="in_channels", owner=owner)
    height, wide = check_input_size(input_size, owner=owner)
    if in_features is None:
        in_features = channels * height * wide
    return check_positive_int(in_features, name="in_features", owner=owner)


def check_choice(value: Any, *, name: str, owner: str, choices: Sequence[_T]) -> _T:
    """Return ``value`` when it is one of ``choices``."""
    if isinstance(value, bool) or value not in choices:
        raise _fail(name, owner, "one of " + ", ".join(repr(c) for c in choices), value)
    return value  # type: ignore[no-any-return]


def scaled(features: int, width: float) -> int:
    """Scale a hidden width by the multiplier, never below one unit (a layer must exist)."""
    return max(1, int(round(features * width)))


def conv_out(size: int, *, kernel: int, stride: int = 1, padding: int = 0) -> int:
    """Spatial size after a convolution or pooling (floor mode), as PyTorch computes it."""
    return (size + 2 * padding - kernel) // stride + 1


def make_activation(name: str, *, owner: str, argument: str = "activation") -> nn.Module:
    """A fresh activation module by name, so no module instance is shared between layers."""
    check_choice(name, name=argument, owner=owner, choices=tuple(ACTIVATIONS))
    return ACTIVATIONS[name]()
