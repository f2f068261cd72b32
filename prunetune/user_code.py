"""Import the user's own code, named ``package.module:attr`` or ``path/to/file.py:attr``.

Used for a user's model factory and a user's objective. Only what the user named is imported: a
module by its name, as Python would; a file by its path, executed once under a synthetic module
name, with its folder NOT put on ``sys.path`` and no other path searched. Every problem raises
:class:`~prunetune.errors.PrunetuneError` naming what the reference is for ("model", "objective")
and what went wrong.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import re
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from prunetune.errors import PrunetuneError

__all__ = ["accepted_keywords", "file_module_name", "is_file_reference", "load_reference"]

_FORMS = "'module:attribute' or 'path/to/file.py:attribute'"


def is_file_reference(where: str) -> bool:
    """Whether the part before the colon names a file (``.py``, or any path separator) or a module."""
    return where.endswith(".py") or "/" in where or "\\" in where


def file_module_name(path: Path) -> str:
    """The module name a file is imported under: one per resolved path, the same in every process.

    Nothing on ``sys.path`` can import it by this name, so a worker that needs the module's
    contents must get them pickled by value.
    """
    path = Path(path).expanduser().resolve()
    digest = hashlib.sha1(str(path).encode()).hexdigest()[:12]
    return f"prunetune_user_{re.sub(r'[^0-9A-Za-z_]', '_', path.stem)}_{digest}"


def load_reference(reference: str, *, label: str, callable_only: bool = False) -> tuple[Any, str]:
    """The object ``reference`` names, and the reference to record so it can be loaded again.

    ``reference`` is ``package.module:attr`` or ``path/to/file.py:attr``; ``attr`` may be dotted
    (``Outer.inner``). A file is recorded by its absolute path, so loading it again does not depend
    on the working directory. ``label`` says what the reference is for, in error messages.
    With ``callable_only``, an object that is not callable is an error.
    """
    where, _, attribute = reference.rpartition(":") if isinstance(reference, str) else ("", "", "")
    where, attribute = where.strip(), attribute.strip()
    if not where or not attribute:
        raise PrunetuneError(f"The {label} must be named {_FORMS}. Got {reference!r} instead.")
    if is_file_reference(where):
        path = Path(where).expanduser().resolve()
        module = _import_file(path, label=label, reference=reference)
        recorded = f"{path}:{attribute}"
    else:
        module = _import_module(where, label=label, reference=reference, attribute=attribute)
        recorded = f"{where}:{attribute}"
    target: Any = module
    walked: list[str] = []
    for part in attribute.split("."):
        if not part or not hasattr(target, part):
            owner = f"{where}:{'.'.join(walked)}" if walked else where
            raise PrunetuneError(f"The {label} {reference!r}: {owner} has no attribute {part!r}.")
        target = getattr(target, part)
        walked.append(part)
    if callable_only and not callable(target):
        raise PrunetuneError(
            f"The {label} {reference!r} names {type(target).__name__} {attribute!r}, which is not callable: "
            f"it must be a class or a function."
        )
    return target, recorded


def accepted_keywords(function: Callable[..., Any]) -> tuple[frozenset[str], bool] | None:
    """The keyword names ``function`` accepts, and whether it also takes ``**kwargs``.

    None when Python cannot tell (some builtins have no signature); the caller decides what to offer.
    """
    try:
        parameters = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):
        return None
    names = frozenset(p.name for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY))
    return names, any(p.kind is p.VAR_KEYWORD for p in parameters)


def _import_module(name: str, *, label: str, reference: str, attribute: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as error:
        if error.name is not None and (name == error.name or name.startswith(error.name + ".")):
            raise PrunetuneError(
                f"The {label} {reference!r}: cannot import module {name!r}, which is not importable ({error}). "
                f"Put its folder on PYTHONPATH, or name the file instead: 'path/to/file.py:{attribute}'."
            ) from error
        raise PrunetuneError(f"The {label} {reference!r}: {_failed(f'importing module {name!r}', error)}") from error
    except Exception as error:
        raise PrunetuneError(f"The {label} {reference!r}: {_failed(f'importing module {name!r}', error)}") from error


def _import_file(path: Path, *, label: str, reference: str) -> ModuleType:
    if not path.is_file():
        raise PrunetuneError(f"The {label} {reference!r}: no such file {str(path)!r} (it does not exist or is not a file).")
    name = file_module_name(path)
    if name in sys.modules:  # loaded before: reuse it, and the classes defined in it
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise PrunetuneError(f"The {label} {reference!r}: {str(path)!r} cannot be imported as a Python file.")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException as error:
        # A half-executed module must not be found by the next attempt.
        del sys.modules[name]
        if not isinstance(error, Exception):
            raise  # KeyboardInterrupt, SystemExit
        raise PrunetuneError(
            f"The {label} {reference!r}: {_failed(f'importing {str(path)!r}', error, path)}"
        ) from error
    return module


def _failed(what: str, error: BaseException, path: Path | None = None) -> str:
    """``importing X failed (Type: message, line N)``, with the line of ``path`` that raised, if any."""
    line = None
    traceback = error.__traceback__
    while traceback is not None:
        if path is not None and traceback.tb_frame.f_code.co_filename == str(path):
            line = traceback.tb_lineno
        traceback = traceback.tb_next
    where = f", line {line}" if line is not None else ""
    return f"{what} failed ({type(error).__name__}: {error}{where})."
