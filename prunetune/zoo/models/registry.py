"""Build a model by name, and record how to build it again.

Every built model carries ``model.zoo_spec = {"name": ..., "kwargs": {...}}`` in plain JSON data
(defaults filled in), so a checkpoint or a Pareto point can re-create the architecture with
:func:`build_from_spec` even if a default changes later.

Names: the zoo's own (:func:`list_models`, forgiving about case, ``-`` and ``_``), a user's
``package.module:callable`` or ``path/to/file.py:callable``, and ``torchvision:NAME``.
"""

from __future__ import annotations

import difflib
import inspect
import math
import numbers
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from torch import nn

from prunetune.errors import PrunetuneError
from prunetune.user_code import accepted_keywords, load_reference
from prunetune.zoo.models._common import check_positive_int, owner_name
from prunetune.zoo.models._external import TORCHVISION_PREFIX, build_from_callable, build_torchvision
from prunetune.zoo.models.alexnet import AlexNet
from prunetune.zoo.models.autoencoder import Autoencoder
from prunetune.zoo.models.lenet import LeNet5, LeNet300100
from prunetune.zoo.models.resnet import CifarResNet
from prunetune.zoo.models.vgg import VGG

__all__ = [
    "build_from_spec", "build_model", "build_model_for", "canonical_model_name", "list_models", "resolve_model_kwargs",
]


@dataclass(frozen=True)
class _Entry:
    """A zoo name: the class to call, arguments the name fixes, and the data the model reads."""

    factory: Callable[..., nn.Module]
    fixed: tuple[tuple[str, Any], ...]
    data: str  # "image": (channels, height, width); "flat": any shape, flattened

    def parameters(self) -> dict[str, inspect.Parameter]:
        fixed = {key for key, _ in self.fixed}
        signature = inspect.signature(self.factory)
        return {
            name: p
            for name, p in signature.parameters.items()
            if p.kind is inspect.Parameter.KEYWORD_ONLY and name not in fixed
        }


_ZOO: dict[str, _Entry] = {
    "lenet300_100": _Entry(LeNet300100, (), "flat"),
    "lenet5": _Entry(LeNet5, (), "image"),
    "vgg11": _Entry(VGG, (("depth", 11),), "image"),
    "vgg16": _Entry(VGG, (("depth", 16),), "image"),
    "vgg19": _Entry(VGG, (("depth", 19),), "image"),
    "resnet20": _Entry(CifarResNet, (("depth", 20),), "image"),
    "resnet56": _Entry(CifarResNet, (("depth", 56),), "image"),
    "resnet110": _Entry(CifarResNet, (("depth", 110),), "image"),
    "alexnet": _Entry(AlexNet, (), "image"),
    "autoencoder": _Entry(Autoencoder, (), "flat"),
}


def _normalise(name: str) -> str:
    return re.sub(r"[\s_\-]", "", name.lower())


_ALIASES: dict[str, str] = {_normalise(canonical): canonical for canonical in _ZOO}


def list_models() -> list[str]:
    """The zoo's canonical model names, sorted."""
    return sorted(_ZOO)


def _unknown(name: str) -> PrunetuneError:
    close = difflib.get_close_matches(_normalise(name), list(_ALIASES), n=1)
    hint = f" Did you mean {_ALIASES[close[0]]!r}?" if close else ""
    return PrunetuneError(
        f"Unknown model {name!r}.{hint} Available models: {', '.join(list_models())}; "
        f"or 'package.module:callable' or 'path/to/file.py:callable' for your own model, "
        f"or 'torchvision:NAME'."
    )


def canonical_model_name(name: str) -> str:
    """The zoo name that ``name`` means (``"LeNet-5"`` -> ``"lenet5"``); other references unchanged."""
    if not isinstance(name, str) or not name.strip():
        raise PrunetuneError(f"A model name must be a non-empty string. Got {name!r} instead.")
    name = name.strip()
    if ":" in name:
        return name
    canonical = _ALIASES.get(_normalise(name))
    if canonical is None:
        raise _unknown(name)
    return canonical


