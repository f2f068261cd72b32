"""Runs that share one storage: each has its own study (named from the run, the name kept in its
folder), meets its own budget, resumes its own, and leaves the others untouched."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import yaml

from prunetune.cli import main
from prunetune.results import load_run
from prunetune.search.ledger import STUDY_FILE, list_runs, run_study_name


def experiment(tmp_path: Path, name: str, trials: int, storage: str) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump({
        "name": name,
        "model": {"train": {"epochs": 2}},
        "objective": {"finetune": {"epochs": 1, "max_steps": 3}},
        "search": {"sampler": "random", "trials": trials, "early_stopping": {"enabled": False}},
        "execution": {"executor": "local"},
        "storage": storage,
    }))
    return path


def snapshot(url: str, study: str) -> list[tuple[int, str, tuple[float, ...] | None]]:
    return [(t.number, t.state.name, tuple(t.values) if t.values else None) for t in optuna.load_study(study_name=study, storage=url).trials]


def test_two_runs_one_after_the_other_keep_their_own_studies(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    assert main(["run", str(experiment(tmp_path, "first", 3, url)), "--run-dir", str(tmp_path / "a")]) == 0
    first = run_study_name(tmp_path / "a")
    assert first.startswith("first-") and (tmp_path / "a" / STUDY_FILE).is_file()
    before = snapshot(url, first)
    assert len(before) == 3
    assert main(["run", str(experiment(tmp_path, "second", 2, url)), "--run-dir", str(tmp_path / "b")]) == 0
    second = run_study_name(tmp_path / "b")
    assert second != first and len(snapshot(url, second)) == 2  # its own budget, not the first's trials
    assert snapshot(url, first) == before  # untouched
    # Resuming the first with a larger budget re-opens its own study and adds only its own trials.
    assert main(["run", str(experiment(tmp_path, "first", 5, url)), "--run-dir", str(tmp_path / "a")]) == 0
    assert run_study_name(tmp_path / "a") == first and len(snapshot(url, first)) == 5
    assert snapshot(url, second)[:2] == snapshot(url, second)
    assert len(load_run(tmp_path / "a").trials) == 5 and len(load_run(tmp_path / "b").trials) == 2
    capsys.readouterr()
    assert main(["runs", "--storage", url]) == 0
    listing = capsys.readouterr().out
    assert first in listing and second in listing
    counts = {row["study"]: (row["trials"], row["complete"]) for row in list_runs(url)}
    assert counts == {first: (5, 5), second: (2, 2)}


def test_two_runs_at_once_on_one_storage_each_meet_their_budget(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "prunetune.cli", "run", str(experiment(tmp_path, name, trials, url)),
             "--run-dir", str(tmp_path / name)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
        )
        for name, trials in (("left", 4), ("right", 3))
    ]
    outputs = [process.communicate(timeout=240)[0] for process in processes]
    assert [process.returncode for process in processes] == [0, 0], outputs
    counts = {row["study"].split("-")[0]: (row["trials"], row["complete"]) for row in list_runs(url)}
    assert counts == {"left": (4, 4), "right": (3, 3)}


def test_a_journal_file_is_a_storage_too(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"journal:{tmp_path / 'ledger.log'}"
    assert main(["run", str(experiment(tmp_path, "journaled", 2, url)), "--run-dir", str(tmp_path / "j")]) == 0
    assert (tmp_path / "ledger.log").is_file() and not (tmp_path / "j" / "study.db").exists()
    assert main(["run", str(experiment(tmp_path, "journaled", 3, url)), "--run-dir", str(tmp_path / "j")]) == 0  # resumed
    run = load_run(tmp_path / "j")
    assert len(run.trials) == 3 and (run.trials["state"] == "COMPLETE").all()
    assert [(row["trials"], row["complete"]) for row in list_runs(url)] == [(3, 3)]
    capsys.readouterr()
    missing = experiment(tmp_path, "nowhere", 1, f"journal:{tmp_path / 'no-such-folder' / 'l.log'}")
    assert main(["run", str(missing), "--run-dir", str(tmp_path / "n")]) == 2
    assert "names a journal file in" in capsys.readouterr().err and not (tmp_path / "n").exists()
