"""The accordion autoencoder (A2E): the reconstruction objective, its base training and its searches.

The anomaly task runs on a slice of the real credit-card file (its first 30,000 rows hold 94
frauds; all of them and 6,000 normal rows are kept); the code-classifier task on the bundled digits.
Models are small and trained a few epochs with one thread and fixed seeds.
"""

from __future__ import annotations

import copy
import math
import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from optuna.trial import TrialState
from torch import nn
from torch.utils.data import TensorDataset

from prunetune.errors import PrunetuneError
from prunetune.objectives import REPORT_ACCURACY, ReconstructionObjective, TrainConfig, train_autoencoder
from prunetune.objectives.reconstruction import (
    RECONSTRUCTION_DIRECTIONS,
    anomaly_scores,
    check_reconstruction_options,
    encoder_codes,
    reconstruction_errors,
)
from prunetune.app.experiment import experiment_from_dict, load_experiment
from prunetune.search.goals import Goals
from prunetune.search.ledger import ATTR_CURVE, ATTR_FAIL_REASON, ATTR_METRICS, ATTR_PLAN
from prunetune.app.preflight import check_experiment
from prunetune.app.runner import run_experiment
from prunetune.zoo import DataSplits, build_model, load_data
from prunetune.zoo.checkpoint import load_checkpoint

REPO = Path(__file__).resolve().parents[1]
BASE_TRAINING = TrainConfig(epochs=8, optimizer="adam", lr=2e-3, weight_decay=0.0, seed=0, threads=1)
FINETUNE = TrainConfig(epochs=2, optimizer="adam", lr=1e-3, weight_decay=0.0, seed=0)
CC_MODEL = {"encoder_widths": [32, 16], "code_size": 8}
CC_PLAN = {
    "filters": {
        "criterion": "l1",
        "ratios": {"encoder.0": 0.5, "encoder.2": 0.5, "decoder.0": 0.5, "decoder.2": 0.5},
    }
}


# --- data and base models ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def creditcard_slice(datasets_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every fraud of the file's first 30,000 rows and 6,000 of its normal rows, as a CSV."""
    frame = pd.read_csv(datasets_root / "creditcard" / "creditcard.csv.xz", nrows=30_000)
    frauds = frame[frame["Class"] == 1]
    normal = frame[frame["Class"] == 0].sample(n=6000, random_state=0)
    path = tmp_path_factory.mktemp("creditcard") / "creditcard.csv"
    pd.concat([frauds, normal]).sort_index().to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def cc_data(creditcard_slice: Path) -> DataSplits:
    return load_data(f"creditcard:{creditcard_slice}", seed=0)


@pytest.fixture(scope="module")
def cc_base(cc_data: DataSplits) -> tuple[nn.Module, dict[str, float]]:
    torch.manual_seed(0)
    return train_autoencoder("autoencoder", cc_data, config=BASE_TRAINING, batch_size=64, model_kwargs=CC_MODEL)


@pytest.fixture(scope="module")
def digits() -> DataSplits:
    return load_data("digits", seed=0)


@pytest.fixture(scope="module")
def digits_base(digits: DataSplits) -> tuple[nn.Module, dict[str, float]]:
    return train_autoencoder(
        "autoencoder",
        digits,
        config=dataclass_replace(BASE_TRAINING, epochs=15),
        batch_size=32,
        model_kwargs={"encoder_widths": [32], "code_size": 12},
        task="code-classifier",
    )


def dataclass_replace(config: TrainConfig, **changes: object) -> TrainConfig:
    import dataclasses

    return dataclasses.replace(config, **changes)


def _state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {name: value.clone() for name, value in model.state_dict().items()}


# --- scoring helpers ---------------------------------------------------------------------------


def test_anomaly_scores_rank_larger_errors_as_anomalies() -> None:
    labels = np.array([0, 0, 0, 1, 1])
    assert anomaly_scores(np.array([0.1, 0.2, 0.3, 0.9, 0.8]), labels) == {"roc_auc": 1.0, "average_precision": 1.0}
    reversed_scores = anomaly_scores(np.array([0.9, 0.8, 0.7, 0.1, 0.2]), labels)
    assert reversed_scores["roc_auc"] == 0.0
    # normal_class picks which label is normal: the same errors now flag label 0.
    assert anomaly_scores(np.array([0.9, 0.8, 0.7, 0.1, 0.2]), labels, normal_class=1)["roc_auc"] == 1.0


def test_anomaly_scores_need_both_kinds_of_rows() -> None:
    with pytest.raises(PrunetuneError, match="0 anomalous of 3"):
        anomaly_scores(np.array([0.1, 0.2, 0.3]), np.array([0, 0, 0]))


