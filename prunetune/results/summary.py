"""What a run's report finds: the front, the knee, the hypervolume and the answers to the questions
people ask of a front, as data (:class:`RunSummary`) and as sentences (:func:`answer_lines`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prunetune.errors import PrunetuneError, is_finite_number
from prunetune.objectives.metrics import METRICS, format_metric
from prunetune.results.runs import Run
from prunetune.search.ledger import saved_latency_model

if TYPE_CHECKING:
    from collections.abc import Sequence

    import pandas as pd

__all__ = ["Queries", "RunSummary", "answer_labels", "answer_lines", "baseline_line", "normalisation_text", "summarise"]


def normalisation_text(objectives: Sequence[tuple[str, str]]) -> str:
    """How each objective enters the hypervolume, e.g. '1 - accuracy, 1 / compression; reference (1, 1)'."""
    parts = []
    for name, direction in objectives:
        text = METRICS[name].normalisation_text() if name in METRICS else None
        if text is not None:
            parts.append(text)
        else:
            parts.append(f"{name} min-max scaled over the run ({'0 = highest' if direction == 'maximize' else '0 = lowest'})")
    return ", ".join(parts) + f", all minimised; reference ({', '.join('1' for _ in objectives)})"


@dataclass(frozen=True, kw_only=True)
class Queries:
    """The questions a report answers besides the knee (None leaves one out)."""

    max_drop: float | None = 1.0
    min_compression: float | None = None
    macs: float | None = None
    latency_ms: float | None = None
    size_bytes: float | None = None

    @property
    def budgets(self) -> dict[str, float]:
        return {name: value for name, value in (("macs", self.macs), ("latency_ms", self.latency_ms), ("size_bytes", self.size_bytes)) if value is not None}


@dataclass
class RunSummary:
    """What one run's report found; ``message`` says why parts are missing (no completed trial...)."""

    run: Run
    queries: Queries
    counts: dict[str, int]
    fail_reasons: list[tuple[str, int]]
    front: pd.DataFrame | None = None
    knee: int | None = None
    hypervolume: float | None = None
    reference: list[float] = field(default_factory=list)
    base: dict[str, float] = field(default_factory=dict)
    answers: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    #: The baselines' own front (labelled trials), and the hypervolume of each baseline and of all.
    baselines: pd.DataFrame | None = None
    baseline_hypervolumes: dict[str, float] = field(default_factory=dict)
    message: str | None = None
    files: list[Path] = field(default_factory=list)

    def marks(self, *, short: bool = False) -> dict[int, str]:
        """Notes per trial number: knee and query answers, for the tables (short: for a terminal)."""
        marks: dict[int, list[str]] = {}
        if self.knee is not None:
            marks.setdefault(self.knee, []).append("knee")
        for key, label in answer_labels(self.queries, short=short).items():
            answer = self.answers.get(key)
            for number in answer if isinstance(answer, list) else [answer]:
                if number is not None:
                    marks.setdefault(int(number), []).append(label)
        return {number: ", ".join(labels) for number, labels in marks.items()}


def answer_labels(queries: Queries, *, short: bool = False) -> dict[str, str]:
    labels = {}
    if queries.max_drop is not None:
        labels["most_compressed"] = f"max-drop {queries.max_drop:g}" if short else f"most compressed, drop <= {queries.max_drop:g} pp"
    if queries.min_compression is not None:
        labels["most_accurate"] = f"min-compr. {queries.min_compression:g}" if short else f"most accurate at >= {queries.min_compression:g}x"
    if queries.budgets:
        labels["within"] = "budget" if short else "within " + ", ".join(f"{name} <= {value:g}" for name, value in queries.budgets.items())
    return labels


def summarise(run: Run, queries: Queries = Queries()) -> RunSummary:
    """Front, knee, hypervolume and query answers of ``run``; never raises for an empty run."""
    summary = RunSummary(run=run, queries=queries, counts=run.counts(), fail_reasons=run.fail_reasons())
    if not run.baselines().empty:
        summary.baselines = run.baseline_front()
        labels = sorted({str(label).split(":")[0] for label in run.baselines()["baseline"]})
        summary.baseline_hypervolumes = {label: run.baseline_hypervolume(label=label) for label in labels}
        summary.baseline_hypervolumes["all"] = run.baseline_hypervolume()
    if run.candidates().empty:
        summary.message = _nothing_message(run, summary)
        return summary
    summary.front = run.front()
    summary.knee = int(run.knee()["number"])
    summary.reference = run.reference()
    summary.hypervolume = run.hypervolume()
    summary.base = run.base()
    metrics = set(run.metric_names)
    if queries.max_drop is not None:
        if {"accuracy_drop", "compression"} <= metrics:
            row = run.most_compressed(max_drop=queries.max_drop)
            summary.answers["most_compressed"] = None if row is None else int(row["number"])
        else:
            summary.notes.append("--max-drop needs the metrics accuracy_drop and compression, which this run lacks.")
    if queries.min_compression is not None:
        if {"accuracy", "compression"} <= metrics:
            row = run.most_accurate(min_compression=queries.min_compression)
            summary.answers["most_accurate"] = None if row is None else int(row["number"])
        else:
            summary.notes.append("--min-compression needs the metrics accuracy and compression, which this run lacks.")
    if queries.budgets:
        try:
            summary.answers["within"] = [int(n) for n in run.within(**queries.budgets)["number"]]
        except PrunetuneError as error:
            summary.notes.append(str(error))
    return summary


