"""ScipyDESampler: Optuna's sampler contract, DE behaviour, parallel asks, resume; the scalarisations."""

from __future__ import annotations

import doctest
import gc
import math
import pickle
import threading
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.samplers import BaseSampler
from optuna.study import StudyDirection
from optuna.testing.pytest_samplers import (
    BasicSamplerTestCase,
    MultiObjectiveSamplerTestCase,
    RelativeSamplerTestCase,
)
from optuna.trial import FrozenTrial, TrialState, create_trial

import prunetune.search.samplers._scipy_de as scipy_de_module
import prunetune.search.scalarize as scalarize_module
from prunetune.errors import PrunetuneError
from prunetune.search.storage import open_storage
from prunetune.search.ledger import is_interrupted, mark_interrupted
from prunetune.search.samplers import ScipyDESampler
from prunetune.search.scalarize import DEFAULT_PENALTY, ConstrainedObjective, WeightedSum
from prunetune.search.vector import VectorCodec

PREFIX = "ScipyDESampler:"
THREAD_PREFIX = "ScipyDESampler-"
FLOATS4 = {name: FloatDistribution(-5.0, 5.0) for name in ("a", "b", "c", "d")}
FLOATS3 = {name: FloatDistribution(-5.0, 5.0) for name in ("a", "b", "c")}
FLOATS2 = {name: FloatDistribution(-5.0, 5.0) for name in ("a", "b")}
MIN, MAX = StudyDirection.MINIMIZE, StudyDirection.MAXIMIZE


@pytest.fixture(autouse=True)
def quiet_optuna() -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)


@pytest.fixture(autouse=True)
def no_thread_left_running() -> Any:
    """Every DE thread a test started is gone once its samplers are unreachable."""
    yield
    if de_threads():  # a sampler kept alive by a reference cycle: collect it (slow with torch loaded)
        gc.collect()
    alive = de_threads()
    for thread in alive:
        thread.join(timeout=5.0)
    assert not [t.name for t in alive if t.is_alive()]


def de_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith(THREAD_PREFIX) and t.is_alive()]


def sphere(params: Mapping[str, float]) -> float:
    return float(sum(value * value for value in params.values()))


def sphere_objective(space: Mapping[str, BaseDistribution]) -> Callable[[optuna.Trial], float]:
    def objective(trial: optuna.Trial) -> float:
        return sphere({name: trial.suggest_float(name, d.low, d.high) for name, d in space.items()})  # type: ignore[attr-defined]

    return objective


def members(
    study: optuna.Study, states: tuple[TrialState, ...] = (TrialState.COMPLETE,)
) -> dict[int, list[FrozenTrial]]:
    """DE members by generation (trials without a generation are outside the population)."""
    found: dict[int, list[FrozenTrial]] = defaultdict(list)
    for trial in study.get_trials(deepcopy=False, states=states):
        generation = trial.system_attrs.get(PREFIX + "generation")
        if generation is not None:
            found[generation].append(trial)
    return dict(found)


def ask_tell(study: optuna.Study, space: Mapping[str, BaseDistribution], n: int) -> None:
    for _ in range(n):
        trial = study.ask(dict(space))
        study.tell(trial, sphere(trial.params))


