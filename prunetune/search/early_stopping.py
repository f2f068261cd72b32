"""Multi-objective early stopping for pruning searches: stop a trial a completed one dominates.

Why not Optuna's MedianPruner, Hyperband or Ray's ASHA: they rank a trial by one metric against
the other trials at the same step. In a pruning search low accuracy at high compression is
expected, and those are exactly the trials that extend the Pareto front; a single-metric rule
stops them first and collapses the front towards the unpruned end.

What makes a two-metric rule possible here: a trial's compression is fixed by its plan before
fine-tuning starts (filters are removed and weight masks set up front; fine-tuning only moves the
remaining weights). So at fine-tuning epoch k a running trial is a point (compression,
accuracy_k) that can be compared with the completed trials' points at the same epoch k:

    stop if some completed trial t has compression(t) >= compression
                                   and accuracy_k(t) >= accuracy_k + margin

When it is safe: every trial fine-tunes the same way (same epochs, schedule and learning rate,
same data order), so accuracy curves are comparable step by step, and the search's objectives
are accuracy and compression (or metrics that follow compression, such as parameters). A trial
that is a margin below a more compressed one at epoch k rarely overtakes it by the end; ``margin``
is the guard against the noise of a brief fine-tune. It is not safe when trials fine-tune
differently (a searched learning rate or epoch count), or when the search also optimizes a metric
the rule does not see (latency, bits): a stopped trial could have been Pareto-optimal on that
one. Stopped trials are recorded as pruned, never as completed, so they never dominate others.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from numbers import Integral, Real
from typing import Any

import optuna
from optuna.pruners import BasePruner
from optuna.trial import FrozenTrial, TrialState

from prunetune.errors import bad_parameter
from prunetune.objectives.classification import REPORT_ACCURACY, REPORT_COMPRESSION
from prunetune.search.storage import trial_id

__all__ = [
    "COMPRESSION_ATTR",
    "screened_out",
    "DominancePruner",
    "completed_history",
    "dominated",
    "report_step",
]

#: The trial user attribute holding the trial's compression, set before its first report.
COMPRESSION_ATTR = "compression"

#: One completed trial as the rule sees it: its compression and its accuracy by step.
#: Steps may be ints or their decimal strings (JSON user attributes turn keys into strings).
History = Iterable[tuple[float, Mapping[Any, float]]]


def dominated(history: History, compression: float, step: int, accuracy: float, margin: float) -> bool:
    """Whether a completed trial in ``history`` dominates a trial at (``compression``, ``accuracy``) at ``step``.

    True when some entry has compression >= ``compression`` and accuracy at ``step`` >=
    ``accuracy + margin``. Entries without a finite accuracy at ``step`` are skipped; a
    non-finite ``accuracy`` or ``compression`` is never judged (returns False).
    """
    if not (math.isfinite(compression) and math.isfinite(accuracy)):
        return False
    for other_compression, curve in history:
        if not other_compression >= compression:
            continue
        other = curve.get(step, curve.get(str(step)))
        if other is not None and math.isfinite(other) and other >= accuracy + margin:
            return True
    return False


def screened_out(
    history: Iterable[tuple[float, float]], compression: float, accuracy: float, keep_fraction: float,
    *, by_compression: bool = True,
) -> bool:
    """Whether a plan scored right after pruning and BN recalibration falls outside the best
    ``keep_fraction`` of the screened plans (``history`` of (compression, accuracy), and itself).

    Cheap screening (EagleEye's adaptive BN as a search fidelity): a plan's accuracy once its BN
    statistics are re-estimated ranks plans before any fine-tuning. Plans rank by how many screened
    plans dominate them (higher accuracy at equal or higher compression; accuracy alone without
    ``by_compression``, as in target mode where every plan has the target's compression); a plan
    goes on to fine-tuning when no more plans dominate it than dominate the best ``keep_fraction``.
    """
    points = [*history, (compression, accuracy)]

    def depth(c: float, a: float) -> int:
        if not by_compression:
            return sum(1 for _, other in points if other > a)
        return sum(1 for oc, oa in points if oc >= c and oa >= a and (oc > c or oa > a))

    depths = sorted(depth(c, a) for c, a in points)
    cutoff = depths[max(0, math.ceil(keep_fraction * len(points)) - 1)]
    return depth(compression, accuracy) > cutoff


def completed_history(trials: Iterable[FrozenTrial], *, attr: str = COMPRESSION_ATTR) -> list[tuple[float, dict[int, float]]]:
    """(compression, intermediate values) of the completed trials that carry the compression ``attr``."""
    return [
        (float(trial.user_attrs[attr]), dict(trial.intermediate_values))
        for trial in trials
        if trial.state == TrialState.COMPLETE and isinstance(trial.user_attrs.get(attr), Real)
    ]


class DominancePruner(BasePruner):
    """Prune a trial whose accuracy at a step a completed trial at equal or higher compression beats.

    The trial's intermediate values are its validation accuracy by step (``trial.report``), and
    its compression is the user attribute :data:`COMPRESSION_ATTR`, set before the first report
    (:func:`report_step` does both). See the module docstring for why and when this is safe.

    Args:
        margin: How much higher (in accuracy units, 0.02 = 2 points) a completed trial must be.
        min_completed: Judge nothing until this many completed trials carry a compression.
        warmup_steps: Never prune at a step below this (1 keeps step 0, the accuracy straight
            after pruning, from stopping anything: fine-tuning recovers very unevenly).

    Example:
        >>> study = optuna.create_study(  # doctest: +SKIP
        ...     directions=["maximize", "maximize"], pruner=DominancePruner(margin=0.02))
    """

    def __init__(self, *, margin: float = 0.02, min_completed: int = 4, warmup_steps: int = 1) -> None:
        self.margin = margin
        self.min_completed = min_completed
        self.warmup_steps = warmup_steps

    def validate(self) -> None:
        """Raise PrunetuneError naming the first bad parameter."""
        if isinstance(self.margin, bool) or not isinstance(self.margin, Real) or not (
            math.isfinite(self.margin) and self.margin >= 0
        ):
            _bad("margin", self.margin, "a finite number >= 0")
        for name in ("min_completed", "warmup_steps"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, Integral) or value < 0:
                _bad(name, value, "an integer >= 0")

    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        self.validate()
        step = trial.last_step
        compression = trial.user_attrs.get(COMPRESSION_ATTR)
        if step is None or step < self.warmup_steps or not isinstance(compression, Real):
            return False
        history = completed_history(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
        if len(history) < self.min_completed:
            return False
        return dominated(history, float(compression), step, trial.intermediate_values[step], float(self.margin))

    def __repr__(self) -> str:
        return f"DominancePruner(margin={self.margin!r}, min_completed={self.min_completed!r}, warmup_steps={self.warmup_steps!r})"


def report_step(
    trial: optuna.Trial,
    step: int,
    values: Mapping[str, float],
    *,
    accuracy_key: str = REPORT_ACCURACY,
    compression_key: str = REPORT_COMPRESSION,
) -> bool:
    """Record one report of an objective on ``trial`` and say whether the study's pruner stops it.

    Sets :data:`COMPRESSION_ATTR` from ``values[compression_key]`` the first time, and stores
    ``values[accuracy_key]`` as the intermediate value at ``step``. Works in multi-objective
    studies too, where ``Trial.report`` and ``Trial.should_prune`` refuse: there the value goes to
    the study's storage directly and the study's pruner is asked directly (the one place this
    package touches Optuna's storage).

    Returns:
        True when the caller should stop the trial (raise ``optuna.TrialPruned``).
    """
    if compression_key in values and COMPRESSION_ATTR not in trial.user_attrs:
        trial.set_user_attr(COMPRESSION_ATTR, float(values[compression_key]))
    if accuracy_key not in values:
        return False
    accuracy = float(values[accuracy_key])
    if len(trial.study.directions) == 1:
        trial.report(accuracy, step)
        return trial.should_prune()
    storage = trial.storage
    identity = trial_id(trial)
    if step not in storage.get_trial(identity).intermediate_values:
        storage.set_trial_intermediate_value(identity, step, accuracy)
    return trial.study.pruner.prune(trial.study, storage.get_trial(identity))


def _bad(name: str, value: object, allowed: str) -> None:
    bad_parameter("DominancePruner", name, value, allowed)
