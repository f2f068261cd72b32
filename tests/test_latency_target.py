"""A latency_ms target: plans repaired on a latency model fitted once from timed probes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

import prunetune.pruners.latency_model as latency_model
from prunetune.app.experiment import experiment_from_dict
from prunetune.app.preflight import target_space
from prunetune.app.runner import run_experiment
from prunetune.cli import main
from prunetune.errors import PrunetuneError
from prunetune.pruners import Plan
from prunetune.pruners.latency_model import LatencyModel, fit_latency_model
from prunetune.pruners.measure import Latency
from prunetune.pruners.target import TOLERANCE, PlanRepair, Target
from prunetune.results import load_run
from prunetune.results.summary import answer_lines, summarise
from prunetune.search.ledger import ATTR_PLAN, finished_trials
from prunetune.search.space import SearchSpace
from prunetune.zoo import build_model, load_checkpoint

ARITHMETIC = f"{Path(__file__).with_name('objectives_for_tests.py')}:ArithmeticObjective"


def lenet5() -> tuple[torch.nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    return build_model("lenet5", num_classes=10, in_channels=1, input_size=28), torch.zeros(1, 1, 28, 28)


def known_latency(intercept: float, scale: float, exponent: float):
    """A stand-in for timing: latency as an exact function of the pruned model's MACs."""
    from prunetune.pruners.measure import measure

    def timed(model, example_inputs, **kwargs) -> Latency:
        ms = intercept + scale * (measure(model, example_inputs).macs / 1e6) ** exponent
        return Latency(median_ms=ms, p90_ms=ms, batch_size=1, threads=3, repeats=kwargs.get("repeats", 30))

    return timed


def test_the_fit_recovers_a_known_latency_law_from_the_probes(monkeypatch) -> None:
    monkeypatch.setattr(latency_model, "measure_latency", known_latency(0.15, 0.4, 0.55))
    model, example = lenet5()
    space = SearchSpace.for_model(model, example, {"filters": {}})
    repair = PlanRepair(model, example, Target.from_config({"latency_ms": 0.3}), space.highs())
    fitted = repair.latency
    assert (fitted.intercept_ms, fitted.scale_ms, fitted.exponent) == pytest.approx((0.15, 0.4, 0.55), rel=1e-6)
    assert fitted.max_error < 1e-9 and fitted.threads == 3 and fitted.device == "cpu"
    # The probes run from the base model to every unit at its bound, with random mixes between.
    macs = [point[0] for point in fitted.points]
    assert len(macs) == 10 and macs[0] == repair.base.macs and macs[:5] == sorted(macs[:5], reverse=True)
    assert LatencyModel.from_dict(json.loads(json.dumps(fitted.to_dict()))) == fitted


def test_the_fit_never_predicts_a_pruned_plan_slower_than_its_base(monkeypatch) -> None:
    """Noisy timings can slope the wrong way; the coefficients stay non-negative, so the repair's
    bisection sees a latency that only falls as the ratios grow."""
    timings = iter([1.0, 1.3, 0.9, 1.4, 0.8, 1.2, 1.1, 0.7, 1.5, 0.6] * 3)

    def noisy(model, example_inputs, **kwargs) -> Latency:
        ms = next(timings)
        return Latency(median_ms=ms, p90_ms=ms, batch_size=1, threads=1, repeats=30)

    monkeypatch.setattr(latency_model, "measure_latency", noisy)
    model, example = lenet5()
    space = SearchSpace.for_model(model, example, {"filters": {}})
    repair = PlanRepair(model, example, Target.from_config({"latency_ms": 5.0}), space.highs())
    fitted = repair.latency
    assert min(fitted.intercept_ms, fitted.scale_ms) >= 0.0 and 0.0 < fitted.exponent <= 1.0
    values = [repair.value(repair.along(Plan({}), s)) for s in (1.0, 1.25, 1.5, 1.75, 2.0)]
    assert values == sorted(values, reverse=True)


def test_every_repaired_plan_is_predicted_within_the_budget_and_no_less_pruned_plan_on_its_path_is() -> None:
    model, example = lenet5()
    space = SearchSpace.for_model(model, example, {"filters": {}})
    law = LatencyModel(intercept_ms=0.1, scale_ms=0.5, exponent=1.0, device="cpu", threads=1, points=((1, 1.0),))
    repair = PlanRepair(model, example, Target.from_config({"latency_ms": 0.2}), space.highs(), latency=law)
    assert repair.value(repair.along(Plan({}), 0.0)) == pytest.approx(0.1 + 0.5 * repair.base.macs / 1e6)
    for seed in range(10):
        generator = torch.Generator().manual_seed(seed)
        params = {name: float(torch.rand(1, generator=generator)) * d.high for name, d in space.distributions.items()}
        plan = space.unrepaired_plan(params)
        repaired, s = repair.repair(plan)
        assert repair.value(repaired) <= 0.2
        assert not repair.target.met(repair.value(repair.along(plan, s - TOLERANCE))), seed


