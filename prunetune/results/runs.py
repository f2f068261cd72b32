"""Reading a run folder after (or during) a search: the trials as a table, the front, its
hypervolume and knee, and the questions people ask of a front.

A run folder holds ``experiment.yaml`` (what was searched), the study (``study.db`` unless the
experiment names another storage) and ``base.pt``. Reading never takes the run lock and never
writes to the study, so a report can be made while the search is still running.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import optuna
from optuna.trial import FrozenTrial

from prunetune.errors import PrunetuneError, is_finite_number
from prunetune.objectives.metrics import METRICS
from prunetune.search.ledger import (
    ATTR_BASELINE,
    ATTR_CURVE,
    ATTR_FAIL_REASON,
    ATTR_DEVICE,
    ATTR_HOST,
    ATTR_METRICS,
    ATTR_NODE,
    ATTR_PLAN,
    ATTR_TIMES,
    finalized_records,
    run_study_name,
    is_feasible,
    is_interrupted,
    storage_url,
)
from prunetune.search.pareto import hypervolume as pareto_hypervolume
from prunetune.search.pareto import nondominated_mask
from prunetune.results.settings import Settings, read_settings
from prunetune.search.storage import open_readonly

if TYPE_CHECKING:
    import pandas as pd

    from prunetune.zoo.datasets import DataSplits

__all__ = ["Objectives", "Run", "load_run", "normalise"]

#: Objectives as metric names, (name, direction) pairs or {name: direction}; None means the run's own.
Objectives = Sequence[str] | Sequence[tuple[str, str]] | Mapping[str, str] | None


#: Columns of :attr:`Run.trials` that are not metrics.
FIXED_COLUMNS = (
    "number", "state", "feasible", "interrupted", "baseline", "fail_reason", "node", "hostname", "device",
    "seconds", "datetime_start", "datetime_complete", "plan", "curve",
)


def load_run(path: str | Path) -> Run:
    """Open a run folder (finished, running or interrupted) for reading; see :class:`Run`."""
    return Run(path)


def normalise(metric: str, values: Any, *, direction: str, bounds: tuple[float, float] | None = None) -> np.ndarray:
    """Map a metric's values to a minimised scale where 1 is "no better than the base model".

    Accuracies -> 1 - a; drops in pp -> d / 100; ratios -> 1 / r (the catalogue's scaled metrics,
    see :meth:`prunetune.objectives.metrics.Metric.normalised`). Any other metric is min-max
    scaled with ``bounds`` (lowest, highest) to [0, 1], 0 being its best value.
    """
    x = np.asarray(values, dtype=float)
    known = METRICS.get(metric)
    scaled_by_base = known.normalised(x) if known is not None else None
    if scaled_by_base is not None:
        return scaled_by_base
    low, high = bounds if bounds is not None else (0.0, 1.0)
    span = (high - low) or 1.0
    scaled = (x - low) / span
    return 1.0 - scaled if direction == "maximize" else scaled


class Run:
    """A run folder, read-only: its trials, front, hypervolume, knee and queries.

    Attributes and methods (a stable API: the HTML report and the export build on it):

    - ``path`` (Path), ``experiment`` (:class:`Settings`: the saved experiment, read-only), ``study`` (the Optuna study, loaded
      from the run's storage), ``objectives`` ([(metric, direction)] the search optimised),
      ``constraints`` ([str], Optuna constraint keys such as ``'accuracy_drop <= 1'``),
      ``base_checkpoint`` (Path of the base model).
    - ``trials``: a pandas DataFrame, one row per trial, indexed by trial number, with columns
      ``number``, ``state`` ('COMPLETE', 'PRUNED', 'FAIL', 'RUNNING', ...), every metric the
      trials recorded (``accuracy``, ``compression``, ``macs``...; NaN where a trial has none),
      ``feasible`` (bool: every constraint holds), ``interrupted`` (bool), ``baseline`` (the
      label of a baseline's trial, ``"uniform:0.5"``; None for a searched one), ``fail_reason``,
      ``node``, ``hostname``, ``seconds`` (wall time of the trial), ``datetime_start``,
      ``datetime_complete``, ``plan`` (dict, the plan as applied: ``{"filters": {"ratios":
      {"conv1": 0.5}}}``) and ``curve`` (dict step -> intermediate values). Call
      :meth:`refresh` to re-read a running search.
    - ``counts()``: trials per outcome; ``fail_reasons()``: the most common reasons.
    - ``base()``: the base model's figures, recovered from the trials' ratios and drops.
    - ``front(objectives=None)``: the feasible COMPLETE searched trials that no other such trial
      dominates over the chosen metrics (default: the run's objectives), most compressed first.
      Every front, hypervolume, knee and query is of the searched trials; baselines have their own:
      ``baselines()``, ``baseline_front(objectives=None)`` and ``baseline_hypervolume(...)``.
    - ``hypervolume(objectives=None, reference=None)`` and ``hypervolume_curve(...)``: see
      :meth:`hypervolume` for the normalisation and the reference point.
    - ``knee(objectives=None)``: see :meth:`knee` for the method.
    - Queries: ``most_compressed(max_drop=D)``, ``most_accurate(min_compression=C)``,
      ``within(macs=, latency_ms=, size_bytes=)``; ``trial(n)`` and ``plan(n)`` for one trial.

    Rows are pandas Series (``row.name`` is the trial number); a query with no answer returns
    None (or an empty frame); a query on a run with no completed trial raises PrunetuneError.

    Example:
        >>> run = load_run("runs/demo")  # doctest: +SKIP
        >>> run.trials[["state", "accuracy", "compression"]].head()  # doctest: +SKIP
        >>> run.most_compressed(max_drop=1.0)["compression"]  # doctest: +SKIP
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path).expanduser()
        if not self.path.is_dir():
            raise PrunetuneError(f"{self.path} is not a run folder: no such folder.")
        saved = self.path / "experiment.yaml"
        if not saved.is_file():
            raise PrunetuneError(f"{self.path} is not a run folder: {saved.name} is missing.")
        self.experiment: Settings = read_settings(saved)
        if not self.experiment.storage and not (self.path / "study.db").is_file():
            raise PrunetuneError(f"{self.path} is not a run folder: study.db is missing.")
        url = storage_url(self.path, self.experiment.storage)
        try:
            self.study: optuna.Study = open_readonly(url, run_study_name(self.path))
        except KeyError:
            raise PrunetuneError(f"{url} holds no study named {run_study_name(self.path)!r}: {self.path} is not a run folder.") from None
        names = self.study.metric_names or list(self.experiment.objective.objectives)
        self.objectives: list[tuple[str, str]] = [
            (name, direction.name.lower()) for name, direction in zip(names, self.study.directions, strict=True)
        ]
        self._frame: pd.DataFrame | None = None

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r}, {len(self.study.get_trials(deepcopy=False))} trials)"

    # -- the ledger ---------------------------------------------------------------------------

    @property
    def constraints(self) -> list[str]:
        return [str(text) for text in self.experiment.objective.constraints]

    @property
    def base_checkpoint(self) -> Path:
        model = self.experiment.model
        return Path(model.checkpoint).expanduser() if model.checkpoint else self.path / "base.pt"

    def data(self) -> DataSplits:
        """The run's data, split as its trials saw it (same spec, validation share, seed and limit)."""
        from prunetune.zoo.datasets import open_data

        return open_data(self.experiment.data, seed=self.experiment.seed)

    def register_methods(self) -> None:
        """Register the methods of the user's own the run searched (named by reference in its
        experiment), so that its plans can be applied again in this process."""
        from prunetune.pruners import resolve_method

        for name in self.experiment.methods:
            resolve_method(name)

    def refresh(self) -> Run:
        """Forget the cached trials, so the next read sees trials finished since."""
        self._frame = None
        return self

    @property
    def trials(self) -> pd.DataFrame:
        if self._frame is None:
            self._frame = _with_finalized(_frame(self.study.get_trials(deepcopy=False)), finalized_records(self.study))
        return self._frame

    @property
    def metric_names(self) -> list[str]:
        return [column for column in self.trials.columns if column not in FIXED_COLUMNS]

    def searched(self) -> pd.DataFrame:
        """The trials of the search, baselines left out."""
        frame = self.trials
        return frame[frame["baseline"].isna()]

    def counts(self) -> dict[str, int]:
        """Searched trials per outcome: complete, pruned, failed (not interrupted), interrupted,
        running; and how many trials ran baselines."""
        frame = self.searched()
        state, interrupted = frame["state"], frame["interrupted"]
        return {
            "baselines": int(self.trials["baseline"].notna().sum()),
            "total": len(frame),
            "complete": int((state == "COMPLETE").sum()),
            "pruned": int((state == "PRUNED").sum()),
            "failed": int(((state == "FAIL") & ~interrupted).sum()),
            "interrupted": int(((state == "FAIL") & interrupted).sum()),
            "running": int(state.isin(["RUNNING", "WAITING"]).sum()),
        }

    def fail_reasons(self, top: int = 3) -> list[tuple[str, int]]:
        """The most common reasons among failed (not interrupted) trials, with their counts."""
        frame = self.trials
        failed = frame[(frame["state"] == "FAIL") & ~frame["interrupted"]]  # baselines' failures too
        reasons = failed["fail_reason"].fillna("unknown").map(lambda text: str(text).strip().splitlines()[-1] if str(text).strip() else "unknown")
        return [(str(reason), int(count)) for reason, count in reasons.value_counts().head(top).items()]

    def base(self) -> dict[str, float]:
        """The base model's accuracy, parameters and MACs, recovered from any completed trial.

        compression = base nonzero params / pruned nonzero params, macs_reduction = base / pruned
        MACs and accuracy_drop = base - pruned (pp), so one trial gives the base exactly; no torch.
        Any completed trial will do, one that misses a constraint too.
        """
        frame = self.trials
        done = frame[frame["state"] == "COMPLETE"]
        if done.empty:
            done = self._completed()  # raises the run's "nothing to answer from yet"
        row = done.iloc[0]
        base: dict[str, float] = {}
        for name, drop in (("accuracy", "accuracy_drop"), ("test_accuracy", "test_accuracy_drop")):
            if _has(row, name) and _has(row, drop):
                base[name] = float(row[name]) + float(row[drop]) / 100.0
        if _has(row, "nonzero_params") and _has(row, "compression"):
            base["params"] = float(round(row["nonzero_params"] * row["compression"]))
        if _has(row, "macs") and _has(row, "macs_reduction"):
            base["macs"] = float(round(row["macs"] * row["macs_reduction"]))
        return base

    def trial(self, number: int) -> pd.Series:
        """One trial's row; PrunetuneError for a number the run does not have."""
        frame = self.trials
        if number not in frame.index:
            raise PrunetuneError(f"{self.path} has no trial {number} (trials 0 to {len(frame) - 1}).")
        return frame.loc[number]

    def plan(self, number: int) -> dict[str, Any]:
        """The plan trial ``number`` applied (plain data, see :class:`prunetune.pruners.Plan`)."""
        plan = self.trial(number)["plan"]
        if not isinstance(plan, dict):
            raise PrunetuneError(f"Trial {number} of {self.path} recorded no plan (state {self.trial(number)['state']}).")
        return plan

    # -- the front ------------------------------------------------------------------------------

    def resolve(self, objectives: Objectives = None) -> list[tuple[str, str]]:
        """Objectives as [(metric, direction)], names checked; a bare name takes its known direction."""
        if objectives is None:
            return list(self.objectives)
        items = list(objectives.items()) if isinstance(objectives, Mapping) else list(objectives)
        if not items:
            raise PrunetuneError("The 'objectives' must name at least one metric. Got none instead.")
        known = self.metric_names
        resolved = []
        for item in items:
            name, direction = (item, None) if isinstance(item, str) else tuple(item)
            if name not in known:
                raise PrunetuneError(
                    f"Unknown metric {name!r}. The trials of {self.path} recorded: {', '.join(known) or 'no metrics'}."
                )
            direction = direction or self._direction(name)
            if direction not in ("maximize", "minimize"):
                raise PrunetuneError(f"The direction of {name!r} must be 'maximize' or 'minimize'. Got {direction!r} instead.")
            resolved.append((name, direction))
        return resolved

    def _direction(self, name: str) -> str:
        directions = dict(self.objectives)
        directions.update(self.experiment.objective.directions)
        if name not in directions and name in METRICS:  # the catalogue's names mean the same in every objective
            directions[name] = METRICS[name].direction
        if name not in directions:
            raise PrunetuneError(f"The direction of metric {name!r} is not known: pass it as ({name!r}, 'maximize' or 'minimize').")
        return directions[name]

    def candidates(self) -> pd.DataFrame:
        """Feasible COMPLETE searched trials: the ones a front, a query or a hypervolume may use."""
        frame = self.searched()
        return frame[(frame["state"] == "COMPLETE") & frame["feasible"]]

    def baselines(self) -> pd.DataFrame:
        """Feasible COMPLETE trials of baselines (``baseline`` names each), in trial order."""
        frame = self.trials
        return frame[frame["baseline"].notna() & (frame["state"] == "COMPLETE") & frame["feasible"]]

    def baseline_front(self, objectives: Objectives = None) -> pd.DataFrame:
        """The baselines' non-dominated trials over ``objectives``, most compressed first (empty if none)."""
        chosen = self.resolve(objectives)
        done = self.baselines()
        done = done[done[[name for name, _ in chosen]].apply(np.isfinite).all(axis=1)]
        if done.empty:
            return done
        mask = nondominated_mask(done[[name for name, _ in chosen]].to_numpy(dtype=float), [d for _, d in chosen])
        return _sorted(done[mask], chosen)

    def baseline_hypervolume(self, objectives: Objectives = None, reference: Sequence[float] | None = None, *, label: str | None = None) -> float:
        """The hypervolume (as :meth:`hypervolume` normalises it) of every baseline's trials, or of one
        baseline's (``label``: ``"uniform"``, ``"global"``...); 0 when there are none."""
        done = self.baselines()
        if label is not None:
            done = done[done["baseline"].str.split(":").str[0] == label]
        return self._hypervolume(done, objectives, reference)

    def _completed(self, objectives: Objectives = ()) -> pd.DataFrame:
        """Feasible completed trials with finite values of ``objectives``; a clear error when there are none."""
        done = self.candidates()
        if done.empty:
            counts = self.counts()
            raise PrunetuneError(
                f"No completed feasible trial in {self.path} ({counts['complete']} complete, {counts['failed']} failed, "
                f"{counts['pruned']} pruned, {counts['interrupted']} interrupted): nothing to answer from yet."
            )
        names = [name for name, _ in self.resolve(objectives)] if objectives else []
        return done[done[names].apply(np.isfinite).all(axis=1)] if names else done

    def front(self, objectives: Objectives = None) -> pd.DataFrame:
        """The non-dominated feasible completed trials over ``objectives``, most compressed first.

        Duplicated points are all kept (as Optuna's ``best_trials`` keeps them).
        """
        self._completed()
        chosen = self.resolve(objectives)
        done = self._completed(chosen)
        mask = nondominated_mask(done[[name for name, _ in chosen]].to_numpy(dtype=float), [d for _, d in chosen])
        return _sorted(done[mask], chosen)

    def normalised(self, frame: pd.DataFrame, objectives: Objectives = None) -> np.ndarray:
        """``frame``'s objective values in the hypervolume's minimised, normalised space (see :meth:`hypervolume`)."""
        chosen = self.resolve(objectives)
        columns = []
        for name, direction in chosen:
            bounds = None
            if not (name in METRICS and METRICS[name].scaled):
                values = self.candidates()[name].to_numpy(dtype=float)
                values = values[np.isfinite(values)]
                bounds = (float(values.min()), float(values.max())) if len(values) else (0.0, 1.0)
            columns.append(normalise(name, frame[name].to_numpy(dtype=float), direction=direction, bounds=bounds))
        return np.stack(columns, axis=1) if columns else np.zeros((len(frame), 0))

    def reference(self, objectives: Objectives = None) -> list[float]:
        """The default reference point in the normalised space: 1 for every objective.

        1 is the base model's value for accuracies, drops and ratios (so a plan no better than
        the unpruned model adds no volume), and the worst value seen for min-max scaled metrics.
        """
        return [1.0] * len(self.resolve(objectives))

    def hypervolume(self, objectives: Objectives = None, reference: Sequence[float] | None = None) -> float:
        """pymoo's hypervolume of the front in a normalised, minimised objective space.

        Normalisation (see :func:`normalise`): accuracy -> 1 - accuracy, compression and other
        base/pruned ratios -> 1 / ratio, accuracy drops -> drop / 100; any other metric is min-max
        scaled over this run's feasible completed trials (so only those runs compare). The
        reference point, in that space, defaults to 1 per objective; for (accuracy, compression)
        the space is the unit square and the HV is the fraction of it the front covers.
        """
        return self._hypervolume(self.candidates(), objectives, reference)

    def _hypervolume(self, frame: pd.DataFrame, objectives: Objectives, reference: Sequence[float] | None) -> float:
        chosen = self.resolve(objectives)
        ref = list(reference) if reference is not None else self.reference(chosen)
        if len(ref) != len(chosen):
            raise PrunetuneError(f"The 'reference' point needs {len(chosen)} values (one per objective). Got {ref!r} instead.")
        points = self.normalised(frame, chosen)
        points = points[np.isfinite(points).all(axis=1)] if len(points) else points
        if not len(points):
            return 0.0
        return pareto_hypervolume(points, ["minimize"] * len(chosen), ref)

    def hypervolume_curve(self, objectives: Objectives = None, reference: Sequence[float] | None = None) -> pd.DataFrame:
        """The hypervolume after the first n finished trials (in the order they finished), n = 1..N.

        Columns ``trials`` (n), ``number`` (the n-th finished trial) and ``hypervolume``; failed
        and pruned trials count as trials and add no volume (all zeros when none completed). Empty
        when no trial has finished.
        """
        import pandas as pd

        usable = set(self.candidates().index)
        chosen = self.resolve(objectives) if usable else []  # nothing completed: no metric to check yet
        frame = self.searched()
        finished = frame[frame["state"].isin(["COMPLETE", "PRUNED", "FAIL"]) & ~frame["interrupted"]]
        finished = finished.sort_values(["datetime_complete", "number"], na_position="last", kind="stable")
        rows, kept, volume = [], [], 0.0
        for n, number in enumerate(finished.index, start=1):
            if number in usable and frame.loc[number, [name for name, _ in chosen]].map(is_finite_number).all():
                kept.append(number)
                volume = self._hypervolume(frame.loc[kept], chosen, reference)
            rows.append({"trials": n, "number": int(number), "hypervolume": volume})
        return pd.DataFrame(rows, columns=["trials", "number", "hypervolume"])

    def knee(self, objectives: Objectives = None) -> pd.Series:
        """The front member farthest from the line (hyperplane) through the front's extremes.

        Method: the front is mapped to the normalised space of :meth:`hypervolume` (all minimised),
        then min-max scaled to [0, 1] per objective over the front. There a two-objective front's
        extremes are (0, 1) and (1, 0), the line through them is x + y = 1 (the hyperplane sum = 1
        for more objectives), and the knee is the member farthest from it on the ideal side, i.e.
        with the smallest sum of scaled values. When no member lies on that side (a front with one
        or two members, or a concave one), the knee is the member closest (Euclidean) to the
        ideal point (0, ..., 0) instead. Ties go to the member listed first (the more compressed).
        """
        chosen = self.resolve(objectives)
        front = self.front(chosen)
        points = self.normalised(front, chosen)
        low, high = points.min(axis=0), points.max(axis=0)
        scaled = (points - low) / np.where(high > low, high - low, 1.0)
        sums = scaled.sum(axis=1)
        if (sums < 1.0 - 1e-9).any():
            return front.iloc[int(np.argmin(sums))]
        return front.iloc[int(np.argmin(np.linalg.norm(scaled, axis=1)))]

    # -- queries --------------------------------------------------------------------------------

    def most_compressed(self, max_drop: float, *, drop: str = "accuracy_drop") -> pd.Series | None:
        """The feasible completed trial with the highest compression whose ``drop`` (pp) is at most
        ``max_drop``; among equal compressions the more accurate. None when no trial is that close."""
        done = self._completed([(drop, "minimize"), ("compression", "maximize")])
        hits = done[done[drop] <= float(max_drop)]
        if hits.empty:
            return None
        return hits.sort_values(["compression", drop], ascending=[False, True], kind="stable").iloc[0]

    def most_accurate(self, min_compression: float, *, accuracy: str = "accuracy") -> pd.Series | None:
        """The feasible completed trial with the highest ``accuracy`` at or above ``min_compression``;
        among equal accuracies the more compressed. None when no trial is compressed that much."""
        done = self._completed([(accuracy, "maximize"), ("compression", "maximize")])
        hits = done[done["compression"] >= float(min_compression)]
        if hits.empty:
            return None
        return hits.sort_values([accuracy, "compression"], ascending=[False, False], kind="stable").iloc[0]

    def within(
        self,
        macs: float | None = None,
        latency_ms: float | None = None,
        size_bytes: float | None = None,
        *,
        objectives: Objectives = None,
    ) -> pd.DataFrame:
        """The front of the trials within every budget given (metric <= budget), most compressed first.

        The front is taken among the trials that fit, so a trial beaten only by one over budget
        is on it. Empty when nothing fits.
        """
        budgets = {name: value for name, value in (("macs", macs), ("latency_ms", latency_ms), ("size_bytes", size_bytes)) if value is not None}
        chosen = self.resolve(objectives)
        done = self._completed(chosen)
        for name, value in budgets.items():
            if name not in done.columns or not done[name].map(is_finite_number).any():
                raise PrunetuneError(
                    f"No completed trial of {self.path} measured {name!r}"
                    + (" (set objective.measure_latency: true)." if name == "latency_ms" else ".")
                )
            done = done[done[name] <= float(value)]
        if done.empty:
            return done
        mask = nondominated_mask(done[[name for name, _ in chosen]].to_numpy(dtype=float), [d for _, d in chosen])
        return _sorted(done[mask], chosen)


