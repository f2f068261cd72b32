"""Sensitivity analysis: each unit pruned alone at a few ratios, and the pruning order it suggests.

Anik, Kelso and Lee (2024) characterise every conv layer alone at a fixed ratio and prune the
layers in the order of those accuracies (least sensitive first) rather than by depth. Here every
(unit, ratio) is one :func:`~prunetune.objectives.prune_finetune.prune_and_finetune` call with a plan
naming that unit only, so the figures are measured exactly as a search trial measures them (BN
recalibration, optional fine-tune, validation accuracy, compression, MACs reduction).
"""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from numbers import Real
from pathlib import Path
from typing import Any

import torch
from torch import nn

from prunetune.errors import PrunetuneError
from prunetune.files import write_text
from prunetune.objectives.prune_finetune import prune_and_finetune
from prunetune.objectives.training import TrainConfig, evaluate
from prunetune.pruners import Plan, discover_units, measure, prunable_weight_layers
from prunetune.pruners.criteria import CRITERIA
from prunetune.pruners.ordering import DEFAULT_FINETUNE_STEPS, OrderedPruning
from prunetune.zoo.datasets import DataSplits

__all__ = [
    "SENSITIVITY_METHODS",
    "SensitivityRow",
    "SensitivityTable",
    "heuristic_order_plan",
    "sensitivity_analysis",
]

#: Methods a unit can be pruned alone with: structured filters or unstructured weights.
SENSITIVITY_METHODS = ("filters", "weights")
COLUMNS = ("unit", "ratio", "accuracy", "accuracy_drop", "compression", "macs_reduction")

#: Called after each evaluation with (evaluations done, evaluations in all, the new row).
Progress = Callable[[int, int, "SensitivityRow"], None]


@dataclass(frozen=True)
class SensitivityRow:
    """One unit pruned alone at one ratio.

    Attributes:
        unit: The unit (filters) or layer (weights) path.
        ratio: The ratio asked for (a unit too small for it keeps one channel).
        accuracy: Validation accuracy after BN recalibration and the optional fine-tune.
        accuracy_drop: Base validation accuracy minus ``accuracy``, in percentage points.
        compression: Base nonzero parameters / pruned nonzero parameters.
        macs_reduction: Base MACs / pruned MACs.
    """

    unit: str
    ratio: float
    accuracy: float
    accuracy_drop: float
    compression: float
    macs_reduction: float


