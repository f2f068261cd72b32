"""Every experiment mistake stops before any work: one message naming the key and what is accepted,
exit status 2, and nothing on disk. `prunetune run --check` does only the checks, and every example
experiment passes it."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import yaml

from prunetune.cli import main
from prunetune.zoo.checkpoint import save_checkpoint
from prunetune.zoo.datasets import load_data
from prunetune.zoo.models import build_model_for

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((REPO / "examples").glob("*.yaml"))


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        status = main([str(arg) for arg in argv])
    except SystemExit as exit_:
        status = int(exit_.code or 0)
    captured = capsys.readouterr()
    return status, captured.out, captured.err


BAD = {
    "unknown criterion": (
        {"methods": {"filters": {"criterion": "l3"}}},
        r"The 'methods\.filters' entry: The 'criterion' parameter of FilterPruning must be one of l1, l2, fpgm, random, taylor\. Got 'l3' instead\.",
    ),
    "max_ratio of 1": (
        {"methods": {"filters": {"max_ratio": 1.0}}},
        r"The 'methods\.filters' entry: The 'max_ratio' parameter of FilterPruning must be in \[0, 1\)\. Got 1\.0 instead\.",
    ),
    "unknown model": (
        {"model": {"name": "lenet6"}},
        r"The 'model' section: Unknown model 'lenet6'\. Did you mean 'lenet5'\? Available models: .*lenet5",
    ),
    "objective file missing": (
        {"objective": {"type": "{tmp}/nowhere.py:Objective"}},
        r"The objective \('objective\.type'\) '.*nowhere\.py:Objective': no such file",
    ),
    "unknown objective option": (
        {"objective": {"options": {"bogus": 1}}},
        r"Unknown key 'objective\.options\.bogus' for the classification objective\. Accepted options: threads\.",
    ),
    "unknown method": (
        {"methods": {"depth": {}}},
        r"The 'methods\.depth' entry: Unknown pruning method 'depth'\. Known methods: drop, pca, order, filters, weights, bits",
    ),
    "unknown method option": (
        {"methods": {"weights": {"max_sensitivty": 2}}},
        r"Unknown option 'max_sensitivty' for pruning method 'weights'\. Known options: .*max_sensitivity",
    ),
    "method option of the wrong kind": (
        {"methods": {"weights": {"mode": "magnitude"}}},
        r"The 'mode' parameter of WeightPruning must be one of sensitivity, ratio\. Got 'magnitude' instead\.",
    ),
    "bad model keyword": (
        {"model": {"name": "lenet5", "kwargs": {"depth": 3}}},
        r"The 'model' section: The 'depth' argument \(= 3\) is not accepted by lenet5\. It accepts: .*width",
    ),
    "unknown sampler option": (
        {"search": {"sampler_options": {"pop_size": 4}}},
        r"Bad 'search\.sampler_options' for 'nsga2' \(.*pop_size.*\)\. Accepted options: .*population_size",
    ),
    "storage that is no URL": (
        {"storage": "nosuchdb://host/db"},
        r"The 'storage' key must be an Optuna storage URL such as sqlite:///PATH.*Got 'nosuchdb://host/db' instead",
    ),
    "missing data folder": (
        {"data": {"spec": "mnist:{tmp}/no-mnist-here"}},
        r"no-mnist-here",
    ),
    "cluster address of no accepted form": (
        {"execution": {"address": "head-node"}},
        r"The 'execution\.address' key must be 'auto', HOST:PORT of a head started with `ray start --head`, or ray://HOST:PORT \(Ray Client\)\. Got 'head-node' instead\.",
    ),
    "cluster address where nothing answers": (  # port 1: nothing listens there
        {"execution": {"address": "127.0.0.1:1"}},
        r"The 'execution\.address' key is '127\.0\.0\.1:1', but nothing answers there \(Connection refused\)\. Start the head there with `ray start --head --port=1`",
    ),
    "objective function with options": (
        {"objective": {"type": "{objectives}:arithmetic", "options": {"scale": 2}, "directions": {"accuracy": "maximize"}}},
        r"The objective '.*:arithmetic' is a function: it takes no 'objective\.options'\. Got scale\.",
    ),
}


@pytest.mark.parametrize("case", list(BAD))
@pytest.mark.parametrize("check_only", [False, True], ids=["run", "check"])
def test_a_bad_experiment_stops_with_one_message_and_writes_nothing(
    case: str, check_only: bool, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    content, message = BAD[case]
    objectives = Path(__file__).resolve().parent / "objectives_for_tests.py"
    text = yaml.safe_dump(content).replace("{tmp}", str(tmp_path)).replace("{objectives}", str(objectives))
    experiment = tmp_path / "experiment.yml"
    experiment.write_text(text)
    before = sorted(path.name for path in tmp_path.iterdir())
    status, stdout, stderr = run_cli(capsys, "run", experiment, *(["--check"] if check_only else []))
    assert status == 2, stdout + stderr
    assert stderr.startswith("prunetune: error: ") and stderr.count("\n") == 1, stderr
    assert re.search(message, stderr), stderr
    assert sorted(path.name for path in tmp_path.iterdir()) == before  # no runs/, no experiment.yaml, no base.pt


def test_a_refused_experiment_leaves_the_folder_usable_for_the_corrected_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = tmp_path / "run"
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text("model: {name: lenet6}\n")
    assert run_cli(capsys, "run", wrong, "--run-dir", run_dir)[0] == 2
    assert not run_dir.exists()
    right = tmp_path / "right.yaml"
    right.write_text(yaml.safe_dump({
        "model": {"name": "lenet5", "train": {"epochs": 1}},
        "objective": {"finetune": {"epochs": 1, "max_steps": 2}},
        "search": {"sampler": "random", "trials": 1},
        "execution": {"executor": "local"},
    }))
    status, stdout, stderr = run_cli(capsys, "run", right, "--run-dir", run_dir)
    assert status == 0, stderr
    assert (run_dir / "experiment.yaml").is_file() and (run_dir / "base.pt").is_file()


def test_check_prints_the_space_and_the_work_and_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    experiment = tmp_path / "e.yaml"
    experiment.write_text(yaml.safe_dump({
        "methods": {"filters": {"max_ratio": 0.8}, "drop": {}},
        "objective": {"finetune": {"epochs": 2}, "constraints": ["accuracy_drop <= 2"]},
        "search": {"sampler": "tpe", "trials": 12},
    }))
    status, stdout, stderr = run_cli(capsys, "run", experiment, "--run-dir", tmp_path / "run", "--check")
    assert status == 0, stderr
    assert "every check passed; nothing was written" in stdout
    assert "search space: 6 parameters" in stdout  # 4 filter units of LeNet-5 and its 2 droppable layers
    assert "filters: 4 dimensions on features.0, features.3, classifier.0, classifier.2" in stdout
    assert "drop: 2 dimensions on classifier.0, classifier.2" in stdout
    assert "sampler: tpe; 12 trials on Ray, 2 at once" in stdout
    assert "fine-tune 2 epoch(s) (lr 0.01)" in stdout and "12 trials x 2 fine-tune epoch(s) = 24 epochs" in stdout
    assert "constraints: accuracy_drop <= 2" in stdout
    assert not (tmp_path / "run").exists()


def _datasets() -> Path | None:
    folder = os.environ.get("PRUNETUNE_DATASETS")
    return Path(folder) if folder else None


@pytest.mark.parametrize("example", EXAMPLES, ids=[path.stem for path in EXAMPLES])
def test_every_example_experiment_passes_check(
    example: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    text = example.read_text()
    if "../shared/datasets" in text:
        datasets = _datasets()
        if datasets is None:
            pytest.skip("PRUNETUNE_DATASETS is not set: it names the folder with the real datasets")
        text = text.replace("../shared/datasets", str(datasets))
    content = yaml.safe_load(text)
    checkpoint = (content.get("model") or {}).get("checkpoint")
    if checkpoint:  # made here: an untrained model of the kind the example expects, on its data
        data = content["data"]
        splits = load_data(data["spec"], limit=data.get("limit"), val_fraction=data.get("val_fraction", 0.1))
        name = "lenet300_100" if "lenet300" in checkpoint else "lenet5"
        made = tmp_path / "base.pt"
        save_checkpoint(made, build_model_for(name, splits), data_spec=data["spec"], input_shape=tuple(splits.input_shape),
                        num_classes=splits.num_classes)
        text = text.replace(checkpoint, str(made))
    copy = tmp_path / example.name
    copy.write_text(text)
    monkeypatch.chdir(REPO)  # examples name their own files relative to the repository
    status, stdout, stderr = run_cli(capsys, "run", copy, "--run-dir", tmp_path / "run", "--check")
    assert status == 0, stderr
    assert "every check passed; nothing was written" in stdout
    assert re.search(r"search space: [1-9]\d* parameters", stdout)
    assert not (tmp_path / "run").exists()
