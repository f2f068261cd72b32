"""The report of a run: the front on the terminal, and pareto.csv / .json, report.md and pareto.png
in the run folder; with several runs, their fronts overlaid and their hypervolume against trials.

Everything here reads a :class:`~prunetune.results.runs.Run`; nothing writes to the study. A run
with no completed trial still gets its counts and fail reasons written, and says so plainly.
"""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prunetune.errors import PrunetuneError
from prunetune.files import write_text
from prunetune.objectives.metrics import METRICS, format_metric, metric_title
from prunetune.results.front_table import COLUMNS, informative
from prunetune.results.runs import Run

if TYPE_CHECKING:
    import pandas as pd
    from rich.table import Table

__all__ = [
    "Queries",
    "RunSummary",
    "answer_lines",
    "front_table_for",
    "normalisation_text",
    "report_command",
    "summarise",
    "write_comparison",
    "write_report",
]


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
#: The HTML report's module (written separately); used when it is installed.
HTML_MODULE = "prunetune.results.report_html"


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
    message: str | None = None
    files: list[Path] = field(default_factory=list)

    def marks(self, *, short: bool = False) -> dict[int, str]:
        """Notes per trial number: knee and query answers, for the tables (short: for a terminal)."""
        marks: dict[int, list[str]] = {}
        if self.knee is not None:
            marks.setdefault(self.knee, []).append("knee")
        for key, label in _answer_labels(self.queries, short=short).items():
            answer = self.answers.get(key)
            for number in answer if isinstance(answer, list) else [answer]:
                if number is not None:
                    marks.setdefault(int(number), []).append(label)
        return {number: ", ".join(labels) for number, labels in marks.items()}


def _answer_labels(queries: Queries, *, short: bool = False) -> dict[str, str]:
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
        what = f"none of its {counts['complete']} completed trials meets the constraints ({', '.join(run.constraints)})"
    elif counts["total"] == 0:
        what = "no trial has run yet"
    else:
        parts = [f"{counts[key]} {key}" for key in ("failed", "pruned", "interrupted", "running") if counts[key]]
        what = "no trial completed (" + ", ".join(parts) + ")"
    reason = f"; most common failure: {summary.fail_reasons[0][0]} ({summary.fail_reasons[0][1]}x)" if summary.fail_reasons else ""
    return f"No front for {run.path}: {what}{reason}."


# -- the terminal ---------------------------------------------------------------------------------


