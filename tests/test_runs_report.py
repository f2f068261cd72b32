"""Reading runs and reporting them: front, hypervolume, knee and queries against independent
computations, every report file well-formed, and plain answers for runs with nothing to show."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest
import yaml
from optuna.trial import TrialState
from test_search_local import fast_experiment

import prunetune
from prunetune.cli import main
from prunetune.errors import PrunetuneError
from prunetune.app.experiment import Experiment
from prunetune.search.ledger import STUDY_NAME, run_study_name
from prunetune.app.runner import run_experiment
from prunetune.results.runs import Run, load_run

MAXMAX = ["maximize", "maximize"]


@pytest.fixture(scope="module")
def real_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small real search: random plans, some NaN failures, a constraint that rules some out."""
    run_dir = tmp_path_factory.mktemp("real") / "run"
    experiment = fast_experiment(**{
        "objective.options": {"nan_above": 0.6},
        "objective.constraints": ["accuracy_drop <= 30"],
        "search.trials": 16,
        "search.sampler": "random",
    })
    study = run_experiment(experiment, run_dir, echo=lambda line: None)
    states = {t.state for t in study.trials}
    assert TrialState.FAIL in states and TrialState.COMPLETE in states
    return run_dir


@pytest.fixture(scope="module")
def failed_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real search whose every trial raises."""
    run_dir = tmp_path_factory.mktemp("failed") / "run"
    experiment = fast_experiment(**{"objective.options": {"fail_above": -1.0}, "search.trials": 3, "search.sampler": "random"})
    run_experiment(experiment, run_dir, echo=lambda line: None)
    return run_dir


# (accuracy, accuracy_drop, compression, macs, feasible); trial 4 would win every query if infeasible trials counted.
LEDGER = {
    0: (0.95, 1.0, 2.0, 5000.0, True),
    1: (0.94, 2.0, 4.0, 3000.0, True),
    2: (0.93, 3.0, 6.0, 2000.0, True),
    3: (0.80, 16.0, 10.0, 1000.0, True),
    4: (0.96, 0.0, 12.0, 500.0, False),
    5: None,  # failed
    6: (0.90, 6.0, 3.0, 2500.0, True),
    7: (0.94, 2.0, 5.0, 4500.0, True),
}


@pytest.fixture(scope="module")
def hand_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A hand-made ledger with known answers, plus one trial still running."""
    run_dir = tmp_path_factory.mktemp("hand") / "run"
    run_dir.mkdir()
    experiment = Experiment().replace(**{"objective.constraints": ["accuracy_drop <= 50"]})
    (run_dir / "experiment.yaml").write_text(yaml.safe_dump(experiment.to_dict(), sort_keys=False))
    study = optuna.create_study(storage=f"sqlite:///{run_dir / 'study.db'}", study_name=STUDY_NAME, directions=MAXMAX)
    with pytest.warns(optuna.exceptions.ExperimentalWarning):
        study.set_metric_names(["accuracy", "compression"])
    for number, entry in LEDGER.items():
        plan = {"filters": {"ratios": {"conv1": number / 10}}}
        if entry is None:
            trial = optuna.trial.create_trial(
                state=TrialState.FAIL, user_attrs={"plan": plan, "fail_reason": "RuntimeError: out of memory"}
            )
        else:
            accuracy, drop, compression, macs, feasible = entry
            metrics = {
                "accuracy": accuracy, "accuracy_drop": drop, "compression": compression, "macs": macs,
                "nonzero_params": 10000 / compression, "macs_reduction": 8000 / macs,
            }
            trial = optuna.trial.create_trial(
                values=[accuracy, compression],
                user_attrs={"plan": plan, "metrics": metrics},
                constraints={"accuracy_drop <= 50": -1.0 if feasible else 1.0},
            )
        study.add_trial(trial)
    study.ask()  # still running
    return run_dir