def in_thread(work: Callable[[], Any], timeout: float = 20.0) -> Any:
    """Run `work` in a thread; fail instead of hanging if it does not return in time."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["result"] = work()
        except Exception as error:  # noqa: BLE001 -- re-raised in the test thread
            box["error"] = error

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(timeout)
    assert not thread.is_alive(), f"did not return within {timeout} s (blocked?)"
    if "error" in box:
        raise box["error"]
    return box["result"]


# -- Optuna's own sampler test cases ---------------------------------------------------------------


class TestOptunaSamplerCases(BasicSamplerTestCase, RelativeSamplerTestCase, MultiObjectiveSamplerTestCase):
    @pytest.fixture
    def sampler(self) -> Callable[[], BaseSampler]:
        return lambda: ScipyDESampler(seed=0)


class TestOptunaRelativeCasesSmallPopulation(RelativeSamplerTestCase):
    """The relative cases with a 5-trial generation: asks past it (never told) get the random fallback."""

    @pytest.fixture
    def sampler(self) -> Callable[[], BaseSampler]:
        return lambda: ScipyDESampler(seed=1, popsize=1)


# -- differential evolution through trials -----------------------------------------------------------


def test_de_study_clearly_beats_its_first_generation() -> None:
    sampler = ScipyDESampler(seed=3, popsize=5)
    study = optuna.create_study(sampler=sampler)
    study.optimize(sphere_objective(FLOATS4), n_trials=1 + 20 * 15)
    generations = members(study)
    first = min(t.value for t in generations[0])
    late = min(t.value for g in (12, 13, 14) for t in generations[g])
    assert late < 0.1 * first
    assert study.best_value < 0.2


def test_rosenbrock_improves_too() -> None:
    def rosenbrock(trial: optuna.Trial) -> float:
        x = [trial.suggest_float(f"x{i}", -2.0, 2.0) for i in range(4)]
        return sum(100 * (x[i + 1] - x[i] ** 2) ** 2 + (1 - x[i]) ** 2 for i in range(3))

    study = optuna.create_study(sampler=ScipyDESampler(seed=5, popsize=5))
    study.optimize(rosenbrock, n_trials=1 + 20 * 20)
    generations = members(study)
    assert study.best_value < 0.2 * min(t.value for t in generations[0])


@pytest.mark.parametrize(
    ("space", "popsize", "init", "expected"),
    [
        (FLOATS4, 5, "latinhypercube", 20),
        (FLOATS3, 3, "random", 9),
        (
            {"bits": CategoricalDistribution([2, 4, 8]), "n": IntDistribution(1, 9), "fixed": IntDistribution(3, 3)},
            4,
            "halton",
            8,
        ),
        (FLOATS3, 3, "sobol", 16),
    ],
)
def test_a_generation_is_exactly_scipys_population(
    space: dict[str, BaseDistribution], popsize: int, init: str, expected: int
) -> None:
    sampler = ScipyDESampler(seed=0, popsize=popsize, init=init)
    study = optuna.create_study(sampler=sampler)
    study.optimize(lambda t: _mixed_value(t, space), n_trials=1 + expected * 4)
    assert sampler.population_size == expected
    generations = members(study)
    assert sorted(generations) == [0, 1, 2, 3]
    for trials in generations.values():
        assert sorted(t.system_attrs[PREFIX + "index"] for t in trials) == list(range(expected))
    sampler.close()


def _mixed_value(trial: optuna.Trial, space: Mapping[str, BaseDistribution]) -> float:
    total = 0.0
    for name, distribution in space.items():
        if isinstance(distribution, CategoricalDistribution):
            total += float(trial.suggest_categorical(name, distribution.choices))  # type: ignore[arg-type]
        elif isinstance(distribution, IntDistribution):
            total += trial.suggest_int(name, distribution.low, distribution.high)
        else:
            total += trial.suggest_float(name, distribution.low, distribution.high) ** 2
    return total


def test_population_size_is_known_from_a_given_space() -> None:
    assert ScipyDESampler(search_space=FLOATS4, popsize=7).population_size == 28
    assert ScipyDESampler(search_space={"a": FloatDistribution(0, 1)}, popsize=2).population_size == 5
    assert ScipyDESampler(popsize=7).population_size is None


def test_integer_and_categorical_parameters_stay_valid() -> None:
    space: dict[str, BaseDistribution] = {
        "bits": CategoricalDistribution([2, 4, 8]),
        "keep": CategoricalDistribution([False, True]),
        "kind": CategoricalDistribution(["l1", "fpgm"]),
        "count": IntDistribution(2, 10, step=2),
        "width": IntDistribution(1, 100, log=True),
        "ratio": FloatDistribution(0.0, 0.8, step=0.1),
        "lr": FloatDistribution(1e-4, 1e-1, log=True),
    }

    def objective(trial: optuna.Trial) -> float:
        bits = trial.suggest_categorical("bits", [2, 4, 8])
        keep = trial.suggest_categorical("keep", [False, True])
        kind = trial.suggest_categorical("kind", ["l1", "fpgm"])
        count = trial.suggest_int("count", 2, 10, step=2)
        width = trial.suggest_int("width", 1, 100, log=True)
        ratio = trial.suggest_float("ratio", 0.0, 0.8, step=0.1)
        lr = trial.suggest_float("lr", 1e-4, 1e-1, log=True)
        return bits + count + width / 10 + ratio + math.log10(lr) ** 2 + (kind == "l1") + keep

    sampler = ScipyDESampler(seed=2, popsize=2)
    study = optuna.create_study(sampler=sampler)
    study.optimize(objective, n_trials=1 + 14 * 3)
    codec = VectorCodec(dict(sorted(space.items())))
    in_population = [t for trials in members(study).values() for t in trials]
    assert len(in_population) == 14 * 3
    for trial in study.trials:
        for name, value in trial.params.items():
            distribution = space[name]
            assert distribution._contains(distribution.to_internal_repr(value)), (name, value)
            if isinstance(distribution, IntDistribution):
                assert type(value) is int
        assert type(trial.params["bits"]) is int and type(trial.params["keep"]) is bool
    for trial in in_population:
        vector = trial.system_attrs[PREFIX + "vector"]
        assert codec.to_params(vector) == trial.params
        assert all(float(v).is_integer() for v, integral in zip(vector, codec.integrality, strict=True) if integral)
    sampler.close()


def test_failed_trials_are_recorded_and_the_budget_is_spent() -> None:
    def objective(trial: optuna.Trial) -> float:
        x = [trial.suggest_float(f"x{i}", -5.0, 5.0) for i in range(3)]
        if x[0] > 1.5:
            raise ValueError("this plan leaves no filters")
        return sum(v * v for v in x)

    sampler = ScipyDESampler(seed=4, popsize=5)
    study = optuna.create_study(sampler=sampler)
    study.optimize(objective, n_trials=120, catch=(ValueError,))
    states = Counter(t.state for t in study.trials)
    assert len(study.trials) == 120
    assert states[TrialState.FAIL] > 0 and states[TrialState.COMPLETE] > 0
    failed_members = [t for trials in members(study, (TrialState.FAIL,)).values() for t in trials]
    assert failed_members
    assert {t.system_attrs[PREFIX + "result"] for t in failed_members} == {2 * DEFAULT_PENALTY}
    all_members = members(study, (TrialState.FAIL, TrialState.COMPLETE))
    assert max(all_members) >= 6  # failures did not stall the generations
    assert all(len(trials) == 15 for g, trials in all_members.items() if g < max(all_members))
    sampler.close()


def test_pruned_trials_count_as_failures() -> None:
    sampler = ScipyDESampler(seed=0, popsize=3, search_space=FLOATS3)
    study = optuna.create_study(sampler=sampler)
    for _ in range(9 * 2):
        trial = study.ask()
        for name in FLOATS3:
            trial.suggest_float(name, -5.0, 5.0)
        study.tell(trial, state=TrialState.PRUNED)
    pruned = members(study, (TrialState.PRUNED,))
    assert sorted(pruned) == [0, 1]
    assert {t.system_attrs[PREFIX + "result"] for ts in pruned.values() for t in ts} == {2 * DEFAULT_PENALTY}
    sampler.close()


def test_converged_and_maxiter_runs_restart_with_a_new_seed() -> None:
    space = {"a": FloatDistribution(0.0, 1.0), "b": FloatDistribution(0.0, 1.0)}
    sampler = ScipyDESampler(seed=0, popsize=5, search_space=space)
    flat = optuna.create_study(sampler=sampler)
    flat.optimize(lambda t: 1.0 + 0 * t.suggest_float("a", 0, 1) * t.suggest_float("b", 0, 1), n_trials=60)
    generations = members(flat)
    assert sorted(generations) == [0, 1, 2, 3, 4, 5]
    # Equal scores converge at once: initial population + one generation, then a fresh run.
    for generation, trials in generations.items():
        assert len(trials) == 10
        assert {t.system_attrs[PREFIX + "run"] for t in trials} == {generation // 2}
    first_run = {tuple(t.params.values()) for t in generations[0]}
    second_run = {tuple(t.params.values()) for t in generations[2]}
    assert not first_run & second_run
    sampler.close()

    capped = ScipyDESampler(seed=0, popsize=5, search_space=space, maxiter=2)
    study = optuna.create_study(sampler=capped)
    ask_tell(study, space, 10 * 7)
    runs = {g: {t.system_attrs[PREFIX + "run"] for t in ts} for g, ts in members(study).items()}
    assert runs == {g: {g // 3} for g in range(7)}
    capped.close()


# -- parallel trials -------------------------------------------------------------------------------


def test_asking_past_a_generation_never_blocks_nor_duplicates() -> None:
    sampler = ScipyDESampler(seed=0, popsize=5, search_space=FLOATS4)
    study = optuna.create_study(sampler=sampler)
    asked = in_thread(lambda: [study.ask(dict(FLOATS4)) for _ in range(27)])  # ask() suggests them all
    in_population = [t for t in asked if PREFIX + "generation" in study._storage.get_trial_system_attrs(t._trial_id)]
    assert len(in_population) == 20
    params = [tuple(t.params.values()) for t in asked]
    assert len(set(params)) == len(params) == 27
    # Tell in reverse order, the outside trials included; the next generation opens.
    for trial in reversed(asked):
        study.tell(trial, sphere(trial.params))
    more = in_thread(lambda: [study.ask(dict(FLOATS4)) for _ in range(20)])
    generations = {study._storage.get_trial_system_attrs(t._trial_id).get(PREFIX + "generation") for t in more}
    assert generations == {1}
    sampler.close()


def test_outside_samples_avoid_candidates_in_flight_in_a_tiny_space() -> None:
    space = {"a": IntDistribution(0, 2), "b": IntDistribution(0, 2)}
    sampler = ScipyDESampler(seed=0, popsize=3, search_space=space)
    study = optuna.create_study(sampler=sampler)
    asked = in_thread(lambda: [study.ask(dict(space)) for _ in range(9)])
    population, outside = asked[:6], asked[6:]
    assert not any(PREFIX + "generation" in study._storage.get_trial_system_attrs(t._trial_id) for t in outside)
    in_flight = {tuple(t.params.values()) for t in population}
    drawn = [tuple(t.params.values()) for t in outside]
    assert len(set(drawn)) == 3 and not in_flight & set(drawn)
    for trial in asked:
        study.tell(trial, 0.0)
    sampler.close()


def test_a_trial_failed_behind_the_samplers_back_does_not_stall_the_generation() -> None:
    """Optuna's heartbeat fails stale trials without calling after_trial."""
    sampler = ScipyDESampler(seed=0, popsize=3, search_space=FLOATS2)
    study = optuna.create_study(sampler=sampler)
    asked = [study.ask(dict(FLOATS2)) for _ in range(6)]
    study._storage.set_trial_state_values(asked[0]._trial_id, state=TrialState.FAIL)
    for trial in asked[1:]:
        study.tell(trial, sphere(trial.params))
    nxt = in_thread(lambda: study.ask(dict(FLOATS2)))
    assert study._storage.get_trial_system_attrs(nxt._trial_id)[PREFIX + "generation"] == 1
    study.tell(nxt, 0.0)
    sampler.close()


