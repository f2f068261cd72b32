"""The shorthand people write in their first experiment file, and a run whose completed trials all
miss the constraints saying so (with the closest one) instead of "every trial failed"."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from prunetune.app.experiment import experiment_from_dict, load_experiment
from prunetune.cli import main
from prunetune.zoo import save_checkpoint
from prunetune.zoo.datasets import load_data
from prunetune.zoo.models import build_model_for


def test_model_and_data_may_be_plain_strings(tmp_path: Path) -> None:
    path = tmp_path / "first.yaml"
    path.write_text("model: runs/base.pt\ndata: \"mnist:/data/mnist\"\n")
    experiment = load_experiment(path)
    assert experiment.model.checkpoint == "runs/base.pt" and experiment.data.spec == "mnist:/data/mnist"
    assert experiment_from_dict({"model": "resnet20"}).model.name == "resnet20"
    assert experiment_from_dict({"model": "my_models.py:factory"}).model == experiment_from_dict({"model": {"name": "my_models.py:factory"}}).model
    # The saved form is the mapping, so a resumed run compares like with like.
    assert experiment_from_dict(experiment.to_dict()) == experiment


def test_the_shorthand_runs_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = load_data("digits")
    base = tmp_path / "base.pt"
    save_checkpoint(base, build_model_for("lenet5", data), data_spec="digits", input_shape=tuple(data.input_shape), num_classes=10)
    path = tmp_path / "first.yaml"
    path.write_text(f"model: {base}\ndata: digits\n")
    assert main(["run", str(path), "--run-dir", str(tmp_path / "run"), "--check"]) == 0
    assert f"model: checkpoint {base} (lenet5)" in capsys.readouterr().out


def test_an_all_infeasible_run_says_so_and_names_the_closest(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "strict.yaml"
    path.write_text(yaml.safe_dump({
        "model": {"train": {"epochs": 2}},
        "objective": {"finetune": {"epochs": 1, "max_steps": 4}, "constraints": ["accuracy_drop <= -50"]},
        "search": {"sampler": "random", "trials": 3, "early_stopping": {"enabled": False}},
        "execution": {"executor": "local"},
    }))
    assert main(["run", str(path), "--run-dir", str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    assert "every trial failed" not in out
    found = re.search(r"3 completed, none within accuracy_drop <= -50; closest (-?\d+\.\d\d) pp \(trial (\d)\)", out)
    assert found, out
    from prunetune.results import load_run

    trials = load_run(tmp_path / "run").trials
    assert float(found.group(1)) == pytest.approx(trials["accuracy_drop"].min(), abs=0.006)
    assert int(found.group(2)) == int(trials["accuracy_drop"].idxmin())
