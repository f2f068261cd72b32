"""Running trials: in this process (a plain Optuna loop) or on Ray workers through Ray Tune.

Both executors ask the study for trials in the driver (so every sampler, population samplers
included, sees one consistent ledger), run the same `run_trial` work, and record outcomes with the
same ledger calls. Ray adds workers, resources per trial, retries of lost workers, per-trial logs,
and cluster addresses; the study stays the one source of truth for resume.
"""

from __future__ import annotations

import contextlib
import importlib.machinery
import logging
import os
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import optuna

from prunetune.errors import PrunetuneError
from prunetune.search.goals import Goals
from prunetune.search.ledger import record_outcome
from prunetune.search.progress import Progress
from prunetune.search.space import SearchSpace
from prunetune.search.storage import params_in_one_write
from prunetune.search.trial import run_trial
from prunetune.search.weights import write_weights

__all__ = ["LocalExecutor", "RayExecutor", "StopRule", "stop_check"]

#: (compression, step, accuracy at that step) -> stop? Built from the ledger by the runner. A
#: string answer stops the trial with that reason; True stops it as dominated.
StopRule = Callable[[float, int, float], "bool | str"]


def stop_check(rule: StopRule | None) -> Callable[[int, Mapping[str, float]], bool | str] | None:
    if rule is None:
        return None

    def check(step: int, values: Mapping[str, float]) -> bool | str:
        if "compression" not in values or "val_accuracy" not in values:
            return False
        return rule(float(values["compression"]), step, float(values["val_accuracy"]))

    return check


@dataclass(kw_only=True)
class LocalExecutor:
    """Trials one after another in this process: no Ray needed (the plain Optuna way)."""

    threads: int | None = None
    weights_dir: Path | None = None

    def run(
        self,
        study: optuna.Study,
        space: SearchSpace,
        objective: Callable[..., Mapping[str, float]],
        goals: Goals,
        *,
        n_trials: int,
        progress: Progress,
        stop_rule: StopRule | None = None,
    ) -> None:
        for _ in range(n_trials):
            trial = study.ask()
            with params_in_one_write(study):
                space.suggest_params(trial)
            outcome = run_trial(
                objective, space, trial.params, should_stop=stop_check(stop_rule), threads=self.threads,
                keep_weights=self.weights_dir is not None,
            )
            weights = outcome.pop("weights", None)
            if weights is not None and self.weights_dir is not None:
                write_weights(self.weights_dir, trial.number, weights)
            state = record_outcome(study, trial, outcome, goals)
            metrics = outcome.get("metrics") or {}
            progress.trial_finished(study, trial.number, state, metrics, feasible=goals.feasible(metrics))


def _ship_by_value(*objects: object) -> list[str]:
    """Have Ray pickle the modules of these objects (the objective, the space's methods) by value
    when workers cannot import them by name.

    An objective or a method loaded from a file (``path/to/file.py:attr``) lives in a module
    registered under a synthetic name in this process only; pickled by reference, a worker fails to
    unpickle it with ``No module named ...``. Returns the names of the modules registered.
    """
    from ray import cloudpickle

    names = {
        getattr(candidate, "__module__", None)
        for objective in objects
        for candidate in (objective, type(objective), getattr(objective, "function", None))
        if candidate is not None
    }
    registered = []
    for name in sorted(n for n in names if isinstance(n, str)):
        module = sys.modules.get(name)
        if module is None or name == "__main__" or name.split(".")[0] in sys.builtin_module_names:
            continue  # cloudpickle already pickles __main__ by value
        if importlib.machinery.PathFinder.find_spec(name.split(".")[0], sys.path) is None:
            cloudpickle.register_pickle_by_value(module)
            registered.append(name)
    return registered