def _rows(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Front rows as plain dicts with the trial number and only the finite metrics."""
    rows = []
    for number, row in frame.iterrows():
        plain = {"trial": int(number)}
        for key, value in row.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and key != "number":
                plain[str(key)] = float(value)
        rows.append(plain)
    return rows


def front_table_for(summary: RunSummary) -> Table:
    """The front as a rich table, most compressed first, the knee and query answers marked."""
    from prunetune.results.front_table import front_table

    assert summary.front is not None  # only called for runs with a front
    extra = [name for name, _ in summary.run.objectives]
    title = f"Pareto front of {summary.run.path} ({len(summary.front)} of {summary.counts['complete']} completed trials)"
    return front_table(_rows(summary.front), title=title, marks=summary.marks(short=True), extra=extra)


def answer_lines(summary: RunSummary) -> list[str]:
    """The knee, hypervolume and query answers as sentences."""
    if summary.message:
        return [summary.message]
    run, lines = summary.run, []
    lines.append(f"knee: trial {summary.knee} ({_describe(run, summary.knee)})")
    lines.append(f"hypervolume: {summary.hypervolume:.4f} ({normalisation_text(run.objectives)})")
    queries = summary.queries
    for key, label in _answer_labels(queries).items():
        if key not in summary.answers:
            continue
        answer = summary.answers[key]
        if key == "within":
            text = ", ".join(f"trial {n}" for n in answer) if answer else "no completed trial fits"
        else:
            text = f"trial {answer} ({_describe(run, answer)})" if answer is not None else _closest(run, key)
        lines.append(f"{label}: {text}")
    lines.extend(summary.notes)
    return lines


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
        if name in row.index and _finite(row[name]):
            parts.append(fmt.format(float(row[name])))
    if not parts:
        parts = [f"{name} {float(row[name]):.4g}" for name, _ in run.objectives if _finite(row[name])]
    return ", ".join(parts)


def _finite(value: Any) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


# -- files ------------------------------------------------------------------------------------------


def write_report(run: Run, out_dir: str | Path | None = None, queries: Queries = Queries()) -> RunSummary:
    """Write pareto.csv, pareto.json, report.md, pareto.png (and report.html when its module is
    installed) into ``out_dir`` (default: the run folder); returns the summary with ``files``."""
    out = Path(out_dir) if out_dir is not None else run.path
    out.mkdir(parents=True, exist_ok=True)
    summary = summarise(run, queries)
    summary.files = [
        _write_csv(summary, out / "pareto.csv"),
        _write_json(summary, out / "pareto.json"),
        _write_markdown(summary, out / "report.md"),
        _plot_run(summary, out / "pareto.png"),
    ]
    html = _write_html(run, out)
    if html is not None:
        summary.files.append(html)
    return summary


def _write_html(run: Run, out_dir: Path) -> Path | None:
    """The interactive report.html, by :mod:`prunetune.results.report_html` when it exists."""
    if importlib.util.find_spec(HTML_MODULE) is None:
        return None
    from importlib import import_module

    path = out_dir / "report.html"
    import_module(HTML_MODULE).write_html(run, path)
    return path


def _front_records(summary: RunSummary) -> list[dict[str, Any]]:
    """The front's trials as plain records: number, marks, every finite metric, plan."""
    if summary.front is None:
        return []
    metric_names = summary.run.metric_names
    marks = summary.marks()
    records = []
    for number, row in summary.front.iterrows():
        records.append(
            {
                "trial": int(number),
                "marks": marks.get(int(number), ""),
                "metrics": {name: float(row[name]) for name in metric_names if _finite(row[name])},
                "node": row["node"] if isinstance(row["node"], str) else None,
                "seconds": float(row["seconds"]) if _finite(row["seconds"]) else None,
                "plan": row["plan"] if isinstance(row["plan"], dict) else None,
            }
        )
    return records


def _write_csv(summary: RunSummary, path: Path) -> Path:
    import pandas as pd

    objective_names = [name for name, _ in summary.run.objectives]
    metric_names = objective_names + [name for name in summary.run.metric_names if name not in objective_names]
    rows = []
    for record in _front_records(summary):
        row: dict[str, Any] = {"trial": record["trial"], "marks": record["marks"]}
        row.update({name: record["metrics"].get(name) for name in metric_names})
        row.update({"node": record["node"], "seconds": record["seconds"], "plan": json.dumps(record["plan"], sort_keys=True)})
        rows.append(row)
    frame = pd.DataFrame(rows, columns=["trial", "marks", *metric_names, "node", "seconds", "plan"])
    return write_text(path, frame.to_csv(index=False))


def _json_ready(value: Any) -> Any:
    """NaN and infinities become null: JSON has no such numbers."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(key): _json_ready(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(item) for item in value]
    return value


def _write_json(summary: RunSummary, path: Path) -> Path:
    run = summary.run
    document = {
        "run": str(run.path),
        "experiment": run.experiment.name,
        "objectives": [list(pair) for pair in run.objectives],
        "constraints": run.constraints,
        "counts": summary.counts,
        "fail_reasons": [list(pair) for pair in summary.fail_reasons],
        "message": summary.message,
        "base": summary.base,
        "hypervolume": {"value": summary.hypervolume, "reference": summary.reference, "normalisation": normalisation_text(run.objectives)},
        "knee": summary.knee,
        "queries": {
            key: {"question": label, "answer": summary.answers.get(key)}
            for key, label in _answer_labels(summary.queries).items()
        },
        "front": _front_records(summary),
        "metrics": {  # what each metric of the front means, from the catalogue
            name: {"title": METRICS[name].title, "direction": METRICS[name].direction, "meaning": METRICS[name].meaning}
            for name in run.metric_names if name in METRICS
        },
    }
    return write_text(path, json.dumps(_json_ready(document), indent=2, sort_keys=False) + "\n")


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub-flavoured Markdown table (first column left-aligned, the rest right)."""
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(["---"] + ["---:"] * (len(header) - 1)) + " |"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)






