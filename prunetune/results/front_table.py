"""The Pareto front as a terminal table at the end of a search."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from rich.table import Table

from prunetune.objectives.metrics import format_metric, metric_title, table_columns

__all__ = ["COLUMNS", "ECHOES", "front_table", "informative"]

#: The metrics a front table shows where the rows have them: the catalogue's "front" metrics, with
#: its titles and formats (prunetune.objectives.metrics).
COLUMNS = table_columns("front")


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
    present = [
        name for name in COLUMNS if any(name in row for row in rows) and (name in extra or informative(name, rows))
    ]
    present += [name for name in extra if name not in COLUMNS and any(name in row for row in rows)]
    table = Table(title=title)
    table.add_column("trial", justify="right")
    for name in present:
        table.add_column(metric_title(name), justify="right")
    if marks is not None:
        table.add_column("notes")
    for row in rows:
        cells = [str(row["trial"])]
        for name in present:
            value = row.get(name)
            cells.append("" if value is None else format_metric(name, value))
        if marks is not None:
            cells.append(marks.get(int(row["trial"]), ""))
        table.add_row(*cells)
    return table
