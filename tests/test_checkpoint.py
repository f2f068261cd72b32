"""Checkpoints rebuild the model from the zoo and load only with weights_only=True."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import torch

from prunetune.errors import PrunetuneError
from prunetune.zoo.checkpoint import load_checkpoint, save_checkpoint
from prunetune.zoo.models import build_model


def test_round_trip_rebuilds_the_same_model(tmp_path: Path) -> None:
    model = build_model("lenet5", num_classes=10, in_channels=1, input_size=8)
    path = save_checkpoint(
        tmp_path / "base.pt", model, data_spec="digits", input_shape=(1, 8, 8), num_classes=10, metrics={"test_accuracy": 0.5}
    )
    checkpoint = load_checkpoint(path)
    assert checkpoint.model_name == "lenet5"
    assert checkpoint.input_shape == (1, 8, 8) and checkpoint.metrics == {"test_accuracy": 0.5}
    rebuilt = checkpoint.build()
    example = torch.randn(3, 1, 8, 8)
    model.eval(), rebuilt.eval()
    assert torch.equal(model(example), rebuilt(example))
    assert list(tmp_path.iterdir()) == [path]  # the temporary file of the atomic write is gone


def test_load_uses_weights_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = save_checkpoint(tmp_path / "base.pt", build_model("lenet300_100", num_classes=10, in_features=64))
    calls = []
    original = torch.load

    def spy(*args: object, **kwargs: object) -> object:
        calls.append(kwargs.get("weights_only"))
        return original(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    load_checkpoint(path)
    assert calls == [True]


def test_a_pickled_object_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "evil.pt"
    torch.save({"format": "prunetune.checkpoint/1", "model_name": argparse.Namespace(run="code")}, path)
    with pytest.raises(PrunetuneError, match="not a readable prunetune checkpoint"):
        load_checkpoint(path)


def test_missing_and_foreign_files_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(PrunetuneError, match="Checkpoint not found"):
        load_checkpoint(tmp_path / "absent.pt")
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(2)}, foreign)
    with pytest.raises(PrunetuneError, match="not a prunetune checkpoint"):
        load_checkpoint(foreign)


def test_model_without_zoo_spec_is_refused(tmp_path: Path) -> None:
    with pytest.raises(PrunetuneError, match="zoo_spec"):
        save_checkpoint(tmp_path / "x.pt", torch.nn.Linear(2, 2))
    assert not list(tmp_path.iterdir())
