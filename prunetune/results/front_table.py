"""The Pareto front as a terminal table at the end of a search."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from rich.table import Table

__all__ = ["COLUMNS", "ECHOES", "format_metric", "front_table", "informative"]

COLUMNS = (
    ("accuracy", "val acc.", "{:.2%}"),
    ("test_accuracy", "test acc.", "{:.2%}"),
    ("accuracy_drop", "drop (pp)", "{:.2f}"),
    ("compression", "compression", "{:.2f}x"),
    ("bits_compression", "bits compr.", "{:.2f}x"),
    ("macs_reduction", "MACs reduction", "{:.2f}x"),
    ("params", "params", "{:,.0f}"),
    ("nonzero_params", "nonzero", "{:,.0f}"),
    ("size_bytes", "size (KiB)", "{:,.1f}"),
    ("latency_ms", "latency (ms)", "{:.3f}"),
)


#: Columns shown only where some member differs from the column they otherwise repeat: nonzero
#: parameters equal the dense count without unstructured pruning, and bits compression equals
#: compression while every weight is a 32-bit float (no quantized layer).
ECHOES = {"nonzero_params": "params", "bits_compression": "compression"}


def informative(key: str, rows: Iterable[Mapping[str, Any]]) -> bool:
    """Whether column ``key`` tells something the table does not already say (see :data:`ECHOES`)."""
    other = ECHOES.get(key)
    if other is None:
        return True
    for row in rows:
        value, echoed = row.get(key), row.get(other)
        try:
            value, echoed = float(value), float(echoed)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            continue
        if math.isfinite(value) and math.isfinite(echoed) and not math.isclose(value, echoed, rel_tol=1e-9):
            return True
    return False


def format_metric(key: str, fmt: str, value: float) -> str:
    """One cell of a front table: sizes in KiB, the rest by their column's format."""
    return fmt.format(float(value) / 1024 if key == "size_bytes" else float(value))


def front_table(
    rows: Sequence[Mapping[str, Any]],
    *,
    title: str,
    marks: Mapping[int, str] | None = None,
    extra: Sequence[str] = (),
) -> Table:
    """One row per front member; columns for the metrics that any member has.

    `marks` adds a last column of notes per trial number (the knee, query answers); `extra` names
    metrics to show whatever their values (the objectives), outside the usual columns too (a custom
    objective's). A usual column that only repeats another (:data:`ECHOES`) is left out otherwise.
    """
    known = {column[0] for column in COLUMNS}
    present = [
        column for column in COLUMNS
        if any(column[0] in row for row in rows) and (column[0] in extra or informative(column[0], rows))
    ]
    present += [(name, name, "{:.4g}") for name in extra if name not in known and any(name in row for row in rows)]
    table = Table(title=title)
    table.add_column("trial", justify="right")
    for _, header, _ in present:
        table.add_column(header, justify="right")
    if marks is not None:
        table.add_column("notes")
    for row in rows:
        cells = [str(row["trial"])]
        for key, _, fmt in present:
            value = row.get(key)
            cells.append("" if value is None else format_metric(key, fmt, value))
        if marks is not None:
            cells.append(marks.get(int(row["trial"]), ""))
        table.add_row(*cells)
    return table
