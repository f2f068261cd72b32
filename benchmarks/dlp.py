"""Discriminative layer pruning (Jordao, Lie, Schwartz 2020) on a CIFAR ResNet: layers only and cascaded.

The paper ranks the residual blocks of a trained ResNet by how discriminative a PLS projection of
their pooled output is, removes the least discriminative ones (ResNet-56/CIFAR-10: -30% FLOPs at
-0.98 pp) and optionally prunes filters afterwards (-62.69% FLOPs at -0.91 pp). This script does the
same with ``prunetune.pruners.discriminative`` on the ResNet-20 trained on the first 4,000 CIFAR-10
training records, and adds the controls the question "does the ranking matter?" needs:

1. the DLP ranking itself (score, R^2 out and in, mean VIP, params, MACs share), and what dropping
   each unit alone costs before any fine-tuning;
2. layers only: DLP drop sets at ~30% and ~50% of the MACs removed (``dlp_drop_set``), beside drop
   sets filled the same way from the reversed ranking (most discriminative first) and from random
   rankings, and the paper's own mean-VIP score;
3. cascade: the ~30% DLP drop set followed by uniform L1 filter pruning at the ratio that brings the
   total to ~60% of the MACs removed, beside filters only (no drop) and a random drop set with filters;
4. the base fine-tuned with the same budget and no pruning, so a fine-tune's own effect is visible.

Every variant is one plan applied by ``prune_and_finetune`` (BN recalibration, then the same
fine-tune for all), exactly as a search trial scores it.

    .venv/bin/python benchmarks/dlp.py            # writes results/dlp.md (about 15 minutes on 2 cores)
    .venv/bin/python benchmarks/dlp.py --quick    # a few fine-tune steps, fewer controls: 1-2 minutes
"""

from __future__ import annotations

import argparse
import dataclasses
import random
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.stats import spearmanr
from torch import nn
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _bases import CIFAR_SUBSET, train_once
from _machine import RESULTS, header

from prunetune.objectives.prune_finetune import PruneResult, prune_and_finetune
from prunetune.objectives.training import TrainConfig, evaluate
from prunetune.pruners import Measurement, discover_units, measure
from prunetune.pruners.discriminative import (
    LayerScore,
    dlp_drop_set,
    dlp_plan,
    dlp_scores,
)
from prunetune.pruners.drop import droppable_units
from prunetune.pruners.plan import apply_plan
from prunetune.runtime import torch_threads
from prunetune.zoo.checkpoint import load_checkpoint
from prunetune.zoo.datasets import DataSplits, load_data

__all__ = ["Row", "Settings", "main"]

ROOT = Path(__file__).resolve().parent.parent
BASES = {
    "resnet20": ROOT / "runs" / "benchmarks" / "resnet20-cifar4000.pt",
    "resnet56": ROOT / "runs" / "benchmarks" / "resnet56-cifar4000.pt",
}
Echo = Callable[[str], None]
#: The paper's ResNet-56/CIFAR-10 figures: (FLOPs removed, accuracy change in pp).
PAPER = {"layers": (0.30, -0.98), "cascade": (0.6269, -0.91)}


@dataclass(frozen=True)
class Settings:
    """What one run does; ``--quick`` shrinks the fine-tune and the number of controls."""

    model: str
    base: Path
    base_epochs: int
    layer_targets: tuple[float, ...]
    cascade_target: float
    random_seeds: tuple[int, ...]
    random_seeds_high: tuple[int, ...]
    samples: int
    finetune: TrainConfig
    output: Path | None
    threads: int
    quick: bool
    seeds: tuple[int, ...] = (0,)


@dataclass
class Row:
    """One measured plan."""

    group: str
    label: str
    plan: dict[str, Any]
    results: list[PruneResult]
    notes: list[str] = field(default_factory=list)

    @property
    def removed(self) -> tuple[float, float]:
        return removed(self.results[0])  # the same architecture whatever the fine-tune seed

    @property
    def val(self) -> float:
        return float(np.mean([r.val_accuracy for r in self.results]))

    @property
    def test(self) -> float:
        return float(np.mean([r.test_accuracy for r in self.results]))

    @property
    def val_pruned(self) -> float:
        return float(np.mean([r.val_accuracy_pruned for r in self.results]))

    def spread(self, split: str) -> float:
        """Standard deviation over the fine-tune seeds, in pp (0 with one seed)."""
        return float(100 * np.std([getattr(r, f"{split}_accuracy") for r in self.results]))


