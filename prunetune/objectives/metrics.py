"""The one catalogue of metrics: each name's direction, kind, format and column title.

Objectives take their directions from here; every table (terminal, Markdown, HTML), hover text,
plot axis and hypervolume normalisation reads the same entry. A metric of a user's own objective
that the catalogue does not know is shown plainly under its own name.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np

__all__ = ["METRICS", "Metric", "directions_of", "format_metric", "metric_title", "table_columns"]

#: How values of a kind are shown in a table cell.
_CELL = {
    "fraction": "{:.2%}", "points": "{:.2f}", "ratio": "{:.2f}x", "count": "{:,.0f}", "bytes": "{:,.1f}",
    "ms": "{:.3f}", "seconds": "{:.1f}", "score": "{:.4f}",
}


@dataclass(frozen=True)
class Metric:
    """One metric a trial may report.

    Attributes:
        name: Its key in a trial's metrics.
        direction: ``"maximize"`` or ``"minimize"``: which way a search should push it.
        kind: ``"fraction"`` (in [0, 1], shown as %), ``"points"`` (percentage points), ``"ratio"``
            (base / pruned, shown as 2.00x), ``"count"``, ``"bytes"`` (shown in KiB), ``"ms"``,
            ``"seconds"`` or ``"score"`` (any other number).
        title: The column title of tables.
        meaning: One line for help texts and reports.
        scaled: Whether hypervolumes put it on the base-relative scale of :meth:`normalised`
            (accuracies, drops and ratios); other metrics are min-max scaled over the run.
        tables: The tables that show it by default: ``"front"`` (the terminal and Markdown front)
            and ``"page"`` (the HTML report's), in catalogue order. Any table shows a run's objectives.
    """

    name: str
    direction: str
    kind: str
    title: str
    meaning: str
    scaled: bool = False
    tables: tuple[str, ...] = ()

    def cell(self, value: float) -> str:
        """``value`` as a table cell (sizes in KiB)."""
        number = float(value) / 1024 if self.kind == "bytes" else float(value)
        return _CELL[self.kind].format(number)

    def normalised(self, values: np.ndarray) -> np.ndarray | None:
        """Values on a minimised scale where 1 is "no better than the base": accuracies as 1 - a,
        drops as d / 100, ratios as 1 / r; None for a metric that is not :attr:`scaled`."""
        if not self.scaled:
            return None
        x = np.asarray(values, dtype=float)
        if self.kind == "fraction":
            return 1.0 - x
        if self.kind == "points":
            return x / 100.0
        with np.errstate(divide="ignore"):
            return 1.0 / x

    def normalisation_text(self) -> str | None:
        """How :meth:`normalised` maps this metric, in words (None where it does not)."""
        if not self.scaled:
            return None
        return {"fraction": f"1 - {self.name}", "points": f"{self.name} / 100"}.get(self.kind, f"1 / {self.name}")


def _catalogue(*metrics: Metric) -> Mapping[str, Metric]:
    return MappingProxyType({metric.name: metric for metric in metrics})


MAX, MIN = "maximize", "minimize"

#: Every metric prunetune's own objectives report, in the order tables show them.
METRICS: Mapping[str, Metric] = _catalogue(
    Metric(
        "accuracy", MAX, "fraction", "val acc.",
        "validation accuracy (or main score) after fine-tuning: what searches select on",
        scaled=True, tables=("front", "page"),
    ),
    Metric(
        "test_accuracy", MAX, "fraction", "test acc.",
        "test accuracy after fine-tuning: for the final report only",
        scaled=True, tables=("front", "page"),
    ),
    Metric(
        "accuracy_drop", MIN, "points", "drop (pp)",
        "base minus pruned validation accuracy, percentage points",
        scaled=True, tables=("front", "page"),
    ),
    Metric(
        "test_accuracy_drop", MIN, "points", "test drop (pp)",
        "base minus pruned test accuracy, percentage points",
        scaled=True, tables=("page",),
    ),
    Metric(
        "final_accuracy", MAX, "fraction", "final val acc.",
        "validation accuracy after `prunetune finalize` retrained the trial's model for longer",
        scaled=True, tables=("front", "page"),
    ),
    Metric(
        "final_test_accuracy", MAX, "fraction", "final test acc.",
        "test accuracy after finalize: the figure to report for a chosen model",
        scaled=True, tables=("front", "page"),
    ),
    Metric(
        "final_accuracy_drop", MIN, "points", "final drop (pp)",
        "base minus finalized validation accuracy, percentage points",
        scaled=True, tables=("page",),
    ),
    Metric(
        "final_test_accuracy_drop", MIN, "points", "final test drop (pp)",
        "base minus finalized test accuracy, percentage points",
        scaled=True, tables=("front", "page"),
    ),
    Metric("final_epochs", MAX, "count", "final epochs", "epochs finalize retrained the trial's model for"),
    Metric(
        "accuracy_pruned", MAX, "fraction", "val acc. pruned",
        "validation accuracy right after pruning and BN recalibration",
        scaled=True,
    ),
    Metric(
        "compression", MAX, "ratio", "compression",
        "base / pruned nonzero parameters",
        scaled=True, tables=("front", "page"),
    ),
    Metric(
        "bits_compression", MAX, "ratio", "bits compr.",
        "base / pruned bits of storage (quantized layers at their code width)",
        scaled=True, tables=("front", "page"),
    ),
    Metric(
        "macs_reduction", MAX, "ratio", "MACs reduction",
        "base / pruned multiply-accumulates of the physically smaller model",
        scaled=True, tables=("front", "page"),
    ),
    Metric("params", MIN, "count", "params", "parameters of the pruned model", tables=("front", "page")),
    Metric(
        "nonzero_params", MIN, "count", "nonzero",
        "nonzero parameters of the pruned model",
        tables=("front", "page"),
    ),
    Metric("macs", MIN, "count", "MACs", "multiply-accumulates of one example", tables=("page",)),
    Metric("size_bytes", MIN, "bytes", "size (KiB)", "size of the weights in storage", tables=("front",)),
    Metric("bits", MIN, "count", "bits", "bits of storage of the weights"),
    Metric(
        "latency_ms", MIN, "ms", "latency (ms)",
        "median latency of one example (with measure_latency)",
        tables=("front", "page"),
    ),
    Metric("seconds", MIN, "seconds", "seconds", "wall time of the trial"),
    # the reconstruction objective's own (accordion autoencoder)
    Metric("performance_drop", MIN, "points", "perf. drop (pp)", "A2E's name for accuracy_drop"),
    Metric("test_performance_drop", MIN, "points", "test perf. drop (pp)", "A2E's name for test_accuracy_drop"),
    Metric(
        "reconstruction_error", MIN, "score", "recon. error",
        "mean squared reconstruction error per value on val",
    ),
    Metric("test_reconstruction_error", MIN, "score", "test recon. error", "the same on test"),
    Metric("complexity_reduction", MAX, "fraction", "complexity red.", "1 - pruned / base nonzero parameters"),
    Metric("roc_auc", MAX, "score", "ROC-AUC", "ROC-AUC of reconstruction errors as anomaly scores, val"),
    Metric("average_precision", MAX, "score", "avg. precision", "average precision of the same, val"),
    Metric("test_roc_auc", MAX, "score", "test ROC-AUC", "ROC-AUC on test"),
    Metric("test_average_precision", MAX, "score", "test avg. precision", "average precision on test"),
)


def metric_title(name: str) -> str:
    """The column title of ``name`` (its own name for a metric the catalogue does not know)."""
    known = METRICS.get(name)
    return known.title if known is not None else name


def format_metric(name: str, value: float) -> str:
    """One table cell: by the catalogue's kind, or ``{:.4g}`` for a metric it does not know; "" for NaN."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return ""
    if not math.isfinite(number):
        return ""
    known = METRICS.get(name)
    return known.cell(number) if known is not None else f"{number:.4g}"


def directions_of(names: tuple[str, ...]) -> Mapping[str, str]:
    """``{name: direction}`` for catalogue metrics ``names`` (an objective's ``directions``)."""
    return MappingProxyType({name: METRICS[name].direction for name in names})


def table_columns(table: str) -> tuple[str, ...]:
    """The metrics ``table`` ("front" or "page") shows by default, in catalogue order."""
    return tuple(name for name, metric in METRICS.items() if table in metric.tables)
