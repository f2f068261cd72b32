"""The out-of-the-box pruning run: LeNet-5 on the bundled digits, pruned at uniform ratios.

It needs no files and takes seconds, and it shows the trade-off every search explores:
the more filters go, the smaller and cheaper the model, and the more a brief fine-tune must recover.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from rich.console import Console
from rich.table import Table

from prunetune.objectives.training import format_epoch
from prunetune.zoo.models import build_model_for
from prunetune.objectives.training import TrainConfig, evaluate, train
from prunetune.pruners import Plan, apply_plan, discover_units, measure
from prunetune.runtime import torch_threads
from prunetune.zoo.datasets import load_data

__all__ = ["DemoRow", "run_demo", "uniform_filter_plan"]


@dataclass(frozen=True)
class DemoRow:
    criterion: str
    ratio: float
    params: int
    macs: int
    accuracy_pruned: float
    accuracy_finetuned: float


def uniform_filter_plan(model: torch.nn.Module, example: torch.Tensor, ratio: float, criterion: str) -> Plan:
    """The same ratio in every prunable unit: what people set by hand with Torch-Pruning today."""
    units = discover_units(model, example)
    return Plan.from_dict({"filters": {"criterion": criterion, "ratios": {unit.name: ratio for unit in units}}})


def run_demo(
    *,
    ratios: Sequence[float] = (0.25, 0.5, 0.75),
    criteria: Sequence[str] = ("l1", "fpgm"),
    epochs: int = 15,
    finetune_epochs: int = 1,
    seed: int = 0,
    threads: int | None = None,
    console: Console | None = None,
) -> list[DemoRow]:
    """Train, prune at each (criterion, ratio), fine-tune briefly, and print the table."""
    console = console or Console(width=None if sys.stdout.isatty() else 120)
    started = time.perf_counter()
    data = load_data("digits", seed=seed)
    console.print(f"[bold]data[/bold]  {data.description}")
    train_loader, val_loader, test_loader = data.loaders(64, seed=seed)
    base = build_model_for("lenet5", data)
    example = torch.zeros(1, *data.input_shape)
    console.print(f"[bold]base[/bold]  training LeNet-5 for {epochs} epochs")
    with torch_threads(threads):
        train(
            base,
            train_loader,
            config=TrainConfig(epochs=epochs, lr=0.05, seed=seed),
            val_loader=val_loader,
            on_epoch=lambda stats: console.print("  " + format_epoch(stats, epochs)) if stats.epoch % 5 == 0 else None,
        )
        base_accuracy = evaluate(base, test_loader).accuracy
        base_size = measure(base, example)
        finetune = TrainConfig(epochs=finetune_epochs, lr=0.01, seed=seed)
        rows = []
        for criterion in criteria:
            for ratio in ratios:
                pruned = apply_plan(base, uniform_filter_plan(base, example, ratio, criterion), example_inputs=example)
                before = evaluate(pruned, test_loader).accuracy
                if finetune_epochs > 0:
                    train(pruned, train_loader, config=finetune)
                size = measure(pruned, example)
                rows.append(
                    DemoRow(criterion, ratio, size.params, size.macs, before, evaluate(pruned, test_loader).accuracy)
                )
    console.print(_table(rows, base_accuracy, base_size.params, base_size.macs, finetune_epochs))
    console.print(f"done in {time.perf_counter() - started:.1f}s")
    return rows


def _table(rows: Sequence[DemoRow], base_accuracy: float, base_params: int, base_macs: int, finetune_epochs: int) -> Table:
    table = Table(title=f"LeNet-5 on digits: test accuracy against compression (fine-tune {finetune_epochs} epoch)")
    for header in ("criterion", "ratio", "params", "compression", "MACs", "MACs reduction", "acc. pruned", "acc. fine-tuned", "drop (pp)"):
        table.add_column(header, justify="right")
    table.add_row("base", "0", f"{base_params:,}", "1.00x", f"{base_macs:,}", "1.00x", f"{base_accuracy:.2%}", f"{base_accuracy:.2%}", "0.00")
    for row in rows:
        table.add_row(
            row.criterion,
            f"{row.ratio:g}",
            f"{row.params:,}",
            f"{base_params / row.params:.2f}x",
            f"{row.macs:,}",
            f"{base_macs / row.macs:.2f}x",
            f"{row.accuracy_pruned:.2%}",
            f"{row.accuracy_finetuned:.2%}",
            f"{100 * (base_accuracy - row.accuracy_finetuned):.2f}",
        )
    return table
