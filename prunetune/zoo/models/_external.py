"""Models from outside the zoo: a user's ``module:callable`` and ``torchvision:NAME``.

Only the module or file the user named is imported; torchvision is imported lazily because its
wheels are tied to one torch build, and a mismatched one must not break the rest of prunetune.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from prunetune.errors import PrunetuneError

__all__ = [
    "TORCHVISION_PREFIX",
    "build_from_callable",
    "build_torchvision",
    "callable_parameters",
    "load_callable",
]

TORCHVISION_PREFIX = "torchvision:"

_FORM = "'package.module:callable' or 'path/to/file.py:callable'"


def _is_file_reference(module_part: str) -> bool:
    return module_part.endswith(".py") or "/" in module_part or "\\" in module_part


def _import_file(path_text: str, reference: str) -> Any:
    path = Path(path_text).expanduser().resolve()
    if not path.is_file():
        raise PrunetuneError(f"The model {reference!r} names the file {str(path)!r}, which does not exist.")
    # One module name per file path, so building twice reuses the module (and its classes).
    digest = hashlib.sha1(str(path).encode()).hexdigest()[:10]
    module_name = f"_prunetune_user_{path.stem}_{digest}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise PrunetuneError(f"The model {reference!r} names {str(path)!r}, which Python cannot import as a module.")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[module_name]
        raise PrunetuneError(
            f"Importing {str(path)!r} for the model {reference!r} failed: {type(exc).__name__}: {exc}"
        ) from exc
    return module


def _import_module(module_name: str, reference: str) -> Any:
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (module_name == exc.name or module_name.startswith(exc.name + ".")):
            raise PrunetuneError(
                f"The model {reference!r} names the module {module_name!r}, which is not importable ({exc}). "
                f"Put its folder on PYTHONPATH, or name the file instead: 'path/to/file.py:callable'."
            ) from exc
        raise PrunetuneError(f"Importing {module_name!r} for the model {reference!r} failed: {exc}") from exc
    except Exception as exc:
        raise PrunetuneError(
            f"Importing {module_name!r} for the model {reference!r} failed: {type(exc).__name__}: {exc}"
        ) from exc


def load_callable(reference: str) -> tuple[Callable[..., Any], str]:
    """The callable a ``module:callable`` reference names, and the reference to record for rebuilding.

    A file path is recorded as an absolute path so the rebuilt model does not depend on the
    working directory.
    """
    module_part, _, attribute = reference.rpartition(":")
    module_part, attribute = module_part.strip(), attribute.strip()
    if not module_part or not attribute:
        raise PrunetuneError(f"The model {reference!r} must look like {_FORM}.")
    if _is_file_reference(module_part):
        module = _import_file(module_part, reference)
        recorded = f"{Path(module_part).expanduser().resolve()}:{attribute}"
    else:
        module = _import_module(module_part, reference)
        recorded = f"{module_part}:{attribute}"
    target: Any = module
    for part in attribute.split("."):
        if not hasattr(target, part):
            raise PrunetuneError(f"The model {reference!r}: {module_part!r} has no attribute {attribute!r}.")
        target = getattr(target, part)
    if not callable(target):
        raise PrunetuneError(
            f"The model {reference!r} names {type(target).__name__} {attribute!r}, which is not callable."
        )
    return target, recorded


def callable_parameters(function: Callable[..., Any]) -> tuple[set[str], bool]:
    """The keyword names ``function`` accepts, and whether it also takes ``**kwargs``."""
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):
        return set(), True
    names = {
        p.name
        for p in signature.parameters.values()
        if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    }
    var_keyword = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in signature.parameters.values())
    return names, var_keyword


def build_from_callable(reference: str, kwargs: Mapping[str, Any]) -> tuple[nn.Module, str]:
    """Call the user's model factory with ``kwargs``; return the model and the recorded reference."""
    function, recorded = load_callable(reference)
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
    model = function(**kwargs)
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