def test_reconstruction_errors_are_per_row_mean_squares() -> None:
    model = nn.Identity()
    inputs = torch.randn(5, 3)
    assert np.allclose(reconstruction_errors(model, inputs), 0.0)

    class Zero(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.zeros_like(x)

    assert np.allclose(reconstruction_errors(Zero(), inputs, batch_size=2), (inputs**2).mean(1).numpy())


def test_encoder_codes_read_the_named_submodule() -> None:
    model = build_model("autoencoder", in_features=6, encoder_widths=[4], code_size=3)
    inputs = torch.randn(7, 6)
    codes = encoder_codes(model, inputs, code_module="encoder", batch_size=3)
    assert codes.shape == (7, 3)
    assert np.allclose(codes, model.encode(inputs).detach().double().numpy(), atol=1e-6)


# --- the anomaly task on credit-card data ----------------------------------------------------------


def test_base_autoencoder_flags_frauds(cc_data: DataSplits, cc_base: tuple[nn.Module, dict[str, float]]) -> None:
    model, metrics = cc_base
    val_labels, test_labels = cc_data.val.tensors[1], cc_data.test.tensors[1]
    assert int(val_labels.sum()) >= 5 and int(test_labels.sum()) >= 10  # the held-out splits hold frauds
    for split in ("val", "test"):
        assert 0.5 < metrics[f"{split}_roc_auc"] <= 1.0
        assert metrics[f"{split}_accuracy"] == metrics[f"{split}_roc_auc"]
        assert 0.0 < metrics[f"{split}_average_precision"] <= 1.0
    # Frauds are reconstructed worse than normal rows: the anomaly score works.
    errors = reconstruction_errors(model, cc_data.val.tensors[0])
    assert errors[val_labels.numpy() == 1].mean() > 2 * errors[val_labels.numpy() == 0].mean()


def test_training_rows_are_the_normal_ones(cc_data: DataSplits, cc_base: tuple[nn.Module, dict[str, float]]) -> None:
    objective = ReconstructionObjective(base=cc_base[0], data=cc_data)
    train_loader, val_loader, _ = objective.loaders()
    rows = sum(len(inputs) for inputs, _ in train_loader)
    assert rows == int((cc_data.train.tensors[1] == 0).sum()) < len(cc_data.train)
    inputs, targets = next(iter(val_loader))
    assert torch.equal(inputs, targets)
    # The code-classifier task reconstructs every row.
    everything = ReconstructionObjective(base=cc_base[0], data=cc_data, task="code-classifier")
    assert sum(len(inputs) for inputs, _ in everything.loaders().train) == len(cc_data.train)


def test_a_pruned_autoencoder_is_scored_and_measured(
    cc_data: DataSplits, cc_base: tuple[nn.Module, dict[str, float]]
) -> None:
    base, base_metrics = cc_base
    before = _state(base)
    objective = ReconstructionObjective(base=base, data=cc_data, finetune=FINETUNE, threads=1)
    reports: list[tuple[int, dict[str, float]]] = []
    metrics = objective(CC_PLAN, report=lambda step, values: reports.append((step, dict(values))))

    assert set(metrics) <= set(objective.directions) and "latency_ms" not in metrics
    assert all(math.isfinite(value) for value in metrics.values())
    assert 0.0 <= metrics["roc_auc"] <= 1.0 and 0.0 <= metrics["test_roc_auc"] <= 1.0
    assert metrics["accuracy"] == metrics["roc_auc"] and metrics["test_accuracy"] == metrics["test_roc_auc"]
    assert metrics["accuracy_drop"] == pytest.approx(100 * (base_metrics["val_roc_auc"] - metrics["roc_auc"]))
    assert metrics["performance_drop"] == metrics["accuracy_drop"]
    assert metrics["compression"] > 1.5
    base_params = sum(p.numel() for p in base.parameters())
    assert metrics["params"] < base_params
    assert metrics["complexity_reduction"] == pytest.approx(1 - metrics["params"] / base_params)

    assert [step for step, _ in reports] == [0, 1, 2]
    assert all(values["compression"] == metrics["compression"] for _, values in reports)
    assert reports[-1][1][REPORT_ACCURACY] == pytest.approx(metrics["accuracy"])
    assert reports[0][1][REPORT_ACCURACY] == pytest.approx(metrics["accuracy_pruned"])
    assert {"train_loss", "val_loss"} <= set(reports[1][1])

    model = objective.take_model()
    assert model is not None and objective.take_model() is None
    assert model.encoder[0].out_features == 16 and model.decoder[2].out_features == 16
    assert objective.take_applied_plan() == CC_PLAN
    assert all(torch.equal(before[name], value) for name, value in base.state_dict().items())


def test_average_precision_can_be_the_main_score(
    cc_data: DataSplits, cc_base: tuple[nn.Module, dict[str, float]]
) -> None:
    finetune = dataclass_replace(FINETUNE, epochs=0)
    objective = ReconstructionObjective(base=cc_base[0], data=cc_data, metric="average_precision", finetune=finetune)
    metrics = objective(CC_PLAN)
    assert metrics["accuracy"] == metrics["average_precision"] != metrics["roc_auc"]
    assert objective.base_scores().val_accuracy == pytest.approx(cc_base[1]["val_average_precision"])


def test_same_plan_same_metrics_after_pickling(
    cc_data: DataSplits, cc_base: tuple[nn.Module, dict[str, float]]
) -> None:
    objective = ReconstructionObjective(base=cc_base[0], data=cc_data, finetune=FINETUNE, threads=1)
    first = objective(CC_PLAN)
    second = pickle.loads(pickle.dumps(objective))(CC_PLAN)
    assert {k: v for k, v in first.items() if k != "seconds"} == {k: v for k, v in second.items() if k != "seconds"}


def test_drop_and_filters_together(cc_data: DataSplits, cc_base: tuple[nn.Module, dict[str, float]]) -> None:
    from prunetune.pruners import get_method

    """A2E's space: a drop set and filter ratios for every unit, those of dropped units skipped."""
    base = cc_base[0]
    example = torch.zeros(1, *cc_data.input_shape)
    dimensions = get_method("drop").dimensions(base, example)
    assert [dim.unit for dim in dimensions] == ["encoder.0", "encoder.2", "encoder.4", "decoder.0", "decoder.2"]
    drop = get_method("drop").section({"drop.encoder.2": True, "drop.decoder.0": True})
    plan = {"drop": drop, **copy.deepcopy(CC_PLAN)}  # filter ratios name the dropped units too
    objective = ReconstructionObjective(base=base, data=cc_data, finetune=FINETUNE, threads=1)
    metrics = objective(plan)
    filters_only = ReconstructionObjective(base=base, data=cc_data, finetune=FINETUNE, threads=1)(CC_PLAN)
    assert metrics["compression"] > filters_only["compression"] > 1
    assert 0.0 <= metrics["roc_auc"] <= 1.0 and all(math.isfinite(value) for value in metrics.values())
    model = objective.take_model()
    assert isinstance(model.encoder[2], nn.Identity) and isinstance(model.decoder[0], nn.Identity)
    assert model.encoder[4].in_features == 16  # encoder.0, halved, now feeds the code layer


# --- the code-classifier task on digits -------------------------------------------------------------


def test_code_classifier_reads_digits_from_the_code(
    digits: DataSplits, digits_base: tuple[nn.Module, dict[str, float]]
) -> None:
    base, base_metrics = digits_base
    assert base_metrics["val_accuracy"] > 0.6 and base_metrics["test_accuracy"] > 0.6  # chance is 0.1
    objective = ReconstructionObjective(base=base, data=digits, task="code-classifier", finetune=FINETUNE, threads=1)
    assert "roc_auc" not in objective.directions
    metrics = objective({"filters": {"criterion": "l1", "ratios": {"encoder.0": 0.5, "decoder.0": 0.5}}})
    assert set(metrics) <= set(objective.directions) and "roc_auc" not in metrics
    assert metrics["accuracy"] > 0.3 and metrics["test_accuracy"] > 0.3
    assert metrics["compression"] > 1.5
    assert metrics["accuracy_drop"] == pytest.approx(100 * (base_metrics["val_accuracy"] - metrics["accuracy"]))


def test_fewer_classifier_samples_change_the_score(
    digits: DataSplits, digits_base: tuple[nn.Module, dict[str, float]]
) -> None:
    scores = [
        ReconstructionObjective(base=digits_base[0], data=digits, task="code-classifier", classifier_samples=n)
        .base_scores()
        .val_accuracy
        for n in (20, 2000)
    ]
    assert scores[0] < scores[1]


# --- checks --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"task": "denoise"}, "The 'task' parameter of ReconstructionObjective must be one of anomaly, code-classifier. Got 'denoise'"),
        ({"metric": "f1"}, "The 'metric' parameter of ReconstructionObjective must be one of roc_auc, average_precision"),
        ({"task": "code-classifier", "code_module": "middle"}, "The 'code_module' parameter"),
        ({"task": "code-classifier", "classifier_samples": 1}, "The 'classifier_samples' parameter"),
        ({"batch_size": 0}, "The 'batch_size' parameter"),
        ({"normal_class": 7}, "The 'normal_class' parameter"),
    ],
)
def test_bad_parameters_are_named(
    cc_data: DataSplits, cc_base: tuple[nn.Module, dict[str, float]], changes: dict, words: str
) -> None:
    with pytest.raises(PrunetuneError, match=words.replace("(", r"\(").replace(")", r"\)")):
        ReconstructionObjective(base=cc_base[0], data=cc_data, **changes).base_scores()