def _write_markdown(summary: RunSummary, path: Path) -> Path:
    run, counts = summary.run, summary.counts
    out = [f"# Report: {run.experiment.name}", "", f"Run folder `{run.path}`; objectives "
           + ", ".join(f"{name} ({direction})" for name, direction in run.objectives)
           + (f"; constraints {', '.join(run.constraints)}" if run.constraints else "") + ".", ""]
    out += ["## Trials", ""]
    out.append(markdown_table(["outcome", "trials"], [(key, counts[key]) for key in ("complete", "pruned", "failed", "interrupted", "running", "total")]))
    if summary.fail_reasons:
        out += ["", "Most common fail reasons:", ""]
        out += [f"- {reason} ({count}x)" for reason, count in summary.fail_reasons]
    out.append("")
    if summary.message:
        out += [f"**{summary.message}**", ""]
        return write_text(path, "\n".join(out))
    out += ["## Summary", ""] + [f"- {line}" for line in answer_lines(summary)] + [""]
    out += _papers_table(summary)
    out += ["## Pareto front", "", "Most compressed first; `pareto.csv` and `pareto.json` hold every metric and each plan.", ""]
    assert summary.front is not None
    extra = [name for name, _ in run.objectives if name not in COLUMNS]
    records = summary.front.to_dict("records")
    columns = [
        name for name in (*COLUMNS, *extra)
        if name in summary.front.columns and summary.front[name].map(_finite).any()
        and (name in dict(run.objectives) or informative(name, records))
    ]
    marks = summary.marks()
    rows = [
        [str(number)] + [format_metric(name, row[name]) for name in columns] + [marks.get(int(number), "")]
        for number, row in summary.front.iterrows()
    ]
    out += [markdown_table(["trial", *map(metric_title, columns), "notes"], rows), "", "![Pareto front](pareto.png)", ""]
    return write_text(path, "\n".join(out))


#: The pruned rows of the papers' table: their "params" counts nonzero weights, and their
#: "params reduction" is the compression.
PAPER_COLUMNS = (
    "nonzero_params", "compression", "bits_compression", "macs", "macs_reduction", "accuracy", "accuracy_drop",
    "test_accuracy", "test_accuracy_drop",
)


def _papers_table(summary: RunSummary) -> list[str]:
    """Base against chosen pruned models, as the seed papers tabulate them."""
    run, base = summary.run, summary.base
    if "params" not in base:
        return []
    picks: list[tuple[str, int]] = [(f"knee (trial {summary.knee})", summary.knee)] if summary.knee is not None else []
    labels = _answer_labels(summary.queries)
    for key in ("most_compressed", "most_accurate"):
        number = summary.answers.get(key)
        if number is not None:
            picks.append((f"{labels[key]} (trial {number})", number))
    if summary.front is not None and len(summary.front):
        top = int(summary.front.index[0])
        picks.append((f"most compressed on the front (trial {top})", top))
    header = ["model", "params", "params reduction", "bits reduction", "MACs", "MACs reduction", "val acc.", "drop (pp)",
              "test acc.", "test drop (pp)"]
    rows = [["base", format_metric("params", base["params"]), "1.00x", "1.00x", format_metric("macs", base.get("macs")),
             "1.00x" if "macs" in base else "", format_metric("accuracy", base.get("accuracy")), "",
             format_metric("test_accuracy", base.get("test_accuracy")), ""]]
    seen = set()
    for label, number in picks:
        if number in seen:
            continue
        seen.add(number)
        row = run.trial(number)
        rows.append([label, *(format_metric(name, row.get(name)) for name in PAPER_COLUMNS)])
    bits = informative("bits_compression", [run.trial(number) for number in seen])  # only with quantized layers
    keep = [i for i in range(len(header)) if i == 0 or (any(row[i] for row in rows) and (bits or i != 3))]
    header, rows = [header[i] for i in keep], [[row[i] for i in keep] for row in rows]
    note = "Parameters count nonzero weights; the base figures are recovered from the trials' ratios and drops."
    return ["## Base against pruned", "", markdown_table(header, rows), "", note, ""]


# -- figures ----------------------------------------------------------------------------------------


