"""Finalize: chosen trials retrained for longer, structure held, figures recorded, export takes them."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from prunetune.app.experiment import experiment_from_dict
from prunetune.app.runner import run_experiment
from prunetune.cli import main
from prunetune.pruners.quantize import quantized_layers
from prunetune.results.export import export_trial
from prunetune.results.finalize import finalize_trials
from prunetune.results.report import write_report
from prunetune.results.runs import load_run
from prunetune.search.weights import final_weights_path, load_kept_weights, weights_path
from prunetune.zoo import load_checkpoint


def experiment(methods: dict) -> object:
    return experiment_from_dict({
        "model": {"train": {"epochs": 3}},
        "methods": methods,
        "objective": {"keep_weights": "all", "finetune": {"epochs": 1, "max_steps": 8}},
        "search": {"sampler": "random", "trials": 3, "early_stopping": {"enabled": False}},
        "execution": {"executor": "local"},
    })


@pytest.fixture(scope="module")
def masked_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("finalize") / "run"
    run_experiment(experiment({"filters": {"max_ratio": 0.5}, "weights": {"mode": "ratio", "max_ratio": 0.8}}), path, echo=lambda line: None)
    return path


def test_finalize_retrains_holding_the_zeros_and_records_its_figures(masked_run: Path) -> None:
    run = load_run(masked_run)
    number = int(run.front().index[0])
    before = load_kept_weights(weights_path(masked_run, number))
    lines: list[str] = []
    [record] = finalize_trials(masked_run, numbers=[number], epochs=2, echo=lines.append).values()
    after = load_kept_weights(final_weights_path(masked_run, number))
    assert set(after) == set(before) and all(after[k].shape == before[k].shape for k in before)  # channels held
    changed = [key for key in before if key.endswith("weight") and not torch.equal(before[key], after[key])]
    assert changed, "retraining must change the weights"
    for key in changed:
        zeros = before[key] == 0
        if zeros.any():
            assert bool((after[key][zeros] == 0).all()), key  # a pruned weight stays pruned
    assert record["epochs"] == 2 and record["from"] == "kept weights"
    assert any("epoch   2/2" in line for line in lines)
    run = load_run(masked_run)
    row = run.trial(number)
    assert row["final_accuracy"] == pytest.approx(record["metrics"]["final_accuracy"])
    assert row["final_test_accuracy_drop"] == pytest.approx(100 * (run.base()["test_accuracy"] - row["final_test_accuracy"]))
    others = run.trials.drop(index=number)
    assert others["final_accuracy"].isna().all()
    write_report(run)
    assert "final val acc." in (masked_run / "report.md").read_text()
    front = json.loads((masked_run / "pareto.json").read_text())["front"]
    shown = next(entry for entry in front if entry["trial"] == number)
    assert shown["metrics"]["final_accuracy"] == pytest.approx(row["final_accuracy"])

    # Export takes the finalized weights: its accuracies are finalize's, exactly.
    result = export_trial(run, number, masked_run.parent / "final.pt")
    assert result.source == "finalized weights"
    assert result.metrics["accuracy"] == pytest.approx(row["final_accuracy"], abs=1e-12)
    assert result.ledger["accuracy"] == pytest.approx(row["final_accuracy"], abs=1e-12)
    assert load_checkpoint(result.path).build(), "the finalized checkpoint loads"

    # A second finalize goes on from the finalized weights and counts every epoch.
    again = finalize_trials(masked_run, numbers=[number], epochs=1, echo=lambda line: None)[number]
    assert again["from"] == "finalized weights" and again["metrics"]["final_epochs"] == 3.0


def test_finalize_takes_trials_that_miss_the_constraint(tmp_path: Path) -> None:
    """A user finalizes near misses hoping the longer training brings them within the constraint,
    also when no trial of the search met it."""
    data = experiment({"weights": {"mode": "ratio", "max_ratio": 0.8}}).to_dict()
    data["objective"]["constraints"] = ["accuracy_drop <= -50"]  # no trial can meet it
    run_dir = tmp_path / "run"
    run_experiment(experiment_from_dict(data), run_dir, echo=lambda line: None)
    run = load_run(run_dir)
    assert run.candidates().empty and run.counts()["complete"] == 3
    [record] = finalize_trials(run_dir, numbers=[0], epochs=1, echo=lambda line: None).values()
    row = run.trial(0)
    assert run.base()["accuracy"] == pytest.approx(row["accuracy"] + row["accuracy_drop"] / 100)
    assert record["metrics"]["final_accuracy_drop"] == pytest.approx(100 * (run.base()["accuracy"] - record["metrics"]["final_accuracy"]))


def test_finalize_holds_a_quantized_layers_codebook(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_experiment(experiment({"filters": {"max_ratio": 0.5}, "bits": {"bits": [2, 3]}}), run_dir, echo=lambda line: None)
    run = load_run(run_dir)
    number = int(run.front().index[0])
    finalize_trials(run_dir, numbers=[number], epochs=2, echo=lambda line: None)
    result = export_trial(load_run(run_dir), number, tmp_path / "q.pt")
    model = load_checkpoint(result.path).build()
    layers = quantized_layers(model)
    widths = run.plan(number)["bits"]["bits"]
    assert layers, "the plan quantized the linear layers"
    modules = dict(model.named_modules())
    for name in layers:
        distinct = torch.unique(modules[name].weight.detach()).numel()
        assert distinct <= 2 ** widths[name] + 1, (name, distinct)  # codes and the zero code, nothing else


def test_finalize_refuses_what_it_cannot_do_and_writes_nothing(masked_run: Path, capsys) -> None:
    before = {path.name for path in (masked_run / "weights").iterdir()}
    for argv, words in (
        (["finalize", str(masked_run)], "Choose what to finalize"),
        (["finalize", str(masked_run), "--trial", "99"], "has no trial 99"),
        (["finalize", str(masked_run), "--trial", "0", "--lr", "-1"], "'lr' of finalize must be a number > 0"),
        (["finalize", str(masked_run), "--trial", "0", "--device", "tpu"], "The --device flag must be one of auto, cpu"),
    ):
        assert main(argv) == 2
        assert words in capsys.readouterr().err
    with pytest.raises(SystemExit) as stopped:
        main(["finalize", str(masked_run), "--trial", "0", "--epochs", "0"])
    assert stopped.value.code == 2 and "--epochs: must be >= 1" in capsys.readouterr().err
    (masked_run / ".lock").write_text(f"{os.uname().nodename} {os.getpid()}")
    try:
        assert main(["finalize", str(masked_run), "--front", "--epochs", "1"]) == 2
        assert "is in use by process" in capsys.readouterr().err
    finally:
        (masked_run / ".lock").unlink()
    assert {path.name for path in (masked_run / "weights").iterdir()} == before


def test_finalize_asked_for_a_missing_gpu_stops_before_training(masked_run: Path, monkeypatch, capsys) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    before = {path.name for path in (masked_run / "weights").iterdir()}
    assert main(["finalize", str(masked_run), "--front", "--device", "cuda"]) == 2
    assert "The --device flag asks for cuda, but this machine has no CUDA device" in capsys.readouterr().err
    assert {path.name for path in (masked_run / "weights").iterdir()} == before


@pytest.mark.gpu
def test_a_local_search_and_its_finalize_run_on_the_gpu(tmp_path: Path) -> None:
    """Without Ray, ``auto`` takes the GPU: trials (bf16) and finalize train there; the finalized
    weights are saved from the CPU, so export and a CPU-only user load them."""
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device here: this test needs one (run it on a GPU machine)")
    data = experiment({"filters": {"max_ratio": 0.5}, "weights": {"mode": "ratio", "max_ratio": 0.8}}).to_dict()
    data["objective"]["finetune"]["precision"] = "bf16"
    run_dir = tmp_path / "run"
    run_experiment(experiment_from_dict(data), run_dir, echo=lambda line: None)
    run = load_run(run_dir)
    done = run.trials[run.trials["state"] == "COMPLETE"]
    assert len(done) == 3 and set(done["device"]) == {"cuda:0"}, run.trials[["state", "fail_reason"]]
    number = int(run.front().index[0])
    [record] = finalize_trials(run_dir, numbers=[number], epochs=1, echo=lambda line: None).values()
    assert record["device"] == "cuda:0"
    saved = load_kept_weights(final_weights_path(run_dir, number))
    assert {tensor.device.type for tensor in saved.values()} == {"cpu"}
    result = export_trial(load_run(run_dir), number, tmp_path / "final.pt")
    assert result.source == "finalized weights"
    # The same weights evaluated on the CPU (the GPU may round convolutions through TF32).
    assert result.metrics["accuracy"] == pytest.approx(record["metrics"]["final_accuracy"], abs=0.01)

