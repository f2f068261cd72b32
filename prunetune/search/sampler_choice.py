"""Samplers by name: Optuna's own, pymoo's and scipy's, each with the ledger's constraints."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import optuna
from optuna.distributions import BaseDistribution

from prunetune.errors import PrunetuneError

__all__ = ["SAMPLERS", "check_sampler", "create_sampler", "population_size"]

SAMPLERS = ("tpe", "nsga2", "gp", "cmaes", "random", "qmc", "pymoo-nsga2", "pymoo-de", "scipy-de")

SINGLE_OBJECTIVE_ONLY = ("cmaes", "pymoo-de")


def create_sampler(
    name: str,
    *,
    seed: int,
    n_objectives: int,
    search_space: Mapping[str, BaseDistribution],
    options: Mapping[str, Any] | None = None,
) -> optuna.samplers.BaseSampler:
    """The sampler `name` (one of SAMPLERS) seeded with `seed`; `options` go to its constructor."""
    options = dict(options or {})
    check_sampler(name, n_objectives)
    try:
        return _build(name, seed, search_space, options)
    except TypeError as error:
        raise PrunetuneError(f"Bad 'search.sampler_options' for {name!r}: {error}") from None


def check_sampler(name: str, n_objectives: int) -> None:
    """A known sampler that can optimise this many objectives."""
    if name not in SAMPLERS:
        raise PrunetuneError(f"Unknown sampler {name!r}. Known samplers: {', '.join(SAMPLERS)}.")
    if name in SINGLE_OBJECTIVE_ONLY and n_objectives > 1:
        raise PrunetuneError(
            f"The {name!r} sampler optimises one objective; this experiment has {n_objectives}. "
            "Use nsga2, tpe, pymoo-nsga2 or scipy-de (which scalarises), or name one objective."
        )


def _build(name: str, seed: int, space: Mapping[str, BaseDistribution], options: dict[str, Any]) -> optuna.samplers.BaseSampler:
    """Constraints reach every sampler through the trials themselves (`trial.set_constraint`)."""
    samplers = optuna.samplers
    if name == "tpe":
        return samplers.TPESampler(seed=seed, **options)
    if name == "nsga2":
        options.setdefault("population_size", 10)
        return samplers.NSGAIISampler(seed=seed, **options)
    if name == "gp":
        return samplers.GPSampler(seed=seed, **options)
    if name == "cmaes":
        return samplers.CmaEsSampler(seed=seed, **options)
    if name == "random":
        return samplers.RandomSampler(seed=seed, **options)
    if name == "qmc":
        return samplers.QMCSampler(seed=seed, **options)
    if name == "scipy-de":
        from prunetune.search.samplers import ScipyDESampler

        return ScipyDESampler(search_space=dict(space), seed=seed, **options)
    from pymoo.algorithms.moo.nsga2 import NSGA2
    from pymoo.algorithms.soo.nonconvex.de import DE

    from prunetune.search.samplers import PymooSampler

    size = options.pop("population_size", 10)
    algorithm = NSGA2(pop_size=size, **options) if name == "pymoo-nsga2" else DE(pop_size=size, **options)
    return PymooSampler(algorithm, search_space=dict(space), seed=seed)


def population_size(sampler: optuna.samplers.BaseSampler) -> int | None:
    """Trials per generation for population samplers (batches on Ray), None for the others."""
    size = getattr(sampler, "population_size", None)
    return size if isinstance(size, int) and size > 0 else None