def _settings(args: argparse.Namespace) -> Settings:
    first = 0.28 if args.model == "resnet20" else 0.3
    finetune = TrainConfig(
        epochs=1 if args.quick else args.epochs, max_steps=8 if args.quick else None, lr=args.lr, seed=0,
        threads=args.threads,
    )
    output = Path(args.output) if args.output else (None if args.quick else RESULTS / "dlp.md")
    return Settings(
        model=args.model, base=Path(args.base) if args.base else BASES[args.model], base_epochs=args.base_epochs,
        # On ResNet-20 a 30% budget takes a fourth unit (40% removed): 0.28 stops at three.
        layer_targets=(first,) if args.quick else (first, 0.5), cascade_target=0.6,
        random_seeds=(0,) if args.quick else (0, 1, 2), random_seeds_high=() if args.quick else (0, 1),
        samples=500 if args.quick else 2000, finetune=finetune, output=output, threads=args.threads,
        quick=args.quick, seeds=tuple(range(args.seeds)),
    )


def _share(part: float, whole: float) -> str:
    return f"{100 * part / whole:.1f}%"


def removed(result: PruneResult) -> tuple[float, float]:
    """Fractions of the base's MACs and parameters the pruned model no longer has."""
    return 1 - result.pruned.macs / result.base.macs, 1 - result.pruned.params / result.base.params


def ratio_for(
    base: nn.Module, example: torch.Tensor, plan_for: Callable[[float], dict[str, Any]], target: float,
    base_macs: int,
) -> tuple[float, float]:
    """The uniform filter ratio (to 0.01) whose plan removes about ``target`` of the MACs: (ratio, removed)."""
    low, high = 0.0, 0.9
    best = (0.0, 1 - measure(apply_plan(base, plan_for(0.0), example_inputs=example), example).macs / base_macs)
    for _ in range(8):
        middle = round((low + high) / 2, 3)
        done = 1 - measure(apply_plan(base, plan_for(middle), example_inputs=example), example).macs / base_macs
        if abs(done - target) < abs(best[1] - target):
            best = (middle, done)
        if done < target:
            low = middle
        else:
            high = middle
    return best


def run_plan(
    base: nn.Module, plan: Mapping[str, Any], data: DataSplits, settings: Settings, base_val: float,
    base_m: Measurement, echo: Echo,
) -> list[PruneResult]:
    """The plan fine-tuned once per seed of ``settings.seeds`` (the same pruned architecture each time)."""
    results = []
    for seed in settings.seeds:
        result = prune_and_finetune(
            base, plan, data, finetune=dataclasses.replace(settings.finetune, seed=seed), base_measurement=base_m,
            base_val_accuracy=base_val,
        )
        macs, params = removed(result)
        echo(
            f"    seed {seed}: val {result.val_accuracy:.2%} (after pruning {result.val_accuracy_pruned:.2%}), test "
            f"{result.test_accuracy:.2%}, MACs -{macs:.1%}, params -{params:.1%}, {result.seconds:.0f}s"
        )
        results.append(result)
    return results


def single_drops(
    base: nn.Module, data: DataSplits, units: Sequence[str], base_val: float, base_m: Measurement, threads: int,
) -> dict[str, float]:
    """Validation accuracy with each unit dropped alone, BN recalibrated, no fine-tune."""
    config = TrainConfig(epochs=0, seed=0, threads=threads)
    return {
        unit: prune_and_finetune(
            base, {"drop": {"units": [unit]}}, data, finetune=config, base_measurement=base_m,
            base_val_accuracy=base_val,
        ).val_accuracy
        for unit in units
    }


def _units_text(plan: Mapping[str, Any]) -> str:
    units = plan.get("drop", {}).get("units", [])
    return ", ".join(f"`{u}`" for u in units) if units else "none"


def _filters_text(plan: Mapping[str, Any]) -> str:
    ratios = plan.get("filters", {}).get("ratios", {})
    if not ratios:
        return "-"
    values = sorted(set(ratios.values()))
    return f"L1 {values[0]:g} x {len(ratios)} units" if len(values) == 1 else f"L1 {values}"


