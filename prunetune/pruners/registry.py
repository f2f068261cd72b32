"""Every pruning method by its plan-section name, in the order a plan applies them: the one registry.

The built-in order is the pipeline of the papers: whole units are dropped first, PCA then sets the
widths, filters go (one unit at a time for an ordered plan, or all at once), then single weights,
and the surviving fully connected weights are quantized last. A user's method registered with
:func:`register_method` runs after them, in the order registered (or before a named method).

A method is one object: its dimensions, its option and section checks, its surgery and, where it
needs training between steps, its stage (see :class:`~prunetune.pruners.methods.PruningMethod`).
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

from prunetune.errors import PrunetuneError
from prunetune.pruners.drop import DropLayers
from prunetune.pruners.methods import FilterPruning, PruningMethod, WeightPruning
from prunetune.pruners.ordering import OrderedPruning
from prunetune.pruners.pca import PCAWidths
from prunetune.pruners.quantize import Quantization
from prunetune.user_code import is_file_reference, load_reference

__all__ = [
    "METHODS", "get_method", "make_method", "method_class", "method_source", "register_method", "resolve_method",
]

#: Every method by its section name (a default-configured instance), in the order a plan applies them.
METHODS: dict[str, PruningMethod] = {
    method.name: method
    for method in (
        DropLayers(),
        PCAWidths(),
        OrderedPruning(),
        FilterPruning(),
        WeightPruning(),
        Quantization(),
    )
}
BUILT_IN = tuple(METHODS)
#: Where a method loaded by reference came from (``/abs/path/file.py:Class``), by section name.
_SOURCES: dict[str, str] = {}


def register_method(cls: type[PruningMethod], *, before: str | None = None) -> type[PruningMethod]:
    """Register a :class:`PruningMethod` subclass under its ``name``; usable as a class decorator.

    Its section runs after every method registered before it, or just before ``before``. Registering
    the same class again is a no-op; another class under a taken name is an error (built-in names
    cannot be replaced). The class must build with no arguments (keyword-only options with defaults).
    """
    if not (isinstance(cls, type) and issubclass(cls, PruningMethod)) or inspect.isabstract(cls):
        raise PrunetuneError(
            f"register_method takes a concrete subclass of prunetune.pruners.PruningMethod. Got {cls!r} instead."
        )
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not name or "." in name or ":" in name:
        raise PrunetuneError(
            f"A pruning method needs a class attribute 'name': a plain section name without '.' or ':'. "
            f"{cls.__qualname__} has {name!r}."
        )
    existing = METHODS.get(name)
    if existing is not None:
        if _same_class(type(existing), cls):
            return cls
        raise PrunetuneError(
            f"A pruning method named {name!r} is registered already ({type(existing).__qualname__}); "
            f"give {cls.__qualname__} another name."
        )
    if before is not None and before not in METHODS:
        raise PrunetuneError(f"register_method(before={before!r}): no such method. Known methods: {', '.join(METHODS)}.")
    try:
        instance = cls()
    except TypeError as error:
        raise PrunetuneError(f"{cls.__qualname__}() must build with no arguments to be registered: {error}") from None
    entries = list(METHODS.items())
    at = [key for key, _ in entries].index(before) if before is not None else len(entries)
    entries.insert(at, (name, instance))
    METHODS.clear()
    METHODS.update(entries)
    return cls


def _same_class(a: type, b: type) -> bool:
    """The same class, or the same class loaded again (a user file imported in another process)."""
    return a is b or (a.__module__, a.__qualname__) == (b.__module__, b.__qualname__)


def resolve_method(name: str) -> str:
    """The section name for ``name``: a registered name, or ``module:Class`` / ``file.py:Class``
    naming a user's method, which is imported (that module or file only) and registered."""
    if not isinstance(name, str):
        raise PrunetuneError(f"A pruning method is named by a string. Got {name!r} instead.")
    if name in METHODS:
        return name
    if ":" not in name:
        raise PrunetuneError(
            f"Unknown pruning method {name!r}. Known methods: {', '.join(METHODS)}; "
            "or name your own as 'package.module:Class' or 'path/to/file.py:Class'."
        )
    where = name.rpartition(":")[0]
    cls, recorded = load_reference(name, label="pruning method", callable_only=True)
    if not (isinstance(cls, type) and issubclass(cls, PruningMethod)):
        kind = "file" if is_file_reference(where) else "module"
        raise PrunetuneError(
            f"The pruning method {name!r} names {cls!r} in that {kind}, which is not a subclass of "
            "prunetune.pruners.PruningMethod."
        )
    register_method(cls)
    _SOURCES.setdefault(cls.name, recorded)
    return cls.name


def method_source(name: str) -> str | None:
    """The reference a method registered by :func:`resolve_method` was loaded from; None for the others."""
    return _SOURCES.get(name)


def method_class(name: str) -> type[PruningMethod]:
    """The class registered under ``name`` (see :func:`resolve_method` for references)."""
    return type(get_method(name))


def get_method(name: str) -> PruningMethod:
    """The registered method for a plan section name, or a :class:`PrunetuneError` listing them."""
    if not isinstance(name, str) or name not in METHODS:
        raise PrunetuneError(f"Unknown pruning method {name!r}. Known methods: {', '.join(METHODS)}.")
    return METHODS[name]


def make_method(name: str, options: Mapping[str, Any] | None = None) -> PruningMethod:
    """Method ``name`` (a registered name or a reference) configured with ``options``, checked now.

    Every option is checked here, before any model is touched: an unknown option names the known
    ones; a bad value names the option, the value and what is accepted.
    """
    cls = method_class(resolve_method(name))
    options = dict(options or {})
    known = _option_names(cls)
    if known is not None:
        unknown = sorted(key for key in options if key not in known)
        if unknown:
            raise PrunetuneError(
                f"Unknown option {unknown[0]!r} for pruning method {cls.name!r}. "
                f"Known options: {', '.join(sorted(known)) or '(none)'}."
            )
    try:
        method = cls(**options)
    except TypeError as error:
        raise PrunetuneError(f"Bad options for pruning method {cls.name!r}: {error}") from None
    method.check_options()
    return method


def _option_names(cls: type) -> frozenset[str] | None:
    """The keyword options a method's constructor takes; None when it takes ``**kwargs``."""
    parameters = inspect.signature(cls).parameters.values()
    if any(p.kind is p.VAR_KEYWORD for p in parameters):
        return None
    return frozenset(p.name for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY))
