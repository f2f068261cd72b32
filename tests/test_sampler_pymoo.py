"""PymooSampler: Optuna's sampler contract, generations, failures, parallel asks, resume."""

from __future__ import annotations

import copy
import doctest
import pickle
import shutil
import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.testing.pytest_samplers import BasicSamplerTestCase, MultiObjectiveSamplerTestCase, RelativeSamplerTestCase
from optuna.trial import TrialState
from pymoo.algorithms.moo.nsga2 import NSGA2
from pymoo.algorithms.soo.nonconvex.de import DE
from pymoo.indicators.hv import HV

from prunetune.errors import PrunetuneError
from prunetune.search.storage import open_storage
from prunetune.search.ledger import is_interrupted, mark_interrupted
from prunetune.search.samplers import PymooSampler, _pymoo

optuna.logging.set_verbosity(optuna.logging.WARNING)

GENERATION = "PymooSampler:generation"
INDEX = "PymooSampler:index"
VECTOR = "PymooSampler:vector"
FLOATS4 = {f"x{i}": FloatDistribution(0.0, 1.0) for i in range(4)}


def zdt1(trial: optuna.Trial) -> tuple[float, float]:
    x = np.array([trial.suggest_float(f"x{i}", 0.0, 1.0) for i in range(4)])
    g = 1.0 + 9.0 * x[1:].mean()
    return float(x[0]), float(g * (1.0 - np.sqrt(x[0] / g)))


def sphere(trial: optuna.Trial) -> float:
    return float(sum(trial.suggest_float(f"x{i}", -5.0, 5.0) ** 2 for i in range(4)))


def slots(study: optuna.Study) -> list[tuple[int, int]]:
    return [(t.system_attrs[GENERATION], t.system_attrs[INDEX]) for t in study.trials if GENERATION in t.system_attrs]


def study_attrs(study: optuna.Study) -> dict:
    return study._storage.get_study_system_attrs(study._study_id)


def candidates(study: optuna.Study) -> list[dict]:
    return [t.params for t in sorted(study.trials, key=lambda t: t.number)]


# -- Optuna's own sampler test cases, with small populations so that generations are told ----------


class _SmallPopulations:
    @pytest.fixture(params=["nsga2", "de"])
    def sampler(self, request: pytest.FixtureRequest) -> Callable[[], PymooSampler]:
        if request.param == "nsga2":
            return lambda: PymooSampler(NSGA2(pop_size=4), seed=1)
        return lambda: PymooSampler(DE(pop_size=5), seed=1)


class TestOptunaBasic(_SmallPopulations, BasicSamplerTestCase):
    pass


class TestOptunaRelative(_SmallPopulations, RelativeSamplerTestCase):
    pass


class TestOptunaMultiObjective(_SmallPopulations, MultiObjectiveSamplerTestCase):
    pass


# -- the algorithms do their job -------------------------------------------------------------------


def test_nsga2_front_beats_random_sampling_at_equal_trials() -> None:
    def hypervolume(study: optuna.Study) -> float:
        front = np.array([t.values for t in study.best_trials])
        return float(HV(ref_point=np.array([1.1, 2.0]))(front))  # ZDT1's front lies in [0, 1]^2

    nsga2 = optuna.create_study(directions=["minimize"] * 2, sampler=PymooSampler(NSGA2(pop_size=20), seed=3))
    nsga2.optimize(zdt1, n_trials=300)
    random = optuna.create_study(directions=["minimize"] * 2, sampler=optuna.samplers.RandomSampler(seed=3))
    random.optimize(zdt1, n_trials=300)
    assert hypervolume(nsga2) > 1.3 * hypervolume(random)  # 1.62 against 0.88 with these seeds


@pytest.mark.parametrize("direction", ["minimize", "maximize"])
def test_de_best_value_beats_the_first_generation(direction: str) -> None:
    sign = 1.0 if direction == "minimize" else -1.0
    study = optuna.create_study(direction=direction, sampler=PymooSampler(DE(pop_size=20), search_space=None, seed=5))
    study.optimize(lambda t: sign * sphere(t), n_trials=401)
    first = [sign * t.value for t in study.trials if t.system_attrs.get(GENERATION) == 0]
    later = [sign * t.value for t in study.trials if t.system_attrs.get(GENERATION, -1) >= 15]
    assert len(first) == 20 and len(later) == 100
    assert min(later) < 0.1 * min(first)


