"""scipy's differential evolution behind Optuna's sampler interface.

scipy owns the DE loop, so it runs in a daemon thread. Its ``workers`` map-callable publishes one
generation (``updating='deferred'``: every candidate of a generation is known before any result)
and waits on a condition until every candidate has a result. ``sample_relative`` hands out the
next open candidate of the published generation; ``after_trial`` delivers the trial's score to its
slot, and the last score of a generation lets scipy compute the next one.

What each trial records (system attributes, prefixed with the class name): ``generation`` and
``index`` within it, ``run`` (the DE restart it belongs to), ``vector`` (the candidate as scipy
saw it) and, once scipy has taken it, ``result`` (the score it was told). A new sampler on the
same storage re-runs DE from the same seed and answers every generation it finds there from these
records, so it continues where the old one stopped. A trial closed as interrupted
(``prunetune.search.ledger.mark_interrupted``: its driver died while it ran) measured nothing: its
candidate is still open and goes to the next trial that asks.

Start points (``start_points``, or :meth:`ScipyDESampler.set_start_points` before the first trial)
are the first rows of the first DE run's initial population, so trials 0, 1, ... evaluate them as
candidates of generation 0 and scipy breeds from their scores. The study keeps them
(``start_points``), so a resumed run rebuilds the same population.
"""

from __future__ import annotations

import copy
import math
import threading
import weakref
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution, distribution_to_json
from optuna.samplers import RandomSampler
from optuna.study import Study, StudyDirection
from optuna.trial import FrozenTrial, TrialState

from prunetune.errors import PrunetuneError
from prunetune.search.ledger import is_interrupted
from prunetune.search.samplers._de_engine import DEEngine, Stored, scipy_limits, unit_rows
from prunetune.search.samplers._de_options import bad, check_de_options
from prunetune.search.samplers._fallback import IndependentFallback
from prunetune.search.storage import CONSTRAINTS_KEY, StudyAttrs, trial_id
from prunetune.search.scalarize import DEFAULT_PENALTY, ConstrainedObjective
from prunetune.search.vector import VectorCodec

__all__ = ["ScipyDESampler"]

_logger = optuna.logging.get_logger(__name__)

_FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
_READY_TIMEOUT_S = 60.0  # scipy computing the next generation (or replaying stored ones), never a trial
_REDRAWS = 16
_FILL_STREAM = 1  # random stream (after seed and run 0) of the rows that fill up a population with start points
_DEFAULT_SCALARIZATION = ConstrainedObjective()

Scalarize = Callable[[FrozenTrial, Sequence[StudyDirection], Sequence[str] | None], float]


