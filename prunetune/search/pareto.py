"""Non-dominated sets and their hypervolume: which points no other point beats, and how much they cover."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from prunetune.errors import PrunetuneError

__all__ = ["error_and_inverse_compression", "hypervolume", "nondominated_mask"]

DIRECTIONS = ("maximize", "minimize")


def _costs(values: Sequence[Sequence[float]], directions: Sequence[str], what: str) -> np.ndarray:
    """Points as an (n, d) array with every objective minimised (maximised ones negated)."""
    bad = [direction for direction in directions if direction not in DIRECTIONS]
    if bad:
        raise PrunetuneError(f"The 'directions' must each be 'maximize' or 'minimize'. Got {bad[0]!r} instead.")
    try:
        points = np.asarray(values, dtype=float).reshape(len(values), len(directions))
    except ValueError:
        raise PrunetuneError(
            f"The '{what}' must be points of {len(directions)} values (one per direction). Got {values!r} instead."
        ) from None
    signs = np.array([-1.0 if direction == "maximize" else 1.0 for direction in directions])
    return points * signs


def nondominated_mask(values: Sequence[Sequence[float]], directions: Sequence[str]) -> np.ndarray:
    """True for each point that no other point dominates (at least as good everywhere, better somewhere).

    Duplicated points are all kept, as Optuna's `best_trials` keeps them.
    """
    costs = _costs(values, directions, "values")  # everything minimised
    if not len(costs):
        return np.zeros(0, dtype=bool)
    no_worse = (costs[:, None, :] <= costs[None, :, :]).all(axis=2)
    better = (costs[:, None, :] < costs[None, :, :]).any(axis=2)
    dominates = no_worse & better  # [i, j]: i dominates j
    return ~dominates.any(axis=0)


def hypervolume(
    points: Sequence[Sequence[float]], directions: Sequence[str], reference: Sequence[float]
) -> float:
    """The hypervolume (pymoo's ``HV``) that ``points`` dominate, bounded by the ``reference`` point.

    Hypervolume only compares fronts in one objective space with one reference point, so give it
    normalised objectives: for accuracy and compression, :func:`error_and_inverse_compression`
    maps each point to (1 - accuracy, 1 / compression), both minimised and both in [0, 1], and the
    reference point (1, 1) then bounds the whole space (an unpruned, useless model). ``reference``
    is in the same units and directions as ``points``; maximised objectives are negated (points
    and reference alike) before pymoo sees them. Points that do not strictly beat the reference
    in every objective add nothing; non-finite points are left out; no points give 0.0.

    Example:
        >>> hypervolume([[0.5, 0.5], [0.2, 0.8]], ["minimize", "minimize"], [1.0, 1.0])  # doctest: +ELLIPSIS
        0.31...
    """
    from pymoo.indicators.hv import HV

    costs = _costs(points, directions, "points")
    ref = _costs([reference], directions, "reference")[0]
    if not np.isfinite(ref).all():
        raise PrunetuneError(f"The 'reference' point must be finite. Got {list(reference)!r} instead.")
    costs = costs[np.isfinite(costs).all(axis=1)]
    costs = costs[(costs < ref).all(axis=1)]
    if not len(costs):
        return 0.0
    return float(HV(ref_point=ref)(costs))


def error_and_inverse_compression(accuracy: float, compression: float) -> tuple[float, float]:
    """(1 - accuracy, 1 / compression): accuracy and compression normalised for :func:`hypervolume`.

    Both are minimised and lie in [0, 1] for an accuracy in [0, 1] and a compression >= 1, so the
    reference point (1, 1) bounds them; the base model (compression 1) adds no volume.
    """
    return 1.0 - float(accuracy), 1.0 / float(compression)
