"""Seeded, stratified index selection shared by every dataset.

Stratifying keeps every class in every split in its own proportion; for the credit-card data
(0.17 % frauds) that is the difference between a validation split with frauds and one without.
Indices come back sorted so that the records keep their order in the source file.
"""

from __future__ import annotations

import numpy as np

__all__ = ["stratified_split", "stratified_subset"]


def _per_class(labels: np.ndarray) -> list[np.ndarray]:
    """The indices of each class, classes in ascending order."""
    order = np.argsort(labels, kind="stable")
    _, starts = np.unique(labels[order], return_index=True)
    return np.split(order, starts[1:])


def _allocate(sizes: np.ndarray, total: int, rng: np.random.Generator) -> np.ndarray:
    """Share ``total`` among classes in proportion to ``sizes`` (largest remainder, random ties)."""
    ideal = sizes * (total / sizes.sum())
    take = np.floor(ideal).astype(np.int64)
    short = int(total - take.sum())
    fraction = ideal - take
    order = np.lexsort((rng.random(len(sizes)), -fraction))
    take[order[:short]] += 1
    return take


def _pick(
    groups: list[np.ndarray], take: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """``take[i]`` random indices of class ``i`` on one side, the rest on the other."""
    chosen: list[np.ndarray] = []
    rest: list[np.ndarray] = []
    for indices, count in zip(groups, take):
        shuffled = rng.permutation(indices)
        chosen.append(shuffled[:count])
        rest.append(shuffled[count:])
    return np.sort(np.concatenate(chosen)), np.sort(np.concatenate(rest))


def stratified_subset(labels: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` indices drawn per class in proportion to the class sizes."""
    groups = _per_class(labels)
    sizes = np.array([len(group) for group in groups])
    chosen, _ = _pick(groups, _allocate(sizes, count, rng), rng)
    return chosen


def stratified_split(
    labels: np.ndarray, fraction: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Split indices into ``(kept, carved)`` with about ``fraction`` of each class carved.

    Every class with at least two records ends up on both sides; a class with a single record
    stays on the kept side. At least one record is carved and one kept.
    """
    groups = _per_class(labels)
    sizes = np.array([len(group) for group in groups])
    total = int(min(max(round(len(labels) * fraction), 1), len(labels) - 1))
    take = _allocate(sizes, total, rng)
    both = sizes >= 2
    take[both] = np.clip(take[both], 1, sizes[both] - 1)
    take[~both] = 0
    carved, kept = _pick(groups, take, rng)
    return kept, carved