def test_an_error_inside_scipy_reaches_the_next_trial() -> None:
    def broken(candidate: Any, population: Any, rng: Any = None) -> Any:
        raise ArithmeticError("broken strategy")

    sampler = ScipyDESampler(seed=0, popsize=3, search_space=FLOATS2, strategy=broken)
    study = optuna.create_study(sampler=sampler)
    ask_tell(study, FLOATS2, 6)  # the initial population needs no strategy
    with pytest.raises(RuntimeError, match="differential evolution stopped with an error") as raised:
        in_thread(lambda: study.ask(dict(FLOATS2)))
    assert isinstance(raised.value.__cause__, ArithmeticError)
    sampler.close()


@pytest.mark.timeout(60)
def test_two_jobs_keep_generations_whole_and_distinct() -> None:
    sampler = ScipyDESampler(seed=0, popsize=5)
    study = optuna.create_study(sampler=sampler)
    study.optimize(sphere_objective(FLOATS4), n_trials=1 + 20 * 6, n_jobs=2)
    assert len(study.trials) == 121
    assert all(t.state == TrialState.COMPLETE for t in study.trials)
    generations = members(study)
    last = max(generations)
    assert last >= 4
    for generation, trials in generations.items():
        indices = [t.system_attrs[PREFIX + "index"] for t in trials]
        assert len(indices) == len(set(indices))
        if generation < last:
            assert sorted(indices) == list(range(20))
    params = [tuple(t.params.values()) for t in study.trials]
    assert len(set(params)) == len(params)
    sampler.close()