def _plain(value: Any, *, argument: str, owner: str) -> Any:
    """``value`` as JSON data (tuples become lists), or a PrunetuneError naming the argument."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real) and math.isfinite(float(value)):
        return float(value)
    if isinstance(value, (list, tuple)):
        return [_plain(item, argument=argument, owner=owner) for item in value]
    if isinstance(value, Mapping) and all(isinstance(key, str) for key in value):
        return {key: _plain(item, argument=argument, owner=owner) for key, item in value.items()}
    raise PrunetuneError(
        f"The {argument!r} argument of {owner} must be plain data (numbers, strings, lists, dicts) "
        f"so the model can be rebuilt from its zoo_spec. Got {value!r} instead."
    )


def _build_zoo(canonical: str, kwargs: Mapping[str, Any]) -> nn.Module:
    entry = _ZOO[canonical]
    parameters = entry.parameters()
    for argument, value in kwargs.items():
        if argument not in parameters:
            raise PrunetuneError(
                f"The {argument!r} argument (= {value!r}) is not accepted by {canonical}. "
                f"It accepts: {', '.join(parameters)}."
            )
    bound = {name: kwargs.get(name, p.default) for name, p in parameters.items()}
    plain = {name: _plain(value, argument=name, owner=canonical) for name, value in bound.items()}
    # Build from the recorded data itself, so rebuilding from zoo_spec cannot differ. The
    # constructor checks the arguments; its messages name the model as the registry knows it.
    with owner_name(canonical):
        model = entry.factory(**dict(entry.fixed), **plain)
    model.zoo_spec = {"name": canonical, "kwargs": plain}
    return model


def build_model(name: str, **kwargs: Any) -> nn.Module:
    """Build a model by zoo name, ``module:callable`` or ``torchvision:NAME``.

    Args:
        name: A zoo name such as ``"vgg16"`` or ``"LeNet-5"``; ``"pkg.models:make_net"`` or
            ``"path/to/file.py:make_net"`` for your own factory (called with ``kwargs``, must
            return an ``nn.Module``); ``"torchvision:resnet18"`` for an untrained torchvision model.
        **kwargs: The builder's keyword arguments (see :func:`resolve_model_kwargs` for the ones
            that describe the data).

    Returns:
        The model, with ``model.zoo_spec`` recording the name and every argument as JSON data.

    Raises:
        PrunetuneError: For an unknown name, an argument the builder does not take or a bad value.

    Example:
        >>> model = build_model("LeNet-5", num_classes=10, in_channels=1, input_size=8)
        >>> model.zoo_spec["name"]
        'lenet5'
    """
    canonical = canonical_model_name(name)
    if canonical.lower().startswith(TORCHVISION_PREFIX):
        plain = {key: _plain(value, argument=key, owner=canonical) for key, value in kwargs.items()}
        model = build_torchvision(canonical, plain)
    elif ":" in canonical:
        plain = {key: _plain(value, argument=key, owner=canonical) for key, value in kwargs.items()}
        model, canonical = build_from_callable(canonical, plain)
    else:
        return _build_zoo(canonical, kwargs)
    model.zoo_spec = {"name": canonical, "kwargs": plain}
    return model


def build_from_spec(spec: Mapping[str, Any]) -> nn.Module:
    """Re-create an architecture (untrained) from a ``zoo_spec`` such as a checkpoint stores."""
    name, kwargs = (spec.get("name"), spec.get("kwargs", {})) if isinstance(spec, Mapping) else (None, None)
    if not isinstance(name, str) or not isinstance(kwargs, Mapping):
        raise PrunetuneError(
            f"A model spec must be a mapping with a 'name' string and a 'kwargs' mapping. Got {spec!r} instead."
        )
    return build_model(name, **kwargs)


def _data_kwargs(kind: str, shape: tuple[int, ...], owner: str) -> dict[str, Any]:
    if kind == "flat":
        return {"in_features": math.prod(shape)}
    if len(shape) != 3:
        raise PrunetuneError(
            f"{owner} is a convolutional model and reads images shaped (channels, height, width); "
            f"the data is shaped {shape}."
        )
    channels, height, width = shape
    return {"in_channels": channels, "input_size": height if height == width else [height, width]}


def resolve_model_kwargs(name: str, input_shape: Sequence[int], num_classes: int) -> dict[str, Any]:
    """The keyword arguments that fit a model to data of one sample's ``input_shape``.

    Only arguments the builder takes are returned: ``(1, 28, 28)`` gives ``in_channels=1,
    input_size=28`` for a conv model and ``in_features=784`` for an MLP; a tabular ``(30,)``
    gives ``in_features=30``. ``num_classes`` is included where the model has a classifier.

    Raises:
        PrunetuneError: For an unknown name, a bad shape, or image data for a model that reads rows.
    """
    canonical = canonical_model_name(name)
    is_shape = isinstance(input_shape, Sequence) and not isinstance(input_shape, str) and len(input_shape) > 0
    if not is_shape or not all(isinstance(d, numbers.Integral) and d >= 1 for d in input_shape):
        raise PrunetuneError(
            f"The 'input_shape' argument of resolve_model_kwargs must be a non-empty tuple of integers >= 1 "
            f"(one sample, without the batch). Got {input_shape!r} instead."
        )
    shape = tuple(int(d) for d in input_shape)
    num_classes = check_positive_int(num_classes, name="num_classes", owner=canonical)

    if canonical.lower().startswith(TORCHVISION_PREFIX):
        image = _data_kwargs("image", shape, canonical)
        if image["in_channels"] != 3:
            raise PrunetuneError(
                f"{canonical} reads 3-channel images; the data has {image['in_channels']} channel(s). "
                f"Use a zoo model, which takes in_channels."
            )
        return {"num_classes": num_classes}

    if ":" in canonical:
        function, _ = load_reference(canonical, label="model", callable_only=True)
        # Not introspectable (some builtins): treated like a **kwargs callable.
        accepted, any_keyword = accepted_keywords(function) or (frozenset(), True)
        offered: dict[str, Any] = {"num_classes": num_classes}
        offered.update(_data_kwargs("image" if len(shape) == 3 else "flat", shape, canonical))
        if "in_features" in accepted and "in_features" not in offered:
            offered["in_features"] = math.prod(shape)
        if "input_shape" in accepted:
            offered["input_shape"] = list(shape)
        # A **kwargs callable (often a wrapper forwarding them to a module) gets the basic facts
        # only; anything else it must declare by name, or receive through model.kwargs.
        basic = ("num_classes", "in_channels", "in_features")
        return {key: value for key, value in offered.items() if key in accepted or (any_keyword and key in basic)}

    entry = _ZOO[canonical]
    accepted_zoo = entry.parameters()
    offered = {"num_classes": num_classes, **_data_kwargs(entry.data, shape, canonical)}
    return {key: value for key, value in offered.items() if key in accepted_zoo}


def build_model_for(name: str, data: Any, extra: Mapping[str, Any] | None = None) -> nn.Module:
    """Build zoo model `name` sized for `data` (a DataSplits: classes, input shape); `extra` overrides."""
    kwargs = resolve_model_kwargs(name, data.input_shape, data.num_classes)
    kwargs.update(extra or {})
    return build_model(name, **kwargs)
