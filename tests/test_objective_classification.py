"""The classification objective, adaptive batch norm and the custom-objective protocol.

Models are trained briefly on the bundled digits in module fixtures, with one CPU thread (small
models on 2 shared cores run many times faster single-threaded) and fixed seeds.
"""

from __future__ import annotations

import copy
import math
import pickle
import sys
from collections.abc import Mapping
from pathlib import Path

import optuna
import pytest
import torch
from torch import nn

from prunetune.zoo.models import build_model_for
from prunetune.errors import PrunetuneError
from prunetune.objectives import (
    DIRECTIONS,
    ClassificationObjective,
    FunctionObjective,
    TrainConfig,
    TrainingDiverged,
    check_metrics,
    load_objective,
    recalibrate_batchnorm,
    train,
)
from prunetune.runtime import torch_threads
from prunetune.search.early_stopping import COMPRESSION_ATTR, report_step
from prunetune.zoo import DataSplits, load_data

REPO = Path(__file__).resolve().parents[1]
FINETUNE = TrainConfig(epochs=2, lr=0.01, seed=0)
PLAN = {
    "filters": {"criterion": "l1", "ratios": {"features.0": 0.5, "classifier.0": 0.5}},
    "weights": {"ratios": {"classifier.4": 0.5}},
}


@pytest.fixture(scope="module")
def digits() -> DataSplits:
    return load_data("digits", seed=0)


def _trained(name: str, data: DataSplits, epochs: int, extra: dict | None = None) -> nn.Module:
    with torch_threads(1):
        torch.manual_seed(0)
        model = build_model_for(name, data, extra)
        train(model, data.loaders(64, seed=0).train, config=TrainConfig(epochs=epochs, lr=0.05, seed=0))
    return model.eval()


@pytest.fixture(scope="module")
def lenet(digits: DataSplits) -> nn.Module:
    """LeNet-5 after 6 epochs on digits: well above chance, far from perfect."""
    return _trained("lenet5", digits, 6)


@pytest.fixture(scope="module")
def vgg(digits: DataSplits) -> nn.Module:
    """VGG-11 at a quarter width (eight conv-BN-ReLU blocks) after 3 epochs on digits."""
    return _trained("vgg11", digits, 3, {"width": 0.25})


@pytest.fixture()
def objective(lenet: nn.Module, digits: DataSplits) -> ClassificationObjective:
    return ClassificationObjective(base=lenet, data=digits, finetune=FINETUNE, threads=1)


def _state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {name: value.clone() for name, value in model.state_dict().items()}


# --- the objective -------------------------------------------------------------------------------


def test_metrics_have_the_documented_names_and_relations(objective: ClassificationObjective) -> None:
    metrics = objective(PLAN)
    base = objective.base_scores()
    assert set(metrics) == set(DIRECTIONS) - {"latency_ms"}
    assert set(ClassificationObjective.directions.values()) == {"maximize", "minimize"}
    assert check_metrics(metrics, objective.directions) == metrics
    assert 0.0 <= metrics["accuracy"] <= 1.0 and 0.0 <= metrics["test_accuracy"] <= 1.0
    assert metrics["accuracy"] > 0.3  # two epochs of fine-tuning keep LeNet-5 far above chance
    assert metrics["accuracy_drop"] == pytest.approx(100 * (base.val_accuracy - metrics["accuracy"]))
    assert metrics["test_accuracy_drop"] == pytest.approx(100 * (base.test_accuracy - metrics["test_accuracy"]))
    assert metrics["compression"] == pytest.approx(base.measurement.nonzero_params / metrics["nonzero_params"])
    assert metrics["compression"] > 1.5  # half the first conv's filters and half of fc1's units go
    assert metrics["nonzero_params"] < metrics["params"] < base.measurement.params  # masks zero more
    assert metrics["macs_reduction"] == pytest.approx(base.measurement.macs / metrics["macs"]) and metrics["macs_reduction"] > 1
    assert metrics["bits"] == 32 * metrics["nonzero_params"] and metrics["size_bytes"] == 4 * metrics["params"]
    assert metrics["seconds"] > 0


