"""The report's figures: a run's trials and front (pareto.png), drawn with matplotlib's Agg canvas."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from prunetune.errors import is_finite_number
from prunetune.objectives.metrics import metric_title
from prunetune.results.runs import Run
from prunetune.results.summary import RunSummary

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["axes_metrics", "figure", "plot_run"]


def axes_metrics(run: Run) -> tuple[str, str] | None:
    """(x, y) metrics to plot: compression and accuracy when recorded, else the first two objectives."""
    names = run.metric_names
    if "compression" in names and "accuracy" in names:
        return "compression", "accuracy"
    objectives = [name for name, _ in run.objectives]
    return (objectives[1], objectives[0]) if len(objectives) >= 2 else None


def figure() -> tuple[Any, Any]:
    """A figure drawn with the Agg canvas directly: no pyplot, no global backend switch."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7.5, 5.0), dpi=110)
    FigureCanvasAgg(figure)
    return figure, figure.add_subplot(1, 1, 1)


def plot_run(summary: RunSummary, path: Path) -> Path:
    run = summary.run
    canvas, ax = figure()
    frame = run.trials
    pair = axes_metrics(run)
    ax.set_title(f"{run.experiment.name}: {summary.counts['complete']} complete, {summary.counts['pruned']} pruned, "
                 f"{summary.counts['failed']} failed", fontsize=10)
    single = run.objectives[0][0]
    if pair is not None and set(pair) <= set(frame.columns):
        x, y = pair
        _scatter_trials(ax, frame, x, y)
        if summary.front is not None:
            front = summary.front.sort_values(x)
            ax.plot(front[x], front[y], "o-", color="tab:red", markersize=6, label=f"front ({len(front)})", zorder=3)
            if summary.baselines is not None:
                _plot_baselines(ax, run, x, y)
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
    canvas.tight_layout()
    canvas.savefig(path)
    return path


#: One marker per baseline, so that a report tells them apart in black and white too.
BASELINE_MARKERS = {"uniform": "s", "global": "D", "global-magnitude": "^", "lamp": "v"}


def _plot_baselines(ax: Any, run: Run, x: str, y: str) -> None:
    """Each baseline's trials as a dashed line of its own marker, beside the searched front."""
    done = run.baselines()
    kinds = done["baseline"].astype(str).str.split(":").str[0]
    for kind in sorted(set(kinds)):
        points = done[kinds == kind].sort_values(x)
        ax.plot(points[x], points[y], linestyle="--", marker=BASELINE_MARKERS.get(kind, "P"), markersize=5, alpha=0.8,
                label=f"baseline {kind} ({len(points)})", zorder=2)


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
        shown = rows[x].map(is_finite_number) & ys.map(is_finite_number)
        if shown.any():
            ax.plot(rows[x][shown], ys[shown], marker, color=color, alpha=0.5, linestyle="none",
                    label=f"{label} ({len(rows)}; at last report)" if state == "PRUNED" else f"{label} ({len(rows)})")
