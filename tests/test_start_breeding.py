"""Start points breed: every population sampler puts them into its first generation.

A toy objective (no training): a narrow dip of width 0.05 at a point of a 4-dimensional filter-ratio
space, which random samples essentially never reach. The start point is that point.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
import optuna
import pytest
import torch
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from prunetune.errors import PrunetuneError
from prunetune.search.ledger import generation_of
from prunetune.app.runner import hand_start_points
from prunetune.search.sampler_choice import create_sampler
from prunetune.search.samplers import ScipyDESampler
from prunetune.search.space import SearchSpace
from prunetune.zoo.models import build_model

POPULATION = 8
#: Each population sampler with a generation of POPULATION trials (scipy: popsize 2 x 4 coordinates).
OPTIONS: dict[str, dict[str, Any]] = {
    "nsga2": {"population_size": POPULATION},
    "pymoo-nsga2": {"population_size": POPULATION},
    "pymoo-de": {"population_size": POPULATION},
    "scipy-de": {"popsize": 2},
}
WIDTH = 0.05


@pytest.fixture(scope="module")
def space() -> SearchSpace:
    torch.manual_seed(0)
    model = build_model("lenet5", num_classes=10, in_channels=1, input_size=8)
    space = SearchSpace.for_model(model, torch.zeros(1, 1, 8, 8), {"filters": {"max_ratio": 0.8}})
    assert len(space) == 4
    return space


@pytest.fixture(scope="module")
def target(space: SearchSpace) -> dict[str, float]:
    return dict(zip(space.distributions, [0.71, 0.07, 0.53, 0.29], strict=True))


@pytest.fixture(scope="module")
def other(space: SearchSpace) -> dict[str, float]:
    return dict.fromkeys(space.distributions, 0.4)


def distance(params: dict[str, Any], target: dict[str, float]) -> float:
    return float(np.linalg.norm([params[name] - value for name, value in target.items()]))


def dip(params: dict[str, Any], target: dict[str, float]) -> float:
    """0 at the target, about 1 anywhere else: only the target itself says where to go."""
    return float(1.0 - np.exp(-(distance(params, target) ** 2) / (2 * WIDTH**2)))


def new_study(
    name: str, space: SearchSpace, *, seed: int = 0, storage: Any = None, options: dict[str, Any] | None = None
) -> optuna.Study:
    sampler = create_sampler(
        name, seed=seed, n_objectives=1, search_space=space.distributions, options=options or OPTIONS[name]
    )
    return optuna.create_study(sampler=sampler, storage=storage, study_name="breed", load_if_exists=True)


def run(study: optuna.Study, space: SearchSpace, target: dict[str, float], n_trials: int) -> None:
    """The local executor's loop: ask, suggest through the space, tell."""
    for _ in range(n_trials):
        trial = study.ask()
        space.suggest(trial)
        study.tell(trial, dip(trial.params, target))


def close(study: optuna.Study) -> None:
    if isinstance(study.sampler, ScipyDESampler):
        study.sampler.close()


def generations(study: optuna.Study) -> list[int | None]:
    return [generation_of(study, trial) for trial in study.trials]


@pytest.mark.parametrize("name", list(OPTIONS))
def test_start_points_take_the_first_places_of_generation_zero(name: str, space, target, other) -> None:
    study = new_study(name, space)
    hand_start_points(study, [target, other])
    run(study, space, target, POPULATION + 1)
    close(study)
    trials = study.trials
    assert trials[0].params == target and trials[1].params == other
    # Generation 0 is exactly the population, start points included: no random trial beside them.
    assert generations(study) == [0] * POPULATION + [1]
    if name != "nsga2":  # pymoo and scipy number the places; the start points hold the first two
        key = f"{type(study.sampler).__name__}:index"
        assert [t.system_attrs[key] for t in trials[:2]] == [0, 1]


@pytest.mark.parametrize("name", list(OPTIONS))
def test_offspring_come_closer_to_a_start_point_than_without_it(name: str, space, target) -> None:
    def spread(with_start: bool, seed: int) -> float:
        study = new_study(name, space, seed=seed)
        if with_start:
            hand_start_points(study, [target])
        run(study, space, target, 3 * POPULATION)
        close(study)
        offspring = [t for t, g in zip(study.trials, generations(study), strict=True) if g in (1, 2)]
        assert len(offspring) == 2 * POPULATION
        return float(np.median([distance(t.params, target) for t in offspring]))

    seeds = range(3)
    with_start = np.mean([spread(True, seed) for seed in seeds])
    without = np.mean([spread(False, seed) for seed in seeds])
    assert with_start < without


def test_nsga2_keeps_the_start_point_among_its_parents(space, target) -> None:
    study = new_study("nsga2", space)
    hand_start_points(study, [target])
    run(study, space, target, 2 * POPULATION + 1)  # the first trial of generation 2 selects its parents
    parents = study._storage.get_study_system_attrs(study._study_id)["NSGAIISampler:parent:2"]
    assert study.trials[0]._trial_id in parents


@pytest.mark.parametrize("name", ["pymoo-nsga2", "pymoo-de"])
def test_pymoo_keeps_the_start_point_in_its_population(name: str, space, target) -> None:
    study = new_study(name, space)
    hand_start_points(study, [target])
    run(study, space, target, 2 * POPULATION + 1)  # the first trial of generation 2 tells generation 1
    population = study.sampler._run._algorithm.pop.get("X")
    start = study.sampler._run.codec.to_vector(target)
    assert np.any(np.all(np.isclose(population, start), axis=1))


