"""Export on a small real run: the exported model is the trial's model, checkpoint and TorchScript alike."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import optuna
import pytest
import torch

from prunetune.cli import main
from prunetune.objectives import evaluate
from prunetune.app.experiment import experiment_from_dict
from prunetune.results.export import export_trial, torchscript_path
from prunetune.search.ledger import run_study_name
from prunetune.app.runner import run_experiment
from prunetune.results.runs import Run, load_run
from prunetune.search.weights import load_kept_weights, weights_path
from prunetune.zoo import load_checkpoint

TRIALS = 5


def experiment(keep: str = "all", trials: int = TRIALS) -> object:
    """LeNet-5 on digits, base trained 3 epochs, random filter plans, one short fine-tune, in this process."""
    return experiment_from_dict(
        {
            "model": {"train": {"epochs": 3}},
            "objective": {"keep_weights": keep, "finetune": {"epochs": 1, "max_steps": 12}},
            "search": {"sampler": "random", "trials": trials, "early_stopping": {"enabled": False}},
            "execution": {"executor": "local"},
        }
    )


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("export") / "run"
    run_experiment(experiment(), path, echo=lambda line: None)
    return path


@pytest.fixture(scope="module")
def run(run_dir: Path) -> Run:
    return load_run(run_dir)


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main([str(arg) for arg in argv])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def params_of(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def val_batch(run: Run) -> torch.Tensor:
    data = run.data()
    return next(iter(data.loaders(64, seed=0).val))[0]


def test_every_completed_trial_kept_its_weights(run: Run) -> None:
    done = run.trials[run.trials["state"] == "COMPLETE"]
    assert len(done) == TRIALS
    assert all(weights_path(run.path, int(n)).is_file() for n in done.index)


def test_kept_weights_export_is_exactly_the_evaluated_model(run: Run, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    row = run.knee()
    number = int(row["number"])
    out = tmp_path / "model.pt"
    status, stdout, _ = cli(capsys, "export", run.path, "--trial", number, "-o", out)
    assert status == 0, stdout
    assert f"trial {number} of {run.path} (kept weights)" in stdout
    checkpoint = load_checkpoint(out)  # torch.load(weights_only=True)
    model = checkpoint.build().eval()
    assert checkpoint.plan == run.plan(number)
    assert params_of(model) == int(row["params"])
    data = run.data()
    _, val, test = data.loaders(run.experiment.objective.batch_size, seed=0)
    # Measured again on the reloaded checkpoint, not copied from it: equal to the ledger, exactly.
    assert evaluate(model, val).accuracy == row["accuracy"]
    assert evaluate(model, test).accuracy == row["test_accuracy"]
    assert checkpoint.metrics["accuracy"] == row["accuracy"] and checkpoint.metrics["test_accuracy"] == row["test_accuracy"]


def test_checkpoint_and_torchscript_give_the_kept_model_outputs(run_dir: Path, tmp_path: Path) -> None:
    # Re-creating a trial on this machine repeats it bit for bit, so the kept file is marked (one
    # bias shifted): only an export that reads it gives these outputs.
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    run = load_run(copy)
    number = int(run.front().iloc[-1]["number"])
    kept_file = weights_path(copy, number)
    payload = torch.load(kept_file, weights_only=True)
    bias = next(key for key in reversed(list(payload["state_dict"])) if key.endswith("bias"))
    payload["state_dict"][bias] = payload["state_dict"][bias] + 0.5
    torch.save(payload, kept_file)
    result = export_trial(run, number, tmp_path / "net.pt")
    assert result.torchscript == tmp_path / "net.torchscript.pt" == torchscript_path(result.path)
    base = load_checkpoint(run.base_checkpoint)
    kept = dataclasses.replace(base, state_dict=load_kept_weights(kept_file), plan=run.plan(number))
    inputs = val_batch(run)
    with torch.no_grad():
        expected = kept.build().eval()(inputs)
        reloaded = load_checkpoint(result.path).build().eval()(inputs)
        scripted = torch.jit.load(str(result.torchscript), map_location="cpu").eval()(inputs)
        recreated = export_trial(run, number, tmp_path / "again.pt", from_plan=True)
        again = load_checkpoint(recreated.path).build().eval()(inputs)
    assert torch.equal(reloaded, expected)
    assert torch.allclose(scripted, expected, rtol=0, atol=1e-5)
    assert not torch.allclose(again, expected)


def test_every_trial_exports_with_the_ledgers_size_and_accuracy(run: Run, tmp_path: Path) -> None:
    for number in run.candidates().index:
        result = export_trial(run, int(number), tmp_path / f"t{number}.pt")
        row = run.trial(int(number))
        assert result.source == "kept weights"
        assert result.metrics["params"] == row["params"] and result.metrics["nonzero_params"] == row["nonzero_params"]
        assert result.metrics["compression"] == pytest.approx(row["compression"])
        assert result.metrics["accuracy"] == row["accuracy"] and result.metrics["test_accuracy"] == row["test_accuracy"]


def test_recreated_from_the_plan_has_the_ledgers_size(run: Run, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    number = int(run.trials["compression"].idxmax())
    out = tmp_path / "again.pt"
    status, stdout, _ = cli(capsys, "export", run.path, "--trial", number, "--from-plan", "--finetune-epochs", 1, "-o", out)
    assert status == 0 and "re-created from the plan, then 1 more epochs" in stdout
    model = load_checkpoint(out).build()
    assert params_of(model) == int(run.trial(number)["params"])
    assert torch.jit.load(str(torchscript_path(out))) is not None


def brute_force_front(run: Run) -> set[int]:
    """Completed trials no other completed trial beats in both accuracy and compression."""
    done = run.trials[run.trials["state"] == "COMPLETE"]
    points = done[["accuracy", "compression"]].to_numpy()
    return {
        int(number)
        for number, p in zip(done.index, points, strict=True)
        if not any((q >= p).all() and (q > p).any() for q in points)
    }


def test_knee_and_max_drop_pick_the_expected_trial(run: Run, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    knee = int(run.knee()["number"])  # the knee's definition is the analysis's (tested there)
    assert knee in brute_force_front(run)
    status, stdout, _ = cli(capsys, "export", run.path, "--knee", "-o", tmp_path / "knee.pt")
    assert status == 0 and f"trial {knee} of" in stdout
    done = run.trials[run.trials["state"] == "COMPLETE"]
    limit = float(np.median(done["accuracy_drop"]))
    within = done[done["accuracy_drop"] <= limit]
    expected = int(within.sort_values(["compression", "accuracy_drop"], ascending=[False, True]).iloc[0]["number"])
    status, stdout, _ = cli(capsys, "export", run.path, "--max-drop", limit, "-o", tmp_path / "drop.pt")
    assert status == 0 and f"trial {expected} of" in stdout


def test_front_keeps_only_the_fronts_weights(run_dir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    run_experiment(experiment(keep="front"), copy, echo=lambda line: None)  # the budget is spent: no trial runs
    kept = sorted(int(path.stem.split("-")[1]) for path in (copy / "weights").glob("trial-*.pt"))
    assert kept == sorted(int(n) for n in load_run(copy).front()["number"])
    assert len(kept) < TRIALS


@pytest.fixture()
def failed_run(run_dir: Path, tmp_path: Path) -> tuple[Path, int]:
    copy = tmp_path / "failed-run"
    shutil.copytree(run_dir, copy)
    study = optuna.load_study(study_name=run_study_name(copy), storage=f"sqlite:///{copy / 'study.db'}")
    trial = study.ask()
    trial.set_user_attr("fail_reason", "RuntimeError: out of memory")
    study.tell(trial, state=optuna.trial.TrialState.FAIL)
    return copy, trial.number


def test_bad_input_gives_one_message_status_2_and_writes_nothing(
    run: Run, failed_run: tuple[Path, int], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = out_dir / "model.pt"
    unmet = float(run.candidates()["accuracy_drop"].min()) - 1.0
    cases = [
        ([run.path, "--trial", 99], "has no trial 99"),
        ([failed_run[0], "--trial", failed_run[1]], "did not complete (FAIL: RuntimeError: out of memory)"),
        ([tmp_path, "--knee"], "is not a run folder"),
        ([run.path, "--max-drop", unmet], "No completed trial"),
    ]
    for argv, words in cases:
        status, stdout, stderr = cli(capsys, "export", *argv, "-o", out)
        assert status == 2, (argv, stdout, stderr)
        lines = stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("prunetune: error:") and words in lines[0], (argv, stderr)
        assert list(out_dir.iterdir()) == []


def test_keep_weights_is_checked_in_the_experiment_file() -> None:
    from prunetune.errors import PrunetuneError

    with pytest.raises(PrunetuneError, match="'objective.keep_weights' key must be one of none, front, all"):
        experiment(keep="best")
