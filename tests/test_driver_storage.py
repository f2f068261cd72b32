"""The driver's storage: trials read from memory, every write in the database at once."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from prunetune.search.goals import Goals
from prunetune.search.ledger import open_study
from prunetune.search.storage import DriverStorage, open_readonly, params_in_one_write, set_user_attrs

GOALS = Goals.from_config({"accuracy": "maximize", "compression": "maximize"})


def as_stored(trial: optuna.trial.FrozenTrial) -> tuple:
    return (trial.number, trial.state, trial.values, trial.params, trial.distributions, trial.user_attrs,
            trial.system_attrs, trial.datetime_start, trial.datetime_complete)


def test_the_driver_reads_its_trials_from_memory_and_the_database_holds_every_write(tmp_path: Path, monkeypatch) -> None:
    url = f"sqlite:///{tmp_path}/study.db"
    study = open_study(url, goals=GOALS, sampler=optuna.samplers.NSGAIISampler(seed=0, population_size=4), study_name="run")
    storage = study._storage
    assert isinstance(storage, DriverStorage)
    reads = []
    for name in ("get_all_trials", "get_trial"):
        original = getattr(storage.backend, name)
        monkeypatch.setattr(storage.backend, name, lambda *a, _o=original, _n=name, **k: reads.append(_n) or _o(*a, **k))
    study.enqueue_trial({"x": 0.5, "y": 1})
    for number in range(10):
        trial = study.ask()
        with params_in_one_write(study):
            x, y = trial.suggest_float("x", 0.0, 1.0), trial.suggest_int("y", 0, 3)
        set_user_attrs(trial, {"plan": {"x": x}, "node": f"n{number % 2}"})
        trial.set_user_attr("one", number)
        state = optuna.trial.TrialState.FAIL if number == 3 else optuna.trial.TrialState.COMPLETE
        study.tell(trial, None if number == 3 else [1.0 - x, 1.0 + y], state=state)
    # The NSGA-II sampler, ask and tell read every trial several times per trial; the database was read
    # once for all of them, and once for the enqueued trial when ask took it (another process might have).
    assert reads.count("get_all_trials") == 1 and reads.count("get_trial") == 1, reads
    fresh = open_readonly(url, "run").get_trials(deepcopy=False)
    assert [as_stored(t) for t in study.get_trials(deepcopy=False)] == [as_stored(t) for t in fresh]
    assert fresh[0].params == {"x": 0.5, "y": 1} and fresh[3].state == optuna.trial.TrialState.FAIL
    assert fresh[9].user_attrs == {"plan": {"x": fresh[9].params["x"]}, "node": "n1", "one": 9}


def test_parameters_held_for_one_write_reach_the_database_before_any_other_write(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/study.db"
    study = open_study(url, goals=GOALS, sampler=optuna.samplers.RandomSampler(seed=0), study_name="run")
    trial = study.ask()
    with params_in_one_write(study):
        trial.suggest_float("x", 0.0, 1.0)
        assert open_readonly(url, "run").get_trials()[0].params == {}  # held
        assert study.get_trials()[0].params.keys() == {"x"}  # the driver sees it already
        trial.set_user_attr("note", "a write of another kind")
        assert open_readonly(url, "run").get_trials()[0].params.keys() == {"x"}  # written first
        trial.suggest_float("z", 0.0, 1.0)
    assert open_readonly(url, "run").get_trials()[0].params.keys() == {"x", "z"}
    with pytest.raises(ValueError):  # a distribution that clashes with the stored one is refused, as without holding
        with params_in_one_write(study):
            study.ask().suggest_int("x", 0, 5)


@pytest.mark.parametrize("state", [optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED, optuna.trial.TrialState.FAIL])
def test_a_trials_suggestions_outcome_and_end_are_one_statement_each(tmp_path: Path, state: optuna.trial.TrialState) -> None:
    from sqlalchemy import event

    url = f"sqlite:///{tmp_path}/study.db"
    study = open_study(url, goals=GOALS, sampler=optuna.samplers.RandomSampler(seed=0), study_name="run")
    study.tell(study.ask({"x": optuna.distributions.FloatDistribution(0.0, 1.0)}), [0.5, 2.0])
    statements: list[str] = []
    event.listen(study._storage.backend.engine, "before_cursor_execute", lambda *args: statements.append(args[2].split()[0]))
    trial = study.ask()
    statements.clear()
    with params_in_one_write(study):
        trial.suggest_float("x", 0.0, 1.0)
        trial.suggest_int("y", 0, 3)
        trial.suggest_categorical("z", ["a", "b"])
    assert statements == ["INSERT"]
    statements.clear()
    set_user_attrs(trial, {"plan": {"x": 1}, "node": "n0", "times": {"seconds": 0.5}})
    assert statements == ["INSERT"]  # one upsert
    statements.clear()
    study.tell(trial, [float("inf"), 1.0] if state == optuna.trial.TrialState.COMPLETE else None, state=state)
    assert statements == (["UPDATE", "INSERT"] if state == optuna.trial.TrialState.COMPLETE else ["UPDATE"])
    fresh = open_readonly(url, "run").get_trials(deepcopy=False)
    assert [as_stored(t) for t in study.get_trials(deepcopy=False)] == [as_stored(t) for t in fresh]
    assert fresh[1].state == state and fresh[1].params.keys() == {"x", "y", "z"}


def test_the_end_of_a_trial_another_process_ended_is_refused_as_optuna_refuses_it(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/study.db"
    study = open_study(url, goals=GOALS, sampler=optuna.samplers.RandomSampler(seed=0), study_name="run")
    trial = study.ask()
    other = open_readonly(url, "run")
    other._storage.set_trial_state_values(trial._trial_id, optuna.trial.TrialState.FAIL)
    with pytest.raises(optuna.exceptions.UpdateFinishedTrialError):
        study._storage.set_trial_state_values(trial._trial_id, optuna.trial.TrialState.COMPLETE, [1.0, 1.0])
    assert open_readonly(url, "run").get_trials()[0].state == optuna.trial.TrialState.FAIL
