"""Devices: names checked and resolved (Ray-assigned GPUs, explicit, auto), mixed precision on the
CPU, the device each trial ran on in the ledger and the report, and asking for a missing
accelerator stopping before any work. The GPU test runs only where CUDA is."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from prunetune.app.experiment import experiment_from_dict
from prunetune.app.runner import run_experiment
from prunetune.cli import main
from prunetune.errors import PrunetuneError
from prunetune.objectives import TrainConfig, evaluate, train
from prunetune.objectives.devices import check_device, resolve_device
from prunetune.results import load_run
from prunetune.results.summary import answer_lines, summarise


@pytest.fixture
def machine(monkeypatch: pytest.MonkeyPatch):
    """Pretend the machine has ``cuda`` CUDA devices and, or not, Apple's MPS."""

    def set_up(cuda: int = 0, mps: bool = False) -> None:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda > 0)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: cuda)
        monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)

    return set_up


def test_auto_takes_the_gpu_ray_assigned_and_the_cpu_otherwise(machine) -> None:
    machine(cuda=2)
    assert resolve_device("auto", gpu_ids=[1]) == torch.device("cuda:0")  # Ray makes the assigned GPU cuda:0
    assert resolve_device("auto", gpu_ids=[]) == torch.device("cpu")  # gpus_per_trial 0: none for this trial
    assert resolve_device("auto") == torch.device("cuda:0")  # no Ray: the first GPU
    assert resolve_device("cuda", gpu_ids=[1]) == torch.device("cuda:0")
    assert resolve_device("cuda:1") == torch.device("cuda:1")
    machine(cuda=0, mps=True)
    assert resolve_device("auto") == torch.device("mps")
    machine(cuda=0, mps=False)
    assert resolve_device("auto") == torch.device("cpu") and resolve_device("AUTO", gpu_ids=[0]) == torch.device("cpu")
    assert resolve_device("cpu", gpu_ids=[0]) == torch.device("cpu")


def test_a_missing_or_unknown_device_is_one_message(machine) -> None:
    machine(cuda=1)
    with pytest.raises(PrunetuneError, match=r"asks for cuda:1, but this machine has 1 CUDA device\(s\): cuda:0..cuda:0"):
        check_device("cuda:1")
    machine(cuda=0)
    with pytest.raises(PrunetuneError, match=r"The 'execution.device' key asks for cuda, but this machine has no CUDA device"):
        check_device("cuda")
    with pytest.raises(PrunetuneError, match=r"asks for mps, but Apple's MPS is not available"):
        check_device("mps")
    with pytest.raises(PrunetuneError, match=r"must be one of auto, cpu, cuda, cuda:N, mps. Got 'gpu' instead"):
        check_device("gpu")
    assert check_device("cuda:3", here=False) == "cuda:3"  # a cluster's workers are checked where they run


def test_bf16_training_on_the_cpu_learns(digits_lenet5_fresh) -> None:
    model, data = digits_lenet5_fresh
    config = TrainConfig(epochs=6, lr=0.05, precision="bf16", seed=0)
    loaders = data.loaders(64, seed=0)
    history = train(model, loaders.train, config=config, val_loader=loaders.val)
    assert history[-1].train_loss < history[0].train_loss
    assert evaluate(model, loaders.val, precision="bf16").accuracy > 0.8  # chance is 0.1
    with pytest.raises(PrunetuneError, match=r"The 'precision' parameter of TrainConfig must be one of fp32, bf16, fp16"):
        TrainConfig(precision="fp8").validate()


@pytest.fixture
def digits_lenet5_fresh():
    from prunetune.zoo import load_data
    from prunetune.zoo.models import build_model_for

    data = load_data("digits", seed=0)
    torch.manual_seed(0)
    return build_model_for("lenet5", data), data


def test_a_search_on_the_cpu_in_bf16_records_its_device(tmp_path: Path) -> None:
    experiment = experiment_from_dict({
        "model": {"train": {"epochs": 3}},
        "objective": {"finetune": {"epochs": 1, "max_steps": 6, "precision": "bf16"}, "measure_latency": True},
        "search": {"sampler": "random", "trials": 3, "early_stopping": {"enabled": False}},
        "execution": {"executor": "local", "device": "cpu"},
    })
    run_experiment(experiment, tmp_path / "run", echo=lambda line: None)
    run = load_run(tmp_path / "run")
    done = run.trials[run.trials["state"] == "COMPLETE"]
    assert len(done) == 3 and set(done["device"]) == {"cpu"}
    assert (done["latency_ms"] > 0).all()
    assert "measured on: cpu (3)" in "\n".join(answer_lines(summarise(run)))


@pytest.mark.parametrize(
    ("execution", "words"),
    [
        ({"device": "cuda"}, "The 'execution.device' key asks for cuda, but this machine has no CUDA device"),
        ({"device": "tpu"}, "The 'execution.device' key must be one of auto, cpu, cuda, cuda:N, mps. Got 'tpu'"),
        ({"gpus_per_trial": 1}, "The 'execution.gpus_per_trial' key asks for 1 GPU per trial, but this machine has no CUDA device"),
    ],
)
def test_asking_for_a_missing_accelerator_stops_before_any_work(
    execution: dict, words: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], machine
) -> None:
    machine(cuda=0)
    path = tmp_path / "e.yaml"
    path.write_text(yaml.safe_dump({"execution": execution}))
    status = main(["run", str(path), "--run-dir", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert status == 2 and words in err and err.count("\n") == 1
    assert not (tmp_path / "run").exists()


@pytest.mark.gpu
def test_four_trials_two_sharing_one_gpu_run_on_it(tmp_path: Path) -> None:
    """On Ray, gpus_per_trial 0.5: two trials at a time share the GPU; each pruned, fine-tuned and
    evaluated model lived there (the ledger's device is where the trial's copy was placed)."""
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device here: this test needs one (run it on a GPU machine)")
    import logging

    import ray
    from ray_helpers import end_ray_processes, ray_environment, remove_temp_dir, short_temp_dir

    temp = short_temp_dir()
    try:
        with ray_environment(temp):
            ray.init(num_cpus=2, num_gpus=1, include_dashboard=False, log_to_driver=False,
                     logging_level=logging.WARNING, _temp_dir=str(temp))
        experiment = experiment_from_dict({
            "model": {"train": {"epochs": 3}},
            "objective": {"finetune": {"epochs": 1, "max_steps": 10}, "measure_latency": True},
            "search": {"sampler": "random", "trials": 4, "early_stopping": {"enabled": False}},
            "execution": {"executor": "ray", "workers": 2, "cpus_per_trial": 1, "gpus_per_trial": 0.5, "device": "auto"},
        })
        run_experiment(experiment, tmp_path / "run", echo=lambda line: None)
    finally:
        ray.shutdown()
        end_ray_processes(temp)
        remove_temp_dir(temp)
    run = load_run(tmp_path / "run")
    done = run.trials[run.trials["state"] == "COMPLETE"]
    assert len(done) == 4, run.trials[["state", "fail_reason"]]
    assert set(done["device"]) == {"cuda:0"}
    assert (done["latency_ms"] > 0).all()
