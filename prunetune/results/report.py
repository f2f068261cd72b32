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
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prunetune.errors import is_finite_number
from prunetune.files import write_text
from prunetune.objectives.metrics import METRICS, format_metric, metric_title
from prunetune.results.front_table import COLUMNS, informative
from prunetune.results.figures import axes_metrics, figure, plot_run
from prunetune.results.runs import Run
from prunetune.results.summary import Queries, RunSummary, answer_labels, answer_lines, normalisation_text, summarise

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


#: The HTML report's module (written separately); used when it is installed.
HTML_MODULE = "prunetune.results.report_html"


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
        plot_run(summary, out / "pareto.png"),
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
                "metrics": {name: float(row[name]) for name in metric_names if is_finite_number(row[name])},
                "node": row["node"] if isinstance(row["node"], str) else None,
                "device": row["device"] if isinstance(row.get("device"), str) else None,
                "seconds": float(row["seconds"]) if is_finite_number(row["seconds"]) else None,
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
        row.update({"node": record["node"], "device": record["device"], "seconds": record["seconds"],
                    "plan": json.dumps(record["plan"], sort_keys=True)})
        rows.append(row)
    frame = pd.DataFrame(rows, columns=["trial", "marks", *metric_names, "node", "device", "seconds", "plan"])
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
            for key, label in answer_labels(summary.queries).items()
        },
        "front": _front_records(summary),
        "baselines": {
            "hypervolume": summary.baseline_hypervolumes,
            "front": [
                {"trial": int(number), "baseline": str(row["baseline"]),
                 "metrics": {name: float(row[name]) for name in run.metric_names if is_finite_number(row[name])},
                 "plan": row["plan"] if isinstance(row["plan"], dict) else None}
                for number, row in (summary.baselines.iterrows() if summary.baselines is not None else [])
            ],
        },
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
        if name in summary.front.columns and summary.front[name].map(is_finite_number).any()
        and (name in dict(run.objectives) or informative(name, records))
    ]
    marks = summary.marks()
    rows = [
        [str(number)] + [format_metric(name, row[name]) for name in columns] + [marks.get(int(number), "")]
        for number, row in summary.front.iterrows()
    ]
    out += [markdown_table(["trial", *map(metric_title, columns), "notes"], rows), "", "![Pareto front](pareto.png)", ""]
    if summary.baselines is not None:
        out += ["## Baselines", "", "The baselines' own front (hand-set and global-ranking plans, run like the search's trials).", ""]
        rows = [
            [str(number), str(row["baseline"])] + [format_metric(name, row[name]) for name in columns]
            for number, row in summary.baselines.iterrows()
        ]
        out += [markdown_table(["trial", "baseline", *map(metric_title, columns)], rows), ""]
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
    labels = answer_labels(summary.queries)
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
    canvas, ax = figure()
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
        pair = axes_metrics(run) or (objectives[0][0], objectives[0][0])
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
    canvas.tight_layout()
    png = out / "fronts.png"
    canvas.savefig(png)
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