def test_a_classifier_is_not_an_autoencoder(digits: DataSplits) -> None:
    classifier = build_model("lenet5", num_classes=10, in_channels=1, input_size=8)
    with pytest.raises(PrunetuneError, match="must be an autoencoder whose output has its input's 64 values"):
        ReconstructionObjective(base=classifier, data=digits).base_scores()


def test_anomaly_task_needs_anomalies_in_val(digits: DataSplits) -> None:
    inputs = digits.val.tensors[0]
    only_normal = copy.copy(digits)
    object.__setattr__(only_normal, "val", TensorDataset(inputs, torch.zeros(len(inputs), dtype=torch.int64)))
    model = build_model("autoencoder", in_features=64, encoder_widths=[8], code_size=4)
    with pytest.raises(PrunetuneError, match="needs normal and anomalous rows"):
        ReconstructionObjective(base=model, data=only_normal).base_scores()


def test_experiment_options_are_checked() -> None:
    assert "roc_auc" in check_reconstruction_options({"task": "anomaly"})
    assert check_reconstruction_options({"task": "code-classifier"}) == RECONSTRUCTION_DIRECTIONS["code-classifier"]
    with pytest.raises(PrunetuneError, match="Unknown option 'epochs' of the reconstruction objective"):
        check_reconstruction_options({"epochs": 3})
    experiment = experiment_from_dict(
        {"objective": {"type": "reconstruction", "options": {"task": "code-classifier"}, "objectives": {"roc_auc": "maximize"}}}
    )
    with pytest.raises(PrunetuneError, match="Unknown objective metric 'roc_auc'"):
        check_experiment(experiment)


