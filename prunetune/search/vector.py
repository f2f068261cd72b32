"""One flat, bounded vector for an Optuna search space: what pymoo and scipy optimise over.

Every coordinate is a float in [lower, upper]; `integrality` marks those that must be whole
numbers (integers and categorical indices). Log-scaled parameters live in log space, so a uniform
step in the vector is a uniform step in orders of magnitude, as Optuna's own samplers treat them.
Single-valued distributions are not coordinates: they always decode to their one value.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution

from prunetune.errors import PrunetuneError

__all__ = ["VectorCodec"]


class VectorCodec:
    """Maps between Optuna parameter dicts and flat vectors for a fixed set of distributions.

    Args:
        distributions: Parameter name -> distribution; the vector follows this order.

    Example:
        >>> from optuna.distributions import FloatDistribution, CategoricalDistribution
        >>> codec = VectorCodec({"r": FloatDistribution(0, 0.9), "b": CategoricalDistribution([4, 8])})
        >>> codec.to_params(np.array([0.45, 1.2]))
        {'r': 0.45, 'b': 8}
    """

    def __init__(self, distributions: Mapping[str, BaseDistribution]) -> None:
        self.distributions = dict(distributions)
        self.fixed = {name: _only_value(d) for name, d in self.distributions.items() if d.single()}
        self.names = tuple(name for name in self.distributions if name not in self.fixed)
        bounds = [_bounds(self.distributions[name]) for name in self.names]
        self.lower = np.array([low for low, _, _ in bounds], dtype=float)
        self.upper = np.array([high for _, high, _ in bounds], dtype=float)
        self.integrality = np.array([integral for _, _, integral in bounds], dtype=bool)

    @property
    def size(self) -> int:
        return len(self.names)

    def to_params(self, x: np.ndarray) -> dict[str, Any]:
        """The parameter dict a vector stands for: clipped to bounds, rounded onto each grid."""
        x = np.asarray(x, dtype=float).reshape(-1)
        if x.shape != (self.size,):
            raise PrunetuneError(f"A vector for this search space has {self.size} coordinates. Got {x.shape[0]} instead.")
        params = {name: _decode(self.distributions[name], value) for name, value in zip(self.names, x, strict=True)}
        params.update(self.fixed)
        return {name: params[name] for name in self.distributions}

    def to_vector(self, params: Mapping[str, Any]) -> np.ndarray:
        """The vector of a parameter dict (the inverse of to_params on the grid)."""
        missing = [name for name in self.names if name not in params]
        if missing:
            raise PrunetuneError(f"Parameters missing from the vector's search space: {', '.join(missing)}")
        return np.array([_encode(self.distributions[name], params[name]) for name in self.names], dtype=float)

    def contains(self, params: Mapping[str, Any]) -> bool:
        """Whether `params` holds every coordinate of this codec with a value its distribution allows."""
        return all(name in params for name in self.names) and not self.outside(params)

    def outside(self, params: Mapping[str, Any]) -> list[str]:
        """The coordinates `params` gives a value their distribution does not allow."""
        return [name for name in self.names if name in params and not _allows(self.distributions[name], params[name])]


def _allows(distribution: BaseDistribution, value: Any) -> bool:
    try:
        return bool(distribution._contains(distribution.to_internal_repr(value)))
    except (TypeError, ValueError):  # a categorical value that is not a choice, a string for a float
        return False


def _only_value(distribution: BaseDistribution) -> Any:
    if isinstance(distribution, CategoricalDistribution):
        return distribution.choices[0]
    return distribution.low  # type: ignore[attr-defined]


def _bounds(distribution: BaseDistribution) -> tuple[float, float, bool]:
    if isinstance(distribution, CategoricalDistribution):
        return 0.0, float(len(distribution.choices) - 1), True
    if isinstance(distribution, (FloatDistribution, IntDistribution)):
        if distribution.log:
            return math.log(distribution.low), math.log(distribution.high), False
        if isinstance(distribution, IntDistribution):
            steps = (distribution.high - distribution.low) // distribution.step
            return 0.0, float(steps), True
        if distribution.step is not None:
            steps = round((distribution.high - distribution.low) / distribution.step)
            return 0.0, float(steps), True
        return float(distribution.low), float(distribution.high), False
    raise PrunetuneError(f"Unsupported distribution for a vector search: {distribution!r}")


def _decode(distribution: BaseDistribution, value: float) -> Any:
    low, high, _ = _bounds(distribution)
    value = min(max(float(value), low), high)
    if isinstance(distribution, CategoricalDistribution):
        return distribution.choices[int(round(value))]
    if distribution.log:  # type: ignore[attr-defined]
        number = math.exp(value)
        if isinstance(distribution, IntDistribution):
            return int(min(max(round(number), distribution.low), distribution.high))
        return float(min(max(number, distribution.low), distribution.high))  # type: ignore[attr-defined]
    if isinstance(distribution, IntDistribution):
        return int(distribution.low + round(value) * distribution.step)
    if distribution.step is not None:  # type: ignore[attr-defined]
        number = distribution.low + round(value) * distribution.step  # type: ignore[attr-defined]
        return float(min(number, distribution.high))  # type: ignore[attr-defined]
    return float(value)


def _encode(distribution: BaseDistribution, param: Any) -> float:
    if isinstance(distribution, CategoricalDistribution):
        return float(distribution.to_internal_repr(param))
    if distribution.log:  # type: ignore[attr-defined]
        return math.log(param)
    if isinstance(distribution, IntDistribution):
        return float((param - distribution.low) // distribution.step)
    if distribution.step is not None:  # type: ignore[attr-defined]
        return float(round((param - distribution.low) / distribution.step))  # type: ignore[attr-defined]
    return float(param)
