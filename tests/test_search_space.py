"""Search spaces: stable names, two encodings of one space, plans that always apply."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import optuna
import pytest
import torch
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from prunetune.errors import PrunetuneError
from prunetune.pruners import Dimension, Plan, PruningMethod, apply_plan, discover_units
from prunetune.search.space import SearchSpace
from prunetune.zoo.models import build_model

EXAMPLE = torch.zeros(1, 1, 8, 8)


@pytest.fixture(scope="module")
def lenet() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model("lenet5", num_classes=10, in_channels=1, input_size=8)


def test_one_ratio_per_unit_named_by_module_path(lenet: torch.nn.Module) -> None:
    space = SearchSpace.for_model(lenet, EXAMPLE, {"filters": {"criterion": "fpgm"}})
    units = discover_units(lenet, EXAMPLE)
    assert list(space.distributions) == [f"filters.{unit.name}" for unit in units]
    for unit in units:
        distribution = space.distributions[f"filters.{unit.name}"]
        assert isinstance(distribution, FloatDistribution)
        assert distribution.low == 0.0 and distribution.high <= (unit.channels - 1) / unit.channels
    again = SearchSpace.for_model(build_model("lenet5", num_classes=10, in_channels=1, input_size=8), EXAMPLE, ["filters"])
    assert list(again.distributions) == list(space.distributions)  # stable across runs


def test_define_by_run_and_vector_give_the_same_plan(lenet: torch.nn.Module) -> None:
    space = SearchSpace.for_model(lenet, EXAMPLE, {"filters": {}, "weights": {"mode": "ratio"}})
    rng = np.random.default_rng(0)
    for _ in range(10):
        x = rng.uniform(space.codec.lower, space.codec.upper)
        params = space.codec.to_params(x)
        from_trial = space.suggest(optuna.trial.FixedTrial(params))
        assert from_trial == space.decode(x) == space.plan(params)
        assert set(from_trial.sections) == {"filters", "weights"}
        assert from_trial.sections["filters"]["ratios"] == {name.split(".", 1)[1]: params[name] for name in params if name.startswith("filters.")}
        assert Plan.from_json(from_trial.to_json()) == from_trial


def test_every_point_of_the_space_is_a_plan_that_applies(lenet: torch.nn.Module) -> None:
    space = SearchSpace.for_model(lenet, EXAMPLE, {"filters": {}})
    for x in (space.codec.lower, space.codec.upper, (space.codec.lower + space.codec.upper) / 2):
        pruned = apply_plan(lenet, space.decode(x), example_inputs=EXAMPLE)
        assert pruned(torch.zeros(2, 1, 8, 8)).shape == (2, 10)


def test_shared_ratio_is_one_parameter_capped_per_unit(lenet: torch.nn.Module) -> None:
    space = SearchSpace.for_model(lenet, EXAMPLE, {"filters": {"shared": True, "max_ratio": 0.9}})
    assert list(space.distributions) == ["filters.shared"]
    plan = space.plan({"filters.shared": 0.9})
    ratios = plan.sections["filters"]["ratios"]
    assert len(ratios) == len(discover_units(lenet, EXAMPLE))
    assert ratios["features.0"] == pytest.approx(5 / 6)  # 6 channels: capped to keep one
    assert ratios["classifier.0"] == pytest.approx(0.9)


class _Toy(PruningMethod):
    """A method with every kind of dimension, as later methods (orders, drop sets, bits) declare them."""

    name: ClassVar[str] = "filters"

    def dimensions(self, model: Any, example_inputs: Any) -> list[Dimension]:
        return [
            Dimension(name="filters.a", unit="a", kind="bool"),
            Dimension(name="filters.b", unit="b", kind="categorical", choices=(2, 4, 8)),
            Dimension(name="filters.c", unit="c", kind="int", low=1, high=5),
            Dimension(name="filters.d", unit="d", kind="float", low=0.0, high=1.0),
        ]

    def section(self, values: Any) -> dict[str, Any]:
        return {"values": dict(values)}

    def validate(self, section: Any, model: Any, example_inputs: Any) -> None:
        pass

    def apply(self, model: Any, section: Any, **kwargs: Any) -> Any:
        return model


def test_bool_categorical_and_int_dimensions_map_to_optuna_distributions() -> None:
    toy = _Toy()
    space = SearchSpace(methods=[toy], dimensions={"filters": toy.dimensions(None, None)})
    d = space.distributions
    assert d["filters.a"] == CategoricalDistribution((False, True))
    assert d["filters.b"] == CategoricalDistribution((2, 4, 8))
    assert d["filters.c"] == IntDistribution(1, 5)
    assert space.codec.integrality.tolist() == [True, True, True, False]
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    plan = space.suggest(study.ask())
    values = plan.sections["filters"]["values"]
    assert isinstance(values["filters.a"], bool) and values["filters.b"] in (2, 4, 8) and 1 <= values["filters.c"] <= 5


def test_unknown_method_and_empty_space_are_errors(lenet: torch.nn.Module) -> None:
    with pytest.raises(PrunetuneError, match="Unknown pruning method 'depth'"):
        SearchSpace.for_model(lenet, EXAMPLE, {"depth": {}})
    with pytest.raises(PrunetuneError, match="at least one"):
        SearchSpace.for_model(lenet, EXAMPLE, {})
    with pytest.raises(PrunetuneError, match="Unknown option 'ratio_max' for pruning method 'filters'. Known options: .*max_ratio"):
        SearchSpace.for_model(lenet, EXAMPLE, {"filters": {"ratio_max": 0.5}})
