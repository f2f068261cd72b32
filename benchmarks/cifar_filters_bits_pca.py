"""CIFAR-style reproductions: accuracy-aware filter pruning + FC quantization, and PCA + FPGM.

Two pipelines of the seed papers applied as direct plans (no search) to one VGG-11 trained on the
first 4,000 CIFAR-10 training records, each plan through ``prune_and_finetune`` exactly as a search
trial would score it:

1. Anik, Kelso and Lee (2024): every conv unit is pruned alone at a few ratios (sensitivity
   analysis, L1 criterion, no fine-tune); a unit's ratio is the largest analysed ratio whose
   drop alone stays within a tolerance, for a ladder of tolerances; the filters are removed and the
   fully connected layers quantized by k-means (5 bits) in one plan, then fine-tuned. The point
   kept is the most compressed one within 1 point of validation accuracy, re-run with float and
   2-bit FC layers.
2. Ahmed et al. (2022): PCA of each conv unit's activations sets its width (tau 0.9 and 0.95),
   the network is cut to those widths (``rebuild: prune``) or cut and trained again from new weights
   (``rebuild: scratch``, tau 0.9), then FPGM removes a further ratio of every unit, then fine-tuning.

The grid is small on purpose: the whole run has to fit in about half an hour of a shared 2-core CPU.

    .venv/bin/python benchmarks/cifar_filters_bits_pca.py            # writes results/cifar_filters_bits_pca.md
    .venv/bin/python benchmarks/cifar_filters_bits_pca.py --quick    # tiny VGG, few records, 1-2 minutes

The base (``--base``) is trained once when it is missing (40 epochs, lr 0.05).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _bases import CIFAR_SUBSET, train_once
from _machine import RESULTS, header

from prunetune.objectives.pca_rebuild import measurement_batches
from prunetune.objectives.prune_finetune import PruneResult, prune_and_finetune
from prunetune.objectives.sensitivity import SensitivityTable, sensitivity_analysis
from prunetune.objectives.training import TrainConfig, evaluate
from prunetune.pruners import Measurement, discover_units, measure, measure_latency
from prunetune.pruners.pca import pca_widths
from prunetune.pruners.quantize import FLOAT_BITS
from prunetune.runtime import torch_threads
from prunetune.zoo.checkpoint import load_checkpoint
from prunetune.zoo.datasets import DataSplits, load_data

__all__ = ["Row", "Settings", "main"]

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_BASE = ROOT / "runs" / "benchmarks" / "vgg11-cifar4000.pt"
QUICK_BASE = ROOT / "runs" / "benchmarks" / "vgg11-cifar-quick.pt"
Echo = Callable[[str], None]
#: Accuracy the selected points may lose on validation, in percentage points.
BUDGET_PP = 1.0


@dataclass(frozen=True)
class Settings:
    """What one run of the benchmark does; ``--quick`` shrinks every figure."""

    base: Path
    base_kwargs: dict[str, Any]
    base_epochs: int
    limit: int | None
    sensitivity_ratios: tuple[float, ...]
    tolerances: tuple[float, ...]
    low_bits: tuple[int, ...]
    taus: tuple[float, ...]
    fpgm_ratios: tuple[float, ...]
    scratch_taus: tuple[float, ...]
    scratch_fpgm_ratio: float
    finetune: TrainConfig
    scratch_epochs: int
    output: Path | None
    threads: int


@dataclass
class Row:
    """One measured plan."""

    pipeline: str
    label: str
    result: PruneResult | None = None
    base: Measurement | None = None
    notes: list[str] = field(default_factory=list)

    def drop(self, base_val: float) -> float:
        return 100.0 * (base_val - self.result.val_accuracy)


def _settings(args: argparse.Namespace) -> Settings:
    finetune = TrainConfig(
        epochs=1 if args.quick else args.finetune_epochs, lr=args.lr, seed=0, threads=args.threads
    )
    if args.quick:
        return Settings(
            base=Path(args.base) if args.base else QUICK_BASE, base_kwargs={"width": 0.125}, base_epochs=8,
            limit=800, sensitivity_ratios=(0.5, 0.75), tolerances=(5.0, 100.0), low_bits=(32, 2),
            taus=(0.9,), fpgm_ratios=(0.0, 0.3), scratch_taus=(0.9,), scratch_fpgm_ratio=0.3, finetune=finetune,
            scratch_epochs=1, output=Path(args.output) if args.output else None, threads=args.threads,
        )
    return Settings(
        base=Path(args.base) if args.base else DEFAULT_BASE, base_kwargs={}, base_epochs=40, limit=None,
        sensitivity_ratios=(0.5, 0.8), tolerances=(3.0, 10.0, 100.0), low_bits=(32, 2),
        taus=(0.9, 0.95), fpgm_ratios=(0.0, 0.3), scratch_taus=(0.9,), scratch_fpgm_ratio=0.3, finetune=finetune,
        scratch_epochs=args.scratch_epochs,
        output=Path(args.output) if args.output else RESULTS / "cifar_filters_bits_pca.md", threads=args.threads,
    )


def conv_units(model: nn.Module, example: torch.Tensor) -> list[str]:
    return [unit.name for unit in discover_units(model, example) if unit.kind == "conv"]


def linear_layers(model: nn.Module) -> list[str]:
    return [name for name, module in model.named_modules() if isinstance(module, nn.Linear)]


def graded_ratios(table: SensitivityTable, tolerance: float) -> dict[str, float]:
    """Per unit, the largest analysed ratio whose drop alone is within ``tolerance`` pp (0 if none)."""
    ratios = {}
    for unit in table.units:
        fitting = [row.ratio for row in table.rows if row.unit == unit and row.accuracy_drop <= tolerance]
        ratios[unit] = max(fitting, default=0.0)
    return ratios


def run_plan(
    base: nn.Module, plan: Mapping[str, Any], data: DataSplits, settings: Settings, base_val: float,
    base_measurement: Measurement, echo: Echo,
) -> PruneResult:
    result = prune_and_finetune(
        base, plan, data, finetune=settings.finetune, latency=True, latency_threads=1,
        base_measurement=base_measurement, base_val_accuracy=base_val,
    )
    metrics = result.metrics(base_val_accuracy=base_val)
    echo(
        f"    val {result.val_accuracy:.2%} (after pruning {result.val_accuracy_pruned:.2%}), test "
        f"{result.test_accuracy:.2%}, params {metrics['compression']:.2f}x, bits {metrics['bits_compression']:.2f}x, "
        f"MACs {metrics['macs_reduction']:.2f}x, {result.seconds:.0f}s"
    )
    return result


def select(rows: Sequence[Row], base_val: float, key: str) -> Row:
    """The row with the largest ``key`` within the budget; the smallest drop when none is within it."""
    within = [row for row in rows if row.drop(base_val) <= BUDGET_PP + 1e-9]
    if within:
        return max(within, key=lambda row: row.result.metrics()[key])
    return min(rows, key=lambda row: row.drop(base_val))


def filters_bits(
    base: nn.Module, data: DataSplits, settings: Settings, base_val: float, base_m: Measurement, echo: Echo,
    rows: list[Row], saved: Callable[[SensitivityTable], None],
) -> tuple[SensitivityTable, Row]:
    example = torch.zeros(1, *data.input_shape)
    started = time.perf_counter()
    table = sensitivity_analysis(
        base, data, method="filters", ratios=settings.sensitivity_ratios, criterion="l1",
        units=conv_units(base, example),
        progress=lambda done, total, row: echo(
            f"  sensitivity [{done}/{total}] {row.unit} at {row.ratio:g}: val {row.accuracy:.2%} "
            f"(drop {row.accuracy_drop:.1f} pp)"
        ),
    )
    echo(f"  sensitivity analysis took {time.perf_counter() - started:.0f}s")
    linears = linear_layers(base)
    seen: list[dict[str, float]] = []
    for tolerance in settings.tolerances:
        ratios = graded_ratios(table, tolerance)
        if ratios in seen or not any(ratios.values()):
            continue
        seen.append(ratios)
        label = f"tolerance {tolerance:g} pp, 5-bit FC"
        echo(f"  {label}: ratios {ratios}")
        plan = {
            "filters": {"criterion": "l1", "ratios": {u: r for u, r in ratios.items() if r > 0}},
            "bits": {"scheme": "kmeans", "bits": {layer: 5 for layer in linears}},
        }
        rows.append(Row("filters+bits", label, run_plan(base, plan, data, settings, base_val, base_m, echo)))
        saved(table)
    chosen = select(rows, base_val, "compression")
    for bits in settings.low_bits:
        plan = dict(chosen.result.plan)
        plan["bits"] = {"scheme": "kmeans", "bits": {layer: bits for layer in linears}}
        label = chosen.label.replace("5-bit", "float" if bits == FLOAT_BITS else f"{bits}-bit")
        echo(f"  {label}")
        rows.append(Row("filters+bits", label, run_plan(base, plan, data, settings, base_val, base_m, echo)))
        saved(table)
    return table, chosen


def pca_fpgm(
    base: nn.Module, data: DataSplits, settings: Settings, base_val: float, base_m: Measurement, echo: Echo,
    widths: dict[float, dict[str, int]], rows: list[Row], saved: Callable[[], None],
) -> None:
    example = torch.zeros(1, *data.input_shape)
    units = conv_units(base, example)
    # The same 2,000 training images the 'pca' stage would measure on; measured once per tau.
    batches = measurement_batches(data.loaders(64, seed=0).train, 2000, seed=0)
    for tau in settings.taus:
        widths[tau] = pca_widths(base, batches, tau=tau, units=units)
        echo(f"  PCA widths at tau {tau:g}: {widths[tau]}")
    runs = [(tau, "prune", ratio) for tau in settings.taus for ratio in settings.fpgm_ratios]
    runs += [(tau, "scratch", settings.scratch_fpgm_ratio) for tau in settings.scratch_taus]
    for tau, rebuild, ratio in runs:
        section: dict[str, Any] = {"tau": tau, "widths": widths[tau], "rebuild": rebuild}
        if rebuild == "scratch":
            section.update(train_epochs=settings.scratch_epochs, train_lr=0.05)
        plan: dict[str, Any] = {"pca": section}
        if ratio > 0:
            plan["filters"] = {"criterion": "fpgm", "ratios": {unit: ratio for unit in units}}
        label = f"tau {tau:g}, {rebuild}" + (f" ({settings.scratch_epochs} ep.)" if rebuild == "scratch" else "")
        label += f", FPGM {ratio:g}"
        echo(f"  {label}")
        rows.append(Row("pca+fpgm", label, run_plan(base, plan, data, settings, base_val, base_m, echo)))
        saved()


def _table(rows: Sequence[Row], base_val: float, base_test: float, base_latency: float, marks: Mapping[int, str]) -> list[str]:
    lines = [
        ("| point | val acc. | test acc. | val drop (pp) | test drop (pp) | params | params reduction | "
        "nonzero reduction | bits reduction | MACs reduction | latency (ms) |"),
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        r = row.result
        m = r.metrics()
        mark = marks.get(id(row), "")
        lines.append(
            f"| {row.label}{mark} | {r.val_accuracy:.2%} | {r.test_accuracy:.2%} | {row.drop(base_val):.2f} | "
            f"{100 * (base_test - r.test_accuracy):.2f} | {r.pruned.params:,} | {r.base.params / r.pruned.params:.2f}x | "
            f"{m['compression']:.2f}x | {m['bits_compression']:.2f}x | {m['macs_reduction']:.2f}x | "
            f"{r.latency_ms:.2f} ({base_latency / r.latency_ms:.2f}x) |"
        )
    return lines


def _ratio_text(row: Row, base_val: float, base_test: float) -> str:
    return f"{-row.drop(base_val):+.2f} pp val / {100 * (row.result.test_accuracy - base_test):+.2f} pp test"


def _budget_note(rows: Sequence[Row], chosen: Row | None, base_val: float) -> str:
    if chosen is None or chosen.drop(base_val) <= BUDGET_PP + 1e-9:
        return ""
    return (
        f" No point stayed within {BUDGET_PP:g} pp on validation: the one kept is the one that lost least "
        f"({chosen.drop(base_val):.2f} pp)."
    )


def report(
    settings: Settings, data: DataSplits, base: nn.Module, base_m: Measurement, base_val: float, base_test: float,
    base_latency: float, table: SensitivityTable, fb_rows: list[Row], fb_chosen: Row | None,
    widths: dict[float, dict[str, int]], pca_rows: list[Row], minutes: float, quick: bool, status: str,
    only: str | None = None,
) -> str:
    """The Markdown page; ``status`` says what is missing when the run was cut short."""
    if fb_chosen is None and fb_rows:
        fb_chosen = select(fb_rows, base_val, "compression")
    fb_best = select(fb_rows, base_val, "bits_compression") if fb_rows else None
    pca_chosen = select(pca_rows, base_val, "macs_reduction") if pca_rows else None
    missing = "not measured: the run was cut short" if only is None else f"not part of this run (--only {only})"
    fb_here, pca_here = missing, missing
    if fb_best is not None:
        fb_m = fb_best.result.metrics()
        fb_here = (
            f"{fb_best.label}: parameters {fb_best.result.base.params / fb_best.result.pruned.params:.2f}x, "
            f"bits {fb_m['bits_compression']:.2f}x, MACs {fb_m['macs_reduction']:.2f}x at "
            f"{_ratio_text(fb_best, base_val, base_test)}"
        )
    if pca_chosen is not None:
        pca_m = pca_chosen.result.metrics()
        pca_here = (
            f"{pca_chosen.label}: MACs {pca_m['macs_reduction']:.2f}x, parameters {pca_m['compression']:.2f}x at "
            f"{_ratio_text(pca_chosen, base_val, base_test)}"
        )
    fc_params = sum(p.numel() for m in base.modules() if isinstance(m, nn.Linear) for p in m.parameters())
    fc_share = fc_params / base_m.params
    scratch_epochs = f"{settings.scratch_epochs} epoch{'s' if settings.scratch_epochs != 1 else ''}"
    finetune_epochs = f"{settings.finetune.epochs} epoch{'s' if settings.finetune.epochs != 1 else ''}"
    low = " and ".join("float" if b == FLOAT_BITS else f"{b}-bit" for b in settings.low_bits)
    base_name = settings.base.relative_to(ROOT) if settings.base.is_relative_to(ROOT) else settings.base
    parts = [
        header("CIFAR-style reproductions: filters + FC quantization, PCA + FPGM" + (" (quick)" if quick else "")),
        f"- data: {data.description}",
        (f"- whole run: {minutes:.1f} minutes wall (the machine shared with other work), "
        f"{settings.threads} torch thread(s)"),
        *([f"- status: {status}"] if status else []),
        "",
        (f"Base: VGG-11 with batch norm, classifier "
        f"{'-'.join(str(m.in_features) for m in base.modules() if isinstance(m, nn.Linear))}-{data.num_classes}"
        f"{' (width 0.125)' if quick else ''}, {base_m.params:,} parameters, {base_m.macs / 1e6:.1f} M MACs, "
        f"trained {settings.base_epochs} epochs at lr 0.05 (`{base_name}`): validation {base_val:.2%}, "
        f"test {base_test:.2%}, latency {base_latency:.2f} ms (one 32x32 image, one thread, median of 30)."),
        "",
        ("Every point is one plan applied by `prune_and_finetune` to a copy of the base (BN recalibration, then "
        f"{finetune_epochs} of fine-tuning, SGD lr {settings.finetune.lr:g} momentum 0.9, cosine, batch 64), "
        "exactly as a search trial scores it. Points are selected on validation accuracy (the most compression "
        f"within {BUDGET_PP:g} pp of the base's validation accuracy); test accuracy is shown beside it and was "
        f"not used. One validation image is {100 / len(data.val):.2f} pp and one test image "
        f"{100 / len(data.test):.3f} pp, so a 1-point budget is a handful of images."),
        "",
        "## Against the papers",
        "",
        f"| pipeline | paper (model, data) | paper's figures | here (VGG-11, {len(data.train):,} training images) |",
        "| --- | --- | --- | --- |",
        (f"| filters + FC quantization (Anik, Kelso, Lee 2024) | VGG16 and AlexNet, CIFAR-10 | parameters 35.21x "
        f"(VGG16), 47.28x (AlexNet) | {fb_here} |"),
        (f"| PCA + FPGM (Ahmed et al. 2022) | VGG-16, CIFAR-10 | operations 18.56x, parameters 3.33x at about -1% | "
        f"{pca_here} |"),
        "",
        ("The figures are not comparable one to one. The papers train VGG-16 / AlexNet on all 50,000 CIFAR-10 "
        "training images to about 93% and fine-tune for many epochs on GPUs; here a VGG-11 learns from "
        f"{len(data.train):,} training images to {base_val:.0%} validation accuracy, and every fine-tune is "
        f"{finetune_epochs} on a CPU. A network that has learned this little from this little data leaves "
        "far more filters idle than a 93% VGG-16 does, and its accuracy is measured on "
        f"{len(data.val)} validation and {len(data.test)} test images. The architectures differ too: this "
        f"VGG-11's fully connected layers hold {fc_share:.1%} of its parameters, so quantizing them moves the "
        "whole model's bits little until filter pruning has shrunk the convolutions. The Anik et al. "
        "pipeline prunes layer after layer with fine-tuning between, in the sensitivity order; here the "
        "sensitivity-graded ratios are applied in one step and fine-tuned once."),
        "",
    ]
    if table is None:
        parts += ["## 1. Accuracy-aware filter pruning + FC quantization", "", f"{missing[0].upper()}{missing[1:]}."]
    else:
        parts += [
            "## 1. Accuracy-aware filter pruning + FC quantization",
            "",
            ("Sensitivity: each conv unit pruned alone (L1 criterion, BN recalibrated, no fine-tune) at ratios "
            f"{', '.join(f'{r:g}' for r in table.ratios)} with `prunetune.objectives.sensitivity.sensitivity_analysis`. "
            "A tolerance t gives each unit the largest analysed ratio whose drop alone is at most t pp (0 if none); "
            "each tolerance is one plan: those filter ratios plus k-means quantization of every linear layer "
            f"({', '.join(f'`{name}`' for name in linear_layers(base))}) at 5 bits, fine-tuned together (the "
            "centroids train, the codes stay). The filters kept (marked *) are the most parameter-compressed "
            f"point within {BUDGET_PP:g} pp on validation; they were re-run with {low} fully connected layers. "
            f"{_best_note(fb_best, base_val)}{_budget_note(fb_rows, fb_chosen, base_val)}"),
            "",
            ("`params reduction` counts dense parameters, `nonzero reduction` nonzero ones (the same here: filters "
            "go whole), `bits reduction` the storage in bits (codes and codebooks counted, everything else "
            "float32), `latency` one image on one thread (base / pruned in brackets; a quantized layer rebuilds "
            "its weight from its codes on every forward pass)."),
            "",
            *_table(fb_rows, base_val, base_test, base_latency, _marks(fb_chosen, fb_best)),
            "",
            "Drop of each unit pruned alone (pp of validation accuracy, no fine-tune):",
            "",
            "| unit | " + " | ".join(f"ratio {r:g}" for r in table.ratios) + " |",
            "| --- | " + " | ".join("---:" for _ in table.ratios) + " |",
        ]
        for unit in table.units:
            drops = {row.ratio: row.accuracy_drop for row in table.rows if row.unit == unit}
            parts.append(f"| {unit} | " + " | ".join(f"{drops[r]:.1f}" for r in table.ratios) + " |")
    if not widths:
        parts += ["", "## 2. PCA widths + FPGM", "", f"{missing[0].upper()}{missing[1:]}.", ""]
        return "\n".join(parts)
    units = list(next(iter(widths.values())))
    channels = {unit.name: unit.channels for unit in discover_units(base, torch.zeros(1, *data.input_shape))}
    parts += [
        "",
        "## 2. PCA widths + FPGM",
        "",
        ("PCA of each conv unit's post-ReLU activations on 2,000 training images (`prunetune.pruners.pca.pca_widths`, "
        "the batches the `pca` stage measures on) sets its width: the fewest components holding a variance "
        "fraction tau. The plans carry those widths. `prune` keeps the trained filters farthest from the "
        f"geometric median; `scratch` re-initialises the cut network and trains it {scratch_epochs} at lr 0.05 "
        f"(the base had {settings.base_epochs}). Then FPGM removes the given ratio of every conv unit's remaining "
        f"filters and the network is fine-tuned. The point kept (marked *) has the largest MACs reduction "
        f"within {BUDGET_PP:g} pp on validation.{_budget_note(pca_rows, pca_chosen, base_val)}"),
        "",
        "| widths | " + " | ".join(units) + " |",
        "| --- | " + " | ".join("---:" for _ in units) + " |",
        "| base | " + " | ".join(str(channels[unit]) for unit in units) + " |",
    ]
    for tau, found in widths.items():
        parts.append(f"| tau {tau:g} | " + " | ".join(str(w) for w in found.values()) + " |")
    parts += ["", *_table(pca_rows, base_val, base_test, base_latency, _marks(pca_chosen, None)), ""]
    return "\n".join(parts)


def _best_note(best: Row | None, base_val: float) -> str:
    if best is None:
        return ""
    if best.drop(base_val) <= BUDGET_PP + 1e-9:
        return "The row marked + is the most bits-compressed within the budget (the comparison above)."
    return "The row marked + lost least of all rows (the comparison above)."


def _marks(chosen: Row | None, best: Row | None) -> dict[int, str]:
    marks = {} if chosen is None else {id(chosen): " *"}
    if best is not None:
        marks[id(best)] = marks.get(id(best), " ") + "+"
    return marks


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default=None, help=f"base checkpoint (default {DEFAULT_BASE.relative_to(ROOT)})")
    parser.add_argument("--quick", action="store_true", help="tiny VGG-11 on 800 records: a 1-2 minute check")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--finetune-epochs", type=int, default=2)
    parser.add_argument("--scratch-epochs", type=int, default=8)
    parser.add_argument("--lr", type=float, default=0.01, help="fine-tuning learning rate")
    parser.add_argument("--only", choices=("filters", "pca"), default=None, help="run one of the two pipelines")
    parser.add_argument("--output", default=None, help="Markdown file (default results/cifar_filters_bits_pca.md; "
                        "--quick prints only)")
    args = parser.parse_args(argv)
    settings = _settings(args)
    started = time.perf_counter()

    def echo(line: str) -> None:
        print(f"[{(time.perf_counter() - started) / 60:5.1f} min] {line}", flush=True)

    torch.manual_seed(0)
    torch.set_num_threads(settings.threads)  # the header records it
    with torch_threads(settings.threads):
        train_once(
            settings.base, model="vgg11", data=CIFAR_SUBSET, model_kwargs=settings.base_kwargs,
            epochs=settings.base_epochs, threads=settings.threads, limit=settings.limit, echo=echo,
        )
        saved = load_checkpoint(settings.base)
        data = load_data(saved.data_spec, **saved.data_options)
        base = saved.build().eval()
        example = torch.zeros(1, *data.input_shape)
        base_m = measure(base, example)
        loaders = data.loaders(64, seed=0)
        base_val = evaluate(base, loaders.val).accuracy
        base_test = evaluate(base, loaders.test).accuracy
        base_latency = measure_latency(base, example, threads=1).median_ms
        echo(f"base: {base_m.params:,} parameters, val {base_val:.2%}, test {base_test:.2%}, {base_latency:.2f} ms")
        fb_rows: list[Row] = []
        pca_rows: list[Row] = []
        widths: dict[float, dict[str, int]] = {}
        state: dict[str, Any] = {"table": None, "chosen": None}
        planned = len(settings.tolerances) + len(settings.low_bits) + len(settings.taus) * len(
            settings.fpgm_ratios
        ) + len(settings.scratch_taus)

        def write(status: str) -> str:
            """The page as it stands (rewritten after every plan, so a run cut short leaves its rows)."""
            text = report(
                settings, data, base, base_m, base_val, base_test, base_latency, state["table"], fb_rows,
                state["chosen"], widths, pca_rows, (time.perf_counter() - started) / 60, args.quick, status,
                args.only,
            )
            if settings.output is not None:
                _write(settings.output, text)
            return text

        def saved(table: SensitivityTable | None = None) -> None:
            if table is not None:
                state["table"] = table
            done = len(fb_rows) + len(pca_rows)
            write(f"partial: {done} of at most {planned} plans measured when this was written; the run was cut short")

        if args.only != "pca":
            echo("1. accuracy-aware filter pruning + FC quantization")
            state["table"], state["chosen"] = filters_bits(
                base, data, settings, base_val, base_m, echo, fb_rows, saved
            )
        if args.only != "filters":
            echo("2. PCA widths + FPGM")
            pca_fpgm(base, data, settings, base_val, base_m, echo, widths, pca_rows, saved)
        text = write("")
    print(text)
    if settings.output is not None:
        print(f"wrote {settings.output}")
    return 0


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


if __name__ == "__main__":
    sys.exit(main())