def _brute_front(run: Run, objectives: list[tuple[str, str]]) -> set[int]:
    """Non-dominated feasible completed trials, from the raw Optuna trials with plain loops."""
    points = {}
    for trial in optuna.load_study(study_name=run_study_name(run.path), storage=f"sqlite:///{run.path / 'study.db'}").trials:
        if trial.state != TrialState.COMPLETE or any(v > 0 for v in trial.constraints.values()):
            continue
        metrics = trial.user_attrs["metrics"]
        points[trial.number] = [metrics[name] * (-1 if d == "maximize" else 1) for name, d in objectives]
    front = set()
    for i, a in points.items():
        beaten = any(all(x <= y for x, y in zip(b, a)) and any(x < y for x, y in zip(b, a)) for j, b in points.items() if j != i)
        if not beaten:
            front.add(i)
    return front


@pytest.mark.parametrize(
    "objectives",
    [None, [("accuracy_drop", "minimize"), ("compression", "maximize")], ["accuracy"], ["accuracy", "compression", "accuracy_drop"]],
)
def test_front_equals_a_brute_force_filter_of_the_trials(real_run: Path, objectives: list | None) -> None:
    run = load_run(real_run)
    chosen = run.resolve(objectives)
    front = run.front(objectives)
    assert set(front.index) == _brute_front(run, chosen)
    assert list(front["compression"]) == sorted(front["compression"], reverse=True)
    assert front["feasible"].all() and (front["state"] == "COMPLETE").all()
    assert (~run.trials["feasible"]).any(), "the constraint must rule some trial out"


def test_hypervolume_equals_pymoo_on_the_normalised_points(real_run: Path) -> None:
    from pymoo.indicators.hv import HV

    run = load_run(real_run)
    done = run.candidates()
    points = np.column_stack([1.0 - done["accuracy"], 1.0 / done["compression"]])
    expected = HV(ref_point=np.array([1.0, 1.0]))(points)
    assert run.hypervolume() == pytest.approx(expected, rel=1e-12)
    assert run.hypervolume(reference=[0.5, 0.8]) == pytest.approx(HV(ref_point=np.array([0.5, 0.8]))(points[(points < [0.5, 0.8]).all(axis=1)]))
    curve = run.hypervolume_curve()
    assert list(curve["trials"]) == list(range(1, 17))
    assert np.all(np.diff(curve["hypervolume"]) >= -1e-12)
    assert curve["hypervolume"].iloc[-1] == pytest.approx(expected)


def test_queries_return_the_right_trial_on_a_hand_made_ledger(hand_run: Path) -> None:
    run = load_run(hand_run)
    assert run.counts() == {"baselines": 0, "total": 9, "complete": 7, "pruned": 0, "failed": 1, "interrupted": 0, "running": 1}
    assert list(run.front().index) == [3, 2, 7, 0]  # 4 is infeasible; 1 and 6 are dominated
    assert run.most_compressed(max_drop=2.0).name == 7
    assert run.most_compressed(max_drop=3.0)["number"] == 2
    assert run.most_compressed(max_drop=0.5) is None
    assert run.most_accurate(min_compression=5).name == 7
    assert run.most_accurate(min_compression=5.5).name == 2
    assert run.most_accurate(min_compression=20) is None
    assert list(run.within(macs=2500).index) == [3, 2]  # 6 (2500 MACs) fits but 2 dominates it
    assert list(run.within(macs=4000).index) == [3, 2, 1]  # 1 is on the front of what fits
    assert run.within(macs=10).empty
    assert run.knee().name == 2
    assert run.plan(7) == {"filters": {"ratios": {"conv1": 0.7}}}
    assert run.fail_reasons() == [("RuntimeError: out of memory", 1)]
    assert run.base() == pytest.approx({"accuracy": 0.96, "params": 10000, "macs": 8000})
    assert not (hand_run / ".lock").exists()


def test_unknown_metrics_and_missing_measurements_are_named(hand_run: Path) -> None:
    run = load_run(hand_run)
    with pytest.raises(PrunetuneError, match="Unknown metric 'flops'.*accuracy"):
        run.front(["flops"])
    with pytest.raises(PrunetuneError, match="latency_ms"):
        run.within(latency_ms=3.0)
    with pytest.raises(PrunetuneError, match="no trial 99"):
        run.trial(99)


