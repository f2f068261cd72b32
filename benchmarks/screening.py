"""Cheap screening and early stopping, on and off: wall time to the same hypervolume, and whether the
ranking right after pruning and BN recalibration predicts the ranking after fine-tuning.

For each model (LeNet-5 on MNIST: no batch norm; ResNet-20 on the CIFAR-10 subset: batch norm) and
seed, four NSGA-II runs of `--trials` trials with the same seed, each trial fine-tuning `--epochs`
short epochs (reports after each, so early stopping has steps to cut): plain, screening
(`search.screening`, keep 25%, the first 8 all go on), early stopping (`search.early_stopping`,
default margin), both. The target is 90% of the plain run's final hypervolume (the window of
search_vs_baselines.py: validation drop <= 10 pp, compression on a log scale); the table gives the
wall time each run needed to first reach it (from its trials' completion times) and its final
hypervolume. The plain runs also give Spearman's rank correlation between each completed trial's
accuracy right after pruning and BN recalibration (`accuracy_pruned`, the screening fidelity) and
its accuracy after fine-tuning. Writes benchmarks/results/screening.md and .json. From the repo root:
    .venv/bin/python benchmarks/screening.py [--seeds 0 1 2] [--trials 24]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import spearmanr

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import header, write_result  # noqa: E402
from search_vs_baselines import MODELS, ROOT, base_for, experiment, quiet, window_hv  # noqa: E402

from prunetune.app.runner import run_experiment  # noqa: E402
from prunetune.results import load_run  # noqa: E402
from prunetune.search.pareto import nondominated_mask  # noqa: E402

WORK = ROOT / "runs" / "benchmarks" / "screening"
ARMS = {
    "plain": {"search.screening.enabled": False, "search.early_stopping.enabled": False},
    "screening": {"search.screening.enabled": True, "search.early_stopping.enabled": False},
    "early stopping": {"search.screening.enabled": False, "search.early_stopping.enabled": True},
    "both": {"search.screening.enabled": True, "search.early_stopping.enabled": True},
}
#: Short epochs: a training set small enough that several epochs stay cheap.
LIMITS = {"lenet5-mnist": 3000, "resnet20-cifar": None}
TARGET_SHARE = 0.9


def hv_curve(run_dir: Path, max_compression: float) -> tuple[list[float], list[float]]:
    """(seconds since the run's first trial started, window HV of the completed trials so far), in completion order."""
    frame = load_run(run_dir).searched()
    frame = frame[frame["datetime_complete"].notna()].sort_values("datetime_complete")
    start = frame["datetime_start"].min()
    seconds, volumes, kept = [], [], []
    for number, row in frame.iterrows():
        if row["state"] == "COMPLETE":
            kept.append(number)
        done = frame.loc[kept]
        volume = 0.0
        if not done.empty:
            mask = nondominated_mask(done[["accuracy", "compression"]].to_numpy(dtype=float), ["maximize", "maximize"])
            chosen = done[mask]
            volume = window_hv(chosen["accuracy_drop"].to_numpy(dtype=float), chosen["compression"].to_numpy(dtype=float), max_compression)
        seconds.append((row["datetime_complete"] - start).total_seconds())
        volumes.append(volume)
    return seconds, volumes


def first_reaching(seconds: list[float], volumes: list[float], target: float) -> float:
    return next((s for s, v in zip(seconds, volumes, strict=True) if v >= target - 1e-12), math.nan)


def one_seed(name: str, spec: dict[str, Any], base: Path, seed: int, trials: int, epochs: int) -> dict[str, Any]:
    spec = dict(spec, limit=LIMITS[name], finetune={**spec["finetune"], "epochs": epochs, "max_steps": None})
    curves, rows = {}, {}
    for arm, changes in ARMS.items():
        run_dir = WORK / name / f"seed{seed}" / arm.replace(" ", "-")
        exp = experiment(f"{name}-{arm.replace(' ', '-')}", spec, base, seed=seed, sampler="nsga2", trials=trials).replace(**changes)
        run_experiment(exp, run_dir, echo=quiet)
        curves[arm] = hv_curve(run_dir, spec["max_compression"])
        frame = load_run(run_dir).searched()
        rows[arm] = {"fine_tuned": int((frame["state"] == "COMPLETE").sum()), "stopped": int((frame["state"] == "PRUNED").sum()),
                     "final_hv": curves[arm][1][-1], "wall_s": curves[arm][0][-1]}
        if arm == "plain":
            done = frame[frame["state"] == "COMPLETE"]
            rows[arm]["pairs"] = done[["accuracy_pruned", "accuracy"]].to_numpy(dtype=float).tolist()
    target = TARGET_SHARE * rows["plain"]["final_hv"]
    for arm in ARMS:
        rows[arm]["to_target_s"] = first_reaching(*curves[arm], target)
    print(f"  {name} seed {seed}: " + ", ".join(f"{arm} {rows[arm]['to_target_s']:.0f}s/{rows[arm]['final_hv']:.3f}" for arm in ARMS), flush=True)
    return {"seed": seed, "target_hv": target, "arms": rows}


def mean_sd(values: list[float]) -> str:
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return "never"
    text = f"{statistics.fmean(finite):.1f} ± {statistics.stdev(finite):.1f}" if len(finite) > 1 else f"{finite[0]:.1f}"
    return text + (f" ({len(values) - len(finite)} never)" if len(finite) < len(values) else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--trials", type=int, default=24)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    args = parser.parse_args()
    lines = [header("Cheap screening and early stopping: time to the same hypervolume"), ""]
    lines.append(
        f"NSGA-II (population 10), {args.trials} trials per run, each fine-tuning {args.epochs} epochs; seeds "
        f"{', '.join(map(str, args.seeds))}. Target: {TARGET_SHARE:.0%} of the plain run's final hypervolume (window: "
        "validation drop <= 10 pp, log compression). Times are wall seconds from the run's first trial on this machine "
        "(local executor, one trial at a time). Mean ± sd over seeds.\n"
    )
    summary: dict[str, Any] = {"seeds": args.seeds, "trials": args.trials, "epochs": args.epochs, "models": {}}
    for name in args.models:
        spec = MODELS[name]
        base = base_for(name, spec)
        seeds = [one_seed(name, spec, base, seed, args.trials, args.epochs) for seed in args.seeds]
        pairs = np.array([pair for s in seeds for pair in s["arms"]["plain"]["pairs"]])
        rho = float(spearmanr(pairs[:, 0], pairs[:, 1]).statistic) if len(pairs) > 2 else math.nan
        lines += [f"## {name}", "", "| arm | s to target HV | final HV | wall s | fine-tuned | stopped |", "|---|---:|---:|---:|---:|---:|"]
        for arm in ARMS:
            rows = [s["arms"][arm] for s in seeds]
            lines.append(
                f"| {arm} | {mean_sd([r['to_target_s'] for r in rows])} | {statistics.fmean([r['final_hv'] for r in rows]):.4f} | "
                f"{statistics.fmean([r['wall_s'] for r in rows]):.0f} | {statistics.fmean([r['fine_tuned'] for r in rows]):.1f} | "
                f"{statistics.fmean([r['stopped'] for r in rows]):.1f} |"
            )
        lines += ["", f"Spearman's rank correlation, accuracy after pruning + BN recalibration against after fine-tuning "
                  f"(plain runs, {len(pairs)} completed trials): **{rho:.2f}**.", ""]
        summary["models"][name] = {"spearman_screening_vs_finetuned": rho, "per_seed": seeds}
    path = write_result("screening.md", "\n".join(lines))
    path.with_suffix(".json").write_text(json.dumps(summary, indent=2, default=float) + "\n")
    print(f"wrote {path} and {path.with_suffix('.json')}")


if __name__ == "__main__":
    main()
