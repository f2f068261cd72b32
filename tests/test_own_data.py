"""The user's own data: a factory returning map-style datasets, and an image folder of PNG files;
both train, search, report and export; every mistake is one message, exit 2, nothing written."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from torch.utils.data import TensorDataset

from prunetune.cli import main
from prunetune.errors import PrunetuneError
from prunetune.results import load_run
from prunetune.zoo import load_checkpoint
from prunetune.zoo.datasets import ImageFiles, load_data, load_factory, open_data

FACTORIES = Path(__file__).resolve().parent / "data_for_tests.py"
DIGITS = f"{FACTORIES}:digits"


def run_cli(capsys: pytest.CaptureFixture[str], *argv: object) -> tuple[int, str, str]:
    status = main([str(arg) for arg in argv])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def search(tmp_path: Path, data: dict, **changes: object) -> dict:
    experiment = {
        "model": {"name": "lenet5", "train": {"epochs": 15}},
        "data": data,
        "methods": {"filters": {"max_ratio": 0.6}},
        "objective": {"finetune": {"epochs": 1, "max_steps": 10}, "keep_weights": "all"},
        "search": {"sampler": "random", "trials": 3, "early_stopping": {"enabled": False}},
        "execution": {"executor": "local"},
    }
    for dotted, value in changes.items():
        *parents, leaf = dotted.split(".")
        node = experiment
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return experiment


def write(tmp_path: Path, experiment: dict) -> Path:
    path = tmp_path / "experiment.yaml"
    path.write_text(yaml.safe_dump(experiment))
    return path


# --- a factory ----------------------------------------------------------------------------------


def test_a_factory_gives_map_style_splits_with_a_carved_stratified_val() -> None:
    splits = load_factory(DIGITS, options={"test_share": 0.25}, val_fraction=0.2, seed=3)
    assert not isinstance(splits.train, TensorDataset) and splits.input_shape == (1, 8, 8) and splits.num_classes == 10
    assert len(splits.val) + len(splits.train) == 1347 and abs(len(splits.val) - 269) <= 10
    val_labels = np.bincount([int(splits.val[i][1]) for i in range(len(splits.val))], minlength=10)
    assert val_labels.min() >= 20  # every class is in val (stratified), about 27 each
    again = load_factory(DIGITS, options={"test_share": 0.25}, val_fraction=0.2, seed=3)
    assert list(again.val.indices) == list(splits.val.indices)  # seeded
    given = load_factory(DIGITS, options={"with_val": True})
    assert len(given.val) == 150 and "val =" not in given.description  # a val split given is used as is


def test_a_factorys_data_pickles_as_its_recipe() -> None:
    splits = load_factory(DIGITS, options={"test_share": 0.5}, seed=1)
    blob = pickle.dumps(splits)
    assert len(blob) < 2000  # the recipe, not 900 images
    again = pickle.loads(blob)
    assert len(again.train) == len(splits.train) and torch.equal(again.train[5][0], splits.train[5][0])


def test_a_factory_search_trains_searches_reports_and_exports(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    experiment = write(tmp_path, search(tmp_path, {"factory": DIGITS, "options": {"test_share": 0.25}, "num_workers": 2}))
    run_dir = tmp_path / "run"
    status, out, err = run_cli(capsys, "run", experiment, "--run-dir", run_dir)
    assert status == 0, err
    run = load_run(run_dir)
    done = run.trials[run.trials["state"] == "COMPLETE"]
    assert len(done) == 3
    base = load_checkpoint(run_dir / "base.pt")
    assert base.data_spec is None and base.metrics["val_accuracy"] > 0.8  # fifteen epochs: far above chance (0.1)
    assert run.data().num_workers == 2 and len(run.data().test) == 450
    status, out, err = run_cli(capsys, "report", run_dir)
    assert status == 0 and (run_dir / "pareto.csv").is_file(), err
    number = int(done["compression"].idxmax())
    status, out, err = run_cli(capsys, "export", run_dir, "--trial", number, "-o", tmp_path / "m.pt")
    assert status == 0, err
    exported = load_checkpoint(tmp_path / "m.pt")
    assert exported.metrics["test_accuracy"] == pytest.approx(float(done.loc[number, "test_accuracy"]))


# --- an image folder ----------------------------------------------------------------------------


def image_folder(root: Path, *, per_class: int = 24, with_test: bool = True) -> Path:
    """Three classes of 12x12 PNGs a network can tell apart: a bright top, left or diagonal half."""
    from PIL import Image

    rng = np.random.default_rng(0)
    patterns = {
        "top": lambda: np.r_[np.ones((6, 12)), np.zeros((6, 12))],
        "left": lambda: np.c_[np.ones((12, 6)), np.zeros((12, 6))],
        "diagonal": lambda: np.tri(12),
    }
    splits = {"train": per_class, **({"test": per_class // 3} if with_test else {})}
    for split, count in splits.items():
        for name, pattern in patterns.items():
            folder = root / split / name
            folder.mkdir(parents=True)
            for index in range(count):
                pixels = np.clip(pattern() * 200 + rng.normal(0, 30, (12, 12)) + 20, 0, 255).astype(np.uint8)
                rgb = np.stack([pixels, pixels[::-1], pixels.T], axis=-1)
                Image.fromarray(rgb, "RGB").save(folder / f"{index}.png")
    return root


def test_an_image_folder_reads_resizes_and_standardises(tmp_path: Path) -> None:
    root = image_folder(tmp_path / "images")
    splits = load_data(f"imagefolder:{root}", image_size=16, val_fraction=0.25, seed=0)
    assert splits.num_classes == 3 and splits.input_shape == (3, 16, 16)
    assert isinstance(splits.train, ImageFiles) and (len(splits.train), len(splits.val), len(splits.test)) == (54, 18, 24)
    images = torch.stack([splits.train[i][0] for i in range(len(splits.train))])
    assert images.shape == (54, 3, 16, 16)
    assert images.mean(dim=(0, 2, 3)).abs().max() < 0.05 and (images.std(dim=(0, 2, 3)) - 1).abs().max() < 0.05
    carved = load_data(f"imagefolder:{image_folder(tmp_path / 'no-test', with_test=False)}", seed=0)
    assert "there being no test folder" in carved.description and len(carved.test) == 14  # 20% of 72, rounded


def test_an_image_folder_trains_and_searches(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = image_folder(tmp_path / "images")
    status, out, err = run_cli(
        capsys, "train", "--model", "lenet5", "--data", f"imagefolder:{root}", "--epochs", "15", "-o", tmp_path / "base.pt",
    )
    assert status == 0, err
    base = load_checkpoint(tmp_path / "base.pt")
    assert base.input_shape == (3, 32, 32) and base.metrics["test_accuracy"] > 0.8  # three easy classes (chance 0.33)
    experiment = search(tmp_path, {"spec": f"imagefolder:{root}", "image_size": 32, "augment": {"crop_padding": 2, "hflip": True}})
    experiment["model"] = {"checkpoint": str(tmp_path / "base.pt")}
    status, out, err = run_cli(capsys, "run", write(tmp_path, experiment), "--run-dir", tmp_path / "run")
    assert status == 0, err
    run = load_run(tmp_path / "run")
    assert (run.trials["state"] == "COMPLETE").sum() == 3


def test_augmentation_crops_and_flips_train_items_only(tmp_path: Path) -> None:
    section = {"spec": "digits", "augment": {"crop_padding": 2, "hflip": True}}
    splits = open_data(section, seed=0)
    train, val, _ = splits.loaders(8, seed=0)
    plain = open_data({"spec": "digits"}, seed=0).loaders(8, seed=0)
    assert torch.equal(next(iter(val))[0], next(iter(plain.val))[0])
    assert not torch.equal(next(iter(train))[0], next(iter(plain.train))[0])
    with pytest.raises(PrunetuneError, match="data.augment.rotate"):
        open_data({"spec": "digits", "augment": {"rotate": 10}}, seed=0)


# --- mistakes -----------------------------------------------------------------------------------


BAD = {
    "factory file missing": ({"factory": "{tmp}/nowhere.py:digits"}, r"data factory \('data.factory'\) .*nowhere.py:digits'?: no such file"),
    "factory returns a list": ({"factory": f"{FACTORIES}:a_list"}, r"data factory .*a_list' returned a list\. It must return a mapping"),
    "factory without test": ({"factory": f"{FACTORIES}:no_test"}, r"no_test' returned no 'test'"),
    "items are not tensors": ({"factory": f"{FACTORIES}:tuples_not_tensors"}, r"whose items are tuple, not \(input_tensor, label\)"),
    "factory option unknown": ({"factory": DIGITS, "options": {"share": 0.5}}, r"raised TypeError when called with \{'share': 0.5\}"),
    "folder without class folders": ({"spec": "imagefolder:{tmp}/flat"}, r"has no class folders"),
    "folder without train": ({"spec": "imagefolder:{tmp}"}, r"is not an image folder: it needs .*/train/<class>/"),
    "options without a factory": ({"spec": "digits", "options": {"a": 1}}, r"'data.options' key goes with 'data.factory'"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_a_data_mistake_is_one_message_and_writes_nothing(
    case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "flat" / "train").mkdir(parents=True)
    data, message = BAD[case]
    data = {key: value.replace("{tmp}", str(tmp_path)) if isinstance(value, str) else value for key, value in data.items()}
    experiment = write(tmp_path, search(tmp_path, data))
    before = sorted(path.name for path in tmp_path.iterdir())
    status, out, err = run_cli(capsys, "run", experiment)
    assert status == 2, out + err
    assert err.startswith("prunetune: error: ") and err.count("\n") == 1, err
    assert __import__("re").search(message, err), err
    assert sorted(path.name for path in tmp_path.iterdir()) == before


# --- the README's example -----------------------------------------------------------------------


def test_the_own_model_and_data_example_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """README "Your own model and data": examples/own-model-and-data.yaml, shortened, from the repo root."""
    monkeypatch.chdir(Path(__file__).resolve().parent.parent)
    run_dir = tmp_path / "own"
    status, out, err = run_cli(capsys, "run", "examples/own-model-and-data.yaml", "--run-dir", run_dir, "--trials", "3")
    assert status == 0, err
    base = load_checkpoint(run_dir / "base.pt")
    assert base.model_kwargs == {"num_classes": 10, "in_channels": 1, "width": 16}
    assert base.metrics["test_accuracy"] > 0.8  # the separable net learns the digits (chance 0.1)
    run = load_run(run_dir)
    assert (run.trials["state"] == "COMPLETE").sum() == 3
    assert "filters: 3 dimensions" in run_cli(capsys, "run", "examples/own-model-and-data.yaml", "--check")[1]