def test_a_run_with_no_completed_trial_says_so(failed_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = load_run(failed_run)
    assert run.counts()["failed"] == 3 and run.counts()["complete"] == 0
    with pytest.raises(PrunetuneError, match="No completed feasible trial"):
        run.most_compressed(max_drop=1.0)
    assert list(run.hypervolume_curve()["hypervolume"]) == [0.0, 0.0, 0.0]
    assert main(["report", str(failed_run)]) == 0
    out = capsys.readouterr().out
    assert "no trial completed (3 failed)" in out and "plan too aggressive" in out
    for name in ("pareto.csv", "pareto.json", "report.md", "pareto.png"):
        assert (failed_run / name).stat().st_size > 0
    assert json.loads((failed_run / "pareto.json").read_text())["front"] == []
    assert "| failed | 3 |" in (failed_run / "report.md").read_text()


def test_every_report_file_is_written_and_well_formed(real_run: Path, hand_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import matplotlib.image

    assert main(["report", str(real_run), "--max-drop", "20", "--min-compression", "2"]) == 0
    out = capsys.readouterr().out
    run = load_run(real_run)
    knee = int(run.knee()["number"])
    assert f"knee: trial {knee}" in out and "Pareto front" in out
    csv = pd.read_csv(real_run / "pareto.csv")
    assert list(csv["trial"]) == list(run.front().index)
    assert csv["accuracy"].tolist() == pytest.approx(run.front()["accuracy"].tolist())
    assert json.loads(csv["plan"].iloc[0]) == run.plan(int(csv["trial"].iloc[0]))
    document = json.loads((real_run / "pareto.json").read_text())
    assert [row["trial"] for row in document["front"]] == list(csv["trial"])
    assert document["hypervolume"]["value"] == pytest.approx(run.hypervolume())
    assert document["knee"] == knee and document["counts"]["complete"] == run.counts()["complete"]
    answer = run.most_compressed(max_drop=20)
    assert document["queries"]["most_compressed"]["answer"] == (None if answer is None else int(answer.name))
    markdown = (real_run / "report.md").read_text()
    assert "## Pareto front" in markdown and f"| {knee} |" in markdown
    image = matplotlib.image.imread(real_run / "pareto.png")
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100

    compare = tmp_path / "compare"
    assert main(["report", str(real_run), str(hand_run), "--output", str(compare)]) == 0
    curves = pd.read_csv(compare / "hypervolume.csv")
    assert len(set(curves["run"])) == 2 and curves.groupby("run")["trials"].max().sort_values().tolist() == [8, 16]  # the hand-made ledger's ninth trial still runs
    assert matplotlib.image.imread(compare / "fronts.png").shape[0] > 100
    assert "| trials |" in (compare / "hypervolume.md").read_text()
    assert main(["report", str(hand_run), "--macs", "2500"]) == 0  # the seed papers' table needs params and MACs
    markdown = (hand_run / "report.md").read_text()
    assert "| base | 10,000 | 1.00x | 8,000 | 1.00x | 96.00% |" in markdown
    assert "| knee (trial 2) | 1,667 | 6.00x | 2,000 | 4.00x | 93.00% | 3.00 |" in markdown
    assert "knee, within macs <= 2500" in markdown


def test_a_folder_that_is_not_a_run_gives_exit_2_and_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "experiment.yaml is missing" in err
    (tmp_path / "experiment.yaml").write_text(yaml.safe_dump(Experiment().to_dict()))
    assert main(["report", str(tmp_path)]) == 2
    assert "study.db is missing" in capsys.readouterr().err
    assert not (tmp_path / "study.db").exists() and not (tmp_path / "pareto.csv").exists()


def test_load_run_is_exported_lazily() -> None:
    assert prunetune.load_run is load_run
    code = "import sys, prunetune; print(any(m in sys.modules for m in ('optuna', 'pandas', 'torch')))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
