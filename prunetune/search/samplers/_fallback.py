"""What the population samplers share: parameters outside their own space, Optuna's per-trial hooks
and the constraints of a finished trial go through one seeded RandomSampler and one code path."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from optuna.distributions import BaseDistribution
from optuna.samplers import BaseSampler, RandomSampler
from optuna.study import Study
from optuna.trial import FrozenTrial, TrialState

from prunetune.search.storage import process_constraints_after_trial

__all__ = ["IndependentFallback"]


class IndependentFallback(BaseSampler):
    """A sampler whose parameters outside its space are sampled at random, seeded.

    Subclasses set ``_seed``, ``_lock``, ``_constraints_func`` and ``_random_sampler = None`` in
    their constructor and implement :meth:`_check_arguments` (called once, where work starts).
    """

    _seed: int | None
    _constraints_func: Any
    _random_sampler: RandomSampler | None

    def _check_arguments(self) -> None:
        """Raise PrunetuneError for a bad constructor argument."""

    def _independent(self) -> RandomSampler:
        """The random sampler for parameters outside the space, made once the arguments are checked."""
        with self._lock:  # type: ignore[attr-defined]
            if self._random_sampler is None:
                self._check_arguments()
                self._random_sampler = RandomSampler(seed=self._seed)
            return self._random_sampler

    def reseed_rng(self) -> None:
        # Only the independent sampler: the population's own streams come from the seed, which
        # every worker must share.
        self._independent().reseed_rng()

    def sample_independent(
        self, study: Study, trial: FrozenTrial, param_name: str, param_distribution: BaseDistribution
    ) -> Any:
        return self._independent().sample_independent(study, trial, param_name, param_distribution)

    def before_trial(self, study: Study, trial: FrozenTrial) -> None:
        self._independent().before_trial(study, trial)

    def after_trial(self, study: Study, trial: FrozenTrial, state: TrialState, values: Sequence[float] | None) -> None:
        """Store the trial's constraints (``constraints_func``) and pass the trial to the random sampler."""
        if self._constraints_func is not None:
            process_constraints_after_trial(self._constraints_func, study, trial, state)
        self._independent().after_trial(study, trial, state, values)
