"""Out-of-order layer pruning (Anik, Kelso, Lee 2024) against depth order and the uniform ratio.

Anik, Kelso and Lee characterise every unit alone at a fixed ratio and prune the units one at a
time, least sensitive first, with a brief fine-tune after each. This benchmark asks whether that
order buys accuracy at equal compression, on LeNet-5 trained on MNIST (and on the CIFAR-style
VGG-11 of ``cifar_filters_bits_pca.py`` when its base checkpoint exists):

1. Sensitivity: every unit pruned alone (L1, no fine-tune) at the analysed ratios.
2. Equal compression: every unit pruned at one ratio r, so every variant ends with the same
   architecture (checked: equal parameters and MACs), in four ways:
   ``sensitivity order`` (least sensitive first), ``depth order`` (registration order),
   ``reverse depth`` (deepest first), each a one-unit-at-a-time ``order`` plan with ``steps``
   fine-tuning batches after each unit and no budget; and ``uniform``, a ``filters`` plan pruning
   every unit at once. Every variant then gets the same final fine-tune; the uniform one gets the
   batches the ordered ones spent between units added to it, so all train for the same number of
   batches.
3. Budgeted (the paper's form): an ``order`` plan with an accuracy budget and a fixed ratio stops
   before the unit that would spend more than the budget; how far does each order get?

Each plan runs through ``prune_and_finetune`` exactly as a search trial scores it; the seeds are
the fine-tune seeds (batch order).

    .venv/bin/python benchmarks/out_of_order.py            # writes results/out_of_order.md
    .venv/bin/python benchmarks/out_of_order.py --quick    # 2,000 MNIST records, one seed: about a minute
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _bases import CIFAR_SUBSET, train_once
from _machine import RESULTS, header, write_result
from _pruning_bench import ensure_base

from prunetune.objectives.prune_finetune import prune_and_finetune
from prunetune.objectives.sensitivity import SensitivityTable, sensitivity_analysis
from prunetune.objectives.training import TrainConfig, evaluate
from prunetune.pruners import Measurement, discover_units, measure
from prunetune.runtime import torch_threads
from prunetune.zoo import load_checkpoint, load_data
from prunetune.zoo.datasets import DataSplits

__all__ = ["Case", "Run", "main"]

ROOT = Path(__file__).resolve().parent.parent
LENET = ROOT / "runs" / "benchmarks" / "lenet5-mnist-full.pt"
LENET_QUICK = ROOT / "runs" / "benchmarks" / "lenet5-mnist-20k.pt"
VGG = ROOT / "runs" / "benchmarks" / "vgg11-cifar4000.pt"
Echo = Callable[[str], None]
ORDERED = ("sensitivity order", "depth order", "reverse depth")
VARIANTS = (*ORDERED, "uniform")
#: Budget of the equal-compression runs: large enough that every unit is pruned.
NO_BUDGET = 1e9
#: Runs measured so far, by plan, fine-tune configuration and ratio.
_MEASURED: dict[str, Run] = {}


@dataclass(frozen=True)
class Case:
    """One model and how hard to work it."""

    name: str
    checkpoint: Path
    limit: int | None
    sensitivity_ratios: tuple[float, ...]
    ratios: tuple[float, ...]
    budget_ratios: tuple[float, ...]
    budget: float
    seeds: tuple[int, ...]
    steps_between: int
    final_steps: int
    lr: float
    batch_size: int = 64


@dataclass(frozen=True)
class Run:
    """One plan measured."""

    variant: str
    ratio: float
    seed: int
    sequence: tuple[str, ...]
    units_pruned: int
    val: float
    test: float
    val_pruned: float
    params: int
    macs: int
    compression: float
    macs_reduction: float
    seconds: float


def finetune(case: Case, seed: int, steps: int, threads: int, per_epoch: int) -> TrainConfig:
    """``steps`` batches (across as many epochs as that takes), SGD with the case's lr, cosine."""
    return TrainConfig(
        epochs=math.ceil(steps / per_epoch), max_steps=steps, lr=case.lr, seed=seed, threads=threads
    )


