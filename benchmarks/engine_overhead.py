"""Engine overhead per trial as a user runs it: prunetune's default NSGA-II against plain Ray Tune.

Every engine runs the same number of trials of an objective that does no work, so what is left of a
trial's time is the engine's: asking the sampler, dispatching to a worker, reporting, recording.
For 2 and 4 workers, in the same Ray: plain Ray Tune + OptunaSearch (NSGA-II, population 10, the
same as prunetune's default), prunetune's Ray executor as a run uses it (the default NSGA-II, its
generations batched) and with batching off. Then a simulated 4-node cluster (one CPU per node) runs
the default and loses a worker node halfway: its dispatch rate, and whether the budget was met.

Writes benchmarks/results/engine_overhead.md and engine_overhead.json. From the repo root:
    .venv/bin/python benchmarks/engine_overhead.py [--trials 200] [--workers 2 4] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing
import os
import shutil
import sqlite3
import statistics
import sys
import tempfile
import threading
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
from prunetune.search.ledger import ATTR_ATTEMPTS, ATTR_NODE, open_study  # noqa: E402
from prunetune.search.progress import Progress  # noqa: E402
from prunetune.search.sampler_choice import create_sampler, population_size  # noqa: E402
from prunetune.search.space import SearchSpace  # noqa: E402
from prunetune.search.storage import open_storage  # noqa: E402
from prunetune.zoo.models import build_model  # noqa: E402

optuna.logging.set_verbosity(optuna.logging.WARNING)
GOALS = Goals.from_config({"accuracy": "maximize", "compression": "maximize"})
TARGET = 1.5  # the default within this factor of plain Ray Tune's seconds per trial


class NoOp:
    """The objective that does no work (or only sleeps): what is left of a trial's time is the engine's."""

    directions = {"accuracy": "maximize", "compression": "maximize"}

    def __init__(self, sleep: float = 0.0) -> None:
        self.sleep = sleep

    def __call__(self, plan: Plan, report: Callable[[int, Mapping[str, float]], None] | None = None) -> dict[str, float]:
        time.sleep(self.sleep)
        ratios = list(plan.sections["filters"]["ratios"].values())
        mean = sum(ratios) / len(ratios)
        return {"accuracy": 1.0 - mean**2, "compression": 1.0 / (1.0 - mean)}


def space() -> SearchSpace:
    model = build_model("lenet5", num_classes=10, in_channels=1, input_size=8)
    return SearchSpace.for_model(model, torch.zeros(1, 1, 8, 8), ["filters"])


def default_sampler(search_space: SearchSpace) -> optuna.samplers.BaseSampler:
    """The sampler a run gets when the experiment names none (the sampler table's nsga2 defaults)."""
    return create_sampler("nsga2", seed=0, n_objectives=2, search_space=search_space.distributions, options={})


def plain_optuna(trials: int) -> float:
    search_space = space()
    objective = NoOp()

    def run(trial: optuna.Trial) -> tuple[float, float]:
        metrics = objective(search_space.suggest(trial))
        return metrics["accuracy"], metrics["compression"]

    study = optuna.create_study(directions=["maximize", "maximize"], sampler=default_sampler(search_space))
    started = time.perf_counter()
    study.optimize(run, n_trials=trials)
    return time.perf_counter() - started


def plain_ray_tune(trials: int, workers: int, *, sqlite: bool = False) -> float:
    """Ray Tune with its OptunaSearch: the study in memory (as plain Tune runs it) or, with `sqlite`,
    in a SQLite file (what prunetune's ledger adds: a search that survives its driver)."""
    from ray import tune
    from ray.tune.search.optuna import OptunaSearch

    search_space = space()
    param_space = {name: tune.uniform(d.low, d.high) for name, d in search_space.distributions.items()}

    def trainable(config: dict) -> None:
        params = {name: config[name] for name in search_space.distributions}
        tune.report(NoOp()(search_space.plan(params)))

    with tempfile.TemporaryDirectory() as folder:
        storage = open_storage(f"sqlite:///{folder}/study.db") if sqlite else None
        searcher = OptunaSearch(
            metric=["accuracy", "compression"], mode=["max", "max"], sampler=default_sampler(search_space), storage=storage
        )
        tuner = tune.Tuner(
            trainable,
            param_space=param_space,
            tune_config=tune.TuneConfig(search_alg=searcher, num_samples=trials, max_concurrent_trials=workers, reuse_actors=True),
            run_config=tune.RunConfig(storage_path=folder, verbose=0),
        )
        started = time.perf_counter()
        tuner.fit()
        return time.perf_counter() - started


def prunetune_run(
    trials: int,
    executor: LocalExecutor | RayExecutor,
    *,
    objective: NoOp | None = None,
    on_study: Callable[[Path], None] | None = None,
) -> tuple[float, list[optuna.trial.FrozenTrial]]:
    """Seconds for `trials` trials through an executor, with the run's SQLite ledger; and the trials."""
    search_space = space()
    with tempfile.TemporaryDirectory() as folder:
        study = open_study(f"sqlite:///{folder}/study.db", goals=GOALS, sampler=default_sampler(search_space))
        if isinstance(executor, RayExecutor):
            executor.log_dir = Path(folder) / "trials"
            executor.population_size = population_size(study.sampler)
        if on_study is not None:
            on_study(Path(folder) / "study.db")
        started = time.perf_counter()
        executor.run(study, search_space, objective or NoOp(), GOALS, n_trials=trials, progress=Progress(total=trials, done=0, echo=lambda line: None))
        return time.perf_counter() - started, study.get_trials(deepcopy=False)


def _cluster_owner(
    address: multiprocessing.Queue, lose: multiprocessing.Event, stop: multiprocessing.Event, temp_dir: str
) -> None:
    """A 4-node cluster (one CPU each) in its own process; removes a worker node when `lose` is set.

    Its files live in `temp_dir`, so it leaves no /tmp/ray/ray_current_cluster for a later ray.init().
    """
    os.environ["RAY_TMPDIR"] = temp_dir
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    for _ in range(3):
        cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    address.put(cluster.address)
    lose.wait()
    if not stop.is_set():
        cluster.remove_node(next(iter(cluster.worker_nodes)), allow_graceful=False)
    stop.wait()
    cluster.shutdown()


def four_node_run(trials: int, sleep: float) -> dict[str, float | int | bool]:
    """The default on a simulated 4-node cluster, trials of `sleep` seconds; a worker node is lost
    once half the trials are done."""
    context = multiprocessing.get_context("spawn")
    address, lose, stop = context.Queue(), context.Event(), context.Event()
    temp_dir = tempfile.mkdtemp(prefix="ptbench-", dir="/tmp")  # short: Ray's socket paths must fit
    owner = context.Process(target=_cluster_owner, args=(address, lose, stop, temp_dir))
    owner.start()
    lost_at: list[float] = []

    def lose_halfway(database: Path) -> None:
        def watch() -> None:
            while not stop.is_set():
                try:
                    with sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=5) as connection:
                        done = connection.execute("SELECT COUNT(*) FROM trials WHERE state = 'COMPLETE'").fetchone()[0]
                except sqlite3.Error:
                    done = 0
                if done >= trials // 2:
                    lost_at.append(time.time())
                    lose.set()
                    return
                time.sleep(0.05)

        threading.Thread(target=watch, daemon=True).start()

    try:
        executor = RayExecutor(workers=4, cpus_per_trial=1, address=address.get(timeout=180))
        seconds, done = prunetune_run(trials, executor, objective=NoOp(sleep), on_study=lose_halfway)
    finally:
        stop.set()
        lose.set()
        owner.join(timeout=120)
        shutil.rmtree(temp_dir, ignore_errors=True)
    complete = [t for t in done if t.state == optuna.trial.TrialState.COMPLETE]
    return {
        "trials": trials,
        "trial_sleep_seconds": sleep,
        "seconds": seconds,
        "trials_per_second": trials / seconds,
        "complete": len(complete),
        "node_lost": bool(lost_at),
        "retried": sum(t.user_attrs.get(ATTR_ATTEMPTS, 1) > 1 for t in done),
        "nodes_used": len({t.user_attrs.get(ATTR_NODE) for t in done}),
    }