# -- resume ----------------------------------------------------------------------------------------


def test_a_new_sampler_on_the_same_storage_continues_the_run(tmp_path: Path) -> None:
    size, total = 6, 6 * 5
    reference = optuna.create_study(sampler=ScipyDESampler(seed=7, popsize=3, search_space=FLOATS2))
    ask_tell(reference, FLOATS2, total)
    expected = {(g, t.system_attrs[PREFIX + "index"]): t.params for g, ts in members(reference).items() for t in ts}
    reference.sampler.close()  # type: ignore[attr-defined]

    url = f"sqlite:///{tmp_path / 'study.db'}"
    first = ScipyDESampler(seed=7, popsize=3, search_space=FLOATS2)
    study = optuna.create_study(storage=url, study_name="de", sampler=first)
    ask_tell(study, FLOATS2, size * 2 + 2)  # two whole generations and 2 of the third
    abandoned = [study.ask(dict(FLOATS2)) for _ in range(3)]  # the driver dies with these running
    first.close()
    del first, study

    second = ScipyDESampler(seed=7, popsize=3, search_space=FLOATS2)
    resumed = optuna.load_study(study_name="de", storage=url, sampler=second)
    ask_tell(resumed, FLOATS2, total - (size * 2 + 2))

    generations = members(resumed)
    assert sorted(generations) == [0, 1, 2, 3, 4]
    assert all(len(trials) == size for trials in generations.values())
    got = {(g, t.system_attrs[PREFIX + "index"]): t.params for g, ts in generations.items() for t in ts}
    assert got == expected
    running = members(resumed, (TrialState.RUNNING,))
    assert sorted(t.system_attrs[PREFIX + "index"] for t in running[2]) == [2, 3, 4]
    assert [t.params for t in running[2]] == [got[(2, t.system_attrs[PREFIX + "index"])] for t in running[2]]
    assert [t.number for t in running[2]] == [a.number for a in abandoned]
    second.close()