def order_plan(sequence: Sequence[str], ratio: float, budget: float, steps_between: int) -> dict[str, Any]:
    return {"order": {
        "sequence": list(sequence), "ratios": {unit: ratio for unit in sequence}, "criterion": "l1",
        "round_to": 1, "budget": budget, "steps": None, "finetune_steps": steps_between,
    }}


def uniform_plan(units: Sequence[str], ratio: float) -> dict[str, Any]:
    return {"filters": {"criterion": "l1", "round_to": 1, "ratios": {unit: ratio for unit in units}}}


def sequences(table: SensitivityTable, units: Sequence[str], ratio: float) -> dict[str, list[str]]:
    return {
        "sensitivity order": table.order(ratio),
        "depth order": list(units),
        "reverse depth": list(reversed(units)),
    }


def measure_run(
    base: nn.Module, plan: Mapping[str, Any], data: DataSplits, config: TrainConfig, *, variant: str, ratio: float,
    base_m: Measurement, base_val: float, batch_size: int, echo: Echo,
) -> Run:
    key = json.dumps([plan, repr(config), ratio], sort_keys=True)
    if key in _MEASURED:
        # Two variants with the same sequence (the sensitivity order can be the reverse depth order)
        # are the same deterministic run: measured once.
        run = dataclasses.replace(_MEASURED[key], variant=variant)
        echo(f"    {variant:<17} r {ratio:g} seed {config.seed}: the same plan as {_MEASURED[key].variant}")
        return run
    result = prune_and_finetune(
        base, plan, data, finetune=config, batch_size=batch_size, base_measurement=base_m, base_val_accuracy=base_val,
    )
    metrics = result.metrics(base_val_accuracy=base_val)
    applied = result.plan or {}
    if "order" in applied:
        sequence = tuple(applied["order"]["sequence"])
        pruned = int(applied["order"]["steps"])
    else:
        sequence = tuple(plan["filters"]["ratios"])
        pruned = len(sequence)
    run = Run(
        variant=variant, ratio=ratio, seed=config.seed, sequence=sequence, units_pruned=pruned,
        val=result.val_accuracy, test=result.test_accuracy, val_pruned=result.val_accuracy_pruned,
        params=result.pruned.params, macs=result.pruned.macs, compression=metrics["compression"],
        macs_reduction=metrics["macs_reduction"], seconds=result.seconds,
    )
    echo(
        f"    {variant:<17} r {ratio:g} seed {config.seed}: units {pruned}/{len(sequence)}, val {run.val:.2%} "
        f"test {run.test:.2%} (before final fine-tune {run.val_pruned:.2%}), compression {run.compression:.2f}x, "
        f"MACs {run.macs_reduction:.2f}x, {run.seconds:.0f}s"
    )
    _MEASURED[key] = run
    return run


def equal_compression(
    case: Case, base: nn.Module, data: DataSplits, table: SensitivityTable, units: Sequence[str], base_m: Measurement,
    base_val: float, threads: int, per_epoch: int, echo: Echo,
) -> list[Run]:
    runs: list[Run] = []
    extra = len(units) * case.steps_between
    for ratio in case.ratios:
        orders = sequences(table, units, ratio)
        echo(f"  ratio {ratio:g}: sensitivity order {orders['sensitivity order']}")
        for seed in case.seeds:
            at_ratio: list[Run] = []
            for variant in VARIANTS:
                if variant == "uniform":
                    plan = uniform_plan(units, ratio)
                    config = finetune(case, seed, case.final_steps + extra, threads, per_epoch)
                else:
                    plan = order_plan(orders[variant], ratio, NO_BUDGET, case.steps_between)
                    config = finetune(case, seed, case.final_steps, threads, per_epoch)
                at_ratio.append(measure_run(
                    base, plan, data, config, variant=variant, ratio=ratio, base_m=base_m, base_val=base_val,
                    batch_size=case.batch_size, echo=echo,
                ))
            shapes = {(run.params, run.macs) for run in at_ratio}
            if len(shapes) != 1 or any(run.units_pruned != len(units) for run in at_ratio):
                raise RuntimeError(f"variants at ratio {ratio} differ in size: {shapes}; equal compression is broken")
            runs += at_ratio
    return runs