def measure(trials: int, workers: int, repeats: int) -> list[dict[str, object]]:
    """Plain Tune, the default and batching off at `workers` workers: the median of `repeats` runs each."""
    import ray

    engines: dict[str, Callable[[], float]] = {
        "plain Ray Tune + OptunaSearch": lambda: plain_ray_tune(trials, workers),
        "plain Ray Tune + OptunaSearch, study in SQLite": lambda: plain_ray_tune(trials, workers, sqlite=True),
        "prunetune default (NSGA-II, generations batched)": lambda: prunetune_run(
            trials, RayExecutor(workers=workers, cpus_per_trial=1))[0],
        "prunetune, generation batching off": lambda: prunetune_run(
            trials, RayExecutor(workers=workers, cpus_per_trial=1, batch_generations=False))[0],
    }
    ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
    try:
        runs: dict[str, list[float]] = {name: [] for name in engines}
        for _ in range(repeats):  # interleaved: a later run in one Ray is not favoured or penalised
            for name, engine in engines.items():
                runs[name].append(engine())
    finally:
        ray.shutdown()
    plain = statistics.median(runs["plain Ray Tune + OptunaSearch"]) / trials
    return [
        {
            "engine": name, "workers": workers, "seconds": seconds,
            "per_trial": statistics.median(seconds) / trials,
            "vs_plain_tune": statistics.median(seconds) / trials / plain,
        }
        for name, seconds in runs.items()
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--workers", type=int, nargs="*", default=[2, 4])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cluster-trial-seconds", type=float, default=0.25, help="how long each 4-node trial sleeps")
    args = parser.parse_args()
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")

    local = [
        {"engine": "plain Optuna loop (in memory)", "seconds": [plain_optuna(args.trials)]},
        {"engine": "prunetune, local executor (SQLite ledger)", "seconds": [prunetune_run(args.trials, LocalExecutor())[0]]},
    ]
    rows = [row for workers in args.workers for row in measure(args.trials, workers, args.repeats)]
    cluster = four_node_run(args.trials, args.cluster_trial_seconds)

    def spread(seconds: list[float]) -> str:
        return " / ".join(f"{value / args.trials:.4f}" for value in seconds)

    lines = ["| engine | workers | s per trial (median) | runs (s per trial) | x plain Tune |", "|---|---:|---:|---|---:|"]
    for row in local:
        lines.append(f"| {row['engine']} | 1 | {row['seconds'][0] / args.trials:.4f} | {spread(row['seconds'])} | |")
    for row in rows:
        lines.append(
            f"| {row['engine']} | {row['workers']} | {row['per_trial']:.4f} | {spread(row['seconds'])} | {row['vs_plain_tune']:.2f} |"
        )
    lines.append(
        f"| prunetune default, simulated 4-node cluster losing a node halfway, trials of {cluster['trial_sleep_seconds']:g} s "
        f"| 4 | {1 / cluster['trials_per_second']:.4f} | {cluster['trials_per_second']:.2f} trials/s | |"
    )
    defaults = {row["workers"]: row["vs_plain_tune"] for row in rows if row["engine"].startswith("prunetune default")}
    met = all(ratio <= TARGET for ratio in defaults.values())
    sqlite_cost = {row["workers"]: row["vs_plain_tune"] for row in rows if row["engine"].endswith("study in SQLite")}
    verdict = ", ".join(f"{ratio:.2f}x at {workers} workers" for workers, ratio in defaults.items())
    note = (
        f"\n{args.trials} trials of a no-op objective on LeNet-5's 4 filter ratios; NSGA-II with population 10 "
        f"everywhere (prunetune's default). Ray is started once per worker count (its start-up is not counted); "
        f"each engine ran {args.repeats} times, the median is shown. Ray runs one CPU per worker on this "
        f"{os.cpu_count()}-core machine, so 4 workers share 2 cores.\n\n"
        f"Target: the default within {TARGET}x of plain Ray Tune's seconds per trial: {verdict}: "
        f"{'met' if met else 'NOT met'}.\n\n"
        f"What the durable study costs: plain Ray Tune with its study in SQLite instead of memory takes "
        f"{', '.join(f'{sqlite_cost[w]:.2f}x' for w in sqlite_cost)} the in-memory time (at {', '.join(map(str, sqlite_cost))} "
        f"workers); the local executor shows the ledger's own cost per trial without Ray.\n\n"
        f"Simulated 4-node cluster (ray.cluster_utils.Cluster, one CPU per node, all on this machine), each trial "
        f"sleeping {cluster['trial_sleep_seconds']:g} s: "
        f"{cluster['complete']} of {cluster['trials']} trials complete in {cluster['seconds']:.1f} s "
        f"({cluster['trials_per_second']:.2f} trials/s), a worker node lost halfway: {cluster['node_lost']}, "
        f"trials retried after it: {cluster['retried']}, nodes that ran trials: {cluster['nodes_used']}.\n"
    )
    path = write_result("engine_overhead.md", header("Engine overhead per trial") + "\n" + "\n".join(lines) + "\n" + note)
    figures = {
        "trials": args.trials, "repeats": args.repeats, "target_vs_plain_tune": TARGET, "met": met,
        "default_vs_plain_tune": {str(workers): ratio for workers, ratio in defaults.items()},
        "rows": local + rows, "four_node_cluster": cluster,
    }
    path.with_suffix(".json").write_text(json.dumps(figures, indent=2) + "\n")
    print("\n".join(lines) + "\n" + note)
    print(f"wrote {path} and {path.with_suffix('.json')}")


if __name__ == "__main__":
    main()
