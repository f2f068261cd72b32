"""The flat-vector view of a search space that pymoo and scipy search over."""

from __future__ import annotations

import numpy as np
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from prunetune.errors import PrunetuneError
from prunetune.search.vector import VectorCodec

DISTRIBUTIONS = {
    "ratio": FloatDistribution(0.0, 0.9),
    "stepped": FloatDistribution(0.0, 0.8, step=0.1),
    "lr": FloatDistribution(1e-4, 1e-1, log=True),
    "bits": CategoricalDistribution([2, 4, 8]),
    "drop": CategoricalDistribution([False, True]),
    "count": IntDistribution(2, 10, step=2),
    "fixed": IntDistribution(3, 3),
}


def test_bounds_and_integrality_follow_the_distributions() -> None:
    codec = VectorCodec(DISTRIBUTIONS)
    assert codec.names == ("ratio", "stepped", "lr", "bits", "drop", "count")
    np.testing.assert_allclose(codec.lower, [0.0, 0.0, np.log(1e-4), 0, 0, 0])
    np.testing.assert_allclose(codec.upper, [0.9, 8.0, np.log(1e-1), 2, 1, 4])
    assert codec.integrality.tolist() == [False, True, False, True, True, True]


def test_random_vectors_decode_into_the_space_and_round_trip() -> None:
    codec = VectorCodec(DISTRIBUTIONS)
    rng = np.random.default_rng(0)
    for _ in range(200):
        x = rng.uniform(codec.lower - 0.3, codec.upper + 0.3)  # a little outside: clipped
        params = codec.to_params(x)
        assert codec.contains(params)
        assert params["fixed"] == 3
        again = codec.to_params(codec.to_vector(params))
        assert again == pytest.approx(params)


def test_wrong_length_and_missing_names_are_errors() -> None:
    codec = VectorCodec(DISTRIBUTIONS)
    with pytest.raises(PrunetuneError, match="6 coordinates"):
        codec.to_params(np.zeros(3))
    with pytest.raises(PrunetuneError, match="ratio"):
        codec.to_vector({"stepped": 0.1})
