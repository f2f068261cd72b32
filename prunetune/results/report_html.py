"""The interactive ``report.html`` of a run: one self-contained file that opens from disk offline.

Plotly draws the figures and its JavaScript is inlined once (``include_plotlyjs=True``), so the
page needs no network and can be mailed or archived as it is. The page shows the accuracy /
compression scatter (every trial, the front and the knee, the plan on hover), hypervolume
against trials, the per-layer ratios of the front's members as heatmaps, and the front as a
table in the seed papers' style (base vs pruned parameters, MACs, accuracy drop).

It reads a run through :class:`prunetune.results.runs.Run` only: ``trials``, ``front()``,
``knee()``, ``hypervolume_curve()``, ``objectives``, ``path``, ``experiment`` (and ``base()``
for the base row of the table when the run offers it).
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prunetune.errors import PrunetuneError, is_finite_number
from prunetune.files import write_text
from prunetune.objectives.metrics import format_metric, metric_title, table_columns
from prunetune.results.front_table import informative

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["write_html"]

#: The uid of the scatter trace that holds one point per completed trial. Plotly gives its SVG
#: group the class ``trace<uid>``; the page also writes the count it rendered into
#: ``data-completed-points`` on <body>, which is what a browser test reads.
COMPLETED_UID = "completed"

#: Metrics shown in the table: the catalogue's "page" metrics, with its titles and formats.
TABLE_COLUMNS = table_columns("page")

#: Metrics listed on hover, when a trial has them.
HOVER_METRICS = (
    "accuracy", "test_accuracy", "accuracy_drop", "compression", "bits_compression", "macs_reduction", "nonzero_params",
    "latency_ms",
)

SCATTER_NOTE = (
    "Every trial faint (open circles: infeasible), pruned trials at the accuracy where early stopping cut them, "
    "failed trials that recorded both values as crosses; the front highlighted and the knee starred; baselines, "
    "where the run has them, as dashed lines beside it. Hover a point for its metrics and plan."
)

#: One marker per baseline, as in pareto.png, so that the page tells them apart in black and white too.
BASELINE_SYMBOLS = {"uniform": "square", "global": "diamond", "global-magnitude": "triangle-up", "lamp": "triangle-down"}

STYLE = """
body { font-family: system-ui, sans-serif; margin: 24px auto; max-width: 1320px; color: #222; }
h1 { font-size: 1.5em; margin-bottom: 4px; } h2 { font-size: 1.15em; margin: 28px 0 4px; }
.meta, .note { color: #555; font-size: 0.92em; } .empty { font-size: 1.2em; padding: 16px; background: #fff4e5;
  border-left: 4px solid #e8a33d; }
table { border-collapse: collapse; font-size: 0.92em; margin-top: 8px; }
th, td { padding: 4px 10px; border-bottom: 1px solid #ddd; text-align: right; }
th { background: #f3f3f3; } td.l, th.l { text-align: left; } tr.base td { font-weight: 600; background: #fafafa; }
"""


def write_html(run: Any, path: str | Path) -> Path:
    """Write the run's report as one self-contained HTML file at ``path``; returns the path.

    A run with no completed trial gets a page that says so (with the failures' reasons) instead
    of empty plots; that page needs no plotly. The file is written through a temporary file so a
    reader never sees half a page.
    """
    path = Path(path)
    frame = run.trials
    counts = run.counts()
    done = _completed(frame)
    title = f"prunetune report: {_name(run)}"
    objectives = ", ".join(f"{name} ({direction})" for name, direction in run.objectives)
    meta = f"{run.path} · {_counts_text(counts)} · objectives: {objectives}"
    head = [f"<h1>{_e(title)}</h1>", f'<p class="meta">{_e(meta)}</p>']
    if done.empty:
        body = head + [_empty_section(frame, counts)]
    else:
        body = head + _report_sections(run, frame, done, counts)
    page = (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>{_e(title)}</title><style>{STYLE}</style></head>\n"
        f"<body data-completed-trials=\"{len(done)}\">\n" + "\n".join(body) + "\n</body></html>\n"
    )
    return write_text(path, page)


# -- the page ----------------------------------------------------------------------------------


def _report_sections(run: Any, frame: pd.DataFrame, done: pd.DataFrame, counts: Mapping[str, int]) -> list[str]:
    """Scatter, hypervolume, heatmaps and table for a run with at least one completed trial."""
    go = _plotly()
    front = run.front()
    knee = run.knee()
    knee_number = int(knee["number"])
    x_name, y_name = _axes(run, frame)
    figures: list[tuple[str, str, Any, str]] = [
        ("Accuracy against compression", SCATTER_NOTE,
         _scatter(go, frame, front, knee_number, x_name, y_name), _count_script()),
        ("Hypervolume against trials", _hv_note(run), _hv_figure(go, run), ""),
    ]
    for key, figure in _heatmaps(go, front, knee_number):
        figures.append((f"Per-layer {key} of the front's members", _heatmap_note(key), figure, ""))
    sections: list[str] = []
    for index, (heading, note, figure, script) in enumerate(figures):
        div = figure.to_html(
            full_html=False,
            include_plotlyjs=index == 0,  # plotly.js inline, once, before the first figure
            post_script=script or None,
            config={"displaylogo": False, "responsive": True},
        )
        sections.append(f"<h2>{_e(heading)}</h2><p class=\"note\">{_e(note)}</p>\n{div}")
    if len(figures) == 2:
        sections.append("<h2>Per-layer ratios</h2><p class=\"note\">The front's plans hold no per-layer values to map.</p>")
    sections.append(_table_section(run, front, knee_number))
    reasons = _failure_list(frame)
    if reasons:
        sections.append(f"<h2>Failures</h2>{reasons}")
    return sections


def _scatter(go: Any, frame: pd.DataFrame, front: pd.DataFrame, knee: int, x_name: str, y_name: str) -> Any:
    """All trials faint, failed and pruned marked, the front as a line, the knee as a star, each
    baseline as a dashed line of its own."""
    figure = go.Figure()
    labelled = frame["baseline"].notna()
    baselines, frame = frame[labelled], frame[~labelled]
    done = _completed(frame)
    feasible = done["feasible"] if "feasible" in done.columns else [True] * len(done)
    figure.add_trace(go.Scatter(
        x=_values(done, x_name), y=_values(done, y_name), mode="markers", uid=COMPLETED_UID,
        name=f"completed ({len(done)})", hovertext=[_hover(row, x_name, y_name) for _, row in done.iterrows()],
        hoverinfo="text",
        marker={"size": 9, "color": "rgba(60, 100, 170, 0.35)", "line": {"width": 1, "color": "rgba(60, 100, 170, 0.6)"},
                "symbol": ["circle" if ok else "circle-open" for ok in feasible]},
    ))
    pruned = frame[frame["state"] == "PRUNED"]
    pruned_y = _values(pruned, y_name)
    if y_name == "accuracy" and "val_accuracy" in pruned.columns:  # where early stopping cut it
        pruned_y = [y if is_finite_number(y) else v for y, v in zip(pruned_y, _values(pruned, "val_accuracy"))]
    failed = frame[(frame["state"] == "FAIL") & ~_interrupted(frame)]
    for what, rows, ys, symbol, color in (
        ("pruned", pruned, pruned_y, "triangle-down", "rgba(230, 140, 30, 0.75)"),
        ("failed", failed, _values(failed, y_name), "x", "rgba(200, 40, 40, 0.8)"),
    ):
        if not len(rows):
            continue
        texts = [_hover(row, x_name, y_name) for _, row in rows.iterrows()]
        shown = [(x, y, text) for x, y, text in zip(_values(rows, x_name), ys, texts) if is_finite_number(x) and is_finite_number(y)]
        unplaced = len(rows) - len(shown)
        figure.add_trace(go.Scatter(
            x=[p[0] for p in shown], y=[p[1] for p in shown], hovertext=[p[2] for p in shown], hoverinfo="text",
            mode="markers", marker={"size": 9, "symbol": symbol, "color": color},
            name=f"{what} ({len(rows)}{f', {unplaced} without values, not shown' if unplaced else ''})",
        ))
    _add_baselines(go, figure, _completed(baselines), x_name, y_name)
    ordered = front.sort_values(x_name) if x_name in front.columns else front
    figure.add_trace(go.Scatter(
        x=_values(ordered, x_name), y=_values(ordered, y_name), mode="lines+markers", name=f"front ({len(front)})",
        hovertext=[_hover(row, x_name, y_name) for _, row in ordered.iterrows()], hoverinfo="text",
        line={"color": "#d62728", "width": 2}, marker={"size": 11, "color": "#d62728"},
    ))
    row = front[front["number"] == knee]
    figure.add_trace(go.Scatter(
        x=_values(row, x_name), y=_values(row, y_name), mode="markers", name=f"knee (trial {knee})",
        hovertext=[_hover(r, x_name, y_name) for _, r in row.iterrows()], hoverinfo="text",
        marker={"size": 20, "symbol": "star", "color": "#ffd700", "line": {"width": 1.5, "color": "#333"}},
    ))
    figure.update_layout(
        template="plotly_white", height=500, margin={"l": 60, "r": 20, "t": 20, "b": 50},
        xaxis_title=_axis_title(x_name), yaxis_title=_axis_title(y_name),
        legend={"orientation": "h", "y": 1.06, "x": 0}, hoverlabel={"align": "left"},
    )
    return figure


def _add_baselines(go: Any, figure: Any, done: pd.DataFrame, x_name: str, y_name: str) -> None:
    """One dashed trace per baseline (uniform, global, ...), its points in order along the x axis."""
    if done.empty or x_name not in done.columns:
        return
    kinds = done["baseline"].astype(str).str.split(":").str[0]
    for kind in sorted(set(kinds)):
        points = done[kinds == kind].sort_values(x_name)
        figure.add_trace(go.Scatter(
            x=_values(points, x_name), y=_values(points, y_name), mode="lines+markers", name=f"baseline {kind} ({len(points)})",
            hovertext=[f"{_e(str(row['baseline']))}<br>" + _hover(row, x_name, y_name) for _, row in points.iterrows()],
            hoverinfo="text", line={"dash": "dash", "width": 1.5}, marker={"size": 8, "symbol": BASELINE_SYMBOLS.get(kind, "cross")},
        ))


def _hv_figure(go: Any, run: Any) -> Any:
    curve = run.hypervolume_curve()
    figure = go.Figure(go.Scatter(
        x=list(curve["trials"]), y=list(curve["hypervolume"]), mode="lines+markers", line={"shape": "hv"},
        customdata=list(curve["number"]), hovertemplate="after %{x} trials (last: trial %{customdata})<br>HV %{y:.4f}<extra></extra>",
        name="hypervolume",
    ))
    figure.update_layout(template="plotly_white", height=340, margin={"l": 60, "r": 20, "t": 10, "b": 50},
                         xaxis_title="finished trials", yaxis_title="hypervolume")
    return figure


def _hv_note(run: Any) -> str:
    return (
        "Hypervolume of the feasible completed trials after each finished trial (failed and pruned trials add none), "
        "in Run.hypervolume's normalised space: accuracies as 1 - a, ratios as 1 / r, drops as pp / 100, both minimised, "
        f"reference point {_reference(run)}, so an unpruned model adds nothing."
    )


def _heatmaps(go: Any, front: pd.DataFrame, knee: int) -> list[tuple[str, Any]]:
    """One heatmap per kind of per-unit value in the plans (ratios, sensitivities, ...): units x members."""
    members = [(int(row["number"]), row.get("plan")) for _, row in front.iterrows()]
    labels = [f"#{number}{' (knee)' if number == knee else ''}" for number, _ in members]
    kinds: dict[str, dict[str, dict[int, float]]] = {}  # kind -> "section · unit" -> member -> value
    for column, (_, plan) in enumerate(members):
        for section, content in (plan or {}).items() if isinstance(plan, Mapping) else ():
            if not isinstance(content, Mapping):
                continue
            for kind, values in content.items():
                if isinstance(values, Mapping) and values and all(is_finite_number(v) for v in values.values()):
                    for unit, value in values.items():
                        kinds.setdefault(kind, {}).setdefault(f"{section} · {unit}", {})[column] = float(value)
    figures = []
    for kind, rows in kinds.items():
        names = list(rows)
        z = [[rows[name].get(column) for column in range(len(members))] for name in names]
        fraction = kind == "ratios"
        figure = go.Figure(go.Heatmap(
            z=z, x=labels, y=names, colorscale="Reds" if fraction else "Viridis",
            zmin=0.0 if fraction else None, zmax=1.0 if fraction else None,
            texttemplate="%{z:.2f}", hovertemplate="%{y}<br>trial %{x}<br>" + kind + " %{z:.3f}<extra></extra>",
            colorbar={"title": {"text": kind}},
        ))
        figure.update_layout(template="plotly_white", height=140 + 36 * len(names), margin={"l": 160, "r": 20, "t": 36, "b": 60},
                             xaxis_title="front members, most compressed first", yaxis={"autorange": "reversed"})
        figures.append((kind, figure))
    return figures


def _heatmap_note(kind: str) -> str:
    if kind == "ratios":
        return "Fraction removed per unit (filters: channels removed; weights: weights zeroed), one column per front member."
    if kind == "sensitivities":
        return "Per-layer sensitivity s (weights with |w| < s x std zeroed, Wu et al. 2021), one column per front member."
    return f"Per-unit {kind} of each front member's plan."


def _table_section(run: Any, front: pd.DataFrame, knee: int) -> str:
    """The front as the seed papers tabulate it: the base model first, then each member."""
    records, objectives = front.to_dict("records"), dict(run.objectives)
    columns = [
        name for name in TABLE_COLUMNS
        if name in front.columns and front[name].map(is_finite_number).any() and (name in objectives or informative(name, records))
    ]
    columns += [name for name, _ in run.objectives if name not in columns and name in front.columns]
    base = _base(run)
    base_values = {**base, "nonzero_params": base.get("params"), "compression": 1.0, "bits_compression": 1.0, "macs_reduction": 1.0}
    head = "".join(f"<th>{_e(metric_title(name))}</th>" for name in columns)
    base_cells = "".join(f"<td>{_cell(name, base_values.get(name))}</td>" for name in columns)
    rows = [f'<tr class="base"><td class="l">Base model</td>{base_cells}<td></td></tr>']
    for _, row in front.iterrows():
        number = int(row["number"])
        cells = "".join(f"<td>{_cell(name, row.get(name))}</td>" for name in columns)
        rows.append(f'<tr><td class="l">Trial {number}</td>{cells}<td class="l">{"knee" if number == knee else ""}</td></tr>')
    note = ("Base vs pruned, most compressed first. Compression = base / pruned parameters (nonzero weights); "
            "bits compression = base / pruned bits of storage (a quantized layer: its code bits plus its codebook); "
            "MACs reduction = base / pruned MACs of the physically smaller model; drop = base - pruned accuracy in points.")
    return (f"<h2>Pareto front</h2><p class=\"note\">{_e(note)}</p>"
            f'<table><thead><tr><th class="l">Model</th>{head}<th></th></tr></thead><tbody>{"".join(rows)}</tbody></table>')


def _empty_section(frame: pd.DataFrame, counts: Mapping[str, int]) -> str:
    """The page of a run with no completed trial: say so, and why the trials ended."""
    message = (f"No completed trial in this run ({_counts_text(counts)}): there is no front, hypervolume or "
               "per-layer plot to show yet.")
    return f'<p class="empty" id="no-completed-trial">{_e(message)}</p>' + _failure_list(frame, everything=True)


def _failure_list(frame: pd.DataFrame, *, everything: bool = False) -> str:
    """Trials that did not complete, with their reasons (all of them, or only failed ones)."""
    states = ["FAIL", "PRUNED", "RUNNING", "WAITING"] if everything else ["FAIL"]
    ended = frame[frame["state"].isin(states)]
    if ended.empty:
        return ""
    rows = []
    for _, row in ended.iterrows():
        reason = row.get("fail_reason")
        reason = str(reason).strip().splitlines()[-1] if isinstance(reason, str) and reason.strip() else ""
        state = "INTERRUPTED" if row["state"] == "FAIL" and bool(row.get("interrupted", False)) else row["state"]
        rows.append(f'<tr><td>{int(row["number"])}</td><td class="l">{_e(state)}</td><td class="l">{_e(reason)}</td></tr>')
    return ('<table><thead><tr><th>Trial</th><th class="l">State</th><th class="l">Reason</th></tr></thead>'
            f"<tbody>{''.join(rows)}</tbody></table>")


def _count_script() -> str:
    """JS run after the scatter renders: count the SVG points of the completed trace into <body>."""
    return (
        "var gd = document.getElementById('{plot_id}');"
        f"var g = gd.querySelector('.scatterlayer .trace{COMPLETED_UID}');"
        "document.body.setAttribute('data-completed-points', g ? g.querySelectorAll('path.point').length : 0);"
    )


# -- values ------------------------------------------------------------------------------------


def _plotly() -> Any:
    """plotly.graph_objects, imported only when a page with plots is written."""
    try:
        import plotly.graph_objects as go
    except ImportError:
        raise PrunetuneError(
            "report.html needs plotly: install it with pip install 'plotly>=5' (it is a prunetune dependency)."
        ) from None
    return go


def _completed(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[frame["state"] == "COMPLETE"]


def _interrupted(frame: pd.DataFrame) -> pd.Series:
    if "interrupted" in frame.columns:
        return frame["interrupted"].fillna(False).astype(bool)
    return frame["state"] != frame["state"]  # all False


def _counts_text(counts: Mapping[str, int]) -> str:
    parts = [f"{counts['total']} trials", f"{counts['complete']} complete", f"{counts['pruned']} pruned", f"{counts['failed']} failed"]
    parts += [f"{counts[key]} {key}" for key in ("interrupted", "running") if counts[key]]
    return ", ".join(parts)


def _axes(run: Any, frame: pd.DataFrame) -> tuple[str, str]:
    """(x, y) of the scatter: compression and accuracy when recorded, else the objectives."""
    names = [name for name, _ in run.objectives]
    y = "accuracy" if "accuracy" in frame.columns else names[0]
    x = "compression" if "compression" in frame.columns else next((n for n in names if n != y), "number")
    return (x if x != y else "number"), y


def _axis_title(name: str) -> str:
    return {"compression": "compression (base / pruned parameters, x)", "accuracy": "validation accuracy",
            "number": "trial"}.get(name, name)


def _base(run: Any) -> dict[str, float]:
    base = getattr(run, "base", None)
    if not callable(base):
        return {}
    try:
        return dict(base())
    except PrunetuneError:
        return {}


def _reference(run: Any) -> str:
    reference = getattr(run, "reference", None)
    values = reference() if callable(reference) else [1.0] * len(run.objectives)
    return "(" + ", ".join(f"{v:g}" for v in values) + ")"


def _values(frame: pd.DataFrame, name: str) -> list[float | None]:
    if name == "number":
        return [float(n) for n in frame["number"]]
    if name not in frame.columns:
        return [None] * len(frame)
    return [float(v) if is_finite_number(v) else None for v in frame[name]]


def _hover(row: pd.Series, x_name: str, y_name: str) -> str:
    """A trial's hover text: number and state, its metrics, its plan one section a line."""
    lines = [f"<b>trial {int(row['number'])}</b> · {_e(str(row['state']).lower())}"]
    for name in dict.fromkeys([y_name, x_name, *HOVER_METRICS]):
        if name != "number" and name in row.index and is_finite_number(row[name]):
            lines.append(f"{_e(metric_title(name))}: {_e(format_metric(name, row[name]))}")
    if isinstance(row.get("device"), str):
        lines.append(f"device: {_e(row['device'])}")
    if row["state"] == "PRUNED" and "val_accuracy" in row.index and is_finite_number(row["val_accuracy"]):
        lines.append(f"val_accuracy when stopped: {float(row['val_accuracy']):.4g}")
    reason = row.get("fail_reason")
    if isinstance(reason, str) and reason.strip():
        lines.append(_e(reason.strip().splitlines()[-1][:120]))
    plan = row.get("plan")
    if isinstance(plan, Mapping):
        lines.append("plan:")
        for section, content in plan.items():
            lines.extend(_plan_lines(str(section), content))
    return "<br>".join(lines)


def _plan_lines(section: str, content: Any) -> list[str]:
    if not isinstance(content, Mapping):
        return [f"&nbsp;&nbsp;{_e(section)}: {_e(str(content))[:120]}"]
    lines = []
    for key, value in content.items():
        if isinstance(value, Mapping):
            items = [f"{_e(str(unit))} {float(v):.2f}" if is_finite_number(v) else f"{_e(str(unit))} {_e(str(v))}" for unit, v in value.items()]
            for start in range(0, len(items), 4):
                prefix = f"{_e(section)} {_e(str(key))}: " if start == 0 else "&nbsp;&nbsp;&nbsp;&nbsp;"
                lines.append("&nbsp;&nbsp;" + prefix + ", ".join(items[start:start + 4]))
        else:
            lines.append(f"&nbsp;&nbsp;{_e(section)} {_e(str(key))}: {_e(str(value))[:80]}")
    return lines


def _cell(name: str, value: Any) -> str:
    return _e(format_metric(name, value)) if is_finite_number(value) else "&ndash;"




def _name(run: Any) -> str:
    experiment = getattr(run, "experiment", None)
    name = getattr(experiment, "name", None)
    return f"{name} ({Path(run.path).name})" if name else Path(run.path).name


def _e(text: str) -> str:
    return html.escape(text, quote=True)
