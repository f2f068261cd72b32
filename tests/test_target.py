"""Target mode: plans repaired onto a budget before training, as closely as whole channels allow."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch
import yaml

from prunetune.app.experiment import experiment_from_dict
from prunetune.app.runner import run_experiment
from prunetune.cli import main
from prunetune.errors import PrunetuneError
from prunetune.pruners import Plan
from prunetune.pruners.target import TOLERANCE, PlanRepair, Target
from prunetune.search.ledger import ATTR_PLAN, finished_trials
from prunetune.search.space import SearchSpace
from prunetune.zoo import build_model, load_checkpoint

ARITHMETIC = f"{Path(__file__).with_name('objectives_for_tests.py')}:ArithmeticObjective"


def lenet5() -> tuple[torch.nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    return build_model("lenet5", num_classes=10, in_channels=1, input_size=28), torch.zeros(1, 1, 28, 28)


def random_plans(space: SearchSpace, count: int, seed: int) -> list[Plan]:
    rng = random.Random(seed)
    plans = []
    for _ in range(count):
        params = {name: rng.uniform(d.low, d.high) * rng.choice([0.2, 1.0]) for name, d in space.distributions.items()}
        if rng.random() < 0.2:
            params[rng.choice(list(params))] = 0.0  # a unit the plan leaves whole
        plans.append(space.unrepaired_plan(params))
    return plans


@pytest.mark.parametrize(
    ("methods", "target"),
    [
        ({"filters": {}}, {"macs_reduction": 2.0}),
        ({"filters": {}}, {"compression": 3.0}),
        ({"filters": {"round_to": 4}}, {"params": 20000}),
        ({"filters": {}}, {"size_bytes": 100000}),
        ({"weights": {"mode": "ratio"}}, {"compression": 8.0}),
        ({"weights": {"mode": "ratio"}, "filters": {}}, {"compression": 5.0}),
        ({"weights": {"max_sensitivity": 1.5}}, {"compression": 4.0}),
    ],
)
def test_every_repaired_plan_meets_its_target_and_no_less_pruned_plan_on_its_path_does(methods, target) -> None:
    model, example = lenet5()
    space = SearchSpace.for_model(model, example, methods)
    repair = PlanRepair(model, example, Target.from_config(target), space.highs())
    for plan in random_plans(space, 15, seed=len(str(target))):
        repaired, s = repair.repair(plan)
        assert repair.target.met(repair.value(repaired)), (plan.sections, s)
        assert s == 0.0 or not repair.target.met(repair.value(repair.along(plan, s - TOLERANCE)))
        if s <= 1.0:  # the plan's proportions are kept: every ratio scaled by s
            for name in space.methods:
                key = "ratios" if "ratios" in plan.sections[name] else "sensitivities"
                for unit, value in plan.sections[name][key].items():
                    assert repaired.sections[name][key][unit] == pytest.approx(value * s)
        repaired.validate(model, example)


def test_the_repair_on_resnet20_lands_within_two_percent_of_two_times_fewer_macs() -> None:
    torch.manual_seed(0)
    model, example = build_model("resnet20", num_classes=10), torch.zeros(1, 3, 32, 32)
    space = SearchSpace.for_model(model, example, {"filters": {}})
    repair = PlanRepair(model, example, Target.from_config({"macs_reduction": 2.0}), space.highs())
    for plan in random_plans(space, 6, seed=1):
        repaired, _ = repair.repair(plan)
        assert 2.0 <= repair.value(repaired) <= 2.04  # 16 to 64 channels a unit: fine-grained


def test_other_sections_stay_as_the_plan_has_them_and_count_towards_the_budget() -> None:
    model, example = lenet5()
    space = SearchSpace.for_model(model, example, {"drop": {}, "filters": {}})
    repair = PlanRepair(model, example, Target.from_config({"macs_reduction": 1.5}), space.highs())
    drop = next(dim for dim in space.dimensions["drop"])
    params = {name: 0.1 for name in space.distributions if name.startswith("filters.")}
    params.update({dim.name: dim.name == drop.name for dim in space.dimensions["drop"]})
    plan = space.unrepaired_plan(params)
    repaired, s = repair.repair(plan)
    assert repaired.sections["drop"] == plan.sections["drop"]
    assert repair.target.met(repair.value(repaired))


def test_targets_are_checked_and_an_unreachable_one_says_what_the_space_can_reach() -> None:
    for config, words in (
        ({"macs_reduction": 2, "params": 9}, "must name one of macs_reduction"),
        ({"flops": 2.0}, "Got 'flops' instead"),
        ({"macs_reduction": 0.5}, "value must be a number above 1"),
        ({"params": -3}, "value must be a number above 0"),
        ({"latency_ms": 0}, "value must be a number above 0"),
        ([2.0], "must name one of"),
    ):
        with pytest.raises(PrunetuneError, match=words):
            Target.from_config(config)
    model, example = lenet5()
    space = SearchSpace.for_model(model, example, {"filters": {"max_ratio": 0.5}})
    repair = PlanRepair(model, example, Target.from_config({"macs_reduction": 50.0}), space.highs())
    with pytest.raises(PrunetuneError, match=r"cannot be met in this search space.*reaches macs_reduction 3\.\d+"):
        repair.check_reachable()


def test_target_mode_makes_accuracy_the_one_objective() -> None:
    experiment = experiment_from_dict({"objective": {"target": {"macs_reduction": 2.0}}})
    assert experiment.objective.objectives == {"accuracy": "maximize"}
    kept = experiment_from_dict({"objective": {"target": {"params": 5000}, "objectives": {"test_accuracy": "maximize"}}})
    assert kept.objective.objectives == {"test_accuracy": "maximize"}
    with pytest.raises(PrunetuneError, match="makes the search optimise one metric"):
        experiment_from_dict({"objective": {"target": {"params": 5000}, "objectives": {"accuracy": "maximize", "params": "minimize"}}})


def test_a_target_the_model_cannot_reach_stops_the_run_before_anything_is_written(tmp_path: Path, capsys) -> None:
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump({"methods": {"filters": {"max_ratio": 0.3}}, "objective": {"target": {"macs_reduction": 20}}}))
    assert main(["run", str(path), "--run-dir", str(tmp_path / "run")]) == 2
    assert "cannot be met in this search space" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
    assert main(["run", str(path), "--run-dir", str(tmp_path / "run"), "--check"]) == 2
    path.write_text(yaml.safe_dump({"objective": {"target": {"macs_reduction": 2}}}))
    assert main(["run", str(path), "--run-dir", str(tmp_path / "run"), "--check"]) == 0
    assert "target: macs_reduction >= 2; every plan's ratios are scaled onto it" in capsys.readouterr().out


@pytest.mark.parametrize("sampler", ["tpe", "cmaes", "scipy-de", "gp", "nsga2"])
def test_every_sampler_searches_plans_that_all_meet_the_target(tmp_path: Path, sampler: str) -> None:
    data = {
        "model": {"train": {"epochs": 1}},
        "objective": {"type": ARITHMETIC, "bn_recalibration_batches": 0, "target": {"macs_reduction": 2.0},
                      "objectives": {"accuracy": "maximize"}},
        "search": {"sampler": sampler, "trials": 6, "early_stopping": {"enabled": False}},
        "execution": {"executor": "local"},
    }
    if sampler in ("scipy-de", "nsga2"):
        data["search"]["sampler_options"] = {"popsize": 1} if sampler == "scipy-de" else {"population_size": 3}
    run_dir = tmp_path / "run"
    study = run_experiment(experiment_from_dict(data), run_dir, echo=lambda line: None)
    trials = finished_trials(study)
    assert len(trials) == 6 and len(study.directions) == 1
    base = load_checkpoint(run_dir / "base.pt").build()
    example = torch.zeros(1, 1, 8, 8)
    space = SearchSpace.for_model(base, example, {"filters": {}})
    repair = PlanRepair(base, example, Target.from_config({"macs_reduction": 2.0}), space.highs())
    for trial in trials:
        plan = Plan.from_dict(trial.user_attrs[ATTR_PLAN])
        assert 2.0 <= repair.value(plan) < 2.6, trial.number  # on the budget, not far past it
    # The ledger keeps the sampler's parameters and the plan as repaired (what was trained).
    assert any(Plan.from_dict(t.user_attrs[ATTR_PLAN]).sections != space.unrepaired_plan(t.params).sections for t in trials)


def test_a_weights_method_in_sensitivity_mode_takes_a_target(tmp_path: Path, capsys) -> None:
    """The repair's path fills a section the plan leaves out with the method's own key
    ('sensitivities', not 'ratios') and options (a filters method's round_to)."""
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump({"methods": {"weights": {}}, "objective": {"target": {"compression": 4.0}}}))
    assert main(["run", str(path), "--run-dir", str(tmp_path / "run"), "--check"]) == 0, capsys.readouterr().err
    model, example = lenet5()
    space = SearchSpace.for_model(model, example, {"filters": {"round_to": 4}})
    template = space.unrepaired_plan(space.params_for({}))
    repair = PlanRepair(model, example, Target.from_config({"macs_reduction": 2.0}), space.highs(), template=template)
    assert repair.along(Plan({}), 1.5).sections["filters"]["round_to"] == 4