def test_interrupted_trials_are_handed_out_again_not_scored_as_failures(tmp_path: Path) -> None:
    """The driver dies with two trials of generation 2 running; the resume closes them as interrupted."""
    size, total = 6, 6 * 5
    result = PREFIX + "result"

    def by_slot(study: optuna.Study) -> dict[tuple[int, int], tuple[dict[str, Any], float]]:
        return {
            (g, t.system_attrs[PREFIX + "index"]): (t.params, t.system_attrs[result])
            for g, trials in members(study).items()
            for t in trials
        }

    reference = optuna.create_study(sampler=ScipyDESampler(seed=7, popsize=3, search_space=FLOATS2))
    ask_tell(reference, FLOATS2, total)
    expected = by_slot(reference)
    reference.sampler.close()  # type: ignore[attr-defined]

    url = open_storage(f"sqlite:///{tmp_path / 'study.db'}")  # WAL, as a run's ledger
    first = ScipyDESampler(seed=7, popsize=3, search_space=FLOATS2)
    study = optuna.create_study(storage=url, study_name="de", sampler=first)
    ask_tell(study, FLOATS2, size * 2 + 2)  # generations 0 and 1, then (2, 0) and (2, 1)
    abandoned = [study.ask(dict(FLOATS2)) for _ in range(2)]  # (2, 2) and (2, 3): running when the driver dies
    ask_tell(study, FLOATS2, 1)  # (2, 4) finished
    first.close()
    del first, study

    second = ScipyDESampler(seed=7, popsize=3, search_space=FLOATS2)
    resumed = optuna.load_study(study_name="de", storage=url, sampler=second)
    assert mark_interrupted(resumed) == [trial.number for trial in abandoned]
    # Generation 2's open candidates, then one more ask: nothing is left to hand out, and the
    # interrupted trials must not be scored as failures to make room.
    asked = in_thread(lambda: [resumed.ask(dict(FLOATS2)) for _ in range(4)])
    for trial in asked:
        resumed.tell(trial, sphere(trial.params))
    ask_tell(resumed, FLOATS2, size * 2)

    # (a) The interrupted candidates went to the first two new trials: same slot, same vector.
    trials = resumed.trials
    for old, new in zip(abandoned, asked[:2], strict=True):
        old, new = trials[old.number], trials[new.number]
        assert is_interrupted(old) and old.state == TrialState.FAIL
        for key in ("generation", "index", "run", "vector"):
            assert new.system_attrs[PREFIX + key] == old.system_attrs[PREFIX + key]
        assert new.params == old.params and new.state == TrialState.COMPLETE
    assert [trials[t.number].system_attrs.get(PREFIX + "index") for t in asked] == [2, 3, 5, None]
    # (b) Every candidate and score, generations 3 and 4 included, is the uninterrupted run's.
    assert by_slot(resumed) == expected
    assert all(len(ts) == size for ts in members(resumed).values()) and sorted(members(resumed)) == [0, 1, 2, 3, 4]
    # (c) DE never took a score for an interrupted trial; they are the only failures.
    failed = [t for ts in members(resumed, (TrialState.FAIL,)).values() for t in ts]
    assert sorted(t.number for t in failed) == [t.number for t in abandoned]
    assert not any(result in t.system_attrs for t in failed)
    assert 2 * DEFAULT_PENALTY not in {score for _, score in by_slot(resumed).values()}
    second.close()