def budgeted(
    case: Case, base: nn.Module, data: DataSplits, table: SensitivityTable, units: Sequence[str], base_m: Measurement,
    base_val: float, threads: int, per_epoch: int, echo: Echo,
) -> list[Run]:
    runs: list[Run] = []
    for ratio in case.budget_ratios:
        orders = sequences(table, units, ratio)
        for seed in case.seeds:
            for variant in ORDERED:
                config = finetune(case, seed, case.final_steps, threads, per_epoch)
                runs.append(measure_run(
                    base, order_plan(orders[variant], ratio, case.budget, case.steps_between), data, config,
                    variant=variant, ratio=ratio, base_m=base_m, base_val=base_val, batch_size=case.batch_size,
                    echo=echo,
                ))
    return runs


def _spread(values: Sequence[float], scale: float = 100.0, digits: int = 2, sign: str = "") -> str:
    mean = statistics.fmean(values) * scale
    if len(values) < 2:
        return f"{mean:{sign}.{digits}f}"
    return f"{mean:{sign}.{digits}f} ± {statistics.stdev(values) * scale:.{digits}f}"


def _group(runs: Sequence[Run], ratio: float, variant: str) -> list[Run]:
    return [run for run in runs if run.variant == variant and math.isclose(run.ratio, ratio)]


def _paired(runs: Sequence[Run], ratio: float, seeds: Sequence[int], than: str) -> list[float]:
    """Test accuracy of the sensitivity order minus that of ``than``, in pp, one per seed at ``ratio``."""
    ours = {run.seed: run.test for run in _group(runs, ratio, "sensitivity order")}
    theirs = {run.seed: run.test for run in _group(runs, ratio, than)}
    return [100 * (ours[seed] - theirs[seed]) for seed in seeds]


def _judge(diffs: Sequence[float]) -> str:
    """'better' / 'worse' when the mean paired difference is two standard errors away from 0, else 'no clear difference'."""
    mean = statistics.fmean(diffs)
    if all(d == 0 for d in diffs):
        return "identical"
    if len(diffs) < 2:
        return "better" if mean > 0 else "worse" if mean < 0 else "no clear difference"
    error = statistics.stdev(diffs) / math.sqrt(len(diffs))
    if mean - 2 * error > 0:
        return "better"
    if mean + 2 * error < 0:
        return "worse"
    return "no clear difference"


