"""Runs on a real PostgreSQL database (a throwaway server started here): two runs at once, and a
driver killed with SIGKILL and resumed, each meeting its budget with nothing lost or duplicated."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
import yaml

from postgres_helpers import postgres_binaries, postgres_server
from prunetune.search.ledger import ATTR_INTERRUPTED, list_runs, run_study_name
from prunetune.search.storage import open_storage

pytestmark = pytest.mark.skipif(
    postgres_binaries() is None,
    reason="no PostgreSQL server here (Debian's postgresql package; .ci/run installs it as root)",
)


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    with postgres_server() as url:
        yield url


def experiment(tmp_path: Path, name: str, trials: int, storage: str, steps: int = 3) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump({
        "name": name,
        "model": {"train": {"epochs": 2}},
        "objective": {"finetune": {"epochs": 1, "max_steps": steps}},
        "search": {"sampler": "random", "trials": trials, "early_stopping": {"enabled": False}},
        "execution": {"executor": "local"},
        "storage": storage,
    }))
    return path


def cli(path: Path, run_dir: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "prunetune.cli", "run", str(path), "--run-dir", str(run_dir)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )


def test_two_runs_at_once_on_one_database(tmp_path: Path, postgres_url: str) -> None:
    processes = [cli(experiment(tmp_path, name, trials, postgres_url), tmp_path / name) for name, trials in (("up", 4), ("down", 3))]
    outputs = [process.communicate(timeout=240)[0] for process in processes]
    assert [process.returncode for process in processes] == [0, 0], outputs
    counts = {row["study"]: (row["trials"], row["complete"]) for row in list_runs(postgres_url)}
    assert counts[run_study_name(tmp_path / "up")] == (4, 4) and counts[run_study_name(tmp_path / "down")] == (3, 3)


def test_a_driver_killed_and_resumed_meets_its_budget(tmp_path: Path, postgres_url: str) -> None:
    path, run_dir = experiment(tmp_path, "killed", 10, postgres_url, steps=15), tmp_path / "killed"
    process = cli(path, run_dir)
    deadline = time.time() + 180
    study = None
    while time.time() < deadline and process.poll() is None:
        if (run_dir / "study-name").is_file():
            try:  # the name is claimed before the base is trained and the study created
                study = optuna.load_study(study_name=run_study_name(run_dir), storage=open_storage(postgres_url))
            except KeyError:
                study = None
            if study is not None and sum(t.state.name == "COMPLETE" for t in study.get_trials(deepcopy=False)) >= 3:
                break
        time.sleep(0.2)
    assert study is not None and process.poll() is None, process.communicate()[0] if process.poll() is not None else ""
    os.kill(process.pid, signal.SIGKILL)
    process.communicate()
    before = {t.number: t.values for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"}
    running = [t.number for t in study.get_trials(deepcopy=False) if t.state.name == "RUNNING"]
    assert 3 <= len(before) < 10
    resumed = cli(path, run_dir)
    output = resumed.communicate(timeout=240)[0]
    assert resumed.returncode == 0, output
    trials = study.get_trials(deepcopy=False)
    complete = {t.number: t.values for t in trials if t.state.name == "COMPLETE"}
    assert len(complete) == 10  # the budget, met
    assert {number: complete[number] for number in before} == before  # nothing lost or changed
    interrupted = [t.number for t in trials if t.user_attrs.get(ATTR_INTERRUPTED)]
    assert interrupted == running  # the one cut off is closed as interrupted, not re-run under its number
    assert len(trials) == 10 + len(interrupted) and len({t.number for t in trials}) == len(trials)


def test_the_driver_writes_rows_that_read_back_exactly_as_it_remembers_them(postgres_url: str) -> None:
    from prunetune.search.goals import Goals
    from prunetune.search.ledger import open_study
    from prunetune.search.storage import DriverStorage, open_readonly, params_in_one_write, set_user_attrs

    goals = Goals.from_config({"accuracy": "maximize", "compression": "maximize"})
    study = open_study(postgres_url, goals=goals, sampler=optuna.samplers.RandomSampler(seed=0), study_name="exact")
    assert isinstance(study._storage, DriverStorage) and study._storage.writes_rows
    for number in range(4):
        trial = study.ask()
        with params_in_one_write(study):
            x = trial.suggest_float("x", 0.0, 1.0)
            trial.suggest_categorical("z", ["a", "b"])
        set_user_attrs(trial, {"node": f"n{number}"})
        state = optuna.trial.TrialState.PRUNED if number == 2 else optuna.trial.TrialState.COMPLETE
        study.tell(trial, None if number == 2 else [1.0 / 3.0 - x, float("inf")], state=state)

    def stored(trial: optuna.trial.FrozenTrial) -> tuple:
        return (trial.number, trial.state, trial.values, trial.params, trial.distributions, trial.user_attrs,
                trial.datetime_start, trial.datetime_complete)

    fresh = open_readonly(postgres_url, "exact").get_trials(deepcopy=False)
    assert [stored(t) for t in study.get_trials(deepcopy=False)] == [stored(t) for t in fresh]
    assert fresh[0].values[1] == float("inf") and fresh[2].state == optuna.trial.TrialState.PRUNED
