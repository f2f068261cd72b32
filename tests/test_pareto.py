"""Pareto helpers: the non-dominated filter against brute force, and the hypervolume by hand."""

from __future__ import annotations

import numpy as np
import pytest

from prunetune.errors import PrunetuneError
from prunetune.search.pareto import error_and_inverse_compression, hypervolume, nondominated_mask


def _brute_force(points: np.ndarray, directions: list[str]) -> np.ndarray:
    signs = np.array([-1.0 if d == "maximize" else 1.0 for d in directions])
    costs = points * signs
    keep = []
    for i, a in enumerate(costs):
        beaten = any(
            all(b[k] <= a[k] for k in range(len(a))) and any(b[k] < a[k] for k in range(len(a)))
            for j, b in enumerate(costs)
            if j != i
        )
        keep.append(not beaten)
    return np.array(keep, dtype=bool)


@pytest.mark.parametrize("directions", [["maximize", "maximize"], ["minimize", "maximize"], ["minimize"] * 3])
def test_nondominated_mask_equals_brute_force(directions: list[str]) -> None:
    rng = np.random.default_rng(7)
    for _ in range(20):
        # Rounded so that ties and duplicates (kept, as Optuna keeps them) happen too.
        points = np.round(rng.random((int(rng.integers(1, 40)), len(directions))), 1)
        np.testing.assert_array_equal(nondominated_mask(points, directions), _brute_force(points, directions))


def test_nondominated_mask_of_nothing_is_empty() -> None:
    assert nondominated_mask([], ["maximize", "maximize"]).shape == (0,)


def test_hypervolume_matches_hand_computed_staircase() -> None:
    # Minimised, reference (1, 1): (0.2, 0.6) covers 0.8 x 0.4; (0.5, 0.3) adds 0.5 x 0.3 below it;
    # (0.7, 0.1) adds 0.3 x 0.2 below that; (0.6, 0.7) is dominated and adds nothing.
    points = [[0.2, 0.6], [0.5, 0.3], [0.7, 0.1], [0.6, 0.7]]
    expected = 0.8 * 0.4 + 0.5 * 0.3 + 0.3 * 0.2
    assert hypervolume(points, ["minimize", "minimize"], [1.0, 1.0]) == pytest.approx(expected)


def test_hypervolume_of_accuracy_and_compression_normalised() -> None:
    # accuracy 0.9 at 2x -> (0.1, 0.5); accuracy 0.8 at 10x -> (0.2, 0.1); the base (1x) adds nothing.
    raw = [(0.9, 2.0), (0.8, 10.0), (0.98, 1.0)]
    points = [error_and_inverse_compression(a, c) for a, c in raw]
    expected = 0.9 * 0.5 + 0.8 * 0.4  # (1 - 0.1) x (1 - 0.5) + (1 - 0.2) x (0.5 - 0.1)
    assert hypervolume(points, ["minimize", "minimize"], [1.0, 1.0]) == pytest.approx(expected)


def test_hypervolume_maximised_objectives_are_negated_with_the_reference() -> None:
    points = [[0.8, 0.4], [0.5, 0.7]]  # maximised; reference at the origin
    expected = 0.8 * 0.4 + 0.5 * (0.7 - 0.4)
    assert hypervolume(points, ["maximize", "maximize"], [0.0, 0.0]) == pytest.approx(expected)
    mirrored = [[1 - a, 1 - b] for a, b in points]
    assert hypervolume(mirrored, ["minimize", "minimize"], [1.0, 1.0]) == pytest.approx(expected)


def test_hypervolume_ignores_points_beyond_the_reference_and_empty_fronts() -> None:
    assert hypervolume([], ["minimize", "minimize"], [1.0, 1.0]) == 0.0
    assert hypervolume([[1.5, 0.1], [0.2, 1.0], [float("nan"), 0.1]], ["minimize", "minimize"], [1.0, 1.0]) == 0.0
    assert hypervolume([[0.5, 0.5], [2.0, 0.0]], ["minimize", "minimize"], [1.0, 1.0]) == pytest.approx(0.25)


def test_hypervolume_names_a_bad_direction() -> None:
    with pytest.raises(PrunetuneError, match="'maximize' or 'minimize'"):
        hypervolume([[0.1, 0.2]], ["max", "minimize"], [1.0, 1.0])
