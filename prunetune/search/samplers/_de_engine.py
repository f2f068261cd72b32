"""scipy's differential evolution in a daemon thread, one generation open at a time.

scipy owns the DE loop; its ``workers`` map-callable publishes a generation (``updating='deferred'``)
and waits until every candidate has a score. :class:`DEEngine` is that thread and the handoff:
``take`` hands a candidate to a trial, ``deliver`` gives it its score, ``release`` puts it back.
It holds no sampler reference, so a sampler that goes away lets its thread end.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import optuna

from prunetune.search.vector import VectorCodec

__all__ = ["DEEngine", "Generation", "Stored", "same_vector", "scipy_limits", "unit_rows"]

_logger = optuna.logging.get_logger("prunetune.search.samplers._scipy_de")
_JOIN_TIMEOUT_S = 5.0
Stored = dict[tuple[int, int], list[tuple[np.ndarray, float]]]  # (generation, index) -> (vector, score)s


class _Stopped(Exception):
    """Raised inside scipy's loop to end the DE thread."""


class Generation:
    """One published population: its candidates, which are handed out, and their scores."""

    def __init__(self, number: int, run: int, vectors: np.ndarray) -> None:
        self.number = number
        self.run = run
        self.vectors = vectors
        self.holders: list[int | None] = [None] * len(vectors)  # the trial (id) each candidate went to
        self.scores: list[float | None] = [None] * len(vectors)

    @property
    def complete(self) -> bool:
        return all(score is not None for score in self.scores)

    def open_index(self) -> int | None:
        for index, (holder, score) in enumerate(zip(self.holders, self.scores, strict=True)):
            if holder is None and score is None:
                return index
        return None


