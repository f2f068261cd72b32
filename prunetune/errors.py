"""The one error type a user sees, the one shape of its messages, and the one test of a number.

Anything the user can fix (a bad spec, a missing data folder, an unknown layer name) raises
:class:`PrunetuneError`; the command line prints its message alone and exits with status 2.
Everything else is a bug and keeps its traceback.

Messages name the thing, what is accepted and what was given: "The 'lr' parameter of TrainConfig
must be a number > 0. Got -1 instead." (a Python argument) or "The 'objective.finetune.lr' key must
be ..." (an experiment-file key); :func:`bad_parameter` and :func:`bad_key` build them.
"""

from __future__ import annotations

import math
from numbers import Real
from typing import NoReturn

__all__ = ["PrunetuneError", "bad_key", "bad_parameter", "is_finite_number"]


class PrunetuneError(ValueError):
    """A problem with the user's input, stated in one message that names it."""


def _shown(value: object) -> object:
    return value if isinstance(value, (int, float, str, bool, type(None))) else type(value).__name__


def bad_parameter(owner: str, name: str, value: object, allowed: str) -> NoReturn:
    """Raise "The 'name' parameter of Owner must be ALLOWED. Got VALUE instead."."""
    raise PrunetuneError(f"The {name!r} parameter of {owner} must be {allowed}. Got {_shown(value)!r} instead.")


def bad_key(key: str, value: object, allowed: str) -> NoReturn:
    """Raise "The 'section.key' key must be ALLOWED. Got VALUE instead." (experiment files: plain data)."""
    raise PrunetuneError(f"The '{key}' key must be {allowed}. Got {value!r} instead.")


def is_finite_number(value: object) -> bool:
    """A real number (not a bool) that is neither NaN nor infinite."""
    return isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(float(value))
