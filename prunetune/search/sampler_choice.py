"""The sampler table: every search algorithm by name, what it takes and how it treats constraints.

The experiment parser, the command line and the runner all read this one table; a new sampler is
one entry here. Constraints reach every sampler through the trials themselves
(`trial.set_constraint`); an entry says what the sampler makes of them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.distributions import BaseDistribution

from prunetune.errors import PrunetuneError
from prunetune.user_code import accepted_keywords

__all__ = ["SAMPLERS", "SamplerEntry", "check_sampler", "create_sampler", "population_size"]

Space = Mapping[str, BaseDistribution]


@dataclass(frozen=True)
class SamplerEntry:
    """One search algorithm.

    Attributes:
        name: What an experiment file and ``--sampler`` call it.
        summary: One line for help texts.
        build: ``(seed, space, options) -> sampler``; ``options`` are the user's, defaults applied.
        takes: The class whose keyword arguments ``search.sampler_options`` may set.
        defaults: Options set unless the user sets them.
        constraints: ``"honoured"`` (the sampler ranks infeasible trials last), ``"penalty"`` (it
            takes none: the runner moves infeasible values against their direction) or
            ``"scalarised"`` (it folds constraints into its one scalar).
        multi_objective: Whether it optimises several objectives at once.
        reseed_on_resume: Its random stream lives only in memory, so a resumed run reseeds it from
            the seed and the ledger instead of replaying the first run's plans.
    """

    name: str
    summary: str
    build: Callable[[int, Space, dict[str, Any]], optuna.samplers.BaseSampler]
    takes: Callable[[], type]
    defaults: Mapping[str, Any] = field(default_factory=dict)
    constraints: str = "honoured"
    multi_objective: bool = True
    reseed_on_resume: bool = False


def _optuna(cls_name: str) -> tuple[Callable[..., Any], Callable[[], type]]:
    def takes() -> type:
        return getattr(optuna.samplers, cls_name)

    def build(seed: int, space: Space, options: dict[str, Any]) -> optuna.samplers.BaseSampler:
        return takes()(seed=seed, **options)

    return build, takes


def _scipy_de() -> tuple[Callable[..., Any], Callable[[], type]]:
    def takes() -> type:
        from prunetune.search.samplers import ScipyDESampler

        return ScipyDESampler

    def build(seed: int, space: Space, options: dict[str, Any]) -> optuna.samplers.BaseSampler:
        return takes()(search_space=dict(space), seed=seed, **options)

    return build, takes


def _pymoo(algorithm: str) -> tuple[Callable[..., Any], Callable[[], type]]:
    def takes() -> type:
        if algorithm == "nsga2":
            from pymoo.algorithms.moo.nsga2 import NSGA2

            return NSGA2
        from pymoo.algorithms.soo.nonconvex.de import DE

        return DE

    def build(seed: int, space: Space, options: dict[str, Any]) -> optuna.samplers.BaseSampler:
        from prunetune.search.samplers import PymooSampler

        size = options.pop("population_size")
        return PymooSampler(takes()(pop_size=size, **options), search_space=dict(space), seed=seed)

    return build, takes


def _entry(name: str, summary: str, parts: tuple[Callable[..., Any], Callable[[], type]], **kwargs: Any) -> SamplerEntry:
    build, takes = parts
    return SamplerEntry(name=name, summary=summary, build=build, takes=takes, **kwargs)


#: Every sampler by name, in the order help texts list them.
SAMPLERS: dict[str, SamplerEntry] = {
    entry.name: entry
    for entry in (
        _entry("tpe", "Optuna's TPE", _optuna("TPESampler"), reseed_on_resume=True),
        _entry("nsga2", "Optuna's NSGA-II", _optuna("NSGAIISampler"), defaults={"population_size": 10}, reseed_on_resume=True),
        _entry("gp", "Optuna's Gaussian process", _optuna("GPSampler"), reseed_on_resume=True),
        _entry("cmaes", "Optuna's CMA-ES", _optuna("CmaEsSampler"), constraints="penalty", multi_objective=False, reseed_on_resume=True),
        _entry("random", "Optuna's random sampling", _optuna("RandomSampler"), constraints="none", reseed_on_resume=True),
        _entry("qmc", "Optuna's quasi-Monte Carlo", _optuna("QMCSampler"), constraints="none"),
        _entry("pymoo-nsga2", "pymoo's NSGA-II (ask/tell)", _pymoo("nsga2"), defaults={"population_size": 10}),
        _entry("pymoo-de", "pymoo's differential evolution", _pymoo("de"), defaults={"population_size": 10}, multi_objective=False),
        _entry("scipy-de", "scipy's differential evolution", _scipy_de(), constraints="scalarised"),
    )
}


def check_sampler(name: str, n_objectives: int) -> SamplerEntry:
    """The table entry of a known sampler that can optimise this many objectives."""
    entry = SAMPLERS.get(name) if isinstance(name, str) else None
    if entry is None:
        raise PrunetuneError(f"Unknown sampler {name!r}. Known samplers: {', '.join(SAMPLERS)}.")
    if not entry.multi_objective and n_objectives > 1:
        several = ", ".join(other.name for other in SAMPLERS.values() if other.multi_objective)
        raise PrunetuneError(
            f"The {name!r} sampler optimises one objective; this experiment has {n_objectives}. "
            f"Use one of {several} (scipy-de scalarises), or name one objective."
        )
    return entry


def create_sampler(
    name: str,
    *,
    seed: int,
    n_objectives: int,
    search_space: Space,
    options: Mapping[str, Any] | None = None,
) -> optuna.samplers.BaseSampler:
    """The sampler `name` (a key of SAMPLERS) seeded with `seed`; `options` go to its constructor."""
    entry = check_sampler(name, n_objectives)
    options = {**entry.defaults, **dict(options or {})}
    try:
        return entry.build(seed, search_space, options)
    except TypeError as error:
        accepted = accepted_keywords(entry.takes())
        known = ", ".join(sorted(accepted[0] - {"self", "seed", "search_space"})) if accepted else "see its documentation"
        raise PrunetuneError(
            f"Bad 'search.sampler_options' for {name!r} ({error}). Accepted options: {known}."
        ) from None


def population_size(sampler: optuna.samplers.BaseSampler) -> int | None:
    """Trials per generation for population samplers (batches on Ray), None for the others."""
    size = getattr(sampler, "population_size", None)
    return size if isinstance(size, int) and size > 0 else None