def test_a_trial_interrupted_under_a_live_sampler_keeps_its_candidate_open() -> None:
    sampler = ScipyDESampler(seed=0, popsize=3, search_space=FLOATS2)
    study = optuna.create_study(sampler=sampler)
    running = study.ask(dict(FLOATS2))
    assert mark_interrupted(study) == [running.number]  # told FAIL through this sampler's after_trial
    again = in_thread(lambda: study.ask(dict(FLOATS2)))
    old, new = study.trials[running.number], study.trials[again.number]
    assert PREFIX + "result" not in old.system_attrs
    assert (new.system_attrs[PREFIX + "generation"], new.system_attrs[PREFIX + "index"]) == (0, 0)
    assert new.params == old.params
    study.tell(again, 0.0)
    sampler.close()


def test_resume_without_a_seed_reuses_the_stored_one(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'study.db'}"
    first = ScipyDESampler(popsize=3)
    study = optuna.create_study(storage=url, study_name="de", sampler=first)
    study.optimize(sphere_objective(FLOATS2), n_trials=1 + 6 * 2 + 4)
    first.close()
    resumed = optuna.load_study(study_name="de", storage=url, sampler=ScipyDESampler(popsize=3))
    resumed.optimize(sphere_objective(FLOATS2), n_trials=2 + 6)
    generations = members(resumed)
    assert sorted(generations) == [0, 1, 2, 3]
    assert all(len(trials) == 6 for trials in generations.values())
    resumed.sampler.close()  # type: ignore[attr-defined]