class DEEngine:
    """scipy's DE in a daemon thread, one generation open at a time; it holds no sampler reference."""

    def __init__(
        self,
        *,
        bounds: list[tuple[float, float]],
        integrality: np.ndarray | None,
        seed: int,
        options: dict[str, Any],
        replay: Stored,
        name: str,
        first_init: np.ndarray | None = None,
    ) -> None:
        self._bounds = bounds
        self._first_init = first_init  # the first run's initial population, start points first
        self._integrality = integrality
        self._seed = seed
        self._options = options
        self._replay = replay
        self._cond = threading.Condition()
        self._generation: Generation | None = None
        self._busy = True  # scipy is computing; the next generation is not published yet
        self._run = 0
        self._next_number = 0
        self._error: BaseException | None = None
        self.stopping = False
        self.replayed = 0
        self._announced = False
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        with self._cond:
            self.stopping = True
            self._cond.notify_all()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(_JOIN_TIMEOUT_S)

    def take(self, timeout: float, holder: int) -> tuple[int, int, int, np.ndarray] | None:
        """Hand out the next open candidate to trial ``holder``: (generation, run, index, vector), or
        None if none is open."""
        with self._cond:
            ready = self._cond.wait_for(lambda: not self._busy, timeout)
            if self._error is not None:
                raise RuntimeError("scipy's differential evolution stopped with an error") from self._error
            generation = self._generation
            if not ready:
                _logger.warning("Differential evolution is still computing its next generation; sampling at random.")
            if not ready or generation is None or self.stopping:
                return None
            index = generation.open_index()
            if index is None:
                return None
            generation.holders[index] = holder
            return generation.number, generation.run, index, generation.vectors[index].copy()

    def release(self, generation_number: int, index: int, holder: int) -> None:
        """Put a candidate back that went to trial ``holder`` (which could not record it, or was
        interrupted); nothing changes if the candidate is no longer that trial's."""
        with self._cond:
            generation = self._generation
            if (
                generation is not None
                and generation.number == generation_number
                and 0 <= index < len(generation.holders)
                and generation.holders[index] == holder
                and generation.scores[index] is None
            ):
                generation.holders[index] = None

    def deliver(self, generation_number: int, index: int, vector: np.ndarray, score: float) -> bool:
        """Give a candidate its score; False if scipy no longer waits for it (then nothing changes)."""
        with self._cond:
            generation = self._generation
            if (
                generation is None
                or generation.number != generation_number
                or not 0 <= index < len(generation.scores)
                or generation.scores[index] is not None
                or not same_vector(generation.vectors[index], vector)
            ):
                return False
            generation.scores[index] = score
            if generation.complete:
                self._busy = True
                self._cond.notify_all()
            return True

    def open_generation(self) -> int | None:
        """The number of the generation waiting for scores, if any."""
        with self._cond:
            generation = self._generation
            return None if generation is None or generation.complete else generation.number

    def in_flight(self) -> list[np.ndarray]:
        """Candidates handed out whose scores are still missing."""
        with self._cond:
            generation = self._generation
            if generation is None:
                return []
            return [
                vector
                for vector, holder, score in zip(generation.vectors, generation.holders, generation.scores, strict=True)
                if holder is not None and score is None
            ]

    def _main(self) -> None:
        from scipy.optimize import differential_evolution

        try:
            while True:
                options = dict(self._options)
                if self._run == 0 and self._first_init is not None:
                    options["init"] = self._first_init
                differential_evolution(
                    _never_called,
                    self._bounds,
                    rng=np.random.default_rng([self._seed, self._run]),
                    workers=self._evaluate,
                    updating="deferred",
                    polish=False,
                    integrality=self._integrality,
                    **options,
                )
                with self._cond:
                    self._run += 1
        except _Stopped:
            pass
        except Exception as error:  # noqa: BLE001 -- re-raised to the next trial that asks
            with self._cond:
                self._error = error
        finally:
            with self._cond:
                self._generation = None
                self._busy = False
                self._cond.notify_all()

    def _evaluate(self, func: Callable[..., float], population: Sequence[np.ndarray]) -> list[float]:
        """scipy's map-callable: publish the generation, wait until every candidate has a score."""
        vectors = np.array(population, dtype=float)
        with self._cond:
            if self.stopping:
                raise _Stopped
            generation = Generation(self._next_number, self._run, vectors)
            self._next_number += 1
            self._answer_from_storage(generation)
            if not generation.complete:
                if self.replayed and not self._announced:
                    self._announced = True
                    _logger.info(
                        f"Differential evolution resumed: generations 0-{generation.number - 1} answered from "
                        f"storage, generation {generation.number} is open."
                    )
                self._generation = generation
                self._busy = False
                self._cond.notify_all()
                self._cond.wait_for(lambda: generation.complete or self.stopping)
                if self.stopping:
                    raise _Stopped
                self._generation = None
            else:
                self.replayed += 1
            self._busy = True
            return [float(score) for score in generation.scores]  # type: ignore[arg-type]

    def _answer_from_storage(self, generation: Generation) -> None:
        for index, vector in enumerate(generation.vectors):
            for stored, score in self._replay.pop((generation.number, index), ()):
                if same_vector(stored, vector):
                    generation.scores[index] = score
                    break


def _never_called(x: np.ndarray) -> float:
    raise RuntimeError("ScipyDESampler evaluates candidates as trials, never through scipy's func")


def same_vector(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and bool(np.allclose(a, b, rtol=1e-12, atol=1e-12))


def unit_rows(init: str, count: int, dims: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` rows in the unit cube, drawn the way ``init`` names (scipy's own initialisations)."""
    from scipy.stats import qmc

    if count == 0:
        return np.empty((0, dims))
    if init == "random":
        return rng.uniform(size=(count, dims))
    if init == "sobol":  # balanced only in powers of two: draw one, keep the first rows
        return qmc.Sobol(d=dims, rng=rng).random_base2(math.ceil(math.log2(count)))[:count]
    engine = qmc.Halton(d=dims, rng=rng) if init == "halton" else qmc.LatinHypercube(d=dims, rng=rng)
    return engine.random(count)


def scipy_limits(codec: VectorCodec) -> tuple[np.ndarray, np.ndarray]:
    """The box scipy samples in: integer coordinates reach half a step past each bound, as scipy sets it."""
    low, high = codec.lower.copy(), codec.upper.copy()
    whole = codec.integrality
    low[whole] = np.nextafter(np.ceil(low[whole]) - 0.5, np.inf)
    high[whole] = np.nextafter(np.floor(high[whole]) + 0.5, -np.inf)
    return low, high
