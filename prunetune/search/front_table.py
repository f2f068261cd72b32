"""The Pareto front as a terminal table at the end of a search."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rich.table import Table

__all__ = ["COLUMNS", "format_metric", "front_table"]

COLUMNS = (
    ("accuracy", "val acc.", "{:.2%}"),
    ("test_accuracy", "test acc.", "{:.2%}"),
    ("accuracy_drop", "drop (pp)", "{:.2f}"),
    ("compression", "compression", "{:.2f}x"),
    ("macs_reduction", "MACs reduction", "{:.2f}x"),
    ("params", "params", "{:,.0f}"),
    ("size_bytes", "size (KiB)", "{:,.1f}"),
    ("latency_ms", "latency (ms)", "{:.3f}"),
)


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
    metrics outside the usual columns to show too (a custom objective's).
    """
    known = {column[0] for column in COLUMNS}
    present = [column for column in COLUMNS if any(column[0] in row for row in rows)]
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