def test_an_empty_plan_compresses_nothing(objective: ClassificationObjective) -> None:
    metrics = objective({})
    base = objective.base_scores().measurement
    assert metrics["compression"] == 1.0 and metrics["macs_reduction"] == 1.0
    assert metrics["params"] == base.params and metrics["macs"] == base.macs


def test_the_base_model_is_never_changed(objective: ClassificationObjective, lenet: nn.Module) -> None:
    before, mode = _state(lenet), lenet.training
    objective(PLAN)
    after = lenet.state_dict()
    assert set(after) == set(before)  # no masks or pruning buffers left behind on the base
    assert all(torch.equal(before[name], after[name]) for name in before)
    assert lenet.training == mode


def test_report_comes_at_step_0_and_after_each_epoch_with_compression(objective: ClassificationObjective) -> None:
    reports: list[tuple[int, dict[str, float]]] = []
    metrics = objective(PLAN, report=lambda step, values: reports.append((step, dict(values))))
    assert [step for step, _ in reports] == [0, 1, 2]
    assert all(values["compression"] == pytest.approx(metrics["compression"]) for _, values in reports)
    assert reports[0][1]["val_accuracy"] == metrics["accuracy_pruned"]
    assert reports[-1][1]["val_accuracy"] == metrics["accuracy"]
    assert "train_loss" in reports[1][1] and "train_loss" not in reports[0][1]


def test_max_steps_ends_fine_tuning_early_and_reports_the_epochs_run(lenet: nn.Module, digits: DataSplits) -> None:
    finetune = TrainConfig(epochs=5, max_steps=25, lr=0.01, seed=0)  # 21 batches per epoch: two epochs
    steps: list[int] = []
    ClassificationObjective(base=lenet, data=digits, finetune=finetune, threads=1)(PLAN, lambda step, _: steps.append(step))
    assert steps == [0, 1, 2]


def test_adaptive_batchnorm_raises_post_pruning_accuracy(vgg: nn.Module, digits: DataSplits) -> None:
    plan = {"filters": {"criterion": "l1", "ratios": {f"features.{i}": 0.3 for i in (0, 4, 8, 11, 15, 18, 21, 24)}}}
    no_finetune = TrainConfig(epochs=0, seed=0)

    def pruned_accuracy(batches: int | None) -> float:
        run = ClassificationObjective(
            base=vgg, data=digits, finetune=no_finetune, bn_recalibration_batches=batches, threads=1
        )
        return run(plan)["accuracy_pruned"]

    stale, default, recalibrated = pruned_accuracy(0), pruned_accuracy(None), pruned_accuracy(20)
    assert stale < 0.3  # the unpruned network's BN statistics wreck the pruned one
    assert recalibrated > stale + 0.4
    assert default == recalibrated  # on by default for a model with BN layers


def test_recalibration_averages_every_batch_and_restores_modes() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Dropout(0.5), nn.BatchNorm1d(3, momentum=0.1))
    model.eval()
    batches = [(torch.randn(16, 3) * 2 + shift, torch.zeros(16)) for shift in (1.0, 3.0, 5.0)]
    used = recalibrate_batchnorm(model, iter(batches), num_batches=10)
    bn = model[1]
    assert used == 3
    # A plain average over the batches (momentum None meanwhile), with dropout left off.
    assert torch.allclose(bn.running_mean, torch.stack([x.mean(0) for x, _ in batches]).mean(0), atol=1e-6)
    assert torch.allclose(bn.running_var, torch.stack([x.var(0) for x, _ in batches]).mean(0), atol=1e-5)
    assert bn.momentum == 0.1 and not model.training and not bn.training
    before = _state(bn)
    assert recalibrate_batchnorm(model, iter([]), num_batches=5) == 0
    assert all(torch.equal(before[name], value) for name, value in bn.state_dict().items())


def test_a_nan_loss_raises_training_diverged(lenet: nn.Module, digits: DataSplits) -> None:
    broken = copy.deepcopy(lenet)
    with torch.no_grad():
        broken.classifier[4].weight.fill_(math.nan)
    run = ClassificationObjective(base=broken, data=digits, finetune=FINETUNE, threads=1)
    with pytest.raises(TrainingDiverged, match="nan"):
        run({})