def _driver_side_actor(actor_class: type) -> object:
    """An actor on this (the driver's) node, taking no CPU from the trials: a worker node that is
    lost takes only its own trials with it (the generation gate, the kept-weights mailbox)."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    options: dict[str, object] = {"num_cpus": 0}
    with contextlib.suppress(Exception):  # anywhere will do where the driver's node is not known
        node = ray.get_runtime_context().get_node_id()
        options["scheduling_strategy"] = NodeAffinitySchedulingStrategy(node_id=node, soft=True)
    return ray.remote(actor_class).options(**options).remote()


@contextlib.contextmanager
def _only_json_results() -> Iterator[None]:
    """Tune writes each trial's results as JSON only (the run passes that logger), not also as CSV
    and TensorBoard events: a trial's results are the ledger's JSON texts, which neither can show,
    and each format was a file write (TensorBoard's with an fsync) per result in the driver."""
    name = "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"
    before = os.environ.get(name)
    os.environ[name] = "1"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = before


def _start_or_join(ray, address: str | None) -> None:
    """Ray on this machine (address None) or the cluster at `address`; a cluster that cannot be
    joined (gone since the up-front check, or refusing this driver) is the user's to fix."""
    try:
        ray.init(address=address, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
    except ConnectionError as error:
        if address is None:
            raise
        cause = f"{error} {error.__cause__ or ''}"
        hint = (
            " The cluster asks for an authentication token: give this driver the cluster's token "
            "(RAY_AUTH_MODE=token, and RAY_AUTH_TOKEN or ~/.ray/auth_token)."
            if "auth" in cause.lower() else ""
        )
        raise PrunetuneError(
            f"Could not join the Ray cluster at {address!r} (the 'execution.address' key): {error}.{hint}"
        ) from None


@dataclass(kw_only=True)
class RayExecutor:
    """Trials on Ray workers, scheduled by Ray Tune with the study as its searcher.

    Args:
        workers: Trials running at once.
        cpus_per_trial, gpus_per_trial: Resources each trial reserves (fractions allowed).
        threads: Torch CPU threads inside each trial (default: its CPUs, at least one).
        address: None starts Ray on this machine; 'auto' or 'ray://host:port' joins a cluster.
        retries: How often a trial whose worker died is started again before it counts as failed.
        population_size: With `batch_generations`, a generation's trials run only once every earlier
            generation's have finished (they wait in their workers, at a gate the driver opens).
        log_dir: Where Ray Tune keeps a folder per trial (`<attempt>/trial-00007`: params, results,
            errors); the ledger's `log` attribute names it.
        weights_dir: Keep each completed trial's weights here (`trial-N.pt`); None keeps none.
            Workers hand the bytes to a small actor and the driver writes the files, so workers on
            other nodes need no shared file system (the bytes travel through Ray's object store).
    """

    workers: int = 2
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    threads: int | None = None
    address: str | None = None
    retries: int = 2
    population_size: int | None = None
    batch_generations: bool = True
    log_dir: Path = Path("runs/tune")
    weights_dir: Path | None = None

    def run(
        self,
        study: optuna.Study,
        space: SearchSpace,
        objective: Callable[..., Mapping[str, float]],
        goals: Goals,
        *,
        n_trials: int,
        progress: Progress,
        stop_rule: StopRule | None = None,
    ) -> None:
        os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
        import ray
        from ray import tune
        from ray.tune.logger import JsonLoggerCallback

        from prunetune.search._gate import Gate
        from prunetune.search._keeper import WeightKeeper
        from prunetune.search._tune import (
            ErrorLog,
            LedgerSearcher,
            StopScheduler,
            TrialWork,
            trainable,
            trial_dirname,
        )

        logging.getLogger("ray.tune").setLevel(logging.WARNING)
        started_here = not ray.is_initialized()
        if started_here:
            _start_or_join(ray, self.address)
        batch = self.population_size if self.batch_generations else None
        gate = keeper = None
        try:
            errors = ErrorLog()
            gate = _driver_side_actor(Gate) if batch else None
            keeper = _driver_side_actor(WeightKeeper) if self.weights_dir is not None else None
            searcher = LedgerSearcher(
                study=study, space=space, goals=goals, n_trials=n_trials, progress=progress, errors=errors,
                batch=batch, gate=gate, keeper=keeper, weights_dir=self.weights_dir,
            )
            errors.on_retry = searcher.release_generations
            scheduler = StopScheduler(searcher=searcher, rule=stop_rule)
            threads = self.threads or max(1, int(self.cpus_per_trial))
            _ship_by_value(objective, *space.methods.values())
            # Base weights and data go into Ray's object store once, and each worker fetches them once.
            shared = ray.put(TrialWork(objective=objective, space=space, threads=threads, gate=gate, keeper=keeper))
            work = tune.with_parameters(trainable, work=[shared])
            resources = {"cpu": self.cpus_per_trial, "gpu": self.gpus_per_trial}
            tuner = tune.Tuner(
                tune.with_resources(work, resources),
                tune_config=tune.TuneConfig(
                    search_alg=searcher, scheduler=scheduler, num_samples=n_trials,
                    max_concurrent_trials=self.workers, reuse_actors=True, trial_dirname_creator=trial_dirname,
                ),
                run_config=tune.RunConfig(
                    name=time.strftime("attempt-%Y%m%d-%H%M%S"),
                    storage_path=str(self.log_dir.resolve()),
                    failure_config=tune.FailureConfig(max_failures=self.retries),
                    callbacks=[errors, JsonLoggerCallback()],
                    log_to_file=True,
                    verbose=0,
                ),
            )
            with _only_json_results():
                tuner.fit()
        finally:
            for actor in (gate, keeper):
                if actor is not None and ray.is_initialized():
                    ray.kill(actor)
            if started_here:
                ray.shutdown()