def test_default_algorithm_is_de_or_nsga2_with_twenty_individuals() -> None:
    single = optuna.create_study(sampler=PymooSampler(search_space=FLOATS4, seed=0))
    single.optimize(lambda t: sum(t.suggest_float(n, 0, 1) for n in FLOATS4), n_trials=45)
    multi = optuna.create_study(directions=["minimize"] * 2, sampler=PymooSampler(search_space=FLOATS4, seed=0))
    multi.optimize(zdt1, n_trials=45)
    assert isinstance(single.sampler._run._algorithm, DE)
    assert isinstance(multi.sampler._run._algorithm, NSGA2)
    for study in (single, multi):
        assert Counter(g for g, _ in slots(study)) == {0: 20, 1: 20, 2: 5}
    assert PymooSampler().population_size == 20 and PymooSampler(DE(pop_size=7)).population_size == 7


# -- generations ------------------------------------------------------------------------------------


def test_a_generation_is_exactly_population_size_trials() -> None:
    study = optuna.create_study(directions=["minimize"] * 2, sampler=PymooSampler(NSGA2(pop_size=8), seed=0))
    study.optimize(zdt1, n_trials=1 + 8 * 5 + 3)
    assert study.trials[0].system_attrs.get(GENERATION) is None  # sampled independently: infers the space
    assert Counter(g for g, _ in slots(study)) == {0: 8, 1: 8, 2: 8, 3: 8, 4: 8, 5: 3}
    assert sorted(slots(study)) == [(g, i) for g in range(6) for i in range(8)][: 8 * 5 + 3]


def test_first_trial_is_a_generation_member_when_the_space_is_given() -> None:
    study = optuna.create_study(
        directions=["minimize"] * 2, sampler=PymooSampler(NSGA2(pop_size=8), search_space=FLOATS4, seed=0)
    )
    study.optimize(zdt1, n_trials=16)
    assert slots(study) == [(g, i) for g in range(2) for i in range(8)]


def test_failed_trials_are_recorded_and_the_search_goes_on() -> None:
    def flaky(trial: optuna.Trial) -> float:
        value = sphere(trial)
        if trial.params["x0"] > 2.0:
            raise ValueError("diverged")
        return value

    study = optuna.create_study(sampler=PymooSampler(DE(pop_size=10), search_space=None, seed=2))
    study.optimize(flaky, n_trials=81, catch=(ValueError,))
    states = Counter(t.state for t in study.trials)
    assert len(study.trials) == 81 and states[TrialState.FAIL] > 0
    assert Counter(g for g, _ in slots(study)) == {g: 10 for g in range(8)}
    # Failures are told as infeasible: the algorithm keeps no failed individual over a completed one.
    population = study.sampler._run._algorithm.pop
    assert np.all(population.get("CV")[:, 0] == 0.0)
    late = [t for t in study.trials if t.system_attrs.get(GENERATION) == 7]
    assert sum(t.state == TrialState.FAIL for t in late) < sum(t.state == TrialState.FAIL for t in study.trials[1:11])


def test_pruned_and_failed_trials_are_told_as_infeasible_with_the_worst_values() -> None:
    study = optuna.create_study(sampler=PymooSampler(DE(pop_size=5), search_space=FLOATS4, seed=0))
    trials = [study.ask() for _ in range(5)]
    for trial in trials:
        for name in FLOATS4:
            trial.suggest_float(name, 0.0, 1.0)
    study.tell(trials[0], state=TrialState.FAIL)
    study.tell(trials[1], state=TrialState.PRUNED)
    for value, trial in zip([3.0, 1.0, 2.0], trials[2:], strict=True):
        study.tell(trial, value)
    study.ask().suggest_float("x0", 0.0, 1.0)  # closes generation 0
    population = study.sampler._run._algorithm.pop
    told = {
        round(float(x[0]), 12): (float(f[0]), float(cv[0]))
        for x, f, cv in zip(*population.get("X", "F", "CV"), strict=True)
    }
    expected = {round(t.params["x0"], 12): t for t in trials}
    for x0, (f, cv) in told.items():
        trial = study.trials[expected[x0].number]
        if trial.state == TrialState.COMPLETE:
            assert (f, cv) == (trial.value, 0.0)
        else:
            assert (f, cv) == (3.0, _pymoo.FAILED_VIOLATION)


