"""A user's model factory gets only the arguments it declares (or, with **kwargs, the basic ones);
its own TypeError becomes one message naming what was passed and how to set it."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from prunetune.app.experiment import experiment_from_dict
from prunetune.app.runner import run_experiment
from prunetune.cli import main
from prunetune.errors import PrunetuneError
from prunetune.zoo import load_checkpoint
from prunetune.zoo.models import build_model, resolve_model_kwargs

FACTORIES = Path(__file__).resolve().parent / "models_for_tests.py"
EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "my_model_and_data.py"
SEPARABLE = f"{EXAMPLE}:separable_net"


def test_a_kwargs_factory_gets_num_classes_and_in_channels_only() -> None:
    kwargs = resolve_model_kwargs(SEPARABLE, (1, 8, 8), 10)
    assert kwargs == {"num_classes": 10, "in_channels": 1}
    model = build_model(SEPARABLE, **kwargs, width=8)
    assert model(torch.zeros(2, 1, 8, 8)).shape == (2, 10)
    # A declared signature gets what it declares, input_size included.
    declared = resolve_model_kwargs(f"{EXAMPLE}:SeparableNet", (3, 32, 32), 4)
    assert declared == {"num_classes": 4, "in_channels": 3}


def test_train_and_search_a_kwargs_factory_without_input_size(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "base.pt"
    status = main(["train", "--model", SEPARABLE, "--data", "digits", "--epochs", "12", "--model-arg", "width=16", "-o", str(out)])
    assert status == 0, capsys.readouterr().err
    checkpoint = load_checkpoint(out)
    assert checkpoint.model_kwargs == {"num_classes": 10, "in_channels": 1, "width": 16}
    assert checkpoint.metrics["val_accuracy"] > 0.8  # it trains: a broken wiring stays near chance (0.1)
    experiment = experiment_from_dict({
        "model": {"checkpoint": str(out)},
        "methods": {"filters": {"max_ratio": 0.5}},
        "objective": {"finetune": {"epochs": 1, "max_steps": 5}},
        "search": {"sampler": "random", "trials": 3, "early_stopping": {"enabled": False}},
        "execution": {"executor": "local"},
    })
    study = run_experiment(experiment, tmp_path / "run", echo=lambda line: None)
    done = [t for t in study.get_trials() if t.state.name == "COMPLETE"]
    assert len(done) == 3
    assert all(t.user_attrs["metrics"]["compression"] >= 1.0 for t in done)
    assert any(t.user_attrs["metrics"]["compression"] > 1.05 for t in done)


def test_a_typeerror_of_the_users_call_is_one_message(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(PrunetuneError, match=r"raised TypeError when called with num_classes=10, in_channels=1: .*depth"):
        build_model(f"{FACTORIES}:broken_factory", **resolve_model_kwargs(f"{FACTORIES}:broken_factory", (1, 8, 8), 10))
    out = tmp_path / "base.pt"
    status = main(["train", "--model", f"{FACTORIES}:broken_factory", "--data", "digits", "--epochs", "1", "-o", str(out)])
    err = capsys.readouterr().err
    assert status == 2 and err.startswith("prunetune: error: ") and err.count("\n") == 1
    assert "model.kwargs" in err and "--model-arg" in err
    assert not out.exists()
    experiment = tmp_path / "e.yaml"
    experiment.write_text(yaml.safe_dump({"model": {"name": f"{FACTORIES}:broken_factory"}}))
    status = main(["run", str(experiment), "--run-dir", str(tmp_path / "run")])
    assert status == 2 and "raised TypeError" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
