"""The shared train/evaluate loop: it learns, it is seeded, it stays in its threads, it stops on NaN."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from prunetune.errors import PrunetuneError
from prunetune.objectives.training import TrainConfig, TrainingDiverged, evaluate, train


def _blobs(seed: int = 0, n: int = 256) -> TensorDataset:
    """Four well-separated Gaussian blobs: a small model must learn them to near 100%."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 4, (n,), generator=generator)
    inputs = 0.5 * torch.randn(n, 4, generator=generator) + 3.0 * torch.eye(4)[labels]
    return TensorDataset(inputs, labels)


def _loader(seed: int = 0) -> DataLoader:
    return DataLoader(_blobs(), batch_size=32, shuffle=True, generator=torch.Generator().manual_seed(seed))


def _model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 4))


def test_training_learns_and_reports_each_epoch() -> None:
    model, seen = _model(), []
    before = evaluate(model, _loader()).accuracy
    history = train(model, _loader(), config=TrainConfig(epochs=5, lr=0.1), val_loader=_loader(), on_epoch=seen.append)
    assert [stats.epoch for stats in seen] == [1, 2, 3, 4, 5]
    assert history == seen
    assert seen[-1].val is not None and seen[-1].val.accuracy > 0.95 > before
    assert seen[-1].train_loss < seen[0].train_loss


def test_same_seed_same_weights_other_seed_other_weights() -> None:
    def trained(seed: int) -> torch.Tensor:
        model = _model()
        train(model, _loader(seed), config=TrainConfig(epochs=2, seed=seed))
        return torch.cat([p.detach().flatten() for p in model.parameters()])

    assert torch.equal(trained(1), trained(1))
    assert not torch.equal(trained(1), trained(2))


def test_max_steps_caps_the_batches() -> None:
    history = train(_model(), _loader(), config=TrainConfig(epochs=10, max_steps=11))
    assert history[-1].steps == 11
    assert len(history) == 2  # 8 batches per epoch: the second epoch stops after 3


def test_threads_are_restored_after_training() -> None:
    threads = torch.get_num_threads()
    train(_model(), _loader(), config=TrainConfig(epochs=1, threads=1))
    assert torch.get_num_threads() == threads


def test_nan_loss_raises_training_diverged() -> None:
    model = _model()
    with torch.no_grad():
        model[0].weight.fill_(math.nan)
    with pytest.raises(TrainingDiverged, match="loss became nan"):
        train(model, _loader(), config=TrainConfig(epochs=1))


@pytest.mark.parametrize("schedule", ["cosine", "step", "constant"])
def test_schedules_change_the_learning_rate_as_named(schedule: str) -> None:
    model = _model()
    rates = []

    def factory(optimizer: torch.optim.Optimizer, total: int) -> torch.optim.lr_scheduler.LRScheduler:
        from prunetune.objectives.training import make_schedule

        scheduler = make_schedule(optimizer, schedule, total)
        original = scheduler.step

        def step(*args: object) -> None:
            original(*args)
            rates.append(optimizer.param_groups[0]["lr"])

        scheduler.step = step  # type: ignore[method-assign]
        return scheduler

    train(model, _loader(), config=TrainConfig(epochs=2, lr=0.1, schedule=factory))
    assert len(rates) == 16
    if schedule == "constant":
        assert set(rates) == {0.1}
    elif schedule == "step":
        assert sorted(set(round(rate, 6) for rate in rates)) == [0.001, 0.01, 0.1]
    else:
        assert rates == sorted(rates, reverse=True) and rates[-1] < 1e-6


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [("optimizer", "rmsprop", "'optimizer' parameter"), ("lr", 0.0, "'lr' parameter"), ("schedule", "linear", "'schedule'")],
)
def test_bad_config_names_the_field(field: str, value: object, words: str) -> None:
    with pytest.raises(PrunetuneError, match=words):
        train(_model(), _loader(), config=TrainConfig(**{field: value}))