def section(
    case: Case, data: DataSplits, base_m: Measurement, base_val: float, base_test: float, table: SensitivityTable,
    units: Sequence[str], channels: Mapping[str, int], equal: Sequence[Run], budget_runs: Sequence[Run], minutes: float,
) -> str:
    extra = len(units) * case.steps_between
    lines = [
        f"## {case.name}",
        "",
        f"- data: {data.description}",
        (f"- base: `{case.checkpoint.relative_to(ROOT) if case.checkpoint.is_relative_to(ROOT) else case.checkpoint}`, "
         f"{base_m.params:,} parameters, {base_m.macs:,} MACs; validation {base_val:.2%}, test {base_test:.2%} "
         f"(one validation image is {100 / len(data.val):.3f} pp, one test image {100 / len(data.test):.3f} pp)"),
        f"- units: {', '.join(f'`{u}` ({channels[u]})' for u in units)}",
        (f"- fine-tune: SGD lr {case.lr:g}, momentum 0.9, cosine, batch {case.batch_size}; {case.steps_between} batches "
         f"after each unit in the ordered variants ({extra} in all), {case.final_steps} batches at the end; uniform: "
         f"{case.final_steps + extra} batches at the end. Seeds (fine-tune batch order): "
         f"{', '.join(map(str, case.seeds))}; figures are mean ± standard deviation over them."),
        f"- wall time of this part: {minutes:.1f} minutes",
        "",
        "### Sensitivity (each unit alone, L1, no fine-tune)",
        "",
        "Validation drop in pp:",
        "",
        "| unit | " + " | ".join(f"ratio {r:g}" for r in table.ratios) + " |",
        "| --- | " + " | ".join("---:" for _ in table.ratios) + " |",
    ]
    for unit in table.units:
        drops = {row.ratio: row.accuracy_drop for row in table.rows if row.unit == unit}
        lines.append(f"| `{unit}` | " + " | ".join(f"{drops[r]:.2f}" for r in table.ratios) + " |")
    lines.append("")
    for ratio in table.ratios:
        lines.append(f"- order at {ratio:g} (least sensitive first): {', '.join(table.order(ratio))}")
    lines += [
        "",
        "### Equal compression: every unit at ratio r",
        "",
        ("All four variants end with the same architecture at each r (checked: equal parameters and MACs). "
         "`val` / `test`: accuracy (%) after the final fine-tune; `val before FT`: after the last unit, before the "
         "final fine-tune (the uniform variant has had no training at that point)."),
        "",
        "| r | compression | MACs reduction | variant | order | val before FT | val | test | test drop (pp) |",
        "| ---: | ---: | ---: | --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for ratio in case.ratios:
        for variant in VARIANTS:
            group = _group(equal, ratio, variant)
            first = group[0]
            order = "all at once" if variant == "uniform" else " → ".join(first.sequence)
            lines.append(
                f"| {ratio:g} | {first.compression:.2f}x | {first.macs_reduction:.2f}x | {variant} | {order} | "
                f"{_spread([r.val_pruned for r in group])} | {_spread([r.val for r in group])} | "
                f"{_spread([r.test for r in group])} | {_spread([base_test - r.test for r in group])} |"
            )
    lines += [
        "",
        ("Sensitivity order against each other variant: test accuracy difference (sensitivity order minus the "
         "other, pp) paired by seed; `verdict` is better / worse when the mean is more than two standard errors "
         "from 0."),
        "",
        "| against | r | wins | ties | losses | mean ± sd (pp) | verdict |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for other in VARIANTS[1:]:
        for ratio in case.ratios:
            diffs = _paired(equal, ratio, case.seeds, other)
            lines.append(
                f"| {other} | {ratio:g} | {sum(d > 0 for d in diffs)} | {sum(d == 0 for d in diffs)} | "
                f"{sum(d < 0 for d in diffs)} | {_spread(diffs, 1.0, 3, sign='+')} | {_judge(diffs)} |"
            )
    lines += [
        "",
        f"### Budgeted: stop before the unit that would cost more than {case.budget:g} pp",
        "",
        (f"The `order` stage as a search trial runs it: after each unit and its {case.steps_between}-batch fine-tune "
         f"the validation accuracy is compared with the base's; the unit that exceeds the {case.budget:g} pp budget is "
         f"put back and the stage stops; then {case.final_steps} batches of final fine-tune."),
        "",
        "| ratio | variant | units pruned (per seed) | compression | MACs reduction | val | test |",
        "| ---: | --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for ratio in case.budget_ratios:
        for variant in ORDERED:
            group = _group(budget_runs, ratio, variant)
            lines.append(
                f"| {ratio:g} | {variant} ({' → '.join(group[0].sequence)}) | "
                f"{', '.join(str(r.units_pruned) for r in group)} | {_spread([r.compression for r in group], 1.0)}x | "
                f"{_spread([r.macs_reduction for r in group], 1.0)}x | {_spread([r.val for r in group])} | "
                f"{_spread([r.test for r in group])} |"
            )
    lines.append("")
    lines.append(verdict(case, equal, budget_runs))
    lines.append("")
    return "\n".join(lines)


def verdict(case: Case, equal: Sequence[Run], budget_runs: Sequence[Run]) -> str:
    """What the numbers say, in words (derived from them, not written in advance)."""
    sentences = []
    for ratio in case.ratios:
        same = [
            v for v in ORDERED[1:]
            if _group(equal, ratio, v)[0].sequence == _group(equal, ratio, "sensitivity order")[0].sequence
        ]
        if same:
            sentences.append(
                f"At r {ratio:g} the sensitivity order is the {same[0]} order, so those two rows are one run."
            )
    for other in VARIANTS[1:]:
        judged = {ratio: _judge(_paired(equal, ratio, case.seeds, other)) for ratio in case.ratios}
        parts = [
            f"{word} at r {', '.join(f'{r:g}' for r in judged if judged[r] == word)}"
            for word in ("better", "worse", "no clear difference", "identical") if word in judged.values()
        ]
        sentences.append(f"At equal compression, against {other} the sensitivity order is {'; '.join(parts)}.")
    for ratio in case.budget_ratios:
        reach = {v: statistics.fmean(r.compression for r in _group(budget_runs, ratio, v)) for v in ORDERED}
        top = max(reach.values())
        best = [v for v in ORDERED if math.isclose(reach[v], top, rel_tol=1e-9)]
        outcome = f"{best[0]} goes furthest" if len(best) == 1 else f"{' and '.join(best)} go equally far"
        sentences.append(
            f"With the {case.budget:g} pp budget at ratio {ratio:g} the mean compression reached is "
            + ", ".join(f"{reach[v]:.2f}x ({v})" for v in ORDERED) + f": {outcome}."
        )
    return "**Verdict.** " + " ".join(sentences)


def run_case(case: Case, threads: int, echo: Echo) -> str:
    started = time.perf_counter()
    saved = load_checkpoint(case.checkpoint)
    options = dict(saved.data_options)
    if case.limit is not None:
        options["limit"] = case.limit
    data = load_data(saved.data_spec, **options)
    base = saved.build()
    example = torch.zeros(1, *data.input_shape)
    found = [u for u in discover_units(base, example) if u.channels > 1]
    units = [u.name for u in found]
    channels = {u.name: u.channels for u in found}
    base_m = measure(base, example)
    loaders = data.loaders(case.batch_size, seed=0)
    per_epoch = len(loaders.train)
    if case.steps_between > per_epoch:
        raise RuntimeError(f"{case.steps_between} batches between units exceed one epoch ({per_epoch} batches)")
    base_val = evaluate(base, loaders.val).accuracy
    base_test = evaluate(base, loaders.test).accuracy
    echo(f"{case.name}: base val {base_val:.2%}, test {base_test:.2%}; units {units}")
    ratios = tuple(sorted({*case.sensitivity_ratios, *case.ratios, *case.budget_ratios}))
    table = sensitivity_analysis(
        base, data, method="filters", ratios=ratios, criterion="l1", batch_size=case.batch_size,
        progress=lambda done, total, row: echo(
            f"  sensitivity [{done}/{total}] {row.unit} at {row.ratio:g}: drop {row.accuracy_drop:.2f} pp"
        ),
    )
    args = (case, base, data, table, units, base_m, base_val, threads, per_epoch, echo)
    equal = equal_compression(*args)
    budget_runs = budgeted(*args)
    minutes = (time.perf_counter() - started) / 60
    return section(case, data, base_m, base_val, base_test, table, units, channels, equal, budget_runs, minutes)


def cases(args: argparse.Namespace, echo: Echo) -> Iterator[Case]:
    """The cases to run; the VGG-11 base is trained when missing, after the LeNet-5 case."""
    if args.quick:
        ensure_base(LENET_QUICK, limit=20000, epochs=3, echo=echo)  # the base sample_efficiency.py trains
        yield Case(
            name="LeNet-5, MNIST (quick)", checkpoint=LENET_QUICK, limit=2000, sensitivity_ratios=(0.5,),
            ratios=(0.7,), budget_ratios=(0.8,), budget=1.0, seeds=(0,), steps_between=5, final_steps=20, lr=args.lr,
        )
        return
    seeds = tuple(range(args.seeds))
    if not args.only_vgg:
        if Path(args.base) == LENET:
            ensure_base(LENET, limit=None, epochs=10, echo=echo)  # the base de_weight_pruning.py trains
        yield Case(
            name="LeNet-5, MNIST", checkpoint=Path(args.base), limit=None, sensitivity_ratios=(0.25, 0.5, 0.75),
            ratios=(0.5, 0.7, 0.8), budget_ratios=(0.8, 0.9), budget=1.0, seeds=seeds,
            steps_between=args.steps_between, final_steps=args.final_steps, lr=args.lr,
        )
    if args.vgg:
        # the base cifar_filters_bits_pca.py trains
        train_once(VGG, model="vgg11", data=CIFAR_SUBSET, epochs=40, threads=args.threads, echo=echo)
        yield Case(
            name="VGG-11, first 4,000 CIFAR-10 records", checkpoint=VGG, limit=None,
            sensitivity_ratios=(0.25, 0.5, 0.75), ratios=(0.5,), budget_ratios=(0.7,), budget=1.0,
            seeds=seeds[:2], steps_between=10, final_steps=100, lr=args.lr,
        )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2,000 MNIST records, one ratio, one seed: a smoke run")
    parser.add_argument("--base", default=str(LENET), help=f"LeNet-5 checkpoint (default {LENET.relative_to(ROOT)})")
    parser.add_argument("--seeds", type=int, default=3, help="fine-tune seeds 0..N-1 (default 3)")
    parser.add_argument("--steps-between", type=int, default=50, help="fine-tune batches after each unit (default 50)")
    parser.add_argument("--final-steps", type=int, default=300, help="final fine-tune batches (default 300)")
    parser.add_argument("--lr", type=float, default=0.01, help="fine-tune learning rate (default 0.01)")
    parser.add_argument("--vgg", action="store_true", help=f"also the VGG-11 of {VGG.relative_to(ROOT)} (trained when missing)")
    parser.add_argument("--only-vgg", action="store_true", help="the VGG-11 part alone (implies --vgg)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--output", default=None, help="Markdown file (default results/out_of_order.md; --quick prints)")
    args = parser.parse_args(argv)
    args.vgg = args.vgg or args.only_vgg
    echo: Echo = lambda line: print(line, flush=True)
    started = time.perf_counter()
    sections = []
    vgg_at_start = VGG.exists()
    ran_vgg = False
    with torch_threads(args.threads):
        for case in cases(args, echo):
            sections.append(run_case(case, args.threads, echo))
            ran_vgg = ran_vgg or case.checkpoint == VGG
        title = header("Out-of-order layer pruning against depth order and the uniform ratio" + (" (quick)" if args.quick else ""))
    skipped = not args.quick and not ran_vgg
    minutes = (time.perf_counter() - started) / 60
    text = "\n".join([
        title,
        f"- whole run: {minutes:.1f} minutes wall (the machine shared with other work), {args.threads} torch thread(s)",
        "",
        ("Anik, Kelso and Lee (2024) prune the layers one at a time in the order of their sensitivities "
         "(least sensitive first), fine-tuning after each. Here that order is compared with depth order, reverse "
         "depth order and all units at once, with the same final architecture and the same number of fine-tuning "
         "batches, then in the paper's budgeted form. Every plan runs through `prune_and_finetune`, as a search "
         "trial scores it; the order is the `order` method's stage (`prunetune.objectives.ordered`)."),
        "",
        *([(f"The VGG-11 part was not run: `{VGG.relative_to(ROOT)}` "
            f"{'was not there' if not vgg_at_start else 'was there'} when this run started"
            f"{'' if args.vgg else ' and --vgg was not given'}."), ""]
          if skipped else []),
        *sections,
    ])
    output = None if args.quick and not args.output else Path(args.output) if args.output else RESULTS / "out_of_order.md"
    if output is None:
        print(text)
    elif output.parent == RESULTS:
        print(f"wrote {write_result(output.name, text)}")
    else:
        output.write_text(text)
        print(f"wrote {output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