def test_scipy_de_breeds_generation_one_from_the_start_point(space, target) -> None:
    # best1bin without mutation and with full crossover copies the best of the generation.
    options = {"popsize": 2, "mutation": 0.0, "recombination": 1.0, "strategy": "best1bin"}
    study = new_study("scipy-de", space, options=options)
    hand_start_points(study, [target])
    run(study, space, target, 2 * POPULATION)
    close(study)
    assert [t.params for t in study.trials[POPULATION:]] == [pytest.approx(target, abs=1e-12)] * POPULATION


def test_scipy_de_gives_an_enqueued_trial_no_candidate(space, target, other) -> None:
    study = new_study("scipy-de", space)
    study.enqueue_trial(other)
    run(study, space, target, POPULATION + 1)
    close(study)
    assert study.trials[0].params == other and generations(study) == [None] + [0] * POPULATION


def test_scipy_de_population_grows_to_hold_every_start_point(space) -> None:
    points = [dict.fromkeys(space.distributions, 0.1 * k) for k in range(6)]
    sampler = ScipyDESampler(search_space=space.distributions, seed=0, popsize=1, start_points=points)
    assert sampler.population_size == 6  # scipy alone: max(5, 1 x 4)
    study = optuna.create_study(sampler=sampler)
    run(study, space, points[0], 7)
    sampler.close()
    assert [t.params for t in study.trials[:6]] == points and generations(study) == [0] * 6 + [1]


def test_scipy_de_hands_out_start_points_exactly_in_a_mixed_space() -> None:
    mixed = {
        "lr": FloatDistribution(1e-4, 1e-1, log=True),
        "ratio": FloatDistribution(0.0, 0.9, step=0.05),
        "width": IntDistribution(8, 64, step=8),
        "kind": CategoricalDistribution(["l1", "l2", "fpgm"]),
        "free": FloatDistribution(-1.0, 1.0),
    }
    points = [
        {"lr": 3e-3, "ratio": 0.35, "width": 24, "kind": "fpgm", "free": 0.1},
        {"lr": 1e-4, "ratio": 0.9, "width": 64, "kind": "l1", "free": -1.0},
    ]

    def objective(trial: optuna.Trial) -> float:
        trial.suggest_float("lr", 1e-4, 1e-1, log=True)
        trial.suggest_int("width", 8, 64, step=8)
        trial.suggest_categorical("kind", ["l1", "l2", "fpgm"])
        trial.suggest_float("free", -1.0, 1.0)
        return trial.suggest_float("ratio", 0.0, 0.9, step=0.05)

    sampler = ScipyDESampler(search_space=mixed, seed=1, popsize=2, start_points=points)
    study = optuna.create_study(sampler=sampler)
    study.optimize(objective, n_trials=3)
    sampler.close()
    assert [t.params for t in study.trials[:2]] == points  # exactly: scipy's scaling round trip is undone
    assert [t.system_attrs["ScipyDESampler:index"] for t in study.trials] == [0, 1, 2]


def test_scipy_de_refuses_a_start_point_outside_its_space(space) -> None:
    bad = dict.fromkeys(space.distributions, 0.95)
    study = optuna.create_study(sampler=ScipyDESampler(search_space=space.distributions, seed=0, start_points=[bad]))
    with pytest.raises(PrunetuneError, match="Start point 0 of ScipyDESampler has .* outside the search space"):
        run(study, space, bad, 1)
    study.sampler.close()


@pytest.mark.parametrize("name", list(OPTIONS))
def test_a_new_sampler_on_the_same_storage_goes_on_without_warnings_or_repeats(
    name: str, space, target, caplog: pytest.LogCaptureFixture
) -> None:
    reference = new_study(name, space)
    hand_start_points(reference, [target])
    run(reference, space, target, 3 * POPULATION)
    close(reference)

    storage = optuna.storages.InMemoryStorage()
    first = new_study(name, space, storage=storage)
    hand_start_points(first, [target])
    run(first, space, target, POPULATION + 3)  # stopped inside generation 1
    close(first)
    resumed = new_study(name, space, storage=storage)  # a resume hands no start points
    optuna.logging.enable_propagation()
    try:
        with caplog.at_level("WARNING"):
            run(resumed, space, target, 2 * POPULATION - 3)
    finally:
        optuna.logging.disable_propagation()
        close(resumed)
    assert not [record for record in caplog.records if record.levelname == "WARNING"]
    # The start point ran once, as trial 0; nothing was enqueued again and no trial fell outside the generations.
    assert resumed.trials[0].params == target
    assert [t.number for t in resumed.trials if "fixed_params" in t.system_attrs] == ([] if name == "scipy-de" else [0])
    assert Counter(generations(resumed)) == {0: POPULATION, 1: POPULATION, 2: POPULATION}
    if name != "nsga2":  # pymoo and scipy replay the stored run exactly; Optuna's NSGA-II keeps its stream in memory
        assert [t.params for t in resumed.trials] == [t.params for t in reference.trials]


def test_scipy_de_keeps_a_run_begun_without_start_points(space, target, caplog: pytest.LogCaptureFixture) -> None:
    storage = optuna.storages.InMemoryStorage()
    first = new_study("scipy-de", space, storage=storage)
    run(first, space, target, 3)
    close(first)
    resumed = new_study("scipy-de", space, storage=storage)
    hand_start_points(resumed, [target])  # too late: generation 0 was drawn without it
    optuna.logging.enable_propagation()
    try:
        with caplog.at_level("WARNING"):
            run(resumed, space, target, POPULATION)
    finally:
        optuna.logging.disable_propagation()
        close(resumed)
    reference = new_study("scipy-de", space)
    run(reference, space, target, 3 + POPULATION)
    close(reference)
    assert "began without start points; they are not used" in caplog.text
    assert [t.params for t in resumed.trials] == [t.params for t in reference.trials]