@dataclass(frozen=True)
class SensitivityTable:
    """The rows of a sensitivity analysis and what they were measured against.

    Attributes:
        rows: One row per (unit, ratio), units in registration order, ratios ascending.
        units: The units analysed, in registration order (ties in :meth:`order` follow it).
        base_accuracy: The base model's validation accuracy (a fraction).
        method: ``"filters"`` or ``"weights"``.
        criterion: The filter criterion used (``"l1"``, ...); recorded for weights too.
    """

    rows: tuple[SensitivityRow, ...]
    units: tuple[str, ...]
    base_accuracy: float
    method: str = "filters"
    criterion: str = "l1"

    @property
    def ratios(self) -> list[float]:
        """The analysed ratios, ascending."""
        return sorted({row.ratio for row in self.rows})

    def at(self, ratio: float) -> list[SensitivityRow]:
        """The rows at ``ratio`` (one per unit, registration order), or a PrunetuneError naming the ratios."""
        if isinstance(ratio, bool) or not isinstance(ratio, Real):
            raise PrunetuneError(f"The 'at_ratio' parameter of SensitivityTable must be a number. Got {ratio!r} instead.")
        rows = [row for row in self.rows if math.isclose(row.ratio, float(ratio), abs_tol=1e-9)]
        if not rows:
            raise PrunetuneError(
                f"The 'at_ratio' parameter of SensitivityTable must be one of the analysed ratios "
                f"({', '.join(f'{r:g}' for r in self.ratios)}). Got {ratio!r} instead."
            )
        return rows

    def order(self, at_ratio: float) -> list[str]:
        """Units least sensitive first: highest accuracy at ``at_ratio``, ties by registration order."""
        position = {unit: index for index, unit in enumerate(self.units)}
        rows = sorted(self.at(at_ratio), key=lambda row: (-row.accuracy, position[row.unit]))
        return [row.unit for row in rows]

    def to_csv(self, path: str | os.PathLike[str] | None = None) -> str:
        """The rows as CSV (columns :data:`COLUMNS`); written atomically to ``path`` when given."""
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(COLUMNS)
        for row in self.rows:
            writer.writerow([row.unit, repr(row.ratio), repr(row.accuracy), repr(row.accuracy_drop),
                             repr(row.compression), repr(row.macs_reduction)])
        text = buffer.getvalue()
        if path is not None:
            write_text(Path(path), text)
        return text

    @classmethod
    def from_csv(
        cls, path: str | os.PathLike[str], *, base_accuracy: float, method: str = "filters", criterion: str = "l1"
    ) -> SensitivityTable:
        """A table read back from :meth:`to_csv` (units in the order of their first row)."""
        path = Path(path)
        if not path.is_file():
            raise PrunetuneError(f"Sensitivity table not found: {path}")
        with path.open(newline="") as handle:
            reader = csv.DictReader(handle)
            if tuple(reader.fieldnames or ()) != COLUMNS:
                raise PrunetuneError(f"{path} is not a sensitivity table: its columns must be {', '.join(COLUMNS)}.")
            rows = tuple(
                SensitivityRow(record["unit"], *(float(record[name]) for name in COLUMNS[1:])) for record in reader
            )
        return cls(rows=rows, units=tuple(dict.fromkeys(row.unit for row in rows)), base_accuracy=base_accuracy,
                   method=method, criterion=criterion)

    def to_markdown(self) -> str:
        """A Markdown table with the base accuracy and the order at each ratio."""
        lines = [
            f"Sensitivity ({self.method}, criterion {self.criterion}); base validation accuracy {self.base_accuracy:.2%}",
            "",
            "| unit | ratio | val acc. | drop (pp) | compression | MACs reduction |",
            "| --- | ---: | ---: | ---: | ---: | ---: |",
        ]
        for row in self.rows:
            lines.append(
                f"| {row.unit} | {row.ratio:g} | {row.accuracy:.2%} | {row.accuracy_drop:.2f} | "
                f"{row.compression:.2f}x | {row.macs_reduction:.2f}x |"
            )
        lines.append("")
        for ratio in self.ratios:
            lines.append(f"Order at ratio {ratio:g} (least sensitive first): {', '.join(self.order(ratio))}")
        return "\n".join(lines) + "\n"

    def plot(self, path: str | os.PathLike[str]) -> Path:
        """Accuracy against ratio, one line per unit; compression on a twin axis (dashed, same colour)."""
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        figure = Figure(figsize=(7.5, 5.0), dpi=110)
        FigureCanvasAgg(figure)
        ax = figure.add_subplot(1, 1, 1)
        twin = ax.twinx()
        colours = [f"C{index % 10}" for index in range(len(self.units))]
        for unit, colour in zip(self.units, colours, strict=True):
            rows = sorted((row for row in self.rows if row.unit == unit), key=lambda row: row.ratio)
            ratios = [row.ratio for row in rows]
            ax.plot(ratios, [100 * row.accuracy for row in rows], "o-", color=colour, label=unit)
            twin.plot(ratios, [row.compression for row in rows], "s--", color=colour, alpha=0.45, markersize=4)
        ax.axhline(100 * self.base_accuracy, color="black", linewidth=0.8, linestyle=":", label="base")
        ax.set_xlabel(f"ratio of the unit pruned alone ({self.method}, {self.criterion})")
        ax.set_ylabel("validation accuracy (%), solid")
        twin.set_ylabel("compression (base / pruned), dashed")
        ax.set_title("Sensitivity: each unit pruned alone", fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(loc="lower left", fontsize=8)
        figure.tight_layout()
        path = Path(path)
        figure.savefig(path)
        return path


def sensitivity_analysis(
    base: nn.Module,
    data: DataSplits,
    *,
    method: str = "filters",
    ratios: Sequence[float] = (0.25, 0.5, 0.75),
    finetune: TrainConfig | None = None,
    batch_size: int = 64,
    bn_recalibration_batches: int | None = None,
    criterion: str = "l1",
    units: Iterable[str] | None = None,
    progress: Progress | None = None,
    device: torch.device | str | None = None,
) -> SensitivityTable:
    """Prune each unit alone at each ratio and measure it as a trial would.

    Args:
        base: The trained model (left untouched).
        data: Its data splits: train for BN statistics and fine-tuning, val for the accuracies.
        method: ``"filters"`` (structured; units of two or more channels) or ``"weights"``
            (unstructured; every conv/linear layer).
        ratios: Ratios in [0, 1) to try on every unit.
        finetune: Fine-tune after each pruning; None measures right after pruning (and BN
            recalibration), the quick form the paper's characterisation needs.
        batch_size: Batch size of every loader.
        bn_recalibration_batches: As in ``prune_and_finetune`` (None: the default for BN models).
        criterion: Filter criterion (filters only).
        units: Only these units (default: all).
        progress: Called after each evaluation.
        device: Where each pruned copy is fine-tuned and evaluated (None: where the base is).

    Returns:
        One row per (unit, ratio).
    """
    method, ratios, criterion = check_arguments(method, ratios, criterion, batch_size)
    finetune = finetune if finetune is not None else TrainConfig(epochs=0)
    finetune.validate()
    example = torch.zeros(1, *data.input_shape)
    available = _units(base, example, method)
    chosen = list(available) if units is None else list(units)
    unknown = [unit for unit in chosen if unit not in available]
    if unknown:
        raise PrunetuneError(
            f"The 'units' parameter of sensitivity_analysis names unknown unit {unknown[0]!r}. "
            f"Available: {', '.join(available) or '(none)'}."
        )
    if not chosen:
        raise PrunetuneError(f"The model has no unit that the {method!r} method can prune alone.")
    base_measurement = measure(base, example)
    base_accuracy = evaluate(base, data.loaders(batch_size, seed=finetune.seed).val).accuracy
    total = len(chosen) * len(ratios)
    rows: list[SensitivityRow] = []
    for unit in chosen:
        for ratio in ratios:
            result = prune_and_finetune(
                base,
                _plan(method, unit, ratio, available[unit], criterion),
                data,
                finetune=finetune,
                batch_size=batch_size,
                bn_recalibration_batches=bn_recalibration_batches,
                base_measurement=base_measurement,
                base_val_accuracy=base_accuracy,
                device=device,
            )
            metrics = result.metrics(base_val_accuracy=base_accuracy)
            row = SensitivityRow(
                unit=unit,
                ratio=ratio,
                accuracy=result.val_accuracy,
                accuracy_drop=metrics["accuracy_drop"],
                compression=metrics["compression"],
                macs_reduction=metrics["macs_reduction"],
            )
            rows.append(row)
            if progress is not None:
                progress(len(rows), total, row)
    return SensitivityTable(
        rows=tuple(rows), units=tuple(chosen), base_accuracy=base_accuracy, method=method, criterion=criterion
    )


def heuristic_order_plan(
    table: SensitivityTable,
    at_ratio: float,
    *,
    ratio: float | None = None,
    budget: float = 1.0,
    criterion: str | None = None,
    round_to: int = 1,
    finetune_steps: int = DEFAULT_FINETUNE_STEPS,
) -> Plan:
    """The paper's heuristic: an 'order' plan whose sequence is the sensitivity order at ``at_ratio``.

    Args:
        table: A filters sensitivity table.
        at_ratio: The analysed ratio whose accuracies set the order.
        ratio: Removal ratio of every unit in the plan (default: ``at_ratio``).
        budget: Accuracy budget of the ordered stage, in percentage points.
        criterion: Filter criterion (default: the table's).
        round_to: Kept channel counts are multiples of this.
        finetune_steps: Fine-tuning batches after each unit.
    """
    if table.method != "filters":
        raise PrunetuneError(
            f"The 'table' parameter of heuristic_order_plan must come from a filters analysis. Got a {table.method!r} one instead."
        )
    sequence = table.order(at_ratio)
    method = OrderedPruning(
        ratio=at_ratio if ratio is None else ratio,
        criterion=criterion or table.criterion,
        budget=budget,
        round_to=round_to,
        finetune_steps=finetune_steps,
    )
    last = max(len(sequence) - 1, 1)
    section = method.section({f"{method.name}.{unit}": index / last for index, unit in enumerate(sequence)})
    return Plan({method.name: section})


def check_arguments(method: Any, ratios: Any, criterion: Any, batch_size: Any) -> tuple[str, list[float], str]:
    if method not in SENSITIVITY_METHODS:
        raise PrunetuneError(
            f"The 'method' parameter of sensitivity_analysis must be one of {', '.join(SENSITIVITY_METHODS)}. "
            f"Got {method!r} instead."
        )
    if isinstance(ratios, (str, bytes)) or not isinstance(ratios, Iterable):
        raise PrunetuneError(f"The 'ratios' parameter of sensitivity_analysis must be a list of numbers. Got {ratios!r} instead.")
    ratios = list(ratios)
    bad = [r for r in ratios if isinstance(r, bool) or not isinstance(r, Real) or not 0.0 <= float(r) < 1.0]
    if not ratios or bad:
        raise PrunetuneError(
            f"The 'ratios' parameter of sensitivity_analysis must be numbers in [0, 1). "
            f"Got {bad[0] if bad else ratios!r} instead."
        )
    if not isinstance(criterion, str) or criterion.strip().lower() not in CRITERIA:
        raise PrunetuneError(
            f"The 'criterion' parameter of sensitivity_analysis must be one of {', '.join(CRITERIA)}. Got {criterion!r} instead."
        )
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise PrunetuneError(f"The 'batch_size' parameter of sensitivity_analysis must be an integer >= 1. Got {batch_size!r} instead.")
    return method, sorted({float(r) for r in ratios}), criterion.strip().lower()


def _units(model: nn.Module, example: torch.Tensor, method: str) -> dict[str, int]:
    """Unit -> channels (filters: units of two or more channels) or layer -> 0 (weights)."""
    if method == "filters":
        return {unit.name: unit.channels for unit in discover_units(model, example) if unit.channels > 1}
    return {layer: 0 for layer in prunable_weight_layers(model)}


def _plan(method: str, unit: str, ratio: float, channels: int, criterion: str) -> dict[str, Any]:
    """A plan naming ``unit`` only; a filter ratio too large for a small unit keeps one channel."""
    if method == "weights":
        return {"weights": {"ratios": {unit: ratio}}}
    capped = min(ratio, (channels - 1) / channels)
    return {"filters": {"criterion": criterion, "round_to": 1, "ratios": {unit: capped}}}