def test_constraints_steer_the_search_to_the_feasible_region() -> None:
    def objective(trial: optuna.Trial) -> float:
        x = trial.suggest_float("x", 0.0, 1.0)
        y = trial.suggest_float("y", 0.0, 1.0)
        trial.set_user_attr("c", (0.6 - x, 0.0))
        return x + y

    sampler = PymooSampler(DE(pop_size=10), seed=0, constraints_func=lambda t: t.user_attrs["c"])
    study = optuna.create_study(sampler=sampler)
    study.optimize(objective, n_trials=121)
    assert all(tuple(t.system_attrs["constraints"]) == tuple(t.user_attrs["c"]) for t in study.trials)
    feasible = [t.value for t in study.trials if t.params["x"] >= 0.6]
    late = [t for t in study.trials if t.system_attrs.get(GENERATION, -1) >= 9]
    assert sum(t.params["x"] >= 0.6 for t in late) >= 0.8 * len(late)
    assert min(feasible) < 0.7
    assert np.all(study.sampler._run._algorithm.pop.get("CV")[:, 0] == 0.0)


def test_constraints_stored_by_another_component_are_read() -> None:
    def objective(trial: optuna.Trial) -> float:
        x0 = trial.suggest_float("x0", 0.0, 1.0)
        trial.storage.set_trial_system_attr(trial._trial_id, "constraints", (x0 - 0.5, -1.0))
        return x0

    space = {"x0": FloatDistribution(0, 1)}
    # Seeded: unseeded, about one run in a hundred never proposes an x0 > 0.5 in generation 0.
    study = optuna.create_study(sampler=PymooSampler(DE(pop_size=6), search_space=space, seed=0))
    study.optimize(objective, n_trials=7)
    x, cv = study.sampler._run._algorithm.pop.get("X", "CV")
    np.testing.assert_allclose(cv[:, 0], np.maximum(x[:, 0] - 0.5, 0.0))
    assert np.any(cv[:, 0] > 0)


def test_integer_and_categorical_parameters_stay_valid() -> None:
    choices = ("relu", "tanh", "gelu")

    def objective(trial: optuna.Trial) -> tuple[float, float]:
        bits = trial.suggest_int("bits", 2, 8)
        step = trial.suggest_int("step", 0, 12, step=4)
        width = trial.suggest_int("width", 8, 256, log=True)
        act = trial.suggest_categorical("act", choices)
        ratio = trial.suggest_float("ratio", 0.0, 0.9, step=0.1)
        return bits + ratio, step + width / 64 + choices.index(act)

    study = optuna.create_study(directions=["minimize"] * 2, sampler=PymooSampler(NSGA2(pop_size=10), seed=4))
    study.optimize(objective, n_trials=71)
    space = study.trials[0].distributions
    codec = study.sampler._run.codec
    for trial in study.trials:
        assert trial.state == TrialState.COMPLETE
        for name, value in trial.params.items():
            assert space[name]._contains(space[name].to_internal_repr(value)), (name, value)
        assert isinstance(trial.params["bits"], int) and isinstance(trial.params["width"], int)
        if VECTOR in trial.system_attrs:
            vector = np.array(trial.system_attrs[VECTOR])
            assert np.all(vector[codec.integrality] == np.round(vector[codec.integrality]))
            assert np.all((codec.lower <= vector) & (vector <= codec.upper))
    assert {t.params["act"] for t in study.trials} == set(choices)


# -- parallel trials --------------------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", [NSGA2(pop_size=6), DE(pop_size=6)], ids=["nsga2", "de"])
def test_asking_more_than_a_population_before_any_tell_never_blocks_nor_repeats(algorithm) -> None:
    directions = ["minimize"] * (2 if isinstance(algorithm, NSGA2) else 1)
    study = optuna.create_study(directions=directions, sampler=PymooSampler(algorithm, search_space=FLOATS4, seed=0))
    asked: list[optuna.Trial] = []

    def ask_many() -> None:
        for _ in range(15):
            trial = study.ask()
            for name in FLOATS4:
                trial.suggest_float(name, 0.0, 1.0)
            asked.append(trial)

    for _round in range(4):  # four rounds of 15 in flight: generations of 6 plus extras each time
        worker = threading.Thread(target=ask_many)
        worker.start()
        worker.join(timeout=20)
        assert not worker.is_alive(), "asking blocked"
        for trial in asked[-15:]:
            values = zdt1(trial) if len(directions) == 2 else sum(trial.params.values())
            study.tell(trial, values)
    params = [tuple(t.params.values()) for t in study.trials]
    assert len(set(params)) == len(params) == 60
    assert len(set(slots(study))) == 60
    generations = Counter(g for g, _ in slots(study))
    assert all(count >= 6 for count in generations.values()) and len(generations) == 4
    # Told so far: the cores of generations 0-2 and the extras (index >= 6) of generation 1; those of
    # generation 0 have no parents and are not told, those of generation 2 wait for generation 3.
    extras = Counter(g for g, i in slots(study) if i >= 6)
    assert extras == {0: 9, 1: 9, 2: 9, 3: 9}
    assert study.sampler._run._algorithm.evaluator.n_eval == 6 * 3 + extras[1]


