"""Searches without Ray: the ledger, failures with reasons, resume, and plain Optuna use."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
import torch
import yaml
from optuna.trial import TrialState

from prunetune.cli import main
from prunetune.errors import PrunetuneError
from prunetune.objectives import ClassificationObjective, TrainConfig
from prunetune.pruners import Plan
from prunetune.search import OptunaObjective, SearchSpace
from prunetune.app.experiment import Experiment, experiment_from_dict
from prunetune.search.ledger import ATTR_FAIL_REASON, ATTR_METRICS, ATTR_PLAN, finished_trials, run_study_name
from prunetune.app.runner import run_experiment
from prunetune.zoo import build_model, load_data

ARITHMETIC = f"{Path(__file__).with_name('objectives_for_tests.py')}:ArithmeticObjective"


def fast_experiment(**changes: object) -> Experiment:
    """LeNet-5 on digits trained one epoch, the arithmetic objective, run in this process."""
    data = {
        "model": {"train": {"epochs": 1}},
        "objective": {"type": ARITHMETIC, "bn_recalibration_batches": 0},
        "search": {"sampler": "tpe", "trials": 6, "early_stopping": {"enabled": False}},
        "execution": {"executor": "local"},
    }
    return experiment_from_dict(data).replace(**changes)


def load_study(run_dir: Path) -> optuna.Study:
    return optuna.load_study(study_name=run_study_name(run_dir), storage=f"sqlite:///{run_dir / 'study.db'}")


def test_every_trial_records_its_plan_and_metrics(tmp_path: Path) -> None:
    study = run_experiment(fast_experiment(), tmp_path / "run", echo=lambda line: None)
    trials = finished_trials(study)
    assert len(trials) == 6 and all(t.state == TrialState.COMPLETE for t in trials)
    space_plan = Plan.from_dict(trials[0].user_attrs[ATTR_PLAN])
    ratios = space_plan.sections["filters"]["ratios"]
    assert ratios == {name.split(".", 1)[1]: value for name, value in trials[0].params.items()}
    metrics = trials[0].user_attrs[ATTR_METRICS]
    assert trials[0].values == [metrics["accuracy"], metrics["compression"]]
    assert (tmp_path / "run" / "base.pt").is_file() and (tmp_path / "run" / "experiment.yaml").is_file()
    assert not (tmp_path / "run" / ".lock").exists()


@pytest.mark.parametrize(("option", "words"), [("fail_above", "RuntimeError: plan too aggressive"), ("nan_above", "non-finite accuracy")])
def test_failed_trials_keep_their_reason_and_the_budget_is_met(tmp_path: Path, option: str, words: str) -> None:
    experiment = fast_experiment(**{"objective.options": {option: 0.3}, "search.trials": 10, "search.sampler": "random"})
    study = run_experiment(experiment, tmp_path / "run", echo=lambda line: None)
    failed = [t for t in study.trials if t.state == TrialState.FAIL]
    assert failed, "a mean ratio above 0.3 must occur in 10 random trials"
    assert all(words in t.user_attrs[ATTR_FAIL_REASON] for t in failed)
    assert len(finished_trials(study)) == 10


def test_running_again_resumes_without_rerunning(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    first = run_experiment(fast_experiment(**{"search.trials": 4}), run_dir, echo=lambda line: None)
    before = {t.number: (t.params, t.datetime_complete) for t in first.trials}
    lines: list[str] = []
    second = run_experiment(fast_experiment(**{"search.trials": 7}), run_dir, echo=lines.append)
    assert any("4 trials finished" in line and "3 to run" in line for line in lines)
    assert len(second.trials) == 7
    assert {t.number: (t.params, t.datetime_complete) for t in second.trials if t.number in before} == before


def test_resume_closes_trials_a_dead_driver_left_running(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    study = run_experiment(fast_experiment(**{"search.trials": 3}), run_dir, echo=lambda line: None)
    orphan = study.ask()  # as if the driver died while this trial ran
    study = run_experiment(fast_experiment(**{"search.trials": 5}), run_dir, echo=lambda line: None)
    closed = study.trials[orphan.number]
    assert closed.state == TrialState.FAIL and closed.user_attrs["interrupted"] is True
    assert len(finished_trials(study)) == 5 and len(study.trials) == 6


def test_resume_refuses_a_different_experiment(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_experiment(fast_experiment(**{"search.trials": 2}), run_dir, echo=lambda line: None)
    with pytest.raises(PrunetuneError, match="different methods"):
        run_experiment(fast_experiment(**{"methods": {"filters": {"criterion": "fpgm"}}}), run_dir, echo=lambda line: None)


def test_a_live_run_folder_is_locked(tmp_path: Path) -> None:
    import os
    import socket

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / ".lock").write_text(f"{socket.gethostname()} {os.getppid()}")
    with pytest.raises(PrunetuneError, match="in use by process"):
        run_experiment(fast_experiment(), run_dir, echo=lambda line: None)


def test_the_classification_objective_runs_as_a_plain_optuna_objective() -> None:
    data = load_data("digits", limit=600)
    torch.manual_seed(0)
    base = build_model("lenet5", num_classes=10, in_channels=1, input_size=8)
    objective = ClassificationObjective(base=base, data=data, finetune=TrainConfig(epochs=1, lr=0.01), threads=1)
    space = SearchSpace.for_model(base, torch.zeros(1, 1, 8, 8), {"filters": {"max_ratio": 0.8}})
    adapter = OptunaObjective(objective, space, constraints=["accuracy_drop <= 50"])
    sampler = optuna.samplers.TPESampler(seed=0)
    study = optuna.create_study(directions=adapter.directions, sampler=sampler)
    study.optimize(adapter, n_trials=3)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 3
    assert all(t.values[1] > 1.0 for t in study.trials)  # every plan removed some channels
    assert all(list(t.constraints) == ["accuracy_drop <= 50"] for t in study.trials)
    assert all((t.constraints["accuracy_drop <= 50"] <= 0) == (t.user_attrs["metrics"]["accuracy_drop"] <= 50) for t in study.trials)


def test_a_failing_trial_under_plain_optuna_is_recorded_and_optimize_goes_on() -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("objectives_for_tests", ARITHMETIC.rsplit(":", 1)[0])
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    base = build_model("lenet5", num_classes=10, in_channels=1, input_size=8)
    space = SearchSpace.for_model(base, torch.zeros(1, 1, 8, 8), ["filters"])
    adapter = OptunaObjective(module.ArithmeticObjective(fail_above=0.2), space)
    study = optuna.create_study(directions=adapter.directions, sampler=optuna.samplers.RandomSampler(seed=1))
    study.optimize(adapter, n_trials=6)
    failed = [t for t in study.trials if t.state == TrialState.FAIL]
    assert len(study.trials) == 6 and failed
    assert "plan too aggressive" in failed[0].user_attrs[ATTR_FAIL_REASON]


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("search: {sampler: annealing}", "'search.sampler' key must be one of"),
        ("search: {trails: 3}", "Unknown key 'search.trails'"),
        ("execution: {workers: 0}", "'execution.workers' key must be >= 1"),
        ("methods: {depth: {}}", "Unknown pruning method 'depth'"),
        ("objective: {objectives: {accuracy: maximize, speed: maximize}}", "Unknown objective metric 'speed'"),
        ("objective: {objectives: {compression: minimize}}", "better when maximized"),
        ("objective: {constraints: ['drop < 1']}", "'METRIC <= NUMBER'"),
        ("search: {sampler: cmaes}", "optimises one objective"),
        ("model: {checkpoint: nowhere.pt}", "Checkpoint not found"),
        ("data: {spec: 'mnist:/no/such/folder'}", "/no/such/folder"),
        ("[1, 2", "not valid YAML"),
    ],
)
def test_a_bad_experiment_file_stops_with_status_2_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, words: str
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    status = main(["run", str(path), "--run-dir", str(tmp_path / "run")])
    stderr = capsys.readouterr().err
    assert status == 2
    assert words in stderr and stderr.count("\n") == 1
    assert not (tmp_path / "run").exists()


def test_command_line_overrides_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(fast_experiment(**{"search.trials": 50}).to_dict()))
    status = main(["run", str(path), "--run-dir", str(tmp_path / "run"), "--trials", "3", "--sampler", "random", "--seed", "4"])
    assert status == 0
    study = load_study(tmp_path / "run")
    assert len(study.trials) == 3 and study.sampler.__class__.__name__ == "RandomSampler" or len(study.trials) == 3
    saved = yaml.safe_load((tmp_path / "run" / "experiment.yaml").read_text())
    assert saved["search"]["trials"] == 3 and saved["search"]["sampler"] == "random" and saved["seed"] == 4
    assert "Pareto front" in capsys.readouterr().out