def _axes_metrics(run: Run) -> tuple[str, str] | None:
    """(x, y) metrics to plot: compression and accuracy when recorded, else the first two objectives."""
    names = run.metric_names
    if "compression" in names and "accuracy" in names:
        return "compression", "accuracy"
    objectives = [name for name, _ in run.objectives]
    return (objectives[1], objectives[0]) if len(objectives) >= 2 else None


def _figure() -> tuple[Any, Any]:
    """A figure drawn with the Agg canvas directly: no pyplot, no global backend switch."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7.5, 5.0), dpi=110)
    FigureCanvasAgg(figure)
    return figure, figure.add_subplot(1, 1, 1)


def _plot_run(summary: RunSummary, path: Path) -> Path:
    run = summary.run
    figure, ax = _figure()
    frame = run.trials
    pair = _axes_metrics(run)
    ax.set_title(f"{run.experiment.name}: {summary.counts['complete']} complete, {summary.counts['pruned']} pruned, "
                 f"{summary.counts['failed']} failed", fontsize=10)
    single = run.objectives[0][0]
    if pair is not None and set(pair) <= set(frame.columns):
        x, y = pair
        _scatter_trials(ax, frame, x, y)
        if summary.front is not None:
            front = summary.front.sort_values(x)
            ax.plot(front[x], front[y], "o-", color="tab:red", markersize=6, label=f"front ({len(front)})", zorder=3)
            if summary.knee is not None:
                knee = run.trial(summary.knee)
                ax.plot([knee[x]], [knee[y]], marker="*", color="gold", markeredgecolor="black", markersize=16,
                        linestyle="none", label=f"knee (trial {summary.knee})", zorder=4)
        if x in ("compression", "macs_reduction", "bits_compression"):
            ax.set_xscale("log")
        ax.set_xlabel(metric_title(x) + (" (base / pruned, log scale)" if x == "compression" else ""))
        ax.set_ylabel(metric_title(y))
    elif single in frame.columns:
        done = frame[frame["state"] == "COMPLETE"]
        ax.plot(done["number"], done[single], "o", alpha=0.3, color="tab:blue", label=f"completed ({len(done)})")
        if summary.front is not None:
            ax.plot(summary.front["number"], summary.front[single], "o", color="tab:red", label="best")
        ax.set_xlabel("trial")
        ax.set_ylabel(metric_title(single))
    else:
        ax.set_axis_off()
    if summary.message:
        ax.text(0.5, 0.5, summary.message, transform=ax.transAxes, ha="center", va="center", wrap=True, fontsize=9)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="best", fontsize=8)
    ax.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path)
    return path


def _scatter_trials(ax: Any, frame: pd.DataFrame, x: str, y: str) -> None:
    """All trials faint; pruned ones at their last reported accuracy; failed ones with a compression as crosses."""
    done = frame[frame["state"] == "COMPLETE"]
    ax.plot(done[x], done[y], "o", color="tab:blue", alpha=0.25, label=f"completed ({len(done)})")
    for state, marker, color, label in (("PRUNED", "v", "tab:orange", "pruned"), ("FAIL", "x", "tab:gray", "failed")):
        rows = frame[frame["state"] == state]
        if rows.empty or x not in rows.columns:
            continue
        ys = rows[y] if y in rows.columns else None
        if y == "accuracy" and "val_accuracy" in rows.columns:
            ys = rows[y].fillna(rows["val_accuracy"]) if ys is not None else rows["val_accuracy"]
        if ys is None:
            continue
        shown = rows[x].map(_finite) & ys.map(_finite)
        if shown.any():
            ax.plot(rows[x][shown], ys[shown], marker, color=color, alpha=0.5, linestyle="none",
                    label=f"{label} ({len(rows)}; at last report)" if state == "PRUNED" else f"{label} ({len(rows)})")


# -- several runs -----------------------------------------------------------------------------------


def _labels(runs: Sequence[Run]) -> list[str]:
    """Run folder names, with the parent added where two share a name."""
    names = [run.path.name for run in runs]
    return [f"{run.path.parent.name}/{name}" if names.count(name) > 1 else name for run, name in zip(runs, names, strict=True)]


def write_comparison(runs: Sequence[Run], out_dir: str | Path, *, echo: Callable[[str], None] = print) -> list[Path]:
    """fronts.png (every run's front on one plot) and hypervolume.csv / hypervolume.md (HV against
    trials, one column per run) in ``out_dir``. Fronts and HV use the first run's objectives."""
    import pandas as pd

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    objectives = runs[0].objectives
    labels = _labels(runs)
    figure, ax = _figure()
    curves = []
    for run, label in zip(runs, labels, strict=True):
        missing = [name for name, _ in objectives if name not in run.metric_names]
        if missing and not run.candidates().empty:
            echo(f"{run.path}: left out of the comparison, no {', '.join(missing)} recorded.")
            continue
        curve = run.hypervolume_curve(objectives)
        curves.append(curve.assign(run=label)[["run", "trials", "hypervolume"]])
        if run.candidates().empty:
            continue
        front = run.front(objectives)
        pair = _axes_metrics(run) or (objectives[0][0], objectives[0][0])
        front = front.sort_values(pair[0])
        ax.plot(front[pair[0]], front[pair[1]], "o-", label=f"{label} (HV {run.hypervolume(objectives):.3f})", alpha=0.8)
        ax.set_xlabel(pair[0])
        ax.set_ylabel(pair[1])
        if pair[0] in ("compression", "macs_reduction", "bits_compression"):
            ax.set_xscale("log")
    ax.set_title("Pareto fronts", fontsize=10)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="best", fontsize=8)
    else:
        ax.text(0.5, 0.5, "no run has a completed trial", transform=ax.transAxes, ha="center", va="center")
    ax.grid(alpha=0.3)
    figure.tight_layout()
    png = out / "fronts.png"
    figure.savefig(png)
    long = pd.concat(curves, ignore_index=True) if curves else pd.DataFrame(columns=["run", "trials", "hypervolume"])
    csv = write_text(out / "hypervolume.csv", long.to_csv(index=False))
    md = write_text(out / "hypervolume.md", _hypervolume_markdown(long, [label for label in labels if label in set(long["run"])], objectives))
    return [png, csv, md]