@pytest.mark.parametrize(
    ("plan", "words"),
    [
        ({"filters": {"ratios": {"features.9": 0.5}}}, "Unknown unit 'features.9'"),
        ({"filters": {"ratios": {"features.0": 1.5}}}, "must be in [0, 1)"),
        ({"depth": {}}, "Unknown pruning method 'depth'"),
    ],
)
def test_a_bad_plan_raises_prunetune_error(objective: ClassificationObjective, plan: dict, words: str) -> None:
    with pytest.raises(PrunetuneError, match=words.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")):
        objective(plan)


@pytest.mark.parametrize(
    ("field", "value"),
    [("batch_size", 0), ("bn_recalibration_batches", -1), ("threads", 0), ("measure_latency", "yes"), ("data", "digits")],
)
def test_bad_parameters_are_named_before_any_work(lenet: nn.Module, digits: DataSplits, field: str, value: object) -> None:
    kwargs = {"base": lenet, "data": digits, field: value}
    with pytest.raises(PrunetuneError, match=f"'{field}' parameter of ClassificationObjective"):
        ClassificationObjective(**kwargs)(PLAN)


def test_it_pickles_cheaply_and_gives_the_same_metrics_after(objective: ClassificationObjective, lenet: nn.Module, digits: DataSplits) -> None:
    shipped = pickle.dumps(objective)
    payload = sum(t.numel() * t.element_size() for t in lenet.state_dict().values()) + sum(
        tensor.numel() * tensor.element_size() for split in (digits.train, digits.val, digits.test) for tensor in split.tensors
    )
    assert len(shipped) < 1.2 * payload + 20_000  # the weights and the data, nothing else of size
    copy_ = pickle.loads(shipped)
    first, second = objective(PLAN), copy_(PLAN)
    for name in first.keys() - {"seconds"}:
        assert second[name] == first[name], name
    assert pickle.loads(pickle.dumps(copy_))(PLAN)["accuracy"] == first["accuracy"]  # after a call, too


def test_latency_is_measured_when_asked(lenet: nn.Module, digits: DataSplits) -> None:
    run = ClassificationObjective(base=lenet, data=digits, finetune=TrainConfig(epochs=0), measure_latency=True, threads=1)
    metrics = run({})
    assert metrics["latency_ms"] > 0 and run.directions["latency_ms"] == "minimize"


def test_it_serves_as_a_plain_optuna_objective(objective: ClassificationObjective) -> None:
    """Three trials of a two-objective study through an adapter of a few lines; no Ray."""

    def adapter(trial: optuna.Trial) -> tuple[float, float]:
        ratio = trial.suggest_float("ratio", 0.0, 0.8)
        plan = {"filters": {"ratios": {"features.0": ratio, "features.3": ratio}}}

        def report(step: int, values: Mapping[str, float]) -> None:
            if report_step(trial, step, values):
                raise optuna.TrialPruned()

        metrics = objective(plan, report)
        trial.set_user_attr("metrics", metrics)
        return metrics["accuracy"], metrics["compression"]

    study = optuna.create_study(directions=["maximize", "maximize"], sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(adapter, n_trials=3)
    trials = study.get_trials()
    assert [trial.state for trial in trials] == [optuna.trial.TrialState.COMPLETE] * 3
    for trial in trials:
        assert sorted(trial.intermediate_values) == [0, 1, 2]
        assert trial.user_attrs[COMPRESSION_ATTR] == pytest.approx(trial.values[1])
        assert trial.intermediate_values[2] == trial.values[0] == trial.user_attrs["metrics"]["accuracy"]
    by_ratio = sorted(trials, key=lambda trial: trial.params["ratio"])
    compressions = [trial.values[1] for trial in by_ratio]
    assert compressions == sorted(compressions) and compressions[-1] > compressions[0]


# --- the custom-objective protocol -------------------------------------------------------------


def test_the_worked_example_loads_from_its_file_and_adds_its_metric(
    lenet: nn.Module, digits: DataSplits, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(REPO)
    custom = load_objective(
        "examples/custom_objective.py:LatencyAwareObjective",
        base=lenet, data=digits, finetune=FINETUNE, threads=1, macs_per_second=1e6, bytes_per_second=1e7,
    )
    assert type(custom).__name__ == "LatencyAwareObjective" and custom.directions["device_ms"] == "minimize"
    pruned, whole = custom(PLAN), custom({})
    for metrics in (pruned, whole):
        checked = check_metrics(metrics, custom.directions, required=("accuracy", "compression", "device_ms"))
        assert checked["device_ms"] == pytest.approx(1000 * max(checked["macs"] / 1e6, checked["bits"] / 8 / 1e7))
    assert pruned["device_ms"] < whole["device_ms"]
    assert pickle.loads(pickle.dumps(custom))(PLAN)["device_ms"] == pruned["device_ms"]


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_a_function_gets_the_directions_given_next_to_it(tmp_path: Path) -> None:
    source = _write(tmp_path / "plain.py", "def objective(plan, report=None):\n    return {'score': float(len(plan))}\n")
    loaded = load_objective(f"{source}:objective", directions={"score": "maximize"})
    assert isinstance(loaded, FunctionObjective) and loaded.directions == {"score": "maximize"}
    assert loaded({"filters": {}}) == {"score": 1.0}


def test_a_class_with_its_own_directions_comes_back_as_an_instance(lenet: nn.Module, digits: DataSplits) -> None:
    loaded = load_objective("prunetune.objectives.classification:ClassificationObjective", base=lenet, data=digits)
    assert isinstance(loaded, ClassificationObjective) and loaded.base is lenet


def test_only_the_named_file_is_imported(tmp_path: Path) -> None:
    """Its folder is not put on sys.path: a sibling module stays out of reach."""
    _write(tmp_path / "sibling_helpers_xyz.py", "VALUE = 1\n")
    source = _write(tmp_path / "needs_sibling.py", "import sibling_helpers_xyz\ndef f(plan, report=None):\n    return {}\n")
    with pytest.raises(PrunetuneError, match="importing .* failed .*sibling_helpers_xyz"):
        load_objective(f"{source}:f", directions={"x": "maximize"})
    assert str(tmp_path) not in sys.path and "sibling_helpers_xyz" not in sys.modules


@pytest.mark.parametrize(
    ("spec", "kwargs", "words"),
    [
        ("no_colon_here", {}, "'module:attribute'"),
        ("no_such_module_xyz:Thing", {}, "cannot import module 'no_such_module_xyz'"),
        ("{tmp}/missing.py:Thing", {}, "no such file"),
        ("prunetune.objectives.classification:Nope", {}, "has no attribute 'Nope'"),
        ("prunetune.objectives.classification:DEFAULT_FINETUNE.nope", {}, "has no attribute"),
        ("prunetune.objectives.classification:REPORT_ACCURACY", {}, "must be a class or a function"),
        ("{tmp}/plain.py:objective", {}, "no 'directions'"),
        ("{tmp}/plain.py:objective", {"lr": 0.1}, "takes no arguments"),
        ("{tmp}/plain.py:objective", {"directions": {"score": "up"}}, "'maximize' or 'minimize'"),
        ("{tmp}/plain.py:NotCallable", {"directions": {"s": "maximize"}}, "is not callable"),
        ("prunetune.objectives.classification:ClassificationObjective", {"bogus": 1}, "could not be built"),
    ],
)
def test_load_objective_names_what_is_wrong(tmp_path: Path, spec: str, kwargs: dict, words: str) -> None:
    _write(tmp_path / "plain.py", "def objective(plan, report=None):\n    return {}\nclass NotCallable:\n    pass\n")
    with pytest.raises(PrunetuneError, match=words.replace("(", r"\(")):
        load_objective(spec.replace("{tmp}", str(tmp_path)), **kwargs)


@pytest.mark.parametrize(
    ("metrics", "words"),
    [
        ({"accuracy": 0.9, "speed": 1.0}, "unknown metric 'speed'"),
        ({"accuracy": math.nan}, "'accuracy' must be a finite number"),
        ({"accuracy": math.inf}, "'accuracy' must be a finite number"),
        ({"accuracy": True}, "'accuracy' must be a finite number"),
        ({"accuracy": "0.9"}, "'accuracy' must be a finite number"),
        ({"compression": 2.0}, "did not return the metric 'accuracy'"),
        ([0.9], "must return a mapping"),
    ],
)
def test_check_metrics_names_the_bad_metric(metrics: object, words: str) -> None:
    with pytest.raises(PrunetuneError, match=words):
        check_metrics(metrics, DIRECTIONS, required=("accuracy",))
