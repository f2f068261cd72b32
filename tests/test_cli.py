"""The command line: real runs, and one clear message with exit status 2 for every bad input."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from prunetune.cli import main
from prunetune.zoo.checkpoint import load_checkpoint


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        status = main(list(argv))
    except SystemExit as exit_:  # argparse's own usage errors
        status = int(exit_.code or 0)
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_train_prints_accuracies_and_writes_a_loadable_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "base.pt"
    status, stdout, _ = run_cli(capsys, "train", "--model", "lenet5", "--data", "digits", "--epochs", "6", "-o", str(out))
    assert status == 0
    assert "epoch   6/6" in stdout
    assert "train " in stdout and "val " in stdout and "test " in stdout
    checkpoint = load_checkpoint(out)
    assert checkpoint.model_name == "lenet5" and checkpoint.data_spec == "digits"
    assert checkpoint.metrics["test_accuracy"] > 0.5  # six epochs on digits are far above chance (0.1)
    assert f"test {checkpoint.metrics['test_accuracy']:.2%}" in stdout


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["--model", "lenet6", "--data", "digits"], "lenet6"),
        (["--model", "lenet5", "--data", "mnist:{tmp}/nowhere"], "nowhere"),
        (["--model", "lenet5", "--data", "mnist"], "mnist:PATH"),
        (["--model", "lenet5", "--data", "imagenet:{tmp}"], "imagenet"),
        (["--model", "lenet5", "--data", "cifar10:{tmp}/bad.bin"], "3073"),
        (["--model", "lenet5", "--data", "digits", "--val-fraction", "1.5"], "val_fraction"),
        (["--model", "lenet5", "--data", "digits", "--model-arg", "width=-1"], "width"),
    ],
)
def test_bad_input_gives_one_message_and_status_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], words: str
) -> None:
    (tmp_path / "bad.bin").write_bytes(b"\x00" * 3000)
    out = tmp_path / "base.pt"
    argv = [part.replace("{tmp}", str(tmp_path)) for part in argv]
    status, stdout, stderr = run_cli(capsys, "train", *argv, "--epochs", "1", "-o", str(out))
    assert status == 2
    assert words in stderr
    assert stderr.startswith("prunetune: error: ") and stderr.count("\n") == 1
    assert not out.exists()


def test_argparse_errors_also_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    status, _, stderr = run_cli(capsys, "train", "--model", "lenet5")
    assert status == 2 and "--data" in stderr


def test_console_script_exit_status(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "prunetune.cli", "train", "--model", "nope", "--data", "digits", "-o", str(tmp_path / "x.pt")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert "nope" in result.stderr and "Traceback" not in result.stderr


@pytest.fixture(scope="module")
def base_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A LeNet-5 trained briefly on digits: the base that the prune tests start from."""
    path = tmp_path_factory.mktemp("base") / "base.pt"
    assert main(["train", "--model", "lenet5", "--data", "digits", "--epochs", "6", "-o", str(path)]) == 0
    return path


def test_units_lists_the_names_a_plan_uses(base_checkpoint: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, stdout, _ = run_cli(capsys, "units", str(base_checkpoint))
    assert status == 0
    names = [line.split()[0] for line in stdout.splitlines()[1:] if not line.startswith("layers")]
    assert names == ["features.0", "features.3", "classifier.0", "classifier.2"]
    assert "classifier.4" in stdout.splitlines()[-1]  # the classifier: weights only, never filters


def test_prune_writes_a_smaller_checkpoint_that_rebuilds_exactly(
    base_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import torch

    plan = {"filters": {"criterion": "fpgm", "ratios": {"features.0": 0.5, "classifier.0": 0.5}}, "weights": {"ratios": {"classifier.4": 0.5}}}
    plan_file = tmp_path / "plan.json"
    plan_file.write_text(__import__("json").dumps(plan))
    out = tmp_path / "pruned.pt"
    status, stdout, _ = run_cli(capsys, "prune", str(base_checkpoint), "--plan", str(plan_file), "-o", str(out))
    assert status == 0, stdout
    pruned = load_checkpoint(out)
    assert pruned.plan == plan
    model = pruned.build()
    assert model.features[0].out_channels == 3 and model.classifier[0].out_features == 60
    assert int((model.classifier[4].weight == 0).sum()) == model.classifier[4].weight.numel() // 2
    assert sum(p.numel() for p in model.parameters()) == int(pruned.metrics["params"])
    assert f"params 21,386 -> {int(pruned.metrics['params']):,}" in stdout
    from prunetune.objectives.training import evaluate
    from prunetune.zoo import load_data

    test_loader = load_data("digits", **pruned.data_options).loaders(64, seed=0).test
    assert evaluate(model, test_loader).accuracy == pytest.approx(pruned.metrics["test_accuracy"])
    assert torch.equal(model.features[0].weight, pruned.state_dict["features.0.weight"])


@pytest.mark.parametrize(
    ("plan", "words"),
    [
        ('{"filters": {"ratios": {"features.9": 0.5}}}', "Unknown unit 'features.9'"),
        ('{"filters": {"ratios": {"features.0": 1.2}}}', "must be in [0, 1)"),
        ('{"filters": {"ratios": {"features.0": 0.95}}}', "would empty"),
        ('{"filters": {"criterion": "l7", "ratios": {"features.0": 0.5}}}', "l7"),
        ('{"depth": {}}', "depth"),
        ('{"filters": ', "valid JSON"),
        ("missing.json", "no such file"),
    ],
)
def test_bad_plans_give_one_message_and_status_2(
    base_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], plan: str, words: str
) -> None:
    out = tmp_path / "pruned.pt"
    status, _, stderr = run_cli(capsys, "prune", str(base_checkpoint), "--plan", plan, "-o", str(out))
    assert status == 2
    assert words in stderr and stderr.count("\n") == 1
    assert not out.exists()
