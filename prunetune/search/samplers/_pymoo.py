"""pymoo's ask/tell algorithms (NSGA-II, DE, ...) behind Optuna's sampler interface.

Optuna asks for one parameter set per trial; a population-based algorithm thinks in generations.
Here a generation is the population one ``ask()`` returns, handed out one individual per trial,
and the algorithm is told the whole generation once every one of its trials has finished.

What each trial records (system attributes, prefixed with the class name): ``generation``, its
``index`` within the generation and ``vector``, the individual as pymoo proposed it (after
rounding integer coordinates). The study records the ``seed`` and, when it was inferred, the
``search_space``. Nothing else is kept: a new sampler on the same storage sets the algorithm up
again and replays the stored generations (re-ask with the same random stream, put the stored
vectors in, tell the stored results) to arrive at the state the old one had. A trial closed as
interrupted (``prunetune.search.ledger.mark_interrupted``: its driver died while it ran) was
never evaluated: its slot is free again and its individual goes to the next trial that asks.
"""

from __future__ import annotations

import copy
import itertools
import math
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution, distribution_to_json, json_to_distribution
from optuna.samplers import RandomSampler
from optuna.study import Study, StudyDirection
from optuna.trial import FrozenTrial, TrialState
from pymoo.algorithms.base.genetic import GeneticAlgorithm
from pymoo.algorithms.moo.nsga2 import NSGA2
from pymoo.algorithms.soo.nonconvex.de import DE
from pymoo.core.algorithm import Algorithm
from pymoo.core.population import Population
from pymoo.core.problem import Problem
from pymoo.problems.static import StaticProblem

from prunetune.errors import PrunetuneError
from prunetune.search.ledger import is_interrupted
from prunetune.search.samplers._fallback import IndependentFallback
from prunetune.search.storage import CONSTRAINTS_KEY, StudyAttrs, trial_id
from prunetune.search.vector import VectorCodec

__all__ = ["PymooSampler"]

_logger = optuna.logging.get_logger(__name__)

DEFAULT_POPULATION_SIZE = 20
FAILED_VIOLATION = 1e9
"""Constraint violation told for a trial that FAILED or was PRUNED: worse than any real one."""

_FINISHED = (TrialState.COMPLETE, TrialState.FAIL, TrialState.PRUNED)
_ASK, _TELL_EXTRAS, _TELL, _RANDOM = 0, 1, 2, 3  # random streams, one per kind of call


