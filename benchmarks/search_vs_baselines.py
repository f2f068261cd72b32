"""Does a search beat hand-set ratios at equal compute? Filter pruning against the baselines.

For each model (LeNet-5 on MNIST, ResNet-20 on the CIFAR-10 subset) and each seed, at equal total
fine-tuning (every arm runs `--trials` trials of the same brief fine-tune):

- the searchers nsga2 and tpe, objectives validation accuracy and compression;
- the baselines: the uniform sweep (one ratio in every unit) and Torch-Pruning's global ranking,
  each at `--trials` ratios evenly spaced from 0.05 to the space's max_ratio (`prunetune baseline`);
- target mode at 2x fewer MACs (`objective.target: {macs_reduction: 2}`, tpe, `--trials` trials)
  against the uniform and global plans repaired onto the same target (one trial each).

Every front and pick is made on validation figures; test figures of the same trials are reported.
Hypervolume is taken in the window users care about: accuracy drop at most 10 pp (validation),
compression on a log scale from 1x to `--max-compression`; both normalised to [0, 1], reference
(10 pp, 1x). Writes benchmarks/results/search_vs_baselines.md and .json. From the repo root:
    .venv/bin/python benchmarks/search_vs_baselines.py [--seeds 0 1 2] [--trials 20] [--models lenet5-mnist resnet20-cifar]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import optuna

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bases import CIFAR_SUBSET, MNIST, train_once  # noqa: E402
from _machine import header, write_result  # noqa: E402

from prunetune.app.experiment import experiment_from_dict  # noqa: E402
from prunetune.app.runner import run_experiment  # noqa: E402
from prunetune.results import load_run  # noqa: E402
from prunetune.search.pareto import hypervolume, nondominated_mask  # noqa: E402

optuna.logging.set_verbosity(optuna.logging.WARNING)
ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "runs" / "benchmarks" / "search_vs_baselines"
MAX_DROP = 10.0  # pp: the window's accuracy bound
TARGET_MACS = 2.0
HV_TARGET, ACC_TARGET = 1.05, 1.0  # searched HV >= 1.05x the best baseline's; target mode >= best baseline + 1 pp

MODELS: dict[str, dict[str, Any]] = {
    "lenet5-mnist": {
        "model": "lenet5", "data": MNIST, "limit": 20000, "base_epochs": 3,
        "finetune": {"epochs": 1, "max_steps": 60, "lr": 0.01}, "max_ratio": 0.9, "max_compression": 30.0,
    },
    "resnet20-cifar": {
        "model": "resnet20", "data": CIFAR_SUBSET, "limit": None, "base_epochs": 30,
        "finetune": {"epochs": 1, "max_steps": 30, "lr": 0.01}, "max_ratio": 0.8, "max_compression": 15.0,
    },
}


def base_for(name: str, spec: dict[str, Any]) -> Path:
    path = ROOT / "runs" / "benchmarks" / f"{name}-base-{spec['base_epochs']}ep.pt"
    options = {"limit": spec["limit"]} if spec["limit"] else {}
    train_once(path, model=spec["model"], data=spec["data"], epochs=spec["base_epochs"], **options)
    return path


def experiment(name: str, spec: dict[str, Any], base: Path, *, seed: int, sampler: str, trials: int, target: bool = False) -> Any:
    objective: dict[str, Any] = {"finetune": spec["finetune"], "objectives": {"accuracy": "maximize", "compression": "maximize"}}
    if target:
        objective = {"finetune": spec["finetune"], "target": {"macs_reduction": TARGET_MACS}}
    # The split the base was trained on (seed 0) for every search seed: validation stays unseen.
    data: dict[str, Any] = {"spec": spec["data"], "val_fraction": 0.1, "split_seed": 0}
    if spec["limit"]:
        data["limit"] = spec["limit"]
    return experiment_from_dict({
        "name": name, "seed": seed, "model": {"checkpoint": str(base)}, "data": data,
        "methods": {"filters": {"criterion": "l1", "max_ratio": spec["max_ratio"]}},
        "objective": objective,
        "search": {"sampler": sampler, "trials": trials, "early_stopping": {"enabled": False},
                   "sampler_options": {"population_size": 10} if sampler == "nsga2" else {}},
        "execution": {"executor": "local"},
    })


def quiet(line: str) -> None:
    if line.startswith(("baselines:", "training", "base model")):
        print("   ", line, flush=True)


def window_hv(drops: np.ndarray, compressions: np.ndarray, max_compression: float) -> float:
    """Hypervolume of (drop <= 10 pp, log compression) normalised to the unit square, reference (10 pp, 1x)."""
    keep = np.isfinite(drops) & np.isfinite(compressions) & (drops <= MAX_DROP) & (compressions > 1.0)
    if not keep.any():
        return 0.0
    drop = np.clip(drops[keep], 0.0, MAX_DROP) / MAX_DROP
    logc = 1.0 - np.clip(np.log(compressions[keep]) / math.log(max_compression), 0.0, 1.0)
    points = np.stack([drop, logc], axis=1)
    return float(hypervolume(points, ["minimize", "minimize"], [1.0, 1.0]))


def front_hv(frame: Any, spec: dict[str, Any], drop: str) -> float:
    """HV of the val-chosen front (by validation drop and compression), measured with ``drop`` (val or test)."""
    if frame.empty:
        return 0.0
    mask = nondominated_mask(frame[["accuracy", "compression"]].to_numpy(dtype=float), ["maximize", "maximize"])
    chosen = frame[mask]
    return window_hv(chosen[drop].to_numpy(dtype=float), chosen["compression"].to_numpy(dtype=float), spec["max_compression"])


def one_seed(name: str, spec: dict[str, Any], base: Path, seed: int, trials: int) -> dict[str, Any]:
    folder = WORK / name / f"seed{seed}"
    arms: dict[str, dict[str, float]] = {}
    started = time.perf_counter()
    ratios = ",".join(f"{r:.4g}" for r in np.linspace(0.05, spec["max_ratio"], trials))
    for sampler in ("nsga2", "tpe"):
        run_dir = folder / sampler
        run_experiment(experiment(f"{name}-{sampler}", spec, base, seed=seed, sampler=sampler, trials=trials), run_dir, echo=quiet)
        frame = load_run(run_dir).candidates()
        arms[sampler] = {"hv_val": front_hv(frame, spec, "accuracy_drop"), "hv_test": front_hv(frame, spec, "test_accuracy_drop")}
        print(f"  {name} seed {seed} {sampler}: HV val {arms[sampler]['hv_val']:.4f}", flush=True)
    # The baselines at the same number of trials, in a run of their own (no search trial).
    run_dir = folder / "baselines"
    exp = experiment(f"{name}-baselines", spec, base, seed=seed, sampler="random", trials=1)
    run_experiment(exp, run_dir, echo=quiet, only_baselines=[f"uniform:{ratios}", f"global:{ratios}"])
    done = load_run(run_dir).baselines()
    for kind in ("uniform", "global"):
        frame = done[done["baseline"].str.startswith(kind + ":")]
        arms[kind] = {"hv_val": front_hv(frame, spec, "accuracy_drop"), "hv_test": front_hv(frame, spec, "test_accuracy_drop")}
        print(f"  {name} seed {seed} {kind}: HV val {arms[kind]['hv_val']:.4f}", flush=True)
    # Target mode: the best validation accuracy at 2x fewer MACs, against the baselines repaired onto it.
    run_dir = folder / "target"
    exp = experiment(f"{name}-target", spec, base, seed=seed, sampler="tpe", trials=trials, target=True)
    exp = exp.replace(**{"search.baselines": [f"uniform:{spec['max_ratio'] / 2:g}", f"global:{spec['max_ratio'] / 2:g}"]})
    run_experiment(exp, run_dir, echo=quiet)
    run = load_run(run_dir)
    searched = run.candidates()
    best = searched.sort_values(["accuracy", "number"], ascending=[False, True]).iloc[0]
    baselines = run.baselines()
    best_baseline = baselines.sort_values(["accuracy", "number"], ascending=[False, True]).iloc[0]
    target = {
        "search_val": float(best["accuracy"]), "search_test": float(best["test_accuracy"]),
        "search_macs_reduction": float(best["macs_reduction"]),
        "baseline": str(best_baseline["baseline"]).split(":")[0],
        "baseline_val": float(best_baseline["accuracy"]), "baseline_test": float(best_baseline["test_accuracy"]),
        "baseline_macs_reduction": float(best_baseline["macs_reduction"]),
    }
    target["gain_val_pp"] = 100.0 * (target["search_val"] - target["baseline_val"])
    target["gain_test_pp"] = 100.0 * (target["search_test"] - target["baseline_test"])
    print(f"  {name} seed {seed} target: search {target['search_val']:.4f} vs {target['baseline']} {target['baseline_val']:.4f}", flush=True)
    best_baseline_hv = max(arms["uniform"]["hv_val"], arms["global"]["hv_val"])
    return {
        "seed": seed, "arms": arms, "target": target, "seconds": time.perf_counter() - started,
        "hv_ratio": {s: (arms[s]["hv_val"] / best_baseline_hv if best_baseline_hv > 0 else math.inf) for s in ("nsga2", "tpe")},
    }


def spread(values: list[float]) -> str:
    mean = statistics.fmean(values)
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{mean:.4f} ± {sd:.4f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    args = parser.parse_args()
    results: dict[str, Any] = {}
    for name in args.models:
        spec = MODELS[name]
        base = base_for(name, spec)
        results[name] = {"base": str(base.relative_to(ROOT)), "seeds": [one_seed(name, spec, base, seed, args.trials) for seed in args.seeds]}
        write(args, results)


def write(args: argparse.Namespace, results: dict[str, Any]) -> None:
    lines = [header("Search against baselines at equal compute (filter pruning)"), ""]
    lines.append(
        f"Each arm runs {args.trials} trials of the same brief fine-tune per seed (seeds {', '.join(map(str, args.seeds))}). "
        f"Fronts and picks on validation; test figures are of the same trials. Hypervolume window: validation accuracy drop "
        f"<= {MAX_DROP:g} pp and compression on a log scale from 1x up to the model's bound (below), normalised to the "
        f"unit square, reference (10 pp, 1x). Mean ± standard deviation over seeds.\n"
    )
    summary: dict[str, Any] = {"seeds": args.seeds, "trials_per_arm": args.trials, "models": {}}
    worst_hv, worst_gain = math.inf, math.inf
    for name, result in results.items():
        spec, seeds = MODELS[name], result["seeds"]
        lines += [f"## {name}", "", f"Base `{result['base']}`; fine-tune {spec['finetune']}; max_ratio {spec['max_ratio']}; "
                  f"compression window up to {spec['max_compression']:g}x.", ""]
        lines += ["| arm | HV val (window) | HV test (same trials) | HV val / best baseline |", "|---|---:|---:|---:|"]
        best_baseline = [max(s["arms"]["uniform"]["hv_val"], s["arms"]["global"]["hv_val"]) for s in seeds]
        for arm in ("nsga2", "tpe", "uniform", "global"):
            vals = [s["arms"][arm]["hv_val"] for s in seeds]
            tests = [s["arms"][arm]["hv_test"] for s in seeds]
            ratios = [v / b if b > 0 else math.nan for v, b in zip(vals, best_baseline, strict=True)]
            lines.append(f"| {arm} | {spread(vals)} | {spread(tests)} | {spread(ratios)} |")
        gains = [s["target"]["gain_val_pp"] for s in seeds]
        lines += ["", f"Target mode at {TARGET_MACS:g}x fewer MACs (tpe, {args.trials} trials; best validation accuracy):", "",
                  "| seed | search val | search test | best baseline | baseline val | baseline test | gain val (pp) | gain test (pp) |",
                  "|---:|---:|---:|---|---:|---:|---:|---:|"]
        for s in seeds:
            t = s["target"]
            lines.append(f"| {s['seed']} | {t['search_val']:.4f} | {t['search_test']:.4f} | {t['baseline']} | {t['baseline_val']:.4f} | "
                         f"{t['baseline_test']:.4f} | {t['gain_val_pp']:+.2f} | {t['gain_test_pp']:+.2f} |")
        hv_ratio = min(statistics.fmean([s["hv_ratio"][arm] for s in seeds]) for arm in ("nsga2", "tpe"))
        gain = statistics.fmean(gains)
        lines += ["", f"Worse searcher's mean HV ratio: {hv_ratio:.3f}; mean target-mode gain: {gain:+.2f} pp "
                  f"(seed spread {statistics.stdev(gains) if len(gains) > 1 else 0.0:.2f} pp).", ""]
        worst_hv, worst_gain = min(worst_hv, hv_ratio), min(worst_gain, gain)
        summary["models"][name] = {"hv_ratio_vs_best_baseline": hv_ratio, "acc_gain_at_2x_macs_pp": gain, "per_seed": seeds}
    met_hv, met_gain = worst_hv >= HV_TARGET, worst_gain >= ACC_TARGET
    lines += ["## Targets", "",
              f"- searched hypervolume >= {HV_TARGET}x the best baseline's (worse searcher, worst model, seed mean): "
              f"{worst_hv:.3f}: {'met' if met_hv else 'NOT met'}.",
              f"- target-mode accuracy at {TARGET_MACS:g}x MACs >= best baseline + {ACC_TARGET:g} pp (worst model, seed mean): "
              f"{worst_gain:+.2f} pp: {'met' if met_gain else 'NOT met'}.",
              "- Whether either is beyond the seed spread: see the ± columns above.", ""]
    path = write_result("search_vs_baselines.md", "\n".join(lines))
    summary.update(hv_ratio_vs_best_baseline=worst_hv, acc_gain_at_2x_macs_pp=worst_gain, hv_target_met=met_hv, acc_target_met=met_gain)
    path.with_suffix(".json").write_text(json.dumps(summary, indent=2, default=float) + "\n")
    print(f"wrote {path} and {path.with_suffix('.json')}", flush=True)


if __name__ == "__main__":
    main()