def _has(row: pd.Series, name: str) -> bool:
    return name in row.index and is_finite_number(row[name])


def _sorted(frame: pd.DataFrame, objectives: Sequence[tuple[str, str]]) -> pd.DataFrame:
    """Most compressed first when compression is recorded, else best first objective first."""
    if "compression" in frame.columns:
        return frame.sort_values(["compression", "number"], ascending=[False, True], kind="stable")
    name, direction = objectives[0]
    return frame.sort_values([name, "number"], ascending=[direction == "minimize", True], kind="stable")


def _with_finalized(frame: pd.DataFrame, records: Mapping[int, Mapping[str, Any]]) -> pd.DataFrame:
    """The finalize records' metrics (``final_accuracy``...) as columns of the trials they belong to."""
    for number, record in records.items():
        if number not in frame.index:
            continue
        for name, value in (record.get("metrics") or {}).items():
            if is_finite_number(value):
                if name not in frame.columns:
                    frame.insert(frame.columns.get_loc("feasible"), name, math.nan)
                frame.loc[number, name] = float(value)
    return frame


def _frame(trials: Sequence[FrozenTrial]) -> pd.DataFrame:
    """One row per trial (see :class:`Run`), metrics as columns in the order first seen."""
    import pandas as pd

    metric_names: list[str] = []
    rows = []
    for trial in trials:
        attrs = trial.user_attrs
        metrics = dict(attrs.get(ATTR_METRICS) or {})
        first = (attrs.get(ATTR_CURVE) or {}).get("0") or {}
        if "accuracy_pruned" not in metrics and is_finite_number(first.get("val_accuracy")):
            metrics["accuracy_pruned"] = first["val_accuracy"]  # the screening fidelity: pruned, BN recalibrated
        for name in metrics:
            if name not in metric_names and name not in FIXED_COLUMNS:
                metric_names.append(name)
        times = attrs.get(ATTR_TIMES) or {}
        seconds = times.get("seconds", metrics.get("seconds"))
        if seconds is None and trial.datetime_start and trial.datetime_complete:
            seconds = (trial.datetime_complete - trial.datetime_start).total_seconds()
        rows.append(
            {
                "number": trial.number,
                "state": trial.state.name,
                **{name: value for name, value in metrics.items() if name not in FIXED_COLUMNS},
                "feasible": is_feasible(trial),
                "interrupted": is_interrupted(trial),
                "baseline": attrs.get(ATTR_BASELINE),
                "fail_reason": attrs.get(ATTR_FAIL_REASON),
                "node": attrs.get(ATTR_NODE),
                "hostname": attrs.get(ATTR_HOST),
                "device": attrs.get(ATTR_DEVICE),
                "seconds": float(seconds) if seconds is not None else math.nan,
                "datetime_start": trial.datetime_start,
                "datetime_complete": trial.datetime_complete,
                "plan": attrs.get(ATTR_PLAN),
                "curve": attrs.get(ATTR_CURVE),
            }
        )
    columns = ["number", "state", *metric_names, *FIXED_COLUMNS[2:]]
    frame = pd.DataFrame(rows, columns=columns)
    for name in metric_names:
        frame[name] = pd.to_numeric(frame[name], errors="coerce").astype(float)
    frame["feasible"] = frame["feasible"].astype(bool)
    frame["interrupted"] = frame["interrupted"].astype(bool)
    frame.index = pd.Index(frame["number"].astype(int), name="trial")
    return frame