class PymooSampler(IndependentFallback):
    """A pymoo algorithm with ask/tell as an Optuna sampler, one generation at a time.

    Each generation is what the algorithm's ``ask()`` returns: one individual per trial, in order.
    When every trial of the generation has finished (COMPLETE, FAIL or PRUNED), the algorithm is
    told the whole generation and asked for the next. Values are minimised: a maximised objective
    is negated. Constraints follow Optuna (``constraints_func(trial)``, or the constraints another
    component stored with the trial; feasible when all are <= 0) and reach pymoo as two inequality
    constraints ``G``: Optuna's total violation (the sum of the positive constraint values, or the
    largest value when none is positive) and a failure column. A FAILED or PRUNED trial (or one
    with a non-finite value) is told as infeasible: failure column ``FAILED_VIOLATION`` and, for
    ``F``, the worst value of each objective among the trials told with it (0 when there are none).

    A trial that asks while its generation is fully handed out but still running (parallel trials)
    gets an *extra* individual: asked from a copy of the algorithm as it was before the
    generation, with its own random stream, so it is bred from the same parents and never repeats
    an individual in flight. Nobody waits. Extras of generation ``g`` (``index`` >= the
    generation's size) are told with generation ``g + 1``, in a tell of their own just before it,
    so DE compares each with its own target and NSGA-II merges them into its survival. Extras of
    generation 0 have no parents (they are extra random samples) and are not told; neither are
    extras of algorithms outside pymoo's ``GeneticAlgorithm`` family, whose tells each pair with
    one ask. A trial stuck RUNNING (its process killed) holds its generation open until it is
    marked failed, e.g. by Optuna's heartbeat and ``fail_stale_trials`` (then told as infeasible),
    or interrupted.

    Interrupted trials: a trial FAILED with the user attribute ``interrupted``
    (``prunetune.search.ledger.mark_interrupted``, run when a search resumes after its driver
    died) measured nothing, so it is not told at all. Its slot is free again: the same individual
    (generation, index, vector) goes to the next trial that asks, and the run proposes what an
    uninterrupted one would have. An interrupted extra of a generation already closed is dropped.

    Resuming: a new sampler on the same study replays the stored generations (ask with the same
    random stream, set the population's X to the stored vectors, tell the stored results) and
    continues from the last unfinished generation. The random stream of every ask and tell is
    re-seeded from ``(seed, generation, ...)`` right before the call, so the same seed and the same
    results give the same candidates, whatever else draws random numbers in between. Without a
    seed, one is drawn and stored in the study, so a resume still replays exactly.

    Args:
        algorithm:
            A pymoo ``Algorithm`` with ``ask``/``tell``, not yet set up; it is copied, so one
            instance can serve several studies. Default: ``NSGA2(pop_size=20)`` for
            multi-objective studies, ``DE(pop_size=20)`` for single-objective ones.
        search_space:
            Parameter name -> Optuna distribution. Default: the distributions of the study's
            first finished trial (sampled independently), as ``QMCSampler`` infers them; it is
            stored in the study so that it never changes afterwards.
        seed:
            Seed for pymoo's random streams and for the independent sampler.
        constraints_func:
            ``trial -> sequence of floats``, called after each COMPLETE or PRUNED trial; the trial
            is feasible when all values are <= 0.

    Parameters outside the search space are sampled independently by a ``RandomSampler``.

    Example:
        >>> import optuna
        >>> from pymoo.algorithms.moo.nsga2 import NSGA2
        >>> from prunetune.search.samplers import PymooSampler
        >>> def objective(trial):
        ...     x = trial.suggest_float("x", 0.0, 1.0)
        ...     y = trial.suggest_float("y", 0.0, 1.0)
        ...     return x, (1.0 - x) ** 2 + y
        >>> optuna.logging.set_verbosity(optuna.logging.WARNING)
        >>> sampler = PymooSampler(NSGA2(pop_size=10), seed=0)
        >>> study = optuna.create_study(directions=["minimize", "minimize"], sampler=sampler)
        >>> study.optimize(objective, n_trials=40)
        >>> sorted({t.system_attrs["PymooSampler:generation"] for t in study.trials[1:]})
        [0, 1, 2, 3]
    """

    def __init__(
        self,
        algorithm: Algorithm | None = None,
        *,
        search_space: Mapping[str, BaseDistribution] | None = None,
        seed: int | None = None,
        constraints_func: Callable[[FrozenTrial], Sequence[float]] | None = None,
    ) -> None:
        self._algorithm = algorithm
        self._search_space = search_space
        self._seed = seed
        self._constraints_func = constraints_func
        self._reset_runtime()

    # -- Optuna's sampler contract ----------------------------------------------------------------

    def infer_relative_search_space(self, study: Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        self._validate()
        if self._search_space is not None:
            return dict(self._search_space)
        with self._lock:
            return dict(self._stored_space(StudyAttrs(study, self._prefix)))

    def sample_relative(
        self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        self._validate()
        with self._lock:
            ledger = StudyAttrs(study, self._prefix)
            run = self._run_for(study, ledger)
            if run is None:
                return {}
            wanted = [name for name in search_space if name in run.codec.names]
            if not wanted:
                return {}
            vector = run.vector_for(ledger, trial)
        params = run.codec.to_params(vector)
        # A caller may narrow the space (PartialFixedSampler) or change a distribution: leave
        # those parameters to independent sampling.
        return {name: params[name] for name in wanted if search_space[name] == run.codec.distributions[name]}

    # -- public extras ----------------------------------------------------------------------------

    @property
    def population_size(self) -> int | None:
        """Trials per generation: the algorithm's ``pop_size`` (``None`` when it has none)."""
        if self._algorithm is None:
            return DEFAULT_POPULATION_SIZE
        size = getattr(self._algorithm, "pop_size", None)
        return size if isinstance(size, int) and not isinstance(size, bool) and size > 0 else None

    def __getstate__(self) -> dict[str, Any]:
        # Only what the constructor got: everything else is rebuilt from the study's storage.
        return {
            "algorithm": self._algorithm,
            "search_space": self._search_space,
            "seed": self._seed,
            "constraints_func": self._constraints_func,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["algorithm"], **{key: value for key, value in state.items() if key != "algorithm"})

    # -- internals --------------------------------------------------------------------------------

    def _reset_runtime(self) -> None:
        self._lock = threading.RLock()
        self._random_sampler: RandomSampler | None = None
        self._run: _Run | None = None
        self._space_cache: tuple[tuple[Any, int], dict[str, BaseDistribution]] | None = None
        self._valid = False

    @property
    def _prefix(self) -> str:
        return self.__class__.__name__

    def _check_arguments(self) -> None:
        self._validate()

    def _stored_space(self, ledger: StudyAttrs) -> dict[str, BaseDistribution]:
        """The space stored in the study, else the first finished trial's (then stored)."""
        if self._space_cache is not None and self._space_cache[0] == ledger.identity:
            return self._space_cache[1]
        stored = ledger.study_attr("search_space")
        if stored is not None:
            space = {name: json_to_distribution(text) for name, text in stored.items()}
        else:
            finished = ledger.trials(states=(TrialState.COMPLETE, TrialState.PRUNED))
            if not finished:
                return {}
            space = dict(min(finished, key=lambda t: t.number).distributions)
            if not space:
                return {}
            ledger.set_study_attr("search_space", {name: distribution_to_json(d) for name, d in space.items()})
        self._space_cache = (ledger.identity, space)
        return space

    def _run_for(self, study: Study, ledger: StudyAttrs) -> _Run | None:
        space = dict(self._search_space) if self._search_space is not None else self._stored_space(ledger)
        if not space:
            return None
        if self._run is not None and self._run.identity == ledger.identity and self._run.space == space:
            return self._run
        codec = VectorCodec(space)
        if codec.size == 0:
            return None
        directions = list(study.directions)
        algorithm = self._algorithm
        if algorithm is None:
            algorithm = (
                NSGA2(pop_size=DEFAULT_POPULATION_SIZE) if len(directions) > 1 else DE(pop_size=DEFAULT_POPULATION_SIZE)
            )
        self._run = _Run(
            identity=ledger.identity,
            space=space,
            codec=codec,
            algorithm=algorithm,
            directions=directions,
            seed=self._study_seed(ledger),
        )
        return self._run

    def _study_seed(self, ledger: StudyAttrs) -> int:
        stored = ledger.study_attr("seed")
        seed = self._seed if self._seed is not None else stored
        if seed is None:
            seed = int(np.random.SeedSequence().entropy % 2**32)
        if stored is None:
            ledger.set_study_attr("seed", seed)
        return int(seed)

    def _validate(self) -> None:
        if self._valid:
            return
        algorithm = self._algorithm
        if algorithm is not None and not (
            isinstance(algorithm, Algorithm)
            and callable(getattr(algorithm, "ask", None))
            and callable(getattr(algorithm, "tell", None))
        ):
            raise _bad_argument("algorithm", "a pymoo Algorithm with ask/tell", algorithm)
        space = self._search_space
        if space is not None and not (
            isinstance(space, Mapping)
            and space
            and all(isinstance(name, str) and isinstance(d, BaseDistribution) for name, d in space.items())
        ):
            raise _bad_argument("search_space", "a non-empty dict of names to Optuna distributions, or None", space)
        if space is not None:
            VectorCodec(space)  # raises for a distribution it cannot encode
        seed = self._seed
        if seed is not None and not (
            isinstance(seed, (int, np.integer)) and not isinstance(seed, bool) and 0 <= seed < 2**63
        ):
            raise _bad_argument("seed", "a non-negative integer or None", seed)
        if self._constraints_func is not None and not callable(self._constraints_func):
            raise _bad_argument("constraints_func", "callable or None", self._constraints_func)
        self._valid = True


@dataclass
class _Batch:
    """One ``ask()``: the individuals with pymoo's own attributes, and their vectors as handed out."""

    population: Population
    vectors: np.ndarray
    tellable: bool


class _Run:
    """The pymoo algorithm of one study, advanced from the stored trials one generation at a time.

    Generation ``h``'s core is batch 0, asked from the algorithm itself; extras come from batches
    1, 2, ... asked from copies of the snapshot taken right before that ask. Index ``i`` of a
    generation of size ``n`` is position ``i % n`` of batch ``i // n``.
    """

    def __init__(
        self,
        *,
        identity: tuple[Any, int],
        space: dict[str, BaseDistribution],
        codec: VectorCodec,
        algorithm: Algorithm,
        directions: Sequence[StudyDirection],
        seed: int,
    ) -> None:
        self.identity = identity
        self.space = space
        self.codec = codec
        self._signs = np.array([-1.0 if d == StudyDirection.MAXIMIZE else 1.0 for d in directions])
        self._problem = _VectorProblem(codec, len(directions))
        self._seed = seed
        self._algorithm = copy.deepcopy(algorithm)
        self._algorithm.setup(self._problem, seed=seed, verbose=False)
        self._tells_extras = isinstance(self._algorithm, GeneticAlgorithm)
        self._closed = 0
        self._warned = False
        self._sizes: dict[int, int] = {}
        self._snapshots: dict[int, Algorithm] = {}
        self._batches: dict[tuple[int, int], _Batch] = {}

    def vector_for(self, ledger: StudyAttrs, trial: FrozenTrial) -> np.ndarray:
        """The trial's individual: the one it already holds, else the next free one (stored)."""
        trials = ledger.trials()
        slots: dict[tuple[int, int], FrozenTrial] = {}
        for other in trials:
            slot = _slot(ledger, other)
            if slot is None:
                continue
            if trial_id(other) == trial_id(trial):
                return self._stored_vector(ledger, other)
            if is_interrupted(other):
                continue  # never evaluated: its individual is free again
            slots[slot] = other
        self._catch_up(ledger, slots)
        generation = self._closed
        size = self._sizes[generation]
        taken = {index for number, index in slots if number == generation}
        # The lowest free index: a core individual while there are any, then (the core all out
        # and still running) an extra bred from the same parents.
        index = next(i for i in itertools.count() if i not in taken)
        vector = self._batch(generation, index // size).vectors[index % size]
        ledger.set_trial_attrs(trial, {"generation": generation, "index": index, "vector": [float(v) for v in vector]})
        return vector

    # -- generations ------------------------------------------------------------------------------

    def _catch_up(self, ledger: StudyAttrs, slots: Mapping[tuple[int, int], FrozenTrial]) -> None:
        """Tell every generation whose trials have all finished, in order (a replay if new)."""
        while True:
            generation = self._closed
            size = len(self._batch(generation, 0).vectors)
            core = [slots.get((generation, index)) for index in range(size)]
            if any(trial is None or trial.state not in _FINISHED for trial in core):
                return
            extras = self._extras_to_tell(generation, slots)
            if any(trial.state not in _FINISHED for trial in extras):
                return
            for batch_number, members in _by_batch(ledger, extras, self._sizes.get(generation - 1, 1)).items():
                batch = self._batch(generation - 1, batch_number)
                if not batch.tellable:
                    continue
                positions = [index % len(batch.vectors) for index, _ in members]
                trials = [trial for _, trial in members]
                self._check_replay(ledger, batch.vectors[positions], trials)
                self._tell(ledger, batch.population[positions], trials, [_TELL_EXTRAS, generation, batch_number])
            core_batch = self._batch(generation, 0)
            self._check_replay(ledger, core_batch.vectors, core)
            if core_batch.tellable:
                self._tell(ledger, core_batch.population, core, [_TELL, generation])
            self._closed = generation + 1
            self._forget_before(generation)

    def _extras_to_tell(self, generation: int, slots: Mapping[tuple[int, int], FrozenTrial]) -> list[FrozenTrial]:
        previous = generation - 1
        if previous < 1 or not self._tells_extras:
            return []
        size = self._sizes[previous]
        return [slots[slot] for slot in sorted(slots) if slot[0] == previous and slot[1] >= size]

    def _batch(self, generation: int, number: int) -> _Batch:
        """Batch ``number`` of ``generation``: 0 asks the algorithm, others a copy of its snapshot."""
        key = (generation, number)
        if key in self._batches:
            return self._batches[key]
        if number == 0:
            self._snapshots[generation] = copy.deepcopy(self._algorithm)
            source = self._algorithm
        else:
            source = copy.deepcopy(self._snapshots[generation])
        _reseed(source, [self._seed, _ASK, generation, number])
        population = source.ask()
        if population is None or len(population) == 0:
            # The algorithm could not breed (e.g. duplicate elimination left nothing): random
            # vectors keep the study going; the algorithm is not told about them.
            size = self._sizes.get(generation) or _population_size(self._algorithm)
            rng = np.random.default_rng([self._seed, _RANDOM, generation, number])
            population = Population.new(X=rng.uniform(self.codec.lower, self.codec.upper, (size, self.codec.size)))
            batch = _Batch(population, self._repair(population.get("X")), tellable=False)
        else:
            batch = _Batch(population, self._repair(population.get("X")), tellable=True)
        self._sizes.setdefault(generation, len(batch.vectors))
        self._batches[key] = batch
        return batch

    def _check_replay(self, ledger: StudyAttrs, vectors: np.ndarray, trials: Sequence[FrozenTrial]) -> None:
        """Warn once when the stored individuals are not what this algorithm and seed propose."""
        if self._warned:
            return
        stored = np.array([self._stored_vector(ledger, trial) for trial in trials])
        if not np.allclose(stored, vectors, rtol=0.0, atol=1e-12):
            self._warned = True
            _logger.warning(
                "The study's stored generations were proposed by another algorithm, population or seed than "
                "this PymooSampler's; it goes on from the stored results, but the search differs from the stored one."
            )

    def _tell(self, ledger: StudyAttrs, population: Population, trials: Sequence[FrozenTrial], stream: list[int]) -> None:
        f, g = self._outcomes(trials)
        population.set("X", np.array([self._evaluated_vector(ledger, trial) for trial in trials]))
        self._algorithm.evaluator.eval(StaticProblem(self._problem, F=f, G=g), population)
        _reseed(self._algorithm, [self._seed, *stream])
        self._algorithm.tell(infills=population)

    def _outcomes(self, trials: Sequence[FrozenTrial]) -> tuple[np.ndarray, np.ndarray]:
        """F (minimised) and G ([Optuna's violation, failure]) for the trials, row by row."""
        rows: list[np.ndarray | None] = []
        g = np.zeros((len(trials), 2))
        for row, trial in enumerate(trials):
            g[row, 0] = _violation(_constraint_values(trial))
            values = trial.values if trial.state == TrialState.COMPLETE else None
            if values is not None and len(values) == len(self._signs) and all(math.isfinite(v) for v in values):
                rows.append(self._signs * np.asarray(values, dtype=float))
            else:
                rows.append(None)
                g[row, 1] = FAILED_VIOLATION
        finite = [row for row in rows if row is not None]
        worst = np.max(finite, axis=0) if finite else np.zeros(len(self._signs))
        return np.array([worst if row is None else row for row in rows]), g

    def _evaluated_vector(self, ledger: StudyAttrs, trial: FrozenTrial) -> np.ndarray:
        """What the trial evaluated: its params where they cover the space (fixed or enqueued
        params win over the proposal), else the stored proposal."""
        codec = self.codec
        if all(trial.distributions.get(name) == codec.distributions[name] for name in codec.names):
            return codec.to_vector(trial.params)
        return self._stored_vector(ledger, trial)

    def _stored_vector(self, ledger: StudyAttrs, trial: FrozenTrial) -> np.ndarray:
        vector = np.asarray(trial.system_attrs[ledger.key("vector")], dtype=float)
        if vector.shape != (self.codec.size,):
            raise PrunetuneError(
                f"Trial {trial.number} holds a {ledger.key('vector')} of {vector.size} coordinates but the search "
                f"space has {self.codec.size}: the study was run with another search space; start a new study."
            )
        return vector

    def _repair(self, x: np.ndarray) -> np.ndarray:
        """Within bounds, whole numbers where the codec needs them."""
        codec = self.codec
        x = np.asarray(x, dtype=float).reshape(-1, codec.size)
        x = np.where(np.isfinite(x), x, (codec.lower + codec.upper) / 2)
        x = np.clip(x, codec.lower, codec.upper)
        x[:, codec.integrality] = np.round(x[:, codec.integrality])
        return x

    def _forget_before(self, generation: int) -> None:
        """Extras of ``generation`` are told with the next one; older batches are done with."""
        self._batches = {key: batch for key, batch in self._batches.items() if key[0] >= generation}
        self._snapshots = {number: s for number, s in self._snapshots.items() if number >= generation}


class _VectorProblem(Problem):
    """The codec's box for pymoo; trials evaluate it, so pymoo never calls it."""

    def __init__(self, codec: VectorCodec, n_obj: int) -> None:
        super().__init__(n_var=codec.size, n_obj=n_obj, n_ieq_constr=2, xl=codec.lower, xu=codec.upper)

    def _evaluate(self, x: np.ndarray, out: dict[str, Any], *args: Any, **kwargs: Any) -> None:
        raise PrunetuneError("PymooSampler's problem is evaluated by Optuna trials, not by pymoo.")


def _reseed(algorithm: Algorithm, entropy: list[int]) -> None:
    """Give the algorithm a random stream of its own for the next call (pymoo >= 0.6.2 draws every
    random number of ``ask`` and ``tell`` from ``algorithm.random_state``)."""
    algorithm.random_state = np.random.default_rng(entropy)


def _slot(ledger: StudyAttrs, trial: FrozenTrial) -> tuple[int, int] | None:
    generation = trial.system_attrs.get(ledger.key("generation"))
    index = trial.system_attrs.get(ledger.key("index"))
    if generation is None or index is None:
        return None
    return int(generation), int(index)


def _by_batch(ledger: StudyAttrs, extras: Sequence[FrozenTrial], size: int) -> dict[int, list[tuple[int, FrozenTrial]]]:
    groups: dict[int, list[tuple[int, FrozenTrial]]] = {}
    for trial in extras:
        slot = _slot(ledger, trial)
        if slot is not None:
            groups.setdefault(slot[1] // size, []).append((slot[1], trial))
    return dict(sorted(groups.items()))


def _constraint_values(trial: FrozenTrial) -> list[float]:
    """Named constraints (Optuna >= 5) or the list Optuna's samplers store under one key."""
    if isinstance(getattr(type(trial), "constraints", None), property):
        return [float(value) for value in trial.constraints.values()]
    return [float(value) for value in trial.system_attrs.get(CONSTRAINTS_KEY) or ()]


def _violation(values: Sequence[float]) -> float:
    """Optuna's measure: the sum of positive values; the largest value when none is positive."""
    if not values:
        return 0.0
    if not all(math.isfinite(value) for value in values):
        return FAILED_VIOLATION
    positive = [value for value in values if value > 0]
    return float(sum(positive)) if positive else max(values)


def _bad_argument(name: str, expected: str, got: Any) -> PrunetuneError:
    return PrunetuneError(f"The {name!r} argument of PymooSampler must be {expected}. Got {got!r} instead.")


def _population_size(algorithm: Algorithm) -> int:
    size = getattr(algorithm, "pop_size", None)
    return size if isinstance(size, int) and size > 0 else DEFAULT_POPULATION_SIZE
