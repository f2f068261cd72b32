"""Dominance early stopping: stop a trial that a completed, at least as compressed trial beats by a margin."""

from __future__ import annotations

from collections.abc import Mapping

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import FrozenTrial, TrialState, create_trial

from prunetune.errors import PrunetuneError
from prunetune.search.early_stopping import (
    COMPRESSION_ATTR,
    DominancePruner,
    dominated,
    report_step,
)

optuna.logging.set_verbosity(optuna.logging.WARNING)

#: Completed trials: compression -> validation accuracy after pruning (step 0) and epochs 1, 2.
COMPLETED: dict[float, list[float]] = {
    1.5: [0.80, 0.90, 0.93],
    2.0: [0.70, 0.85, 0.90],
    3.0: [0.50, 0.80, 0.86],
    5.0: [0.20, 0.60, 0.70],
}


def _completed(compression: float, curve: list[float], **attrs: object) -> FrozenTrial:
    return create_trial(
        state=TrialState.COMPLETE,
        values=[curve[-1], compression],
        params={"x": compression},
        distributions={"x": FloatDistribution(0.0, 10.0)},
        intermediate_values=dict(enumerate(curve)),
        user_attrs={COMPRESSION_ATTR: compression, **attrs},
    )


def _running(compression: float | None, curve: list[float]) -> FrozenTrial:
    return create_trial(
        state=TrialState.RUNNING,
        intermediate_values=dict(enumerate(curve)),
        user_attrs={} if compression is None else {COMPRESSION_ATTR: compression},
    )


@pytest.fixture()
def study() -> optuna.Study:
    study = optuna.create_study(directions=["maximize", "maximize"])
    for compression, curve in COMPLETED.items():
        study.add_trial(_completed(compression, curve))
    # Neither a pruned nor a failed trial may dominate: their curves are not known to the end.
    study.add_trial(create_trial(state=TrialState.PRUNED, intermediate_values={0: 0.99, 1: 0.99}, user_attrs={COMPRESSION_ATTR: 9.0}))
    study.add_trial(create_trial(state=TrialState.FAIL, intermediate_values={1: 0.99}, user_attrs={COMPRESSION_ATTR: 9.0}))
    return study


def test_prunes_exactly_the_dominated_trial(study: optuna.Study) -> None:
    pruner = DominancePruner(margin=0.02, min_completed=4, warmup_steps=1)
    candidates = {
        "dominated": _running(2.5, [0.40, 0.75]),  # 3.0x completed had 0.80 at epoch 1: beaten by 0.05
        "more compressed": _running(6.0, [0.40, 0.55]),  # nothing completed is this small
        "within the margin": _running(2.5, [0.40, 0.79]),  # 0.80 >= 0.79 + 0.02 fails
        "best at its size": _running(2.5, [0.40, 0.82]),
        "beaten only by the pruned trial": _running(7.0, [0.40, 0.50]),
    }
    pruned = {name for name, trial in candidates.items() if pruner.prune(study, trial)}
    assert pruned == {"dominated"}


def test_nothing_is_pruned_during_warmup_before_enough_completed_or_without_compression(study: optuna.Study) -> None:
    assert DominancePruner(margin=0.02).prune(study, _running(2.5, [0.10])) is False  # step 0 is warmup
    assert DominancePruner(margin=0.02, warmup_steps=0).prune(study, _running(2.5, [0.10])) is True
    assert DominancePruner(margin=0.02, min_completed=5).prune(study, _running(2.5, [0.40, 0.75])) is False
    assert DominancePruner(margin=0.02).prune(study, _running(None, [0.40, 0.75])) is False
    assert DominancePruner(margin=0.02).prune(study, _running(2.5, [])) is False  # nothing reported yet


def test_the_margin_decides_at_the_boundary(study: optuna.Study) -> None:
    trial = _running(2.5, [0.40, 0.75])
    assert DominancePruner(margin=0.05).prune(study, trial) is True  # 0.80 >= 0.75 + 0.05
    assert DominancePruner(margin=0.06).prune(study, trial) is False


def test_the_rule_compares_at_the_same_step() -> None:
    history = [(3.0, {0: 0.50, 1: 0.80, 2: 0.86})]
    # 0.70 at step 1 is beaten (0.80), the same 0.70 at step 0 is not (0.50).
    assert dominated(history, compression=2.0, step=1, accuracy=0.70, margin=0.02)
    assert not dominated(history, compression=2.0, step=0, accuracy=0.70, margin=0.02)
    assert not dominated(history, compression=2.0, step=3, accuracy=0.10, margin=0.02)  # no value at step 3
    assert dominated(history, 3.0, 2, 0.80, 0.02)  # equal compression counts


def test_the_rule_reads_curves_kept_as_json() -> None:
    """JSON user attributes turn step keys into strings; the rule reads both."""
    assert dominated([(3.0, {"1": 0.80})], compression=2.0, step=1, accuracy=0.70, margin=0.02)
    assert not dominated([(3.0, {"1": float("nan")})], compression=2.0, step=1, accuracy=0.70, margin=0.02)
    assert not dominated([(3.0, {"1": 0.80})], compression=float("nan"), step=1, accuracy=0.70, margin=0.02)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [({"margin": -0.1}, "margin"), ({"margin": float("inf")}, "margin"), ({"min_completed": -1}, "min_completed"), ({"warmup_steps": 1.5}, "warmup_steps")],
)
def test_bad_parameters_are_named(study: optuna.Study, kwargs: dict, name: str) -> None:
    pruner = DominancePruner(**kwargs)
    with pytest.raises(PrunetuneError, match=f"'{name}' parameter of DominancePruner"):
        pruner.validate()
    with pytest.raises(PrunetuneError, match=name):
        pruner.prune(study, _running(2.5, [0.4, 0.75]))


#: Scripted trials for a real optimize loop: (compression, accuracy at steps 0, 1, 2).
SCRIPT = [
    (2.0, [0.70, 0.85, 0.90]),
    (3.0, [0.50, 0.80, 0.86]),
    (2.5, [0.40, 0.75, 0.95]),  # dominated at epoch 1 by the 3.0x trial: stopped before epoch 2
    (4.0, [0.30, 0.70, 0.80]),  # more compressed than anything completed: runs to the end
]


@pytest.mark.parametrize("n_objectives", [1, 2])
def test_a_study_stops_the_dominated_trial_through_report_step(n_objectives: int) -> None:
    study = optuna.create_study(
        directions=["maximize"] * n_objectives, pruner=DominancePruner(margin=0.02, min_completed=2)
    )
    for index in range(len(SCRIPT)):
        study.enqueue_trial({"index": index})
    epochs_run: list[int] = []

    def objective(trial: optuna.Trial) -> float | tuple[float, float]:
        compression, curve = SCRIPT[trial.suggest_int("index", 0, len(SCRIPT) - 1)]
        for step, accuracy in enumerate(curve):
            values: Mapping[str, float] = {"val_accuracy": accuracy, "compression": compression}
            if report_step(trial, step, values):
                raise optuna.TrialPruned()
            epochs_run.append(step)
        return curve[-1] if n_objectives == 1 else (curve[-1], compression)

    study.optimize(objective, n_trials=len(SCRIPT))
    states = [trial.state for trial in study.get_trials()]
    assert states == [TrialState.COMPLETE, TrialState.COMPLETE, TrialState.PRUNED, TrialState.COMPLETE]
    stopped = study.get_trials()[2]
    assert stopped.intermediate_values == {0: 0.40, 1: 0.75} and stopped.user_attrs[COMPRESSION_ATTR] == 2.5
    assert epochs_run.count(2) == 3