def _nothing_message(run: Run, summary: RunSummary) -> str:
    counts = summary.counts
    if counts["complete"]:
        what = f"{counts['complete']} completed, none within {' and '.join(run.constraints)}{_closest_feasible(run)}"
    elif counts["total"] == 0:
        what = "no trial has run yet"
    else:
        parts = [f"{counts[key]} {key}" for key in ("failed", "pruned", "interrupted", "running") if counts[key]]
        what = "no trial completed (" + ", ".join(parts) + ")"
    reason = f"; most common failure: {summary.fail_reasons[0][0]} ({summary.fail_reasons[0][1]}x)" if summary.fail_reasons else ""
    return f"No front for {run.path}: {what}{reason}."


def _closest_feasible(run: Run) -> str:
    """'; closest 2.78 pp (trial 3)': the completed trial nearest to meeting every constraint."""
    from prunetune.search.goals import parse_constraint

    searched = run.searched()
    done = searched[searched["state"] == "COMPLETE"]
    bounds = [parse_constraint(text) for text in run.constraints]
    bounds = [(name, op, bound) for name, op, bound in bounds if name in done.columns]
    if done.empty or not bounds:
        return ""

    def excess(row: Any) -> float:
        return sum(max(0.0, (row[n] - b) if op == "<=" else (b - row[n])) for n, op, b in bounds if is_finite_number(row[n]))

    number = min(done.index, key=lambda index: (excess(done.loc[index]), index))
    name = bounds[0][0]
    value = format_metric(name, done.loc[number, name])
    unit = " pp" if name in METRICS and METRICS[name].kind == "points" else ""
    return f"; closest {value}{unit} (trial {number})"


def answer_lines(summary: RunSummary) -> list[str]:
    """The knee, hypervolume and query answers as sentences."""
    if summary.message:
        return [summary.message]
    run, lines = summary.run, []
    lines.append(f"knee: trial {summary.knee} ({_describe(run, summary.knee)})")
    lines.append(f"hypervolume: {summary.hypervolume:.4f} ({normalisation_text(run.objectives)})")
    if summary.baseline_hypervolumes:
        lines.append(baseline_line(summary))
    queries = summary.queries
    for key, label in answer_labels(queries).items():
        if key not in summary.answers:
            continue
        answer = summary.answers[key]
        if key == "within":
            text = ", ".join(f"trial {n}" for n in answer) if answer else "no completed trial fits"
        else:
            text = f"trial {answer} ({_describe(run, answer)})" if answer is not None else _closest(run, key)
        lines.append(f"{label}: {text}")
    target = _target_line(run)
    if target:
        lines.append(target)
    devices = _devices(run)
    if devices:
        lines.append(f"measured on: {devices} (fine-tuning, accuracy and latency of each trial)")
    lines.extend(summary.notes)
    return lines


def baseline_line(summary: RunSummary) -> str:
    """'baselines: uniform HV 0.5812, global HV 0.6011; the searched front has 1.04x the best (global)'."""
    volumes = {label: value for label, value in summary.baseline_hypervolumes.items() if label != "all"}
    shown = ", ".join(f"{label} HV {value:.4f}" for label, value in volumes.items())
    best_label, best = max(volumes.items(), key=lambda item: item[1])
    if summary.hypervolume is None:
        return f"baselines: {shown}; no searched front yet"
    ratio = f"{summary.hypervolume / best:.2f}x" if best > 0 else "more than"
    return f"baselines: {shown}; the searched front has {ratio} the best baseline's hypervolume ({best_label})"


def _devices(run: Run) -> str:
    """The devices the completed trials ran on, with counts ("cuda:0 (12), cpu (3)"); "" if none recorded."""
    frame = run.trials
    if "device" not in frame.columns:
        return ""
    counts = frame.loc[frame["state"] == "COMPLETE", "device"].dropna().value_counts()
    return ", ".join(f"{device} ({count})" for device, count in counts.items())


def _target_line(run: Run) -> str:
    """The run's target and, for latency_ms, the model plans were repaired on and how the timings fared."""
    target = run.experiment.objective.get("target")
    if not target:
        return ""
    from prunetune.pruners.target import Target

    budget = Target.from_config(target.to_dict())
    line = f"target: {budget}; every plan was repaired onto it before training"
    latency = saved_latency_model(run.path) if budget.metric == "latency_ms" else None
    if latency is not None:
        line += f", predicted by {latency.describe()}"
        frame = run.trials
        timed = frame.loc[frame["state"] == "COMPLETE", "latency_ms"].dropna() if "latency_ms" in frame.columns else []
        if len(timed):
            line += f"; timed within it: {int((timed <= budget.value).sum())} of {len(timed)} completed trials"
    return line


def _closest(run: Run, key: str) -> str:
    """Why a query found nothing: the best the run got on that measure."""
    done = run.candidates()
    if key == "most_compressed":
        name, order = "accuracy_drop", done.sort_values(["accuracy_drop", "compression"], ascending=[True, False], kind="stable")
    else:
        name, order = "compression", done.sort_values(["compression", "accuracy"], ascending=[False, False], kind="stable")
    number = int(order.index[0])
    unit = " pp" if name == "accuracy_drop" else "x"
    word = "smallest drop" if key == "most_compressed" else "highest compression"
    return f"no completed trial qualifies ({word}: {done.loc[number, name]:.2f}{unit}, trial {number})"


def _describe(run: Run, number: int) -> str:
    row = run.trial(number)
    parts = []
    for name, fmt in (("accuracy", "accuracy {:.2%}"), ("accuracy_drop", "drop {:.2f} pp"), ("compression", "compression {:.2f}x"), ("macs_reduction", "MACs {:.2f}x")):
        if name in row.index and is_finite_number(row[name]):
            parts.append(fmt.format(float(row[name])))
    if not parts:
        parts = [f"{name} {float(row[name]):.4g}" for name, _ in run.objectives if is_finite_number(row[name])]
    return ", ".join(parts)
