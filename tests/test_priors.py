"""Start points: search.start_from, SearchSpace.params_for, and enqueued trials in a real run."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from optuna.trial import TrialState
from torch import nn

from prunetune.cli import main
from prunetune.errors import PrunetuneError
from prunetune.objectives.sensitivity import sensitivity_analysis
from prunetune.pruners import Plan
from prunetune.search import SearchSpace
from prunetune.app.experiment import experiment_from_dict
from prunetune.search.ledger import ATTR_PLAN, generation_of
from prunetune.app.priors import check_start_from, start_plans
from prunetune.app.runner import run_experiment
from prunetune.zoo import save_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def model(digits_lenet5) -> nn.Module:
    return digits_lenet5


@pytest.fixture(scope="module")
def example(digits_example) -> torch.Tensor:
    return digits_example

ARITHMETIC = f"{Path(__file__).with_name('objectives_for_tests.py')}:ArithmeticObjective"
UNITS = ["features.0", "features.3", "classifier.0", "classifier.2"]


def test_names_parse_and_unknown_ones_are_refused() -> None:
    plan = {"filters": {"ratios": {"features.0": 0.5}}}
    assert check_start_from(["uniform:0.3", "sensitivity-order", "dlp-drop", "dlp-drop:3", plan]) == [
        ("uniform", 0.3), ("sensitivity-order", None), ("dlp-drop", 1), ("dlp-drop", 3), ("plan", plan),
    ]
    for bad, words in [
        ("uniform", "Unknown start point 'uniform'"),
        ("uniform:1.2", "needs a ratio R in"),
        ("uniform:x", "needs a ratio R in"),
        ("dlp-drop:0", "whole number N >= 1"),
        ("greedy", "Unknown start point 'greedy'"),
        (3, "must be a plan"),
        ({"filters": 0.5}, "must map method names to sections"),
    ]:
        with pytest.raises(PrunetuneError, match=words):
            check_start_from([bad])


def test_a_named_start_point_needs_its_method() -> None:
    with pytest.raises(PrunetuneError, match="needs the 'order' method"):
        check_start_from(["sensitivity-order"], {"filters": {}})
    assert check_start_from(["uniform:0.2"], {"order": {}}) == [("uniform", 0.2)]


def test_the_experiment_file_checks_start_from(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert experiment_from_dict({"search": {"start_from": ["uniform:0.3"]}}).search.start_from == ["uniform:0.3"]
    assert experiment_from_dict({}).search.start_from == []
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump({"search": {"start_from": ["best-guess"]}}))
    assert main(["run", str(path), "--run-dir", str(tmp_path / "run")]) == 2
    assert "Unknown start point 'best-guess'" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_params_for_inverts_plan(model, example) -> None:
    space = SearchSpace.for_model(model, example, {"filters": {"max_ratio": 0.8}, "weights": {"mode": "ratio"}})
    params = {name: 0.05 * (index + 1) for index, name in enumerate(space.distributions)}
    plan = space.plan(params)
    assert space.params_for(plan) == pytest.approx(params)
    assert space.plan(space.params_for(plan)) == plan


def test_params_for_fills_what_the_plan_leaves_open_and_refuses_what_the_space_cannot_hold(model, example) -> None:
    space = SearchSpace.for_model(model, example, {"filters": {"max_ratio": 0.8}, "weights": {"mode": "ratio"}})
    params = space.params_for({"filters": {"ratios": {"features.3": 0.4}}})
    assert params["filters.features.3"] == 0.4
    assert all(value == 0.0 for name, value in params.items() if name != "filters.features.3")
    with pytest.raises(PrunetuneError, match="outside the search space"):
        space.params_for({"filters": {"ratios": {"features.3": 0.85}}})
    with pytest.raises(PrunetuneError, match="not a parameter of this search space"):
        space.params_for({"filters": {"ratios": {"classifier.4": 0.5}}})
    with pytest.raises(PrunetuneError, match="has a 'order' section"):
        space.params_for({"order": {"sequence": [], "ratios": {}}})
    with pytest.raises(PrunetuneError, match="must give 'ratios'"):
        space.params_for({"weights": {"sensitivities": {"features.0": 1.0}}})


def test_params_for_a_shared_method_takes_the_largest_value(model, example) -> None:
    space = SearchSpace.for_model(model, example, {"filters": {"shared": True, "step": 0.05}})
    plan = space.plan({"filters.shared": 0.35})
    assert space.params_for(plan) == {"filters.shared": pytest.approx(0.35)}
    assert space.plan(space.params_for(plan)) == plan
    assert space.params_for({"filters": {"ratios": {"features.0": 0.12}}}) == {"filters.shared": pytest.approx(0.1)}


def test_uniform_start_plans(model, digits) -> None:
    methods = {"order": {"search_ratios": True, "max_ratio": 0.8}, "filters": {"max_ratio": 0.25}}
    [plan] = start_plans(["uniform:0.3"], model, digits, methods)
    assert plan.sections["filters"]["ratios"] == dict.fromkeys(UNITS, 0.25)
    assert plan.sections["order"]["sequence"] == UNITS
    assert plan.sections["order"]["ratios"] == dict.fromkeys(UNITS, 0.3)
    with pytest.raises(PrunetuneError, match="needs the 'filters' or 'order' method"):
        start_plans(["uniform:0.3"], model, digits, {"weights": {}})


def test_a_start_plan_must_fit_the_model(model, digits) -> None:
    with pytest.raises(PrunetuneError, match="Unknown unit 'conv9'"):
        start_plans([{"filters": {"ratios": {"conv9": 0.5}}}], model, digits, {"filters": {}})


def test_sensitivity_order_start_plan_is_the_sensitivity_order(model, digits) -> None:
    [plan] = start_plans(["sensitivity-order"], model, digits, {"order": {"ratio": 0.6, "budget": 2.0}})
    section = plan.sections["order"]
    expected = sensitivity_analysis(model, digits, ratios=(0.6,)).order(0.6)
    assert section["sequence"] == expected and section["budget"] == 2.0


def test_dlp_drop_start_plan_drops_the_least_discriminative_unit(model, digits, example) -> None:
    import itertools

    from prunetune.pruners.discriminative import dlp_drop_set, dlp_ranking
    from prunetune.app.priors import DLP_BATCHES

    [plan] = start_plans(["dlp-drop:1"], model, digits, {"drop": {}}, seed=3)
    batches = list(itertools.islice(digits.loaders(64, seed=3).train, DLP_BATCHES))
    expected = dlp_drop_set(model, example, dlp_ranking(model, batches), drop=1)
    assert plan.sections == {"drop": {"units": expected}} and len(expected) == 1


@pytest.fixture(scope="module")
def checkpoint(model, digits, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("base") / "lenet5.pt"
    return save_checkpoint(
        path, model, data_spec="digits", data_options={"val_fraction": 0.1, "seed": 0, "limit": None},
        input_shape=tuple(digits.input_shape), num_classes=digits.num_classes, metrics={},
    )


def fast_experiment(checkpoint: Path, **changes: object):
    data = {
        "model": {"checkpoint": str(checkpoint)},
        "objective": {"type": ARITHMETIC, "bn_recalibration_batches": 0},
        "search": {"sampler": "tpe", "trials": 4, "early_stopping": {"enabled": False}},
        "execution": {"executor": "local"},
    }
    return experiment_from_dict(data).replace(**changes)


@pytest.mark.parametrize(
    ("sampler", "options"),
    [("tpe", {}), ("nsga2", {"population_size": 4}), ("pymoo-nsga2", {"population_size": 4}), ("scipy-de", {"popsize": 1})],
)
def test_a_fresh_run_evaluates_its_start_points_first(checkpoint: Path, tmp_path: Path, sampler: str, options: dict) -> None:
    hand = {"filters": {"criterion": "l1", "round_to": 1, "ratios": {"features.0": 0.5, "features.3": 0.0, "classifier.0": 0.0, "classifier.2": 0.0}}}
    experiment = fast_experiment(checkpoint, **{
        "search.start_from": ["uniform:0.3", hand], "search.sampler": sampler, "search.sampler_options": options, "search.trials": 6,
    })
    study = run_experiment(experiment, tmp_path / "run", echo=lambda line: None)
    trials = study.trials
    assert len(trials) == 6 and all(t.state == TrialState.COMPLETE for t in trials)
    assert trials[0].params == {f"filters.{unit}": 0.3 for unit in UNITS}
    assert Plan.from_dict(trials[0].user_attrs[ATTR_PLAN]).sections["filters"]["ratios"] == dict.fromkeys(UNITS, 0.3)
    assert trials[1].user_attrs[ATTR_PLAN] == hand
    # The sampler goes on with its own proposals after them.
    assert all(t.params != trials[0].params for t in trials[2:])
    if sampler != "tpe":  # a population sampler holds them in its first generation, to breed from
        assert [generation_of(study, t) for t in trials[:2]] == [0, 0]


def test_a_resumed_run_does_not_enqueue_again(checkpoint: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_experiment(fast_experiment(checkpoint, **{"search.start_from": ["uniform:0.3"], "search.trials": 2}), run_dir, echo=lambda line: None)
    lines: list[str] = []
    study = run_experiment(fast_experiment(checkpoint, **{"search.start_from": ["uniform:0.3"], "search.trials": 4}), run_dir, echo=lines.append)
    uniform = [t for t in study.trials if t.params == {f"filters.{unit}": 0.3 for unit in UNITS}]
    assert [t.number for t in uniform] == [0] and len(study.trials) == 4
    assert not any(line.startswith("start point") for line in lines)


@pytest.mark.parametrize(("sampler", "options"), [("pymoo-nsga2", {"population_size": 4}), ("scipy-de", {"popsize": 1})])
def test_a_resumed_population_run_keeps_its_start_points_in_generation_zero(
    checkpoint: Path, tmp_path: Path, sampler: str, options: dict
) -> None:
    run_dir = tmp_path / "run"
    changes = {"search.start_from": ["uniform:0.3"], "search.sampler": sampler, "search.sampler_options": options}
    run_experiment(fast_experiment(checkpoint, **changes, **{"search.trials": 2}), run_dir, echo=lambda line: None)
    study = run_experiment(fast_experiment(checkpoint, **changes, **{"search.trials": 7}), run_dir, echo=lambda line: None)
    trials = study.trials
    uniform = {f"filters.{unit}": 0.3 for unit in UNITS}
    assert len(trials) == 7 and [t.number for t in trials if t.params == uniform] == [0]
    size = 4 if sampler == "pymoo-nsga2" else 5  # scipy: max(5, popsize x 4 coordinates)
    assert [generation_of(study, t) for t in trials] == [0] * size + [1] * (7 - size)
