"""`prunetune sensitivity`: check the command's inputs, run the analysis, write its table and plot."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from prunetune.errors import PrunetuneError
from prunetune.files import write_text
from prunetune.objectives.devices import check_device, resolve_device
from prunetune.objectives.sensitivity import SensitivityRow, check_arguments, sensitivity_analysis
from prunetune.objectives.training import TrainConfig
from prunetune.runtime import torch_threads
from prunetune.zoo import load_checkpoint, load_data

__all__ = ["run_sensitivity_command"]


def run_sensitivity_command(
    *,
    checkpoint: str | os.PathLike[str],
    data: str | None,
    method: str,
    ratios: Sequence[float],
    criterion: str,
    finetune_epochs: int,
    finetune_steps: int | None,
    lr: float,
    bn_batches: int | None,
    batch_size: int,
    seed: int,
    threads: int | None,
    output: str | os.PathLike[str],
    echo: Callable[[str], None] = print,
    device: str = "auto",
) -> int:
    """`prunetune sensitivity`: check everything, analyse, write DIR/sensitivity.{csv,md,png}, print.

    Progress goes to stderr, one line per evaluation; nothing is written when an input is bad.
    """
    check_arguments(method, ratios, criterion, batch_size)
    check_device(device, where="--device")
    output = Path(output).expanduser()
    if output.exists() and not output.is_dir():
        raise PrunetuneError(f"--output {output} is a file; name a folder for sensitivity.csv, .md and .png.")
    if bn_batches is not None and bn_batches < 0:
        raise PrunetuneError(f"--bn-batches must be >= 0. Got {bn_batches} instead.")
    config = TrainConfig(epochs=finetune_epochs, max_steps=finetune_steps, lr=lr, seed=seed, threads=threads)
    config.validate()
    finetune = config if finetune_epochs else None  # none: each unit is scored right after pruning
    saved = load_checkpoint(checkpoint)
    spec = data or saved.data_spec
    if spec is None:
        raise PrunetuneError(f"{checkpoint} records no data spec: pass --data.")
    splits = load_data(spec, **saved.data_options)

    def report(done: int, total: int, row: SensitivityRow) -> None:
        print(
            f"[{done:>{len(str(total))}}/{total}] {row.unit} at {row.ratio:g}: val {row.accuracy:.2%} "
            f"(drop {row.accuracy_drop:.2f} pp), compression {row.compression:.2f}x",
            file=sys.stderr,
            flush=True,
        )

    with torch_threads(threads):
        table = sensitivity_analysis(
            saved.build(), splits, method=method, ratios=ratios, finetune=finetune, batch_size=batch_size,
            bn_recalibration_batches=bn_batches, criterion=criterion, progress=report, device=resolve_device(device),
        )
    output.mkdir(parents=True, exist_ok=True)
    table.to_csv(output / "sensitivity.csv")
    write_text(output / "sensitivity.md", table.to_markdown())
    table.plot(output / "sensitivity.png")
    echo(table.to_markdown().rstrip())
    echo(f"wrote {output / 'sensitivity.csv'}, {output / 'sensitivity.md'} and {output / 'sensitivity.png'}")
    return 0