def test_a_good_extra_reaches_the_de_population() -> None:
    space = {"x": FloatDistribution(0.0, 10.0)}
    study = optuna.create_study(sampler=PymooSampler(DE(pop_size=5), search_space=space, seed=0))

    def ask(n: int) -> list[optuna.Trial]:
        trials = [study.ask() for _ in range(n)]
        for trial in trials:
            trial.suggest_float("x", 0.0, 10.0)
        return trials

    for trial in ask(5):
        study.tell(trial, 100.0)  # generation 0
    generation1 = ask(7)  # five core individuals and two extras
    assert [t.number for t in generation1 if study.trials[t.number].system_attrs[INDEX] >= 5] == [10, 11]
    for trial in generation1:
        study.tell(trial, 0.5 if study.trials[trial.number].system_attrs[INDEX] >= 5 else 50.0)
    for trial in ask(5):
        study.tell(trial, 60.0)  # generation 2 closes: extras of generation 1 are told first
    ask(1)
    assert sorted(study.sampler._run._algorithm.pop.get("F")[:, 0].tolist()) == [0.5, 0.5, 50.0, 50.0, 50.0]


def test_parallel_optimize_with_two_threads() -> None:
    sampler = PymooSampler(NSGA2(pop_size=10), search_space=FLOATS4, seed=0)
    study = optuna.create_study(directions=["minimize"] * 2, sampler=sampler)
    study.optimize(zdt1, n_trials=80, n_jobs=2)
    assert len(study.trials) == 80 and all(t.state == TrialState.COMPLETE for t in study.trials)
    assert len(set(slots(study))) == 80
    assert len({tuple(t.params.values()) for t in study.trials}) == 80
    assert all(
        count >= 10 for g, count in Counter(g for g, _ in slots(study)).items() if g < max(g for g, _ in slots(study))
    )


# -- resume and determinism -------------------------------------------------------------------------


def test_a_new_sampler_on_the_same_storage_continues_the_stored_generations(tmp_path: Path) -> None:
    def run(path: Path, plan: list[int]) -> optuna.Study:
        for n_trials in plan:  # each step is a new process' sampler on the same storage
            storage = open_storage(f"sqlite:///{path}")  # WAL, as a run's ledger
            sampler = PymooSampler(NSGA2(pop_size=8), seed=11)
            study = optuna.create_study(
                directions=["minimize"] * 2, sampler=sampler, storage=storage, study_name="s", load_if_exists=True
            )
            study.optimize(zdt1, n_trials=n_trials)
        return study

    resumed = run(tmp_path / "resumed.db", [23, 14, 19])
    straight = run(tmp_path / "straight.db", [56])
    assert candidates(resumed) == candidates(straight)
    assert slots(resumed) == slots(straight) == [(g, i) for g in range(7) for i in range(8)][:55]
    # The second sampler's first trial takes the next free individual of the stored generation 2.
    assert (resumed.trials[23].system_attrs[GENERATION], resumed.trials[23].system_attrs[INDEX]) == (2, 6)


