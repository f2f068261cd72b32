"""Baselines beside a search: plans in the space, labelled trials outside the budget, reports, the command."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from optuna.trial import TrialState

from test_search_local import fast_experiment as search_local_experiment

from prunetune.app.baselines import baseline_points, check_baselines
from prunetune.app.experiment import Experiment
from prunetune.app.runner import run_experiment
from prunetune.cli import main
from prunetune.errors import PrunetuneError
from prunetune.pruners import apply_plan
from prunetune.results import load_run
from prunetune.results.report import write_report
from prunetune.search.fixed_points import FixedPointsSampler
from prunetune.search.ledger import ATTR_BASELINE, ATTR_PLAN, baseline_labels, finished_trials
from prunetune.search.space import SearchSpace
from prunetune.search.storage import with_sampler
from prunetune.zoo import build_model

def fast_experiment(**changes: object) -> Experiment:
    """The local engine tests' experiment (arithmetic objective), with random plans and 4 trials."""
    return search_local_experiment(**{"search.sampler": "random", "search.trials": 4, **changes})


def labelled(study) -> dict[str, object]:
    return {t.user_attrs[ATTR_BASELINE]: t for t in study.get_trials() if ATTR_BASELINE in t.user_attrs}


def test_baselines_run_after_the_search_labelled_and_outside_its_budget(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    experiment = fast_experiment(**{"search.baselines": ["uniform:0.2,0.5", "global:0.3"]})
    study = run_experiment(experiment, run_dir, echo=lambda line: None)
    trials = study.get_trials()
    assert len(trials) == 7 and len(finished_trials(study)) == 4  # the budget counts searched trials only
    found = labelled(study)
    assert set(found) == {"uniform:0.2", "uniform:0.5", "global:0.3"}
    assert [t.number for t in trials if ATTR_BASELINE in t.user_attrs] == [4, 5, 6]  # after the search
    assert all(t.state == TrialState.COMPLETE for t in found.values())
    assert set(found["uniform:0.5"].user_attrs[ATTR_PLAN]["filters"]["ratios"].values()) == {0.5}
    global_ratios = found["global:0.3"].user_attrs[ATTR_PLAN]["filters"]["ratios"]
    assert len(set(global_ratios.values())) > 1  # the global ranking spreads the cut unevenly

    lines: list[str] = []
    experiment = experiment.replace(**{"search.trials": 6, "search.baselines": ["uniform:0.2,0.5,0.7", "global:0.3"]})
    study = run_experiment(experiment, run_dir, echo=lines.append)
    assert len(finished_trials(study)) == 6
    assert set(labelled(study)) == {"uniform:0.2", "uniform:0.5", "uniform:0.7", "global:0.3"}
    assert len(study.get_trials()) == 6 + 4  # recorded baselines are not run again
    assert any(line == "baselines: 1 plans (uniform:0.7)" for line in lines)


def test_reports_keep_baselines_off_the_front_and_show_them_beside_it(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_experiment(fast_experiment(**{"search.baselines": ["uniform:0.2,0.5"]}), run_dir, echo=lambda line: None)
    run = load_run(run_dir)
    baseline_numbers = {4, 5}
    # The arithmetic objective puts every plan on one trade-off curve: every trial is non-dominated,
    # so a front that counted baselines would hold them.
    assert set(run.front().index) == {0, 1, 2, 3}
    assert set(run.baselines().index) == baseline_numbers and set(run.baseline_front().index) == baseline_numbers
    assert run.counts()["baselines"] == 2 and run.counts()["total"] == 4
    assert run.baseline_hypervolume(label="uniform") == pytest.approx(run.baseline_hypervolume())
    assert 0.0 < run.baseline_hypervolume() < 1.0
    summary = write_report(run)
    assert summary.baseline_hypervolumes["uniform"] == pytest.approx(run.baseline_hypervolume())
    markdown = (run_dir / "report.md").read_text()
    assert "## Baselines" in markdown and "uniform:0.5" in markdown and "the searched front has" in markdown
    document = json.loads((run_dir / "pareto.json").read_text())
    assert {row["baseline"] for row in document["baselines"]["front"]} == {"uniform:0.2", "uniform:0.5"}
    assert {row["trial"] for row in document["front"]} == {0, 1, 2, 3}


def test_a_baseline_cut_off_by_a_dead_driver_is_closed_and_run_again(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    experiment = fast_experiment(**{"search.baselines": ["uniform:0.5"]})
    study = run_experiment(experiment, run_dir, echo=lambda line: None)
    params = {name: 0.7 for name in study.get_trials()[0].params}
    orphan = with_sampler(study, FixedPointsSampler([("uniform:0.7", params)])).ask()  # the driver died here
    assert baseline_labels(study) == {"uniform:0.5"}  # a running baseline is not recorded yet
    study = run_experiment(experiment.replace(**{"search.baselines": ["uniform:0.5,0.7"]}), run_dir, echo=lambda line: None)
    closed = study.get_trials()[orphan.number]
    assert closed.state == TrialState.FAIL and closed.user_attrs["interrupted"] is True
    again = [t for t in study.get_trials() if t.user_attrs.get(ATTR_BASELINE) == "uniform:0.7"]
    assert [t.state for t in again] == [TrialState.FAIL, TrialState.COMPLETE]
    assert len(finished_trials(study)) == 4


def test_the_baseline_command_adds_baselines_to_a_run_and_refuses_bad_ones(tmp_path: Path, capsys) -> None:
    run_dir = tmp_path / "run"
    run_experiment(fast_experiment(), run_dir, echo=lambda line: None)
    assert main(["baseline", str(run_dir), "uniform:0.4", "global:0.4", "--executor", "local"]) == 0
    out = capsys.readouterr().out
    assert "baselines: global HV" in out and "uniform HV" in out and "the searched front has" in out
    run = load_run(run_dir)
    assert sorted(run.baselines()["baseline"]) == ["global:0.4", "uniform:0.4"]
    before = len(run.trials)
    for entry, words in (("lamp", "needs the 'weights' method"), ("nope", "must be one of uniform, global"), ("uniform:2", "points in (0, 1)")):
        assert main(["baseline", str(run_dir), entry]) == 2
        assert words in capsys.readouterr().err
    assert len(load_run(run_dir).trials) == before
    assert main(["baseline", str(tmp_path / "nowhere"), "uniform"]) == 2
    assert "is not a run folder" in capsys.readouterr().err


def test_a_bad_baselines_key_stops_the_run_before_anything_is_written(tmp_path: Path, capsys) -> None:
    path = tmp_path / "exp.yaml"
    for baselines, words in (
        ([3], "must be one of uniform, global"),
        (["global-magnitude"], "needs the 'weights' method"),
        (["uniform:0.1,x"], "points in (0, 1)"),
    ):
        path.write_text(yaml.safe_dump({"search": {"baselines": baselines}}))
        assert main(["run", str(path), "--run-dir", str(tmp_path / "run")]) == 2
        assert words in capsys.readouterr().err
        assert not (tmp_path / "run").exists()
    with pytest.raises(PrunetuneError, match="works with the filters, weights and drop methods"):
        check_baselines(["uniform"], {"filters": {}, "bits": {}})


def test_weight_baselines_zero_the_share_of_weights_they_name_in_either_mode() -> None:
    torch.manual_seed(0)
    model, example = build_model("lenet300_100", num_classes=10, in_channels=1, input_size=28), torch.zeros(1, 1, 28, 28)
    total = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))
    for options in ({"mode": "ratio", "max_ratio": 0.99}, {"mode": "sensitivity", "max_sensitivity": 50.0}):
        space = SearchSpace.for_model(model, example, {"weights": options})
        for label, params in baseline_points(["lamp:0.9", "global-magnitude:0.9", "uniform:0.8"], model, example, space):
            pruned = apply_plan(model, space.plan(params), example_inputs=example)
            zeros = sum(int((m.weight == 0).sum()) for m in pruned.modules() if isinstance(m, torch.nn.Linear))
            target = 0.8 if label.startswith("uniform") else 0.9
            assert zeros / total == pytest.approx(target, abs=0.002), (options["mode"], label)


def test_a_shared_space_takes_only_the_uniform_baseline() -> None:
    model, example = build_model("lenet5", num_classes=10, in_channels=1, input_size=8), torch.zeros(1, 1, 8, 8)
    space = SearchSpace.for_model(model, example, {"filters": {"shared": True}})
    [(label, params)] = baseline_points(["uniform:0.4"], model, example, space)
    assert label == "uniform:0.4" and params == {"filters.shared": 0.4}
    with pytest.raises(PrunetuneError, match="shared: true"):
        baseline_points(["global:0.4"], model, example, space)
