"""Models from outside the zoo: a user's ``module:callable`` and ``torchvision:NAME``.

Only the module or file the user named is imported; torchvision is imported lazily because its
wheels are tied to one torch build, and a mismatched one must not break the rest of prunetune.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from prunetune.errors import PrunetuneError
from prunetune.user_code import load_reference

__all__ = ["TORCHVISION_PREFIX", "build_from_callable", "build_torchvision"]

TORCHVISION_PREFIX = "torchvision:"


def build_from_callable(reference: str, kwargs: Mapping[str, Any]) -> tuple[nn.Module, str]:
    """Call the user's model factory with ``kwargs``; return the model and the recorded reference."""
    function, recorded = load_reference(reference, label="model", callable_only=True)
    try:
        signature: inspect.Signature | None = inspect.signature(function)
    except (TypeError, ValueError):
        signature = None  # not introspectable (some builtins): the call itself decides
    if signature is not None:
        try:
            signature.bind(**kwargs)
        except TypeError as exc:
            raise PrunetuneError(
                f"The model {reference!r} cannot take the arguments {dict(kwargs)!r}: {exc}."
            ) from exc
    try:
        model = function(**kwargs)
    except TypeError as exc:
        passed = ", ".join(f"{key}={value!r}" for key, value in kwargs.items()) or "no arguments"
        raise PrunetuneError(
            f"The model {reference!r} raised TypeError when called with {passed}: {exc}. Set its arguments "
            "with 'model.kwargs' in the experiment file (or --model-arg KEY=VALUE on the command line); "
            "a factory taking **kwargs is given num_classes and in_channels (in_features for rows) only."
        ) from exc
    if not isinstance(model, nn.Module):
        raise PrunetuneError(
            f"The model {reference!r} returned a {type(model).__name__}, not a torch.nn.Module."
        )
    return model, recorded


def _torchvision_unavailable(reference: str, exc: BaseException) -> PrunetuneError:
    return PrunetuneError(
        f"The model {reference!r} needs torchvision, which is not importable here "
        f"({type(exc).__name__}: {exc}). torchvision is built for one torch release and build "
        f"(CPU or a given CUDA), and a build that does not match the installed torch "
        f"{torch.__version__} fails to import. Install the matching one with "
        f"`pip install prunetune[torchvision]` (or pick the torchvision wheel for your torch build "
        f"at https://pytorch.org/get-started/locally/), or use a zoo model instead."
    )


def build_torchvision(reference: str, kwargs: Mapping[str, Any]) -> nn.Module:
    """``torchvision.models.NAME(weights=None, **kwargs)``: an untrained torchvision architecture."""
    name = reference[len(TORCHVISION_PREFIX) :].strip()
    try:
        import torchvision.models as tv_models
    except Exception as exc:  # a mismatched build raises RuntimeError/OSError, not only ImportError
        raise _torchvision_unavailable(reference, exc) from exc
    available = sorted(tv_models.list_models(module=tv_models))
    if name not in available:
        raise PrunetuneError(
            f"Unknown torchvision model {name!r}. "
            f"Available torchvision classification models: {', '.join(available)}."
        )
    arguments = {"weights": None, **kwargs}
    try:
        return tv_models.get_model(name, **arguments)
    except (TypeError, ValueError) as exc:
        raise PrunetuneError(f"torchvision could not build {name!r} with {arguments!r}: {exc}") from exc