class ScipyDESampler(IndependentFallback):
    """Differential evolution (``scipy.optimize.differential_evolution``) as an Optuna sampler.

    Every generation of scipy's population becomes ``population_size`` trials (``popsize`` times
    the number of searched coordinates, at least 5, as scipy counts it); scipy sees each trial's
    score once the whole generation is in (``updating='deferred'``, no polishing).

    Scores. A single-objective study uses the value (negated for maximize); a multi-objective
    study goes through ``scalarization``, by default
    :class:`~prunetune.search.scalarize.ConstrainedObjective`: maximise the objective named
    "compression" subject to the trial's Optuna constraints, as in Wu et al.'s DE pruning (Sensors
    2021). Infeasible trials score in ``[1e9, 2e9)``; failed and pruned trials score ``2e9``
    (the scalarisation's ``failure_value``), worse than anything that finished.

    Search space. ``search_space`` if given, else the distributions of the study's first finished
    trial, which is itself sampled at random (as :class:`~optuna.samplers.QMCSampler` does).
    Parameters outside it are sampled by a :class:`~optuna.samplers.RandomSampler`.

    Parallel trials. A trial that asks while every candidate of the open generation is out and
    some results are missing gets an independent random sample of the same space (redrawn to avoid
    the candidates in flight). It carries no ``generation`` attribute, scipy never sees it, and it
    is still an ordinary trial of the study. ``sample_relative`` never waits for a trial's result.
    Before falling back, it scores finished trials of the open generation that never reached
    ``after_trial`` (failed as stale by Optuna's heartbeat, or told elsewhere), so they cannot
    hold a generation open for good. A trial asked and never told does hold it open; closed as
    interrupted, it gives its candidate back.

    Stopping. When scipy's DE converges (``tol``) or reaches ``maxiter`` generations, a new DE run
    starts from a fresh population drawn with the next seed of the sequence ``(seed, run)``;
    generation numbers keep counting.

    Start points. ``start_points`` (parameter dicts covering the space, e.g. known good plans) are
    the first rows of the first run's initial population; the rest is drawn as ``init`` says (or
    taken from the ``init`` array), from the seed. Trials 0, 1, ... therefore evaluate the start
    points as generation 0, index 0, 1, ..., and DE breeds from their scores. More start points than
    the population size make the population that large. Their trials get the start points'
    values exactly (not a decoded vector). The study stores them, so a new sampler on the same
    storage needs none; a study whose DE run began without start points keeps
    going without them. A trial whose parameters are all fixed (``study.enqueue_trial``) takes no
    candidate: it is an ordinary trial of the study, outside the generations.

    Resume. A new sampler on the same storage re-runs DE with the same seed (with ``seed=None``
    the seed drawn by the first sampler is kept in the study's system attributes) and answers each
    generation from the trials stored for it, checking each stored vector against scipy's. In a
    generation the old driver left half done, the finished trials are reused and the candidates of
    the others (still RUNNING, interrupted, or never asked) are handed out again to new trials, with
    the same generation, index and vector. An interrupted trial (FAILED with the user attribute
    ``interrupted``, as ``prunetune.search.ledger.mark_interrupted`` closes the trials a dead driver
    left running) is never scored: unlike an ordinary failure it does not count as ``2e9``, so the
    resumed run proposes what an uninterrupted one would have. One driver process per study: two
    live samplers on one study would hand out the same candidates.

    Args:
        search_space: The relative search space; ``None`` infers it from the first finished trial.
        seed: Seed of the DE runs and of the random sampler.
        popsize: scipy's ``popsize``: individuals per searched coordinate.
        mutation: scipy's mutation constant, or ``(min, max)`` for dithering; in ``[0, 2)``.
        recombination: scipy's crossover probability, in ``[0, 1]``.
        strategy: One of scipy's strategy names, or scipy's strategy callable.
        init: ``"latinhypercube"``, ``"sobol"``, ``"halton"``, ``"random"``, or an array of
            vectors (``(S, N)``, in :class:`~prunetune.search.vector.VectorCodec` coordinates).
        maxiter: Generations of one DE run before it restarts.
        tol: scipy's relative convergence tolerance; a converged run restarts.
        scalarization: ``(trial, directions, metric_names) -> float`` to minimise; see
            :mod:`prunetune.search.scalarize`. Custom callables should keep finite scores below
            ``1e9``; failures then score ``2e9``.
        constraints_func: Optuna's ``constraints_func``: trial -> values, feasible when all <= 0.
            Its values are stored with the trial as Optuna's other samplers store them.
        start_points: Parameter dicts the first generation evaluates first (see Start points).

    Example:
        >>> import optuna
        >>> from prunetune.search.samplers import ScipyDESampler
        >>> def sphere(trial):
        ...     return sum(trial.suggest_float(name, -5.0, 5.0) ** 2 for name in ("x", "y"))
        >>> sampler = ScipyDESampler(seed=0, popsize=5)
        >>> study = optuna.create_study(sampler=sampler)
        >>> study.optimize(sphere, n_trials=1 + 8 * 10)  # a random first trial, then 8 generations
        >>> sampler.population_size
        10
        >>> study.best_value < 0.5
        True
        >>> sampler.close()
    """

    def __init__(
        self,
        *,
        search_space: Mapping[str, BaseDistribution] | None = None,
        seed: int | None = None,
        popsize: int = 15,
        mutation: float | tuple[float, float] = (0.5, 1.0),
        recombination: float = 0.7,
        strategy: str | Callable[..., np.ndarray] = "best1bin",
        init: str | np.ndarray = "latinhypercube",
        maxiter: int = 1000,
        tol: float = 0.01,
        scalarization: Scalarize | None = None,
        constraints_func: Callable[[FrozenTrial], Sequence[float]] | None = None,
        start_points: Sequence[Mapping[str, Any]] | None = None,
    ) -> None:
        self._search_space = search_space
        self._seed = seed
        self._popsize = popsize
        self._mutation = mutation
        self._recombination = recombination
        self._strategy = strategy
        self._init = init
        self._maxiter = maxiter
        self._tol = tol
        self._scalarization = scalarization
        self._constraints_func = constraints_func
        self._start_points = [dict(point) for point in start_points] if start_points is not None else None
        self._random_sampler: RandomSampler | None = None
        self._lock = threading.RLock()
        self._reset_runtime()

    # -- Optuna's sampler interface -------------------------------------------------------------

    def infer_relative_search_space(self, study: Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        check_de_options(self)
        if self._search_space is not None:
            return dict(self._search_space)
        finished = study.get_trials(deepcopy=False, states=_FINISHED)
        if not finished:
            return {}
        return dict(min(finished, key=lambda t: t.number).distributions)

    def sample_relative(
        self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        if not search_space:
            return {}
        check_de_options(self)
        space = dict(sorted(search_space.items()))
        codec = VectorCodec(space)
        if codec.size == 0:
            return codec.to_params(np.empty(0))
        if _all_fixed(trial, codec):
            return {}  # it evaluates its own point: a candidate given to it would be scored wrongly
        engine = self._engine_for(study, space, codec)
        member = engine.take(_READY_TIMEOUT_S, trial_id(trial))
        if member is None and self._collect_missed(study, engine):
            member = engine.take(_READY_TIMEOUT_S, trial_id(trial))
        if member is None:
            return self._sample_outside(study, trial, space, codec, engine)
        generation, run, index, vector = member
        try:
            _set_trial_attrs(
                study,
                trial,
                {
                    self._key("generation"): generation,
                    self._key("index"): index,
                    self._key("run"): run,
                    self._key("vector"): vector.tolist(),
                },
            )
        except Exception:
            engine.release(generation, index, trial_id(trial))
            raise
        params = codec.to_params(vector)
        with self._lock:
            starts = self._starts
        if generation == 0 and starts is not None and index < len(starts):
            params.update((name, starts[index][name]) for name in codec.names)  # exact, not decoded
        return params

    def after_trial(self, study: Study, trial: FrozenTrial, state: TrialState, values: Sequence[float] | None) -> None:
        super().after_trial(study, trial, state, values)  # constraints first: the score reads them
        with self._lock:
            self._outside_in_flight.pop(trial_id(trial), None)
            engine = self._engine
        member = _member(trial.system_attrs, self._key)
        if engine is None or member is None:
            return
        generation, index, vector = member
        if is_interrupted(trial):  # it measured nothing: its candidate goes to the next trial
            engine.release(generation, index, trial_id(trial))
            return
        finished = _finished_copy(study, trial, state, values, reload_attrs=self._constraints_func is not None)
        score = self._score(study, finished)
        if engine.deliver(generation, index, vector, score):
            _set_trial_attrs(study, trial, {self._key("result"): score})

    # -- public extras --------------------------------------------------------------------------

    @property
    def population_size(self) -> int | None:
        """Trials per generation, once the search space is known (``None`` before, or without DE)."""
        check_de_options(self)
        with self._lock:
            codec = self._codec
        if codec is None and self._search_space is not None:
            codec = VectorCodec(dict(self._search_space))
        if codec is None or codec.size == 0:
            return None
        with self._lock:
            starts = len(self._starts) if self._starts is not None else len(self._start_points or ())
        return max(self._base_size(codec), starts)

    def set_start_points(self, points: Sequence[Mapping[str, Any]]) -> None:
        """Make ``points`` the first rows of the initial population (before the study's first trial).

        For a caller that knows its start points only once the sampler exists, as the runner does.
        """
        with self._lock:
            if self._engine is not None:
                raise PrunetuneError("ScipyDESampler takes start points only before its first trial.")
            self._start_points = [dict(point) for point in points]

    def close(self) -> None:
        """Stop the DE thread. A later trial starts a new one that replays the study's storage."""
        with self._lock:
            finalizer = self._finalizer
            self._reset_runtime()
        if finalizer is not None:
            finalizer()

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        for name in ("_lock", "_engine", "_engine_key", "_codec", "_finalizer", "_outside_in_flight", "_starts"):
            state.pop(name, None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.RLock()
        self._reset_runtime()

    # -- the DE run -----------------------------------------------------------------------------

    def _reset_runtime(self) -> None:
        self._engine: DEEngine | None = None
        self._engine_key: tuple[Any, ...] | None = None
        self._codec: VectorCodec | None = None
        self._finalizer: weakref.finalize | None = None
        self._outside_in_flight: dict[int, tuple[float, ...]] = {}
        self._starts: list[dict[str, Any]] | None = None  # the start points of the running engine

    def _check_arguments(self) -> None:
        check_de_options(self)

    def _key(self, name: str) -> str:
        return f"{type(self).__name__}:{name}"

    def _engine_for(self, study: Study, space: dict[str, BaseDistribution], codec: VectorCodec) -> DEEngine:
        """The running DE for this study and space; a new one (replaying storage) if there is none."""
        key = (*_study_key(study), tuple((name, distribution_to_json(d)) for name, d in space.items()))
        with self._lock:
            if self._engine is not None and self._engine_key == key and not self._engine.stopping:
                return self._engine
            if self._finalizer is not None:
                self._finalizer()
            init = self._checked_init(codec)
            seed = self._run_seed(study)
            points = self._load_start_points(study, codec)
            starts = None if points is None else np.array([codec.to_vector(point) for point in points])
            engine = DEEngine(
                bounds=list(zip(codec.lower.tolist(), codec.upper.tolist(), strict=True)),
                integrality=codec.integrality if codec.integrality.any() else None,
                seed=seed,
                options={
                    "strategy": self._strategy,
                    "maxiter": self._maxiter,
                    "popsize": self._popsize,
                    "tol": self._tol,
                    "mutation": self._mutation,
                    "recombination": self._recombination,
                    "init": init,
                },
                replay=self._stored_members(study, codec),
                name=f"{type(self).__name__}-{id(self):x}",
                first_init=None if starts is None else self._first_population(codec, init, starts, seed),
            )
            engine.start()
            self._engine, self._engine_key, self._codec, self._starts = engine, key, codec, points
            self._finalizer = weakref.finalize(self, engine.stop)
            return engine

    def _run_seed(self, study: Study) -> int:
        """The given seed, else the one kept in the study (drawn and stored by the first sampler)."""
        if self._seed is not None:
            return int(self._seed)
        key = self._key("seed")
        stored = _study_attrs(study).get(key)
        if stored is not None:
            return int(stored)
        seed = int(np.random.SeedSequence().generate_state(1)[0])
        _set_study_attr(study, key, seed)
        return seed

    def _base_size(self, codec: VectorCodec) -> int:
        """The population scipy makes from ``popsize`` and ``init`` alone (before start points)."""
        if not isinstance(self._init, str):
            return int(np.shape(self._init)[0])
        size = max(5, self._popsize * codec.size)
        return int(2 ** math.ceil(math.log2(size))) if self._init == "sobol" else size

    def _load_start_points(self, study: Study, codec: VectorCodec) -> list[dict[str, Any]] | None:
        """The start points: the study's (a resume), else this sampler's, then stored for a resume.

        A study whose DE run already began without start points goes on without them: another first
        generation would not match the stored one.
        """
        key = self._key("start_points")
        stored = _study_attrs(study).get(key)
        if stored is not None:
            if any(_start_problem(codec, point) for point in stored):
                _logger.warning("The study's start points do not fit this search space; DE goes on without them.")
                return None
            return [dict(point) for point in stored]
        if not self._start_points:
            return None
        if any(_member(trial.system_attrs, self._key) for trial in study.get_trials(deepcopy=False)):
            _logger.warning("The study's DE run began without start points; they are not used.")
            return None
        for number, point in enumerate(self._start_points):
            problem = _start_problem(codec, point)
            if problem:
                raise PrunetuneError(f"Start point {number} of ScipyDESampler {problem}.")
        points = [{name: point[name] for name in codec.distributions if name in point} for point in self._start_points]
        _set_study_attr(study, key, points)
        return points

    def _first_population(
        self, codec: VectorCodec, init: str | np.ndarray, starts: np.ndarray, seed: int
    ) -> np.ndarray:
        """The first run's initial population: the start points, then rows drawn as ``init`` says
        (scaled to scipy's bounds) or the rest of the ``init`` array."""
        if not isinstance(init, str):
            return np.vstack([starts, init[len(starts):]])
        count = max(self._base_size(codec) - len(starts), 0)
        rng = np.random.default_rng([seed, 0, _FILL_STREAM])
        low, high = scipy_limits(codec)
        return np.vstack([starts, low + unit_rows(init, count, codec.size, rng) * (high - low)])

    def _stored_members(self, study: Study, codec: VectorCodec) -> Stored:
        """What storage says about each (generation, index): candidate vectors and their scores.

        A trial whose score scipy took (``result``) comes first; a trial that finished without one
        (its sampler died first) is scored now; RUNNING and interrupted trials count as never asked.
        """
        found: dict[tuple[int, int], list[tuple[int, int, np.ndarray, float]]] = {}
        result_key = self._key("result")
        for trial in study.get_trials(deepcopy=False):
            member = _member(trial.system_attrs, self._key)
            if member is None or member[2].shape != (codec.size,) or is_interrupted(trial):
                continue
            generation, index, vector = member
            if result_key in trial.system_attrs:
                rank, score = 0, float(trial.system_attrs[result_key])
            elif trial.state.is_finished():
                rank, score = 1, self._score(study, trial)
            else:
                continue
            found.setdefault((generation, index), []).append((rank, trial.number, vector, score))
        return {
            slot: [(vector, score) for _, _, vector, score in sorted(entries, key=lambda e: (e[0], e[1]))]
            for slot, entries in found.items()
        }

    def _score(self, study: Study, trial: FrozenTrial) -> float:
        """The number DE minimises for a finished trial."""
        scalarization = self._scalarization if self._scalarization is not None else _DEFAULT_SCALARIZATION
        failure = float(getattr(scalarization, "failure_value", 2.0 * DEFAULT_PENALTY))
        if trial.state != TrialState.COMPLETE or trial.values is None:
            return failure
        if self._constraints_func is not None and CONSTRAINTS_KEY not in trial.system_attrs:
            trial = copy.copy(trial)
            trial.system_attrs = {**trial.system_attrs, CONSTRAINTS_KEY: tuple(self._constraints_func(trial))}
        score = float(scalarization(trial, study.directions, study.metric_names))
        return score if math.isfinite(score) else failure

    def _collect_missed(self, study: Study, engine: DEEngine) -> bool:
        """Score finished trials of the open generation that never passed through after_trial.

        Optuna's heartbeat fails stale trials without calling the sampler, and another process
        may tell a trial this sampler handed out; without this, their slots would hold the
        generation open for good. Runs only when a trial finds nothing left to hand out.
        Interrupted trials are left out: they measured nothing, and their candidates are (or were)
        handed out again.
        """
        number = engine.open_generation()
        if number is None:
            return False
        result_key = self._key("result")
        delivered = False
        for trial in study.get_trials(deepcopy=False, states=(*_FINISHED, TrialState.FAIL)):
            member = _member(trial.system_attrs, self._key)
            if member is None or member[0] != number or result_key in trial.system_attrs or is_interrupted(trial):
                continue
            # A finished trial cannot take a new attribute; a resume scores it the same way again.
            delivered |= engine.deliver(*member, self._score(study, trial))
        return delivered

    def _sample_outside(
        self,
        study: Study,
        trial: FrozenTrial,
        space: dict[str, BaseDistribution],
        codec: VectorCodec,
        engine: DEEngine,
    ) -> dict[str, Any]:
        """A random point for a trial that asks while the open generation has nothing left to hand out."""
        with self._lock:
            taken = set(self._outside_in_flight.values())
        taken.update(_canonical(codec, codec.to_params(vector)) for vector in engine.in_flight())
        for _ in range(_REDRAWS):
            params = {name: self.sample_independent(study, trial, name, d) for name, d in space.items()}
            key = _canonical(codec, params)
            if key not in taken:
                break
        with self._lock:
            self._outside_in_flight[trial_id(trial)] = key
        return params

    # -- validation, where work starts ----------------------------------------------------------

    def _checked_init(self, codec: VectorCodec) -> str | np.ndarray:
        if isinstance(self._init, str):
            return self._init
        init = np.asarray(self._init, dtype=float)
        if init.ndim != 2 or init.shape[1] != codec.size or init.shape[0] < 5:
            bad(
                type(self).__name__,
                "init",
                f"an array of shape (S >= 5, {codec.size}) for this search space",
                init,
                shown=f"an array of shape {init.shape}",
            )
        return init


# -- the study's storage, through prunetune.search.storage ---------------------------------------


def _study_key(study: Study) -> tuple[int, int]:
    return StudyAttrs(study).key_of_study


def _study_attrs(study: Study) -> dict[str, Any]:
    return StudyAttrs(study).study_attrs()


def _set_study_attr(study: Study, key: str, value: Any) -> None:
    StudyAttrs(study).set_study_attr(key, value)


def _set_trial_attrs(study: Study, trial: FrozenTrial, attrs: Mapping[str, Any]) -> None:
    StudyAttrs(study).set_trial_attrs(trial, attrs)


def _finished_copy(
    study: Study, trial: FrozenTrial, state: TrialState, values: Sequence[float] | None, *, reload_attrs: bool
) -> FrozenTrial:
    """The trial as it is about to be stored: its state, values and (reloaded) constraints."""
    finished = copy.copy(trial)
    finished.state = state
    finished.values = None if values is None else list(values)
    if reload_attrs:
        finished.system_attrs = StudyAttrs(study).trial_attrs(trial)
    return finished


# -- small helpers -------------------------------------------------------------------------------


def _member(system_attrs: Mapping[str, Any], key: Callable[[str], str]) -> tuple[int, int, np.ndarray] | None:
    generation = system_attrs.get(key("generation"))
    index = system_attrs.get(key("index"))
    vector = system_attrs.get(key("vector"))
    if generation is None or index is None or vector is None:
        return None
    return int(generation), int(index), np.asarray(vector, dtype=float)


def _all_fixed(trial: FrozenTrial, codec: VectorCodec) -> bool:
    """Whether the trial was enqueued with a value for every coordinate (Optuna's ``fixed_params``)."""
    fixed = trial.system_attrs.get("fixed_params") or {}
    return all(name in fixed for name in codec.names)


def _start_problem(codec: VectorCodec, point: Mapping[str, Any]) -> str | None:
    """What keeps ``point`` from being a start point of the codec's space (None: nothing)."""
    missing = [name for name in codec.names if name not in point]
    if missing:
        return f"lacks {', '.join(missing)}"
    outside = codec.outside(point)
    return f"has {', '.join(outside)} outside the search space" if outside else None


def _canonical(codec: VectorCodec, params: Mapping[str, Any]) -> tuple[float, ...]:
    return tuple(codec.to_vector(params).tolist())