def test_unstructured_pruning_cannot_meet_a_latency_target_and_the_message_shows_the_model() -> None:
    """Masked weights still cost their dense MACs: a weights-only space cannot lower latency."""
    model, example = lenet5()
    space = SearchSpace.for_model(model, example, {"weights": {"mode": "ratio"}})
    law = LatencyModel(intercept_ms=0.1, scale_ms=0.5, exponent=1.0, device="cpu", threads=1, points=((1, 1.0),))
    repair = PlanRepair(model, example, Target.from_config({"latency_ms": 0.2}), space.highs(), latency=law)
    with pytest.raises(PrunetuneError, match=r"cannot be met.*reaches latency_ms 0\.308.*latency_ms = 0\.1 \+ 0\.5 \* MMACs\^1\.00"):
        repair.check_reachable()


def test_a_latency_target_turns_latency_measurement_on_and_is_refused_on_a_cluster(tmp_path: Path, capsys) -> None:
    experiment = experiment_from_dict({"objective": {"target": {"latency_ms": 0.5}}})
    assert experiment.objective.measure_latency is True
    assert experiment.objective.objectives == {"accuracy": "maximize"}
    on_cluster = experiment.replace(**{"execution.address": "10.0.0.7:6379"})
    model, example = lenet5()
    space = SearchSpace.for_model(model, example, {"filters": {}})
    with pytest.raises(PrunetuneError, match="timed on this machine, but 'execution.address' runs the trials"):
        target_space(space, model, example, on_cluster)
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump({"methods": {"weights": {}}, "objective": {"target": {"latency_ms": 0.001}}}))
    assert main(["run", str(path), "--run-dir", str(tmp_path / "run"), "--check"]) == 2
    assert "cannot be met in this search space" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_a_latency_target_search_trains_plans_on_the_budget_and_its_resume_reuses_the_fitted_model(
    tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setattr(latency_model, "measure_latency", known_latency(0.02, 0.5, 1.0))
    data = {
        "model": {"train": {"epochs": 1}},
        "objective": {"type": ARITHMETIC, "bn_recalibration_batches": 0, "target": {"latency_ms": 0.05},
                      "objectives": {"accuracy": "maximize"}},
        "search": {"sampler": "tpe", "trials": 4, "early_stopping": {"enabled": False}},
        "execution": {"executor": "local"},
    }
    run_dir = tmp_path / "run"
    run_experiment(experiment_from_dict(data), run_dir, echo=lambda line: None)
    saved = json.loads((run_dir / "latency_model.json").read_text())
    assert (saved["intercept_ms"], saved["scale_ms"], saved["exponent"]) == pytest.approx((0.02, 0.5, 1.0))

    def no_timing(*args, **kwargs):
        raise AssertionError("a resume must repair on the run's own latency model, not time a new one")

    monkeypatch.setattr(latency_model, "measure_latency", no_timing)
    study = run_experiment(experiment_from_dict({**data, "search": {**data["search"], "trials": 6}}), run_dir, echo=lambda line: None)
    trials = finished_trials(study)
    assert len(trials) == 6
    base = load_checkpoint(run_dir / "base.pt").build()
    example = torch.zeros(1, 1, 8, 8)
    space = SearchSpace.for_model(base, example, {"filters": {}})
    repair = PlanRepair(base, example, Target.from_config({"latency_ms": 0.05}), space.highs(), latency=LatencyModel.from_dict(saved))
    assert repair.value(repair.along(Plan({}), 0.0)) > 0.05  # the base misses the budget: every plan was pruned onto it
    for trial in trials:
        assert 0.045 < repair.value(Plan.from_dict(trial.user_attrs[ATTR_PLAN])) <= 0.05, trial.number
    lines = answer_lines(summarise(load_run(run_dir)))
    assert any(line.startswith("target: latency_ms <= 0.05; every plan was repaired onto it") and "0.02 + 0.5 * MMACs^1.00" in line
               for line in lines), lines


@pytest.mark.gpu
def test_a_latency_target_on_the_gpu_is_fitted_and_timed_there(tmp_path: Path) -> None:
    """With trials on the GPU, the latency model is timed there, and each trial times its network there."""
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device here: this test needs one (run it on a GPU machine)")
    from prunetune.app.preflight import check_experiment

    data = {
        "model": {"train": {"epochs": 2}},
        "objective": {"target": {"latency_ms": 1000.0}, "finetune": {"epochs": 1, "max_steps": 8}},
        "search": {"sampler": "tpe", "trials": 3, "early_stopping": {"enabled": False}},
        "execution": {"executor": "local", "device": "cuda"},
    }
    checked = check_experiment(experiment_from_dict(data))
    repair = checked.space.repair
    assert repair.latency.device.startswith("cuda")
    # A budget halfway between no pruning and every unit at its bound, on the model just fitted.
    budget = (repair.value(repair.along(Plan({}), 0.0)) + repair.value(repair.along(Plan({}), 2.0))) / 2 + 1e-6
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "latency_model.json").write_text(json.dumps(repair.latency.to_dict()))
    data["objective"]["target"] = {"latency_ms": budget}
    run_experiment(experiment_from_dict(data), run_dir, echo=lambda line: None)
    run = load_run(run_dir)
    done = run.trials[run.trials["state"] == "COMPLETE"]
    assert len(done) == 3 and set(done["device"]) == {"cuda:0"}, run.trials[["state", "fail_reason"]]
    assert (done["latency_ms"] > 0).all()
    print(f"GPU latency model: {repair.latency.describe()}; budget {budget:.4f} ms; "
          f"timed {', '.join(f'{ms:.4f}' for ms in done['latency_ms'])} ms")