@pytest.mark.parametrize("algorithm", [NSGA2(pop_size=6), DE(pop_size=6)], ids=["nsga2", "de"])
def test_interrupted_trials_are_handed_out_again_not_told_as_failures(
    algorithm, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The driver dies with two trials of generation 1 running; the resume closes them as interrupted."""
    directions = ["minimize"] * (2 if isinstance(algorithm, NSGA2) else 1)

    def objective(trial: optuna.Trial) -> float | tuple[float, float]:
        values = zdt1(trial)
        return values if len(directions) == 2 else sum(values)

    def sampler() -> PymooSampler:
        return PymooSampler(copy.deepcopy(algorithm), search_space=FLOATS4, seed=4)

    def by_slot(study: optuna.Study) -> dict[tuple[int, int], dict]:
        found = {}
        for trial in study.trials:
            if GENERATION in trial.system_attrs and not is_interrupted(trial):
                assert (trial.system_attrs[GENERATION], trial.system_attrs[INDEX]) not in found
                found[trial.system_attrs[GENERATION], trial.system_attrs[INDEX]] = trial.params
        return found

    straight = optuna.create_study(directions=directions, sampler=sampler())
    straight.optimize(objective, n_trials=6 * 4 + 1)  # generations 0-3 told, then (4, 0)

    storage, name = open_storage(f"sqlite:///{tmp_path / 'study.db'}"), "s"  # WAL, as a run's ledger
    study = optuna.create_study(directions=directions, sampler=sampler(), storage=storage, study_name=name)
    study.optimize(objective, n_trials=6 + 3)  # generation 0, then (1, 0)-(1, 2)
    abandoned = [study.ask(dict(FLOATS4)) for _ in range(2)]  # (1, 3) and (1, 4): running when the driver dies
    last = study.ask(dict(FLOATS4))
    study.tell(last, objective(last))  # (1, 5) finished
    del study

    told: list[int] = []
    tell = _pymoo._Run._tell

    def spy(self, ledger, population, trials, stream) -> None:
        told.extend(trial.number for trial in trials)
        tell(self, ledger, population, trials, stream)

    monkeypatch.setattr(_pymoo._Run, "_tell", spy)
    resumed = optuna.load_study(study_name=name, storage=storage, sampler=sampler())
    assert mark_interrupted(resumed) == [trial.number for trial in abandoned]
    resumed.optimize(objective, n_trials=2 + 6 * 2 + 1)

    # (a) The interrupted individuals went to the first two new trials: same slot, same vector.
    for old, new in zip(abandoned, resumed.trials[12:14], strict=True):
        old = resumed.trials[old.number]
        assert is_interrupted(old) and old.state == TrialState.FAIL
        for key in (GENERATION, INDEX, VECTOR):
            assert new.system_attrs[key] == old.system_attrs[key]
        assert new.params == old.params and new.state == TrialState.COMPLETE
    # (b) Every candidate, generations 2-4 included, is the uninterrupted run's.
    assert by_slot(resumed) == by_slot(straight)
    assert slots(resumed)[12:14] == [(1, 3), (1, 4)] and slots(resumed)[-1] == (4, 0)
    # (c) The new sampler told generations 0-3 once each, every trial completed, the interrupted ones never.
    evaluated = [t.number for t in resumed.trials if not is_interrupted(t)]
    assert sorted(told) == evaluated[:-1]  # all but (4, 0), whose generation is still open
    assert len(told) == 24 and not set(told) & {t.number for t in abandoned}
    ours, theirs = resumed.sampler._run._algorithm, straight.sampler._run._algorithm
    assert ours.evaluator.n_eval == theirs.evaluator.n_eval == 24
    np.testing.assert_array_equal(ours.pop.get("F"), theirs.pop.get("F"))
    assert np.all(ours.pop.get("CV") < _pymoo.FAILED_VIOLATION)


def test_resuming_with_another_seed_warns_and_goes_on(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    storage = f"sqlite:///{tmp_path / 's.db'}"
    study = optuna.create_study(sampler=PymooSampler(DE(pop_size=5), seed=1), storage=storage, study_name="s")
    study.optimize(sphere, n_trials=12)
    study = optuna.load_study(study_name="s", storage=storage, sampler=PymooSampler(DE(pop_size=5), seed=2))
    optuna.logging.enable_propagation()
    try:
        with caplog.at_level("WARNING"):
            study.optimize(sphere, n_trials=6)
    finally:
        optuna.logging.disable_propagation()
    assert "stored generations were proposed by another" in caplog.text
    assert Counter(g for g, _ in slots(study)) == {0: 5, 1: 5, 2: 5, 3: 2}


def test_resume_without_a_seed_replays_the_seed_stored_in_the_study(tmp_path: Path) -> None:
    first = tmp_path / "first.db"
    study = optuna.create_study(sampler=PymooSampler(DE(pop_size=6)), storage=f"sqlite:///{first}", study_name="s")
    study.optimize(sphere, n_trials=20)
    copy = tmp_path / "copy.db"
    shutil.copy(first, copy)
    continued = []
    for path in (first, copy):
        study = optuna.load_study(study_name="s", storage=f"sqlite:///{path}", sampler=PymooSampler(DE(pop_size=6)))
        study.optimize(sphere, n_trials=15)
        continued.append(candidates(study)[20:])
    assert continued[0] == continued[1]
    assert isinstance(study_attrs(study)["PymooSampler:seed"], int)


def test_same_seed_same_candidates_whatever_draws_from_numpys_global_rng() -> None:
    def noisy(trial: optuna.Trial) -> float:
        np.random.random(7)  # someone else using the global generator between calls
        return sphere(trial)

    runs = []
    for global_seed in (1, 2):
        np.random.seed(global_seed)
        study = optuna.create_study(sampler=PymooSampler(DE(pop_size=8), seed=9))
        study.optimize(noisy, n_trials=50)
        runs.append(candidates(study))
    other = optuna.create_study(sampler=PymooSampler(DE(pop_size=8), seed=10))
    other.optimize(noisy, n_trials=50)
    assert runs[0] == runs[1] and candidates(other)[1:] != runs[0][1:]


def test_pickled_sampler_keeps_its_arguments_and_continues_from_storage() -> None:
    sampler = PymooSampler(NSGA2(pop_size=6), search_space=FLOATS4, seed=3)
    study = optuna.create_study(directions=["minimize"] * 2, sampler=sampler)
    study.optimize(zdt1, n_trials=9)
    clone = pickle.loads(pickle.dumps(sampler))
    assert clone._run is None and clone._seed == 3
    study.sampler = clone
    study.optimize(zdt1, n_trials=9)
    reference = optuna.create_study(
        directions=["minimize"] * 2, sampler=PymooSampler(NSGA2(pop_size=6), search_space=FLOATS4, seed=3)
    )
    reference.optimize(zdt1, n_trials=18)
    assert candidates(study) == candidates(reference)


def test_fixed_parameters_are_told_as_evaluated() -> None:
    study = optuna.create_study(sampler=PymooSampler(DE(pop_size=4), search_space=FLOATS4, seed=0))
    study.enqueue_trial({"x0": 0.123})
    study.optimize(lambda t: sum(t.suggest_float(n, 0.0, 1.0) for n in FLOATS4), n_trials=5)
    assert study.trials[0].params["x0"] == 0.123 and study.trials[0].system_attrs[VECTOR][0] != 0.123
    assert 0.123 in study.sampler._run._algorithm.pop.get("X")[:, 0]


def test_the_relative_space_is_stored_and_outside_parameters_are_sampled_independently() -> None:
    def objective(trial: optuna.Trial) -> float:
        x = trial.suggest_float("x", 0.0, 1.0)
        if trial.number >= 3:
            trial.suggest_int("later", 0, 5)
        return x

    study = optuna.create_study(sampler=PymooSampler(DE(pop_size=4), seed=0))
    study.optimize(objective, n_trials=12)
    assert set(study_attrs(study)["PymooSampler:search_space"]) == {"x"}
    later = {t.params["later"] for t in study.trials[3:]}
    assert later <= set(range(6)) and len(later) > 1
    assert all(VECTOR in t.system_attrs for t in study.trials[1:])


# -- arguments --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        (
            {"algorithm": "NSGA2"},
            "'algorithm' argument of PymooSampler must be a pymoo Algorithm with ask/tell. Got 'NSGA2'",
        ),
        ({"search_space": {"x": (0, 1)}}, "'search_space' argument of PymooSampler"),
        ({"search_space": {}}, "'search_space' argument of PymooSampler"),
        ({"seed": -1}, "'seed' argument of PymooSampler must be a non-negative integer or None. Got -1"),
        ({"seed": 1.5}, "Got 1.5 instead"),
        ({"constraints_func": 3}, "'constraints_func' argument of PymooSampler must be callable or None. Got 3"),
    ],
)
def test_bad_arguments_are_named_when_work_starts(kwargs: dict, named: str) -> None:
    sampler = PymooSampler(**kwargs)  # the constructor only stores
    study = optuna.create_study(sampler=sampler)
    with pytest.raises(PrunetuneError, match=named.replace("(", r"\(").replace(")", r"\)")):
        study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=1)


def test_constructor_is_keyword_only_after_the_algorithm() -> None:
    with pytest.raises(TypeError):
        PymooSampler(NSGA2(), FLOATS4)  # type: ignore[misc]


def test_docstring_example_runs() -> None:
    result = doctest.testmod(_pymoo, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