@pytest.mark.parametrize("name", ["a2e-creditcard", "a2e-mnist"])
def test_examples_pass_validation(name: str) -> None:
    experiment = load_experiment(REPO / "examples" / f"{name}.yaml")
    assert experiment.objective.type == "reconstruction" and set(experiment.methods) == {"drop", "filters"}
    goals = Goals.from_config(experiment.objective.objectives, experiment.objective.constraints)
    goals.check_against(check_reconstruction_options(experiment.objective.options))  # the whole file: test_examples.py


# --- a search -------------------------------------------------------------------------------------


def test_local_search_on_the_creditcard_example(creditcard_slice: Path, tmp_path: Path) -> None:
    """The credit-card example on the slice: base trained for reconstruction, trials record ROC-AUC."""
    experiment = load_experiment(REPO / "examples" / "a2e-creditcard.yaml")
    experiment = experiment.replace(
        **{
            "data.spec": f"creditcard:{creditcard_slice}",
            "data.limit": None,
            "data.val_fraction": 0.1,
            "model.train.epochs": 3,
            "model.kwargs": CC_MODEL,
            "objective.objectives": {"roc_auc": "maximize", "compression": "maximize"},
            "search.sampler": "random",
            "search.sampler_options": {},
            "search.trials": 3,
            "execution.executor": "local",
            "execution.threads_per_trial": 1,
        }
    )
    run_dir = tmp_path / "run"
    study = run_experiment(experiment, run_dir, echo=lambda line: None)
    base = load_checkpoint(run_dir / "base.pt")
    assert base.model_name == "autoencoder" and 0.5 < base.metrics["val_roc_auc"] <= 1.0
    trials = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert len(trials) == 3, [t.user_attrs.get(ATTR_FAIL_REASON) for t in study.trials]
    for trial in trials:
        metrics = trial.user_attrs[ATTR_METRICS]
        assert trial.values == [metrics["roc_auc"], metrics["compression"]]
        assert 0.0 <= metrics["roc_auc"] <= 1.0 and metrics["complexity_reduction"] < 1.0
        assert REPORT_ACCURACY in trial.user_attrs[ATTR_CURVE]["0"]
        assert set(trial.user_attrs[ATTR_PLAN]) == {"drop", "filters"}
    saved = yaml.safe_load((run_dir / "experiment.yaml").read_text())
    assert saved["objective"]["type"] == "reconstruction"
