"""The constructor arguments of :class:`~prunetune.search.samplers.ScipyDESampler`, checked where work starts."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
from optuna.distributions import BaseDistribution

from prunetune.errors import PrunetuneError

__all__ = ["INITS", "STRATEGIES", "bad", "check_de_options"]

STRATEGIES = (
    "best1bin",
    "best1exp",
    "best2bin",
    "best2exp",
    "currenttobest1bin",
    "currenttobest1exp",
    "rand1bin",
    "rand1exp",
    "rand2bin",
    "rand2exp",
    "randtobest1bin",
    "randtobest1exp",
)
INITS = ("latinhypercube", "sobol", "halton", "random")


def check_de_options(sampler: Any) -> None:
    """Raise PrunetuneError naming the first bad constructor argument of a ScipyDESampler."""
    name = type(sampler).__name__
    if sampler._search_space is not None and not (
        isinstance(sampler._search_space, Mapping)
        and all(isinstance(d, BaseDistribution) for d in sampler._search_space.values())
    ):
        bad(name, "search_space", "a mapping of parameter names to Optuna distributions", sampler._search_space)
    if sampler._seed is not None and (not is_int(sampler._seed) or sampler._seed < 0):
        bad(name, "seed", "an int >= 0 or None", sampler._seed)
    if not is_int(sampler._popsize) or sampler._popsize < 1:
        bad(name, "popsize", "an int >= 1", sampler._popsize)
    if not valid_mutation(sampler._mutation):
        bad(name, "mutation", "a number in [0, 2) or a (min, max) pair in [0, 2)", sampler._mutation)
    if not is_number(sampler._recombination) or not 0 <= sampler._recombination <= 1:
        bad(name, "recombination", "a number in [0, 1]", sampler._recombination)
    if not (callable(sampler._strategy) or sampler._strategy in STRATEGIES):
        bad(name, "strategy", f"one of {', '.join(STRATEGIES)} or a callable", sampler._strategy)
    if isinstance(sampler._init, str) and sampler._init not in INITS:
        bad(name, "init", f"one of {', '.join(INITS)} or an array of vectors", sampler._init)
    if not is_int(sampler._maxiter) or sampler._maxiter < 1:
        bad(name, "maxiter", "an int >= 1", sampler._maxiter)
    if not is_number(sampler._tol) or sampler._tol < 0:
        bad(name, "tol", "a number >= 0", sampler._tol)
    if sampler._scalarization is not None and not callable(sampler._scalarization):
        bad(name, "scalarization", "a callable (trial, directions, metric_names) -> float", sampler._scalarization)
    if sampler._constraints_func is not None and not callable(sampler._constraints_func):
        bad(name, "constraints_func", "a callable trial -> sequence of floats", sampler._constraints_func)
    if sampler._start_points is not None and not all(isinstance(point, Mapping) for point in sampler._start_points):
        bad(name, "start_points", "a sequence of parameter dicts", sampler._start_points)


def is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    numeric = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    return numeric and math.isfinite(value)


def valid_mutation(mutation: Any) -> bool:
    if is_number(mutation):
        return 0 <= mutation < 2
    if isinstance(mutation, (tuple, list)) and len(mutation) == 2 and all(is_number(m) for m in mutation):
        return all(0 <= m < 2 for m in mutation)
    return False


def bad(owner: str, name: str, expected: str, got: Any, *, shown: str | None = None) -> None:
    raise PrunetuneError(f"The {name!r} parameter of {owner} must be {expected}. Got {shown or repr(got)} instead.")