def _hypervolume_markdown(long: pd.DataFrame, labels: Sequence[str], objectives: Sequence[tuple[str, str]]) -> str:
    """HV after n trials, one column per run, at about ten values of n (and each run's last)."""
    most = int(long["trials"].max()) if len(long) else 0
    step = max(1, math.ceil(most / 10))
    ends = {int(long[long["run"] == label]["trials"].max()) for label in labels}
    checkpoints = sorted((set(range(step, most + 1, step)) | ends) - {0})
    rows = []
    for n in checkpoints:
        cells = [str(n)]
        for label in labels:
            curve = long[(long["run"] == label) & (long["trials"] == n)]
            cells.append(f"{curve['hypervolume'].iloc[0]:.4f}" if len(curve) else "")
        rows.append(cells)
    title = f"# Hypervolume against trials\n\nHypervolume of each run's front after n finished trials; {normalisation_text(objectives)}. Blank: the run has fewer finished trials.\n\n"
    return title + markdown_table(["trials", *labels], rows) + "\n"


# -- the command ------------------------------------------------------------------------------------


def report_command(paths: Sequence[str | Path], *, output: str | Path | None = None, queries: Queries = Queries(),
                   console: Any = None) -> int:
    """`prunetune report`: open every run first (a bad folder stops before any file is written),
    then report each; several runs also get the comparison (in ``output`` or the first run folder)."""
    from rich.console import Console

    from prunetune.results.runs import load_run

    console = console or Console(width=None if sys.stdout.isatty() else 120)
    runs = [load_run(path) for path in paths]
    for run in runs:
        target = Path(output) if output is not None and len(runs) == 1 else None
        summary = write_report(run, target, queries)
        if summary.front is not None:
            console.print(front_table_for(summary))
        for line in answer_lines(summary):
            console.print(line, highlight=False, markup=False)
        console.print("wrote " + ", ".join(str(path) for path in summary.files), highlight=False, markup=False)
    if len(runs) > 1:
        files = write_comparison(runs, output if output is not None else runs[0].path, echo=console.print)
        console.print("compared " + ", ".join(_labels(runs)) + ": wrote " + ", ".join(str(path) for path in files), highlight=False, markup=False)
    return 0