def _table(rows: Sequence[Row], base_val: float, base_test: float) -> list[str]:
    lines = [
        ("| variant | units dropped | filters | MACs removed | params removed | val after pruning | val acc. | "
         "test acc. | val drop (pp) | test drop (pp) |"),
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        macs, params = row.removed
        val_sd = f" ± {row.spread('val'):.2f}" if len(row.results) > 1 else ""
        test_sd = f" ± {row.spread('test'):.2f}" if len(row.results) > 1 else ""
        lines.append(
            f"| {row.label} | {_units_text(row.plan)} | {_filters_text(row.plan)} | {macs:.1%} | {params:.1%} | "
            f"{row.val_pruned:.2%} | {row.val:.2%} | {row.test:.2%} | "
            f"{100 * (base_val - row.val):.2f}{val_sd} | {100 * (base_test - row.test):.2f}{test_sd} |"
        )
    return lines


def _mean(rows: Sequence[Row], base_val: float, base_test: float) -> str:
    if not rows:
        return "not measured"
    val = [100 * (base_val - row.val) for row in rows]
    test = [100 * (base_test - row.test) for row in rows]
    return (
        f"{len(rows)} random drop set(s): val drop {np.mean(val):.2f} pp (range {min(val):.2f} to {max(val):.2f}), "
        f"test drop {np.mean(test):.2f} pp (range {min(test):.2f} to {max(test):.2f})"
    )


def report(
    settings: Settings, data: DataSplits, base_m: Measurement, base_val: float, base_test: float,
    scores: Sequence[LayerScore], rules: Mapping[str, tuple[str, int, int]], alone: Mapping[str, float],
    rows: Sequence[Row], minutes: float, status: str, over_note: str = "",
) -> str:
    """The Markdown page; ``status`` says what is missing when the run was cut short."""
    ranked = sorted(scores, key=lambda s: s.score)
    position = {s.name: i + 1 for i, s in enumerate(ranked)}
    by_label = {row.label: row for row in rows}
    base_name = settings.base.relative_to(ROOT) if settings.base.is_relative_to(ROOT) else settings.base
    ft = settings.finetune
    budget = f"{ft.max_steps} steps" if ft.max_steps else f"{ft.epochs} epochs"

    def paper_row(kind: str, label: str) -> str:
        flops, pp = PAPER[kind]
        row = by_label.get(label)
        here = "not measured"
        if row is not None:
            macs, params = row.removed
            here = (
                f"MACs -{macs:.1%}, params -{params:.1%} at {100 * (row.val - base_val):+.2f} pp val / "
                f"{100 * (row.test - base_test):+.2f} pp test"
            )
        return f"| {kind} | FLOPs -{flops:.2%} at {pp:+.2f} pp | {label} | {here} |"

    first_target = settings.layer_targets[0]
    shares = {rule: _share(macs, base_m.macs) for rule, _, macs in rules.values()}
    block_share, conv_share = shares.get("block", "-"), shares.get("identity", "-")
    parts = [
        header(f"Discriminative layer pruning on {settings.model}, CIFAR-10 (first 4,000 records)"
               + (" (quick)" if settings.quick else "")),
        f"- data: {data.description}",
        f"- whole run: {minutes:.1f} minutes wall (the machine shared with other work), {settings.threads} torch thread(s)",
        *([f"- status: {status}"] if status else []),
        "",
        (f"Base: {settings.model} (`{base_name}`), {base_m.params:,} parameters, {base_m.macs / 1e6:.1f} M MACs per "
         f"32x32 image: validation {base_val:.2%}, test {base_test:.2%}."),
        "",
        ("Every variant is one plan applied by `prune_and_finetune` to a copy of the base: units dropped, filters "
         f"pruned, BN statistics recalibrated, then {budget} of fine-tuning (SGD lr {ft.lr:g}, momentum 0.9, cosine, "
         f"batch 64), the same for every variant, repeated with fine-tune seed(s) {', '.join(map(str, settings.seeds))} "
         "(accuracies are the mean over the seeds; `±` is their standard deviation). Drops are against the base checkpoint; "
         "MACs and parameters are counted on the real, smaller model. One validation image is "
         f"{100 / len(data.val):.2f} pp and one test image {100 / len(data.test):.3f} pp."),
        "",
        "## Against the paper",
        "",
        "| | paper: ResNet-56, full CIFAR-10 (base ~93%) | here | measured |",
        "| --- | --- | --- | --- |",
        paper_row("layers", f"DLP {first_target:.0%}"),
        paper_row("layers", f"DLP blocks only {first_target:.0%}"),
        paper_row("cascade", "DLP + filters"),
        paper_row("cascade", "DLP blocks only + filters"),
        "",
        ("The data differ, and so the figures are not comparable one to one. The paper trains ResNet-56 on all "
         "50,000 CIFAR-10 training images to about 93% and fine-tunes for many epochs on a GPU. Here a "
         f"{settings.model} learned from {len(data.train):,} training images to {base_val:.0%} validation / "
         f"{base_test:.0%} test accuracy (it fits its training images perfectly), every fine-tune is {budget} on "
         f"a shared CPU, and accuracy is read on {len(data.val)} validation and {len(data.test)} test images. "
         + ("" if settings.model == "resnet56" else
            "ResNet-20 has 9 residual blocks against ResNet-56's 27, so each block is a larger share of the "
            f"network ({block_share} of the MACs here, about 3.8% there) and a 30% budget takes 3 units instead of "
            "about 8; `dlp_resnet56.md` is the same page for ResNet-56.")),
        "",
        "## 1. The ranking",
        "",
        (f"`dlp_scores` on the first {settings.samples:,} training images (eval mode, global average pooling, PLS "
         "with 2 components, 5-fold cross-validated R^2 against the one-hot labels). The score is `gain` = R^2 of "
         "the unit's output - R^2 of its input (prunetune's default; the paper's mean VIP is beside it, see "
         "`docs/discriminative-layer-pruning.md` for why it is not the default). Rank 1 is dropped first. "
         "`val alone` is the validation accuracy with only that unit dropped, BN recalibrated, no fine-tune."),
        "",
        "| rank | unit | rule | gain | R^2 out | R^2 in | mean VIP | params | MACs share | val alone |",
        "| ---: | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for s in ranked:
        rule, params, macs = rules[s.name]
        val_alone = f"{alone[s.name]:.2%}" if s.name in alone else "-"
        parts.append(
            f"| {position[s.name]} | `{s.name}` | {rule} | {s.gain:+.4f} | {s.r2:.4f} | {s.input_r2:.4f} | "
            f"{s.mean_vip:.4f} | {params:,} | {_share(macs, base_m.macs)} | {val_alone} |"
        )
    if alone:
        cost = [100 * (base_val - alone[s.name]) for s in scores]
        rho_gain = spearmanr([s.gain for s in scores], cost).statistic
        rho_vip = spearmanr([s.mean_vip for s in scores], cost).statistic
        parts += [
            "",
            (f"Spearman correlation between a unit's score and the validation accuracy its drop alone costs "
             f"(a useful score is positive: units that add more cost more): gain {rho_gain:+.2f}, mean VIP "
             f"{rho_vip:+.2f}."),
        ]
    layer_rows = [row for row in rows if row.group == "layers"]
    cascade_rows = [row for row in rows if row.group == "cascade"]
    reference = [row for row in rows if row.group == "reference"]
    parts += [
        "",
        "## 2. Layers only",
        "",
        ("`dlp_drop_set(..., macs_reduction=t)` takes units in ranking order until at least t of the MACs are gone. "
         "The controls fill the same budget the same way from another order: `most discriminative` is the "
         "reversed ranking, `random` a seeded shuffle of the droppable units, `mean VIP` the paper's score. "
         f"Units come in steps of {block_share} (a block) and {conv_share} (a downsampling block's second conv) of "
         "the MACs, and a set stops at the first unit that meets the budget, so a set may remove more than its "
         "target" + (f": the first target is {first_target:g} rather than 0.3 because on this ranking 0.3 {over_note}"
                      if first_target != 0.3 else ".")
         + " Compare rows at the MACs they actually remove (column 4). `DLP blocks only` ranks only the "
         "residual blocks, as the paper does (its candidates are blocks); `DLP` ranks every droppable unit, "
         "the second convolutions of the downsampling blocks included."),
        "",
        *_table(reference + layer_rows, base_val, base_test),
        "",
    ]
    for target in settings.layer_targets:
        randoms = [row for row in layer_rows if row.label.startswith(f"random {target:.0%}")]
        dlp = by_label.get(f"DLP {target:.0%}")
        if dlp is not None:
            parts.append(
                f"- {target:.0%}: DLP val drop {100 * (base_val - dlp.val):.2f} pp, test drop "
                f"{100 * (base_test - dlp.test):.2f} pp; {_mean(randoms, base_val, base_test)}."
            )
    parts += [
        "",
        "## 3. Cascade: drop set, then filters",
        "",
        (f"The {first_target:.0%} drop set, then one L1 filter ratio for every filter unit that remains "
         f"(`dlp_plan(..., filters=r)`), r found by bisection so that the plan removes about "
         f"{settings.cascade_target:.0%} of the MACs. `filters only` prunes every filter unit of the undropped "
         "network at the ratio that reaches the same total."),
        "",
        *_table(cascade_rows, base_val, base_test),
        "",
        "## Reading it",
        "",
        *_reading(rows, by_label, base_val, base_test, settings),
        "",
    ]
    return "\n".join(parts)


def _reading(
    rows: Sequence[Row], by_label: Mapping[str, Row], base_val: float, base_test: float, settings: Settings,
) -> list[str]:
    """Plain statements computed from the rows (no verdict is written in advance)."""
    lines = []
    tuned = by_label.get("no pruning, fine-tuned")
    if tuned is not None:
        lines.append(
            f"- The same fine-tune without pruning moves the base by {100 * (tuned.val - base_val):+.2f} "
            f"pp val / {100 * (tuned.test - base_test):+.2f} pp test: the fine-tune's own effect, to "
            "read the drops against."
        )
    for target in settings.layer_targets:
        dlp = by_label.get(f"DLP {target:.0%}")
        others = [row for row in rows if row.group == "layers" and row.label != f"DLP {target:.0%}"
                  and f"{target:.0%}" in row.label]
        if dlp is None or not others:
            continue
        better = sum(row.val < dlp.val for row in others)
        better_test = sum(row.test < dlp.test for row in others)
        lines.append(
            f"- At {target:.0%}, DLP's drop set beats {better} of {len(others)} other drop sets of that budget on "
            f"validation and {better_test} of {len(others)} on test."
        )
    cascade = by_label.get("DLP + filters")
    filters_only = by_label.get("filters only")
    if cascade is not None and filters_only is not None:
        lines.append(
            f"- Cascade against filters only at about the same MACs: {100 * (cascade.val - filters_only.val):+.2f} pp val, "
            f"{100 * (cascade.test - filters_only.test):+.2f} pp test."
        )
    seeds = len(settings.seeds)
    lines.append(
        f"- With 320 validation and 800 test images and {seeds} fine-tune seed{'s' if seeds > 1 else ''}, "
        "differences of 1-2 pp are within the spread the random drop sets show; read the random rows as the noise floor."
    )
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few fine-tune steps and fewer controls (1-2 minutes)")
    parser.add_argument("--model", choices=sorted(BASES), default="resnet20")
    parser.add_argument("--base", default=None, help="checkpoint of the base (trained when missing)")
    parser.add_argument("--base-epochs", type=int, default=60)
    parser.add_argument("--epochs", type=int, default=3, help="fine-tune epochs of every variant")
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--seeds", type=int, default=1, help="fine-tune seeds per variant (the table shows their mean ± sd)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--output", default=None, help="Markdown page (default results/dlp.md; none with --quick)")
    args = parser.parse_args(argv)
    settings = _settings(args)

    def echo(line: str) -> None:
        print(line, flush=True)

    started = time.perf_counter()
    with torch_threads(settings.threads):
        train_once(settings.base, model=settings.model, data=CIFAR_SUBSET, epochs=settings.base_epochs,
                   threads=settings.threads, echo=echo)
        checkpoint = load_checkpoint(settings.base)
        base = checkpoint.build().eval()
        data = load_data(checkpoint.data_spec)
        example = torch.zeros(1, *data.input_shape)
        base_m = measure(base, example)
        _, val_loader, test_loader = data.loaders(64, seed=0)
        base_val, base_test = evaluate(base, val_loader).accuracy, evaluate(base, test_loader).accuracy
        echo(f"base {settings.model}: val {base_val:.2%}, test {base_test:.2%}, {base_m.macs / 1e6:.1f} M MACs")

        batches = DataLoader(data.train, batch_size=256, shuffle=False)
        scores = {
            kind: dlp_scores(base, batches, example_inputs=example, max_samples=settings.samples, score=kind)
            for kind in ("gain", "vip")
        }
        gain = sorted(scores["gain"], key=lambda s: s.score)
        ranking = [(s.name, s.score) for s in gain]
        vip_ranking = [(s.name, s.score) for s in sorted(scores["vip"], key=lambda s: s.score)]
        echo("ranking (least discriminative first): " + ", ".join(f"{n} {v:+.4f}" for n, v in ranking))
        rules = {c.name: (c.rule, c.params, c.macs) for c in droppable_units(base, example)}
        # The paper's candidates are residual blocks only; a unit's score does not depend on the others.
        blocks_ranking = [(name, value) for name, value in ranking if rules[name][0] == "block"]
        alone = {} if settings.quick else single_drops(
            base, data, [name for name, _ in ranking], base_val, base_m, settings.threads
        )
        for name, value in alone.items():
            echo(f"  {name} dropped alone: val {value:.2%}")

        rows: list[Row] = []
        status = "running"
        at_30 = dlp_drop_set(base, example, ranking, macs_reduction=0.3)
        at_30_macs = 1 - measure(apply_plan(base, {"drop": {"units": at_30}}, example_inputs=example), example).macs / base_m.macs
        over_note = f"takes {len(at_30)} units and removes {at_30_macs:.1%}."

        def save() -> None:
            if settings.output is None:
                return
            text = report(
                settings, data, base_m, base_val, base_test, scores["gain"], rules, alone, rows,
                (time.perf_counter() - started) / 60, status, over_note,
            )
            settings.output.parent.mkdir(parents=True, exist_ok=True)
            settings.output.write_text(text)

        def measure_row(group: str, label: str, plan: dict[str, Any]) -> None:
            echo(f"  {label}: {plan.get('drop', {}).get('units', [])} {_filters_text(plan)}")
            rows.append(Row(group, label, plan, run_plan(base, plan, data, settings, base_val, base_m, echo)))
            save()

        def drop_plan(order: Sequence[tuple[str, float]], target: float) -> dict[str, Any]:
            return {"drop": {"units": dlp_drop_set(base, example, order, macs_reduction=target)}}

        def shuffled(seed: int) -> list[tuple[str, float]]:
            order = list(ranking)
            random.Random(seed).shuffle(order)
            return order

        reversed_ranking = list(reversed(ranking))

        def measure_layers(target: float, seeds: Sequence[int], *, vip: bool) -> None:
            measure_row("layers", f"DLP {target:.0%}", drop_plan(ranking, target))
            measure_row("layers", f"DLP blocks only {target:.0%}", drop_plan(blocks_ranking, target))
            measure_row("layers", f"most discriminative {target:.0%}", drop_plan(reversed_ranking, target))
            for seed in seeds:
                measure_row("layers", f"random {target:.0%} (seed {seed})", drop_plan(shuffled(seed), target))
            if vip:
                measure_row("layers", f"mean VIP (paper's score) {target:.0%}", drop_plan(vip_ranking, target))

        def cascade(first: float) -> None:
            filter_units = [unit.name for unit in discover_units(base, example)]

            def filters_plan(ratio: float) -> dict[str, Any]:
                return {"filters": {"criterion": "l1", "ratios": {name: ratio for name in filter_units}}} if ratio else {}

            def then_filters(order: Sequence[tuple[str, float]]) -> Callable[[float], dict[str, Any]]:
                return lambda ratio: dlp_plan(base, example, order, macs_reduction=first, filters=ratio)

            for label, plan_for in (
                ("DLP + filters", then_filters(ranking)),
                ("DLP blocks only + filters", then_filters(blocks_ranking)),
                ("filters only", filters_plan),
                ("random drop (seed 0) + filters", then_filters(shuffled(0))),
            ):
                r, done = ratio_for(base, example, plan_for, settings.cascade_target, base_m.macs)
                echo(f"  {label}: filter ratio {r:g} removes {done:.1%} of the MACs")
                measure_row("cascade", label, plan_for(r))

        measure_row("reference", "no pruning, fine-tuned", {})
        first = settings.layer_targets[0]
        measure_layers(first, settings.random_seeds, vip=True)
        cascade(first)
        for target in settings.layer_targets[1:]:
            measure_layers(target, settings.random_seeds_high, vip=False)
        status = ""
        save()
    echo(f"done in {(time.perf_counter() - started) / 60:.1f} minutes" + (f" -> {settings.output}" if settings.output else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
