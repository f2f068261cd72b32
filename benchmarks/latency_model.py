"""How far a latency target's fitted model lands from real timings, and how often repaired plans meet it.

A ``latency_ms`` target repairs plans on a latency model fitted from ten timed plans (the base and nine probes) (see
``prunetune.pruners.latency_model``). For each model and device, per seed:

- the model is fitted on its probes (the same plans in every seed, as in every run; the timings differ);
- every timing below is taken as a trial takes it, on a network whose kernels have already run;
- 12 held-out random filter plans are timed, and each prediction's relative error is taken;
- a target halfway between the base's predicted latency and the most pruned plan's is set, 8
  random plans are repaired onto it and timed: the share whose timing meets the target, and
  timing / target (1.0: exactly on it);
- the base model is timed 5 times: the spread of timing itself, which no model can beat.

Models are untrained (latency does not depend on the weights). Run:

    .venv/bin/python benchmarks/latency_model.py --seeds 0 1 2

writes ``benchmarks/results/latency_model.md`` and ``latency_model.json``. ``--device cuda`` times on
the GPU (batch 1, as the trials' ``measure_latency`` does).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _machine import RESULTS, header  # noqa: E402

from prunetune.pruners import Plan, apply_plan, measure, measure_latency  # noqa: E402
from prunetune.pruners.target import PlanRepair, Target  # noqa: E402
from prunetune.search.space import SearchSpace  # noqa: E402
from prunetune.zoo import build_model  # noqa: E402

MODELS = {
    "lenet5": ({"num_classes": 10, "in_channels": 1, "input_size": 28}, (1, 1, 28, 28)),
    "resnet20": ({"num_classes": 10}, (1, 3, 32, 32)),
    "resnet56": ({"num_classes": 10}, (1, 3, 32, 32)),
    "vgg11": ({"num_classes": 10}, (1, 3, 32, 32)),
}
HELD_OUT = 12
REPAIRED = 8


def timed(model: torch.nn.Module, example: torch.Tensor, threads: int | None) -> float:
    """As a trial times its network: after its kernels have run (a trial fine-tunes and evaluates first)."""
    measure_latency(model, example, threads=threads)
    return measure_latency(model, example, threads=threads).median_ms


def random_plan(space: SearchSpace, rng: random.Random) -> Plan:
    scale = rng.uniform(0.2, 1.0)
    return space.unrepaired_plan({name: rng.random() * scale * d.high for name, d in space.distributions.items()})


def one_seed(name: str, device: torch.device, threads: int | None, seed: int) -> dict[str, Any]:
    kwargs, shape = MODELS[name]
    model = build_model(name, **kwargs).eval()
    example = torch.zeros(*shape)
    space = SearchSpace.for_model(model, example, {"filters": {"max_ratio": 0.9}})
    template = space.unrepaired_plan(space.params_for({}))
    fit = PlanRepair(model, example, Target("latency_ms", 1e9), space.highs(), template=template, device=device, threads=threads)
    law = fit.latency
    print(f"  {law.describe()}", flush=True)
    rng = random.Random(1000 + seed)
    errors = []
    for _ in range(HELD_OUT):
        pruned = apply_plan(model, random_plan(space, rng), example_inputs=example).to(device)
        measured = timed(pruned, example, threads)
        errors.append(abs(law.predict(measure(pruned, example)) - measured) / measured)
    repair = PlanRepair(model, example, Target("latency_ms", 1e9), space.highs(), template=template, latency=law)
    budget = (repair.value(repair.along(Plan({}), 0.0)) + repair.value(repair.along(Plan({}), 2.0))) / 2
    repair.target = Target("latency_ms", budget)
    ratios = []
    for _ in range(REPAIRED):
        plan, _ = repair.repair(random_plan(space, rng))
        ratios.append(timed(apply_plan(model, plan, example_inputs=example).to(device), example, threads) / budget)
    base = [timed(model.to(device), example, threads) for _ in range(5)]
    return {
        "model": name, "device": str(device), "threads": law.threads, "seed": seed,
        "fit": law.to_dict(), "fit_max_error": law.max_error,
        "held_out_mean_error": statistics.mean(errors), "held_out_max_error": max(errors),
        "target_ms": budget, "target_over_base": budget / repair.value(repair.along(Plan({}), 0.0)),
        "met_share": sum(ratio <= 1.0 for ratio in ratios) / len(ratios), "timing_over_target": statistics.mean(ratios),
        "base_ms": statistics.median(base), "timing_spread": (max(base) - min(base)) / statistics.median(base),
    }


def spread(rows: list[dict[str, Any]], key: str, percent: bool = True) -> str:
    values = [row[key] * (100 if percent else 1) for row in rows]
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.0f}% ± {sd:.0f}" if percent else f"{statistics.mean(values):.2f} ± {sd:.2f}"


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| model | device (threads) | base ms | timing spread (5 runs) | fit: largest error | held-out: mean error | "
        "held-out: largest error | target / base | repaired plans meeting target | timing / target |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for key in dict.fromkeys((row["model"], row["device"]) for row in rows):
        group = [row for row in rows if (row["model"], row["device"]) == key]
        lines.append(
            f"| {key[0]} | {key[1]} ({group[0]['threads']}) | {statistics.mean(r['base_ms'] for r in group):.3f} | "
            f"{spread(group, 'timing_spread')} | {spread(group, 'fit_max_error')} | {spread(group, 'held_out_mean_error')} | "
            f"{spread(group, 'held_out_max_error')} | {spread(group, 'target_over_base', False)} | {spread(group, 'met_share')} | {spread(group, 'timing_over_target', False)} |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--device", default="cpu", help="cpu or cuda (batch-1 timings on that device)")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads for the timings (the trials' own)")
    parser.add_argument("--output", type=Path, default=None, help="the .md to write (default benchmarks/results/latency_model.md)")
    args = parser.parse_args()
    device = torch.device(args.device)
    rows = []
    for name in args.models:
        for seed in args.seeds:
            row = one_seed(name, device, args.threads, seed)
            print(f"{name} seed {seed}: held-out mean error {row['held_out_mean_error']:.0%}, met {row['met_share']:.0%}", flush=True)
            rows.append(row)
    text = (
        header(f"A latency target's model against real timings ({device})")
        + f"- seeds: {', '.join(map(str, args.seeds))} (mean ± sd over seeds); untrained models, batch 1, filter plans "
        + f"(max ratio 0.9); each timing the median of 30 forward passes\n"
        + f"- fit: latency_ms = a + b·MMACs^p (a, b >= 0, p in (0, 1]), on the base and 9 pruned probes; held-out: "
        + f"{HELD_OUT} random plans per seed; repaired: {REPAIRED} random plans repaired onto a target halfway between the "
        + "base's predicted latency and the most pruned plan's, then timed\n\n"
        + table(rows) + "\n\n"
        + "Timing spread: (slowest - fastest) / median of 5 timings of the base model, the noise any prediction "
        + "carries. A repaired plan that misses its target in timing by less than that spread is within the noise.\n"
    )
    path = args.output or RESULTS / "latency_model.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.with_suffix(".json").write_text(json.dumps({"seeds": args.seeds, "device": str(device), "rows": rows}, indent=2) + "\n")
    print(f"wrote {path} and {path.with_suffix('.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
