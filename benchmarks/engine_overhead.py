"""Engine overhead per trial with a no-op objective: prunetune against plain Optuna and plain Ray Tune.

The same number of trials, the same 2-objective NSGA-II sampler, an objective that does no work.
Writes benchmarks/results/engine_overhead.md. Run from the repo root:
    .venv/bin/python benchmarks/engine_overhead.py [--trials 200] [--workers 2]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import optuna
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import header, write_result  # noqa: E402

from prunetune.pruners import Plan  # noqa: E402
from prunetune.search.executors import LocalExecutor, RayExecutor  # noqa: E402
from prunetune.search.goals import Goals  # noqa: E402
from prunetune.search.ledger import open_study  # noqa: E402
from prunetune.search.progress import Progress  # noqa: E402
from prunetune.search.space import SearchSpace  # noqa: E402
from prunetune.zoo.models import build_model  # noqa: E402

optuna.logging.set_verbosity(optuna.logging.WARNING)
GOALS = Goals.from_config({"accuracy": "maximize", "compression": "maximize"})


class NoOp:
    """The objective that does no work: what is left of a trial's time is the engine's."""

    directions = {"accuracy": "maximize", "compression": "maximize"}

    def __call__(self, plan: Plan, report: Callable[[int, Mapping[str, float]], None] | None = None) -> dict[str, float]:
        ratios = list(plan.sections["filters"]["ratios"].values())
        mean = sum(ratios) / len(ratios)
        return {"accuracy": 1.0 - mean**2, "compression": 1.0 / (1.0 - mean)}


def space() -> SearchSpace:
    model = build_model("lenet5", num_classes=10, in_channels=1, input_size=8)
    return SearchSpace.for_model(model, torch.zeros(1, 1, 8, 8), ["filters"])


def plain_optuna(trials: int) -> float:
    search_space = space()
    objective = NoOp()

    def run(trial: optuna.Trial) -> tuple[float, float]:
        metrics = objective(search_space.suggest(trial))
        return metrics["accuracy"], metrics["compression"]

    study = optuna.create_study(directions=["maximize", "maximize"], sampler=optuna.samplers.NSGAIISampler(seed=0))
    started = time.perf_counter()
    study.optimize(run, n_trials=trials)
    return time.perf_counter() - started


def plain_ray_tune(trials: int, workers: int) -> float:
    from ray import tune
    from ray.tune.search.optuna import OptunaSearch

    search_space = space()
    param_space = {name: tune.uniform(d.low, d.high) for name, d in search_space.distributions.items()}

    def trainable(config: dict) -> None:
        params = {name: config[name] for name in search_space.distributions}
        tune.report(NoOp()(search_space.plan(params)))

    searcher = OptunaSearch(metric=["accuracy", "compression"], mode=["max", "max"], sampler=optuna.samplers.NSGAIISampler(seed=0))
    with tempfile.TemporaryDirectory() as folder:
        tuner = tune.Tuner(
            trainable,
            param_space=param_space,
            tune_config=tune.TuneConfig(search_alg=searcher, num_samples=trials, max_concurrent_trials=workers, reuse_actors=True),
            run_config=tune.RunConfig(storage_path=folder, verbose=0),
        )
        started = time.perf_counter()
        tuner.fit()
        return time.perf_counter() - started


def prunetune_run(trials: int, executor: LocalExecutor | RayExecutor) -> float:
    with tempfile.TemporaryDirectory() as folder:
        study = open_study(f"sqlite:///{folder}/study.db", goals=GOALS, sampler=optuna.samplers.NSGAIISampler(seed=0))
        if isinstance(executor, RayExecutor):
            executor.log_dir = Path(folder) / "trials"
        started = time.perf_counter()
        executor.run(study, space(), NoOp(), GOALS, n_trials=trials, progress=Progress(total=trials, done=0, echo=lambda line: None))
        return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    import ray

    rows = [("plain Optuna loop (in memory)", plain_optuna(args.trials))]
    rows.append(("prunetune, local executor (SQLite ledger)", prunetune_run(args.trials, LocalExecutor())))
    ray.init(num_cpus=args.workers, include_dashboard=False, log_to_driver=False)
    try:
        rows.append((f"plain Ray Tune + OptunaSearch, {args.workers} concurrent", plain_ray_tune(args.trials, args.workers)))
        ray_executor = RayExecutor(workers=args.workers, cpus_per_trial=1, batch_generations=False)
        rows.append((f"prunetune, Ray executor (SQLite ledger), {args.workers} concurrent", prunetune_run(args.trials, ray_executor)))
    finally:
        ray.shutdown()
    table = "| engine | seconds | seconds per trial |\n|---|---:|---:|\n" + "\n".join(
        f"| {name} | {seconds:.2f} | {seconds / args.trials:.4f} |" for name, seconds in rows
    )
    note = (
        f"\n{args.trials} trials of a no-op objective on LeNet-5's 4 filter ratios, NSGA-II (Optuna), "
        "Ray started once beforehand (its start-up is not counted). Target: prunetune's Ray executor at most "
        "0.3 s per trial beyond the work.\n"
    )
    path = write_result("engine_overhead.md", header("Engine overhead per trial") + "\n" + table + "\n" + note)
    print(table)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