def test_stored_results_of_another_seed_are_not_replayed() -> None:
    first = ScipyDESampler(seed=7, popsize=3, search_space=FLOATS2)
    study = optuna.create_study(sampler=first)
    ask_tell(study, FLOATS2, 6 * 2)
    first.close()
    second = ScipyDESampler(seed=8, popsize=3, search_space=FLOATS2)
    study.sampler = second
    ask_tell(study, FLOATS2, 6)
    fresh = study.trials[12:]
    assert {t.system_attrs[PREFIX + "generation"] for t in fresh} == {0}  # the vectors disagree: run live
    assert not {tuple(t.params.values()) for t in fresh} & {tuple(t.params.values()) for t in study.trials[:6]}
    second.close()


def test_close_then_continue_and_pickling_replay_from_storage() -> None:
    sampler = ScipyDESampler(seed=0, popsize=3)
    study = optuna.create_study(sampler=sampler)
    study.optimize(sphere_objective(FLOATS3), n_trials=1 + 9 + 4)
    assert len(de_threads()) == 1
    sampler.close()
    assert de_threads() == []
    study.optimize(sphere_objective(FLOATS3), n_trials=5)  # finishes generation 1 after replaying 0
    copied = pickle.loads(pickle.dumps(sampler))
    sampler.close()
    study.sampler = copied
    study.optimize(sphere_objective(FLOATS3), n_trials=9)
    generations = members(study)
    assert sorted(generations) == [0, 1, 2]
    assert all(len(trials) == 9 for trials in generations.values())
    del study, sampler, copied
    gc.collect()
    assert de_threads() == []


# -- scalarisation ---------------------------------------------------------------------------------


def finished(values: list[float], constraints: Mapping[str, float] | None = None) -> FrozenTrial:
    return create_trial(values=values, constraints=dict(constraints or {}))


def test_default_scalarisation_prefers_higher_compression() -> None:
    scalarize = ConstrainedObjective()
    names = ["accuracy_drop", "compression"]
    low = scalarize(finished([0.1, 10.0], {"drop": -0.5}), [MIN, MAX], names)
    high = scalarize(finished([0.9, 24.0], {"drop": -0.1}), [MIN, MAX], names)
    assert high < low == -10.0


def test_infeasible_ranks_below_every_feasible_and_worse_with_more_violation() -> None:
    scalarize = ConstrainedObjective()
    names = ["accuracy_drop", "compression"]
    feasible = [scalarize(finished([0.0, c], {"drop": 0.0}), [MIN, MAX], names) for c in (0.5, 1.0, 1e8, -1e12)]
    feasible.append(scalarize(finished([0.0, -1e15], {"drop": -1.0}), [MIN, MAX], names))  # absurd scale: clipped
    slight = scalarize(finished([1.1, 50.0], {"drop": 0.1}), [MIN, MAX], names)
    worse = scalarize(finished([3.0, 50.0], {"drop": 2.0}), [MIN, MAX], names)
    much_worse = scalarize(finished([3.0, 50.0], {"drop": 2.0, "latency": 40.0}), [MIN, MAX], names)
    failed = create_trial(state=TrialState.FAIL)
    assert max(feasible) < DEFAULT_PENALTY <= slight < worse < much_worse < scalarize(failed, [MIN, MAX], names)
    assert scalarize(failed, [MIN, MAX], names) == scalarize.failure_value == 2 * DEFAULT_PENALTY


def test_without_a_compression_metric_the_last_objective_counts_in_its_direction() -> None:
    scalarize = ConstrainedObjective()
    assert scalarize(finished([3.0, 5.0]), [MAX, MAX], None) == -5.0
    assert scalarize(finished([3.0, 5.0]), [MAX, MIN], ["a", "b"]) == 5.0
    assert scalarize(finished([3.0, 5.0]), [MAX, MIN], ["compression", "b"]) == -3.0
    assert scalarize(finished([7.0]), [MIN], None) == 7.0
    assert scalarize(finished([7.0]), [MAX], None) == -7.0
    assert ConstrainedObjective(metric="acc")(finished([0.9, 5.0]), [MAX, MAX], ["acc", "compression"]) == -0.9


