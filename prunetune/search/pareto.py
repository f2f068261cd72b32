"""Non-dominated sets: which points no other point beats in every objective."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["nondominated_mask"]


def nondominated_mask(values: Sequence[Sequence[float]], directions: Sequence[str]) -> np.ndarray:
    """True for each point that no other point dominates (at least as good everywhere, better somewhere).

    Duplicated points are all kept, as Optuna's `best_trials` keeps them.
    """
    points = np.asarray(values, dtype=float).reshape(len(values), len(directions))
    if not len(points):
        return np.zeros(0, dtype=bool)
    signs = np.array([-1.0 if direction == "maximize" else 1.0 for direction in directions])
    costs = points * signs  # everything minimised
    no_worse = (costs[:, None, :] <= costs[None, :, :]).all(axis=2)
    better = (costs[:, None, :] < costs[None, :, :]).any(axis=2)
    dominates = no_worse & better  # [i, j]: i dominates j
    return ~dominates.any(axis=0)
