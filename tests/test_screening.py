"""Cheap screening: plans ranked right after pruning and BN recalibration; only the best fraction fine-tunes."""

from __future__ import annotations

from pathlib import Path

import pytest
from optuna.trial import TrialState

from prunetune.app.experiment import experiment_from_dict
from prunetune.app.runner import run_experiment
from prunetune.errors import PrunetuneError
from prunetune.results import load_run
from prunetune.search.early_stopping import screened_out
from prunetune.search.ledger import ATTR_CURVE, ATTR_FAIL_REASON

ARITHMETIC = f"{Path(__file__).with_name('objectives_for_tests.py')}:ArithmeticObjective"


def test_screening_keeps_the_best_fraction_by_accuracy_alone() -> None:
    history = [(2.0, accuracy) for accuracy in (0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3)]
    # Eight plans with the candidate; the best quarter is the two ahead of everyone but the best.
    assert not screened_out(history, 2.0, 0.85, 0.25, by_compression=False)
    assert screened_out(history, 2.0, 0.75, 0.25, by_compression=False)
    assert not screened_out(history, 2.0, 0.75, 0.5, by_compression=False)
    assert not screened_out([], 2.0, 0.1, 0.25)  # the first plan has nothing to lose to


def test_screening_with_compression_spares_a_plan_no_other_dominates() -> None:
    history = [(1.5, 0.95), (2.0, 0.9), (2.5, 0.85), (1.2, 0.97), (1.8, 0.93), (2.2, 0.6)]
    assert not screened_out(history, 9.0, 0.2, 0.25)  # low accuracy, but no plan is as compressed
    assert screened_out(history, 1.4, 0.5, 0.25)  # five plans are both more accurate and more compressed
    assert screened_out(history, 9.0, 0.2, 0.25, by_compression=False)  # by accuracy alone it goes


def test_a_screened_search_fine_tunes_only_the_plans_in_the_best_fraction(tmp_path: Path) -> None:
    data = {
        "model": {"train": {"epochs": 1}},
        # One objective: plans rank by accuracy alone (the arithmetic plans all lie on one trade-off
        # curve, so by accuracy and compression none would dominate another).
        "objective": {"type": ARITHMETIC, "bn_recalibration_batches": 0, "objectives": {"accuracy": "maximize"}},
        "search": {"sampler": "random", "trials": 20, "early_stopping": {"enabled": False},
                   "screening": {"enabled": True, "keep_fraction": 0.3, "min_screened": 5}},
        "execution": {"executor": "local"},
    }
    study = run_experiment(experiment_from_dict(data), tmp_path / "run", echo=lambda line: None)
    trials = sorted(study.get_trials(), key=lambda t: t.number)
    assert len(trials) == 20
    history: list[tuple[float, float]] = []
    for trial in trials:
        first = trial.user_attrs[ATTR_CURVE]["0"]
        point = (first["compression"], first["val_accuracy"])
        expected_out = len(history) >= 5 and screened_out(history, *point, 0.3, by_compression=False)
        assert (trial.state == TrialState.PRUNED) == expected_out, trial.number
        if expected_out:
            assert trial.user_attrs[ATTR_FAIL_REASON].startswith("screened out after pruning and BN recalibration")
        history.append(point)
    screened = sum(t.state == TrialState.PRUNED for t in trials)
    assert 0 < screened < 15  # some plans were screened out, the warm-up and the best went on
    run = load_run(tmp_path / "run")
    frame = run.trials
    # Both fidelities in the ledger: every trial's screening accuracy, the full accuracy where it went on.
    assert frame["accuracy_pruned"].notna().all()
    assert frame.loc[frame["state"] == "PRUNED", "accuracy"].isna().all()
    assert frame.loc[frame["state"] == "COMPLETE", "accuracy"].notna().all()


def test_screening_options_are_checked() -> None:
    with pytest.raises(PrunetuneError, match=r"'search.screening.keep_fraction' key must be in \(0, 1\]"):
        experiment_from_dict({"search": {"screening": {"enabled": True, "keep_fraction": 0}}})
    with pytest.raises(PrunetuneError, match="search.screening.min_screened"):
        experiment_from_dict({"search": {"screening": {"min_screened": 0}}})