def test_weighted_sum_and_its_errors() -> None:
    weighted = WeightedSum([1.0, 0.5])
    assert weighted(finished([2.0, 10.0]), [MIN, MAX], None) == -3.0
    assert weighted(finished([2.0, 10.0], {"c": 1.0}), [MIN, MAX], None) >= DEFAULT_PENALTY
    with pytest.raises(PrunetuneError, match=r"'weights' parameter of WeightedSum .* Got \[1.0\] instead"):
        WeightedSum([1.0])(finished([2.0, 10.0]), [MIN, MAX], None)
    with pytest.raises(PrunetuneError, match=r"'penalty' parameter of ConstrainedObjective .* Got -1 instead"):
        ConstrainedObjective(penalty=-1)(finished([1.0]), [MIN], None)


@pytest.mark.parametrize("via", ["constraints_func", "set_constraint"])
def test_constrained_study_reaches_the_feasible_boundary(via: str) -> None:
    """Maximise compression subject to an accuracy-drop limit of 1 point, as Wu et al. do."""

    def objective(trial: optuna.Trial) -> tuple[float, float]:
        a = trial.suggest_float("a", 0.0, 1.0)
        b = trial.suggest_float("b", 0.0, 1.0)
        drop = 2.0 * (a + b)
        trial.set_user_attr("drop", drop)
        if via == "set_constraint":
            trial.set_constraint("0", drop - 1.0)
        return drop, 1.0 + 9.0 * (a + b)

    constraints_func = (lambda t: [t.user_attrs["drop"] - 1.0]) if via == "constraints_func" else None
    sampler = ScipyDESampler(seed=0, popsize=5, constraints_func=constraints_func)
    study = optuna.create_study(directions=["minimize", "maximize"], sampler=sampler)
    study.set_metric_names(["accuracy_drop", "compression"])
    study.optimize(objective, n_trials=1 + 10 * 10)
    scored = [t for ts in members(study).values() for t in ts]
    for trial in scored:
        result = trial.system_attrs[PREFIX + "result"]
        assert trial.constraints == {"0": trial.user_attrs["drop"] - 1.0}
        if trial.user_attrs["drop"] <= 1.0:
            assert result == -trial.values[1]
        else:
            assert DEFAULT_PENALTY <= result < 2 * DEFAULT_PENALTY
    feasible = [t.values[1] for t in study.trials if t.user_attrs["drop"] <= 1.0]
    assert max(feasible) > 5.3  # the boundary is at 5.5
    sampler.close()


# -- conventions -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"popsize": 0}, "popsize"),
        ({"mutation": 2.5}, "mutation"),
        ({"mutation": (0.5, 1.0, 1.5)}, "mutation"),
        ({"recombination": 1.5}, "recombination"),
        ({"strategy": "best3bin"}, "strategy"),
        ({"init": "grid"}, "init"),
        ({"init": [[0.0, 0.0]] * 6}, "init"),
        ({"seed": -1}, "seed"),
        ({"maxiter": 0}, "maxiter"),
        ({"tol": -0.1}, "tol"),
        ({"scalarization": "sum"}, "scalarization"),
        ({"search_space": {"a": (0, 1)}}, "search_space"),
    ],
)
def test_bad_arguments_name_themselves_when_work_starts(kwargs: dict[str, Any], name: str) -> None:
    sampler = ScipyDESampler(**kwargs)  # the constructor only stores
    study = optuna.create_study(sampler=sampler)
    with pytest.raises(PrunetuneError, match=rf"The '{name}' parameter of ScipyDESampler must be .* Got .* instead"):
        study.optimize(sphere_objective(FLOATS3), n_trials=2)
    sampler.close()


def test_docstring_examples_run() -> None:
    for module in (scipy_de_module, scalarize_module):
        result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
        assert result.attempted > 0 and result.failed == 0
