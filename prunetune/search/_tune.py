"""The Ray Tune parts of the Ray executor: the worker function, the ledger searcher, the stopper.

Imported only when a search runs on Ray, so the rest of prunetune starts without Ray Tune.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from ray import tune
from ray.tune.schedulers import FIFOScheduler, TrialScheduler
from ray.tune.search import Searcher

from prunetune.search.goals import Goals
from prunetune.search.ledger import ATTR_ATTEMPTS, generation_of, record_outcome
from prunetune.search.progress import Progress
from prunetune.search.space import SearchSpace
from prunetune.search.storage import params_in_one_write
from prunetune.search.trial import DOMINATED, run_trial
from prunetune.search.weights import weights_name, write_weights

__all__ = ["ErrorLog", "LedgerSearcher", "StopScheduler", "trainable", "trial_dirname"]


class _DriverOnly:
    """Ray Tune pickles its searcher, scheduler and callbacks with the experiment state. Ours hold the
    live study and locks, and a run resumes from the study (not from Tune's state), so what Tune keeps
    of them is only their class: an unpickled copy is inert.
    """

    def __getstate__(self) -> dict[str, Any]:
        return {}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

# Tune flattens nested results for searchers; these travel as JSON text instead.
VALUES, OUTCOME, WHERE = "prunetune_values", "prunetune_outcome", "prunetune_where"
STEP_WHERE, STEP_OUTCOME = -2, -1
STOPPED_REASON = f"stopped early: {DOMINATED}"
REASON_CHARS = 400
#: How long one call waits at the gate before the worker asks again (it is answered as soon as it opens).
GATE_WAIT_SECONDS = 10.0
#: The gate opened for good: every generation may run (see `LedgerSearcher.release_generations`).
GATE_RELEASED = 2**31 - 1


@dataclass(frozen=True)
class TrialWork:
    """What every trial of a search runs with: put into Ray's object store once by the driver."""

    objective: Any
    space: SearchSpace
    threads: int = 1
    gate: Any = None
    keeper: Any = None


#: A worker's copy of each search's work, by object id: a reused worker deserialises the objective
#: (base weights, in-memory data) once, not once per trial.
_WORK_IN_THIS_WORKER: dict[str, TrialWork] = {}


def _work_of(reference: Any) -> TrialWork:
    import ray

    key = reference.hex()
    if key not in _WORK_IN_THIS_WORKER:
        _WORK_IN_THIS_WORKER.clear()  # one search at a time per worker process
        _WORK_IN_THIS_WORKER[key] = ray.get(reference)
    return _WORK_IN_THIS_WORKER[key]


def trainable(config: dict[str, Any], work: list[Any] | None = None) -> None:
    """What a Ray worker runs for one trial: where it runs, intermediate reports, then the outcome.

    `work` holds the reference to the search's `TrialWork` (a reference inside a list, so that Tune
    passes the reference itself and each worker fetches the work once). A trial of a later generation
    first waits at the generation gate. The first report says which node runs the trial and since
    when, so the ledger has them even for a trial that never sends its outcome (stopped early by the
    driver, or its worker lost). With a keeper, a completed trial's weights go to it, for the driver
    to write into the run folder.
    """
    import ray

    assert work, "the executor passes the search's work"
    found = _work_of(work[0])
    objective, space, threads, gate, keeper = found.objective, found.space, found.threads, found.gate, found.keeper
    if gate is not None and config.get("generation") is not None:
        _wait_at(gate, int(config["generation"]))
    node = ray.get_runtime_context().get_node_id()
    tune.report({"step": STEP_WHERE, WHERE: json.dumps({"node": node, "hostname": socket.gethostname(), "started": time.time()})})
    outcome = run_trial(
        objective,
        space,
        config["params"],
        threads=threads,
        node=node,
        sink=lambda step, values: tune.report({"step": step, VALUES: json.dumps({k: float(v) for k, v in values.items()})}),
        keep_weights=keeper is not None,
        gpu_ids=ray.get_gpu_ids(),
    )
    weights = outcome.pop("weights", None)
    if weights is not None:
        # In the mailbox before the outcome is reported: the driver takes them when it records the trial.
        ray.get(keeper.put.remote(weights_name(int(config["number"])), weights))
    tune.report({"step": STEP_OUTCOME, OUTCOME: json.dumps(outcome)})


def _wait_at(gate: Any, generation: int) -> None:
    """Until the driver opens `generation`; a gate that cannot be reached lets the trial through."""
    import ray

    while True:
        try:
            if ray.get(gate.wait.remote(generation, GATE_WAIT_SECONDS)) >= generation:
                return
        except ray.exceptions.RayError:
            return  # batching is an ordering of the search, never a reason for a trial to fail


def trial_dirname(trial: Any) -> str:
    """Tune's folder for a trial, named by its number in the study (`trial-00007`)."""
    number = trial.config.get("number") if isinstance(trial.config, Mapping) else None
    return f"trial-{number:05d}" if isinstance(number, int) else f"trial-{trial.trial_id}"


class ErrorLog(_DriverOnly, tune.Callback):
    """Keeps, for the ledger, each trial's Tune folder, why its worker failed and how often it was retried."""

    def __init__(self) -> None:
        self.trials: dict[str, Any] = {}
        self.attempts: dict[str, int] = {}
        self.lock = threading.Lock()
        #: Called when a trial whose worker died is started again (the searcher lets waiting trials go).
        self.on_retry: Callable[[], None] | None = None

    def on_trial_start(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        with self.lock:
            self.trials[trial.trial_id] = trial

    def on_trial_recover(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        with self.lock:
            self.trials[trial.trial_id] = trial
            self.attempts[trial.trial_id] = self.attempts.get(trial.trial_id, 1) + 1
        if self.on_retry is not None:
            self.on_retry()

    def reason(self, trial_id: str) -> str:
        """Why the trial's worker failed; Tune writes the error file before it tells the searcher."""
        with self.lock:
            trial = self.trials.get(trial_id)
        if trial is None:
            return "the trial's worker failed and its retries ran out"
        return _error_text(trial)

    def path(self, trial_id: str) -> str | None:
        """The trial's folder under the run folder (params, results, errors), once the trial started."""
        with self.lock:
            trial = self.trials.get(trial_id)
        try:
            return str(trial.path) if trial is not None and trial.path else None
        except Exception:  # noqa: BLE001 - a trial without storage has no folder; the ledger goes on
            return None


def _error_text(trial: Any) -> str:
    path = getattr(trial, "error_file", None) or ""
    try:
        text = Path(path).read_text() if path else ""
    except OSError:
        text = ""
    # The file holds one block per failure ("Failure # N (occurred at ...)"); the last one is why it ended.
    block = text.rsplit("Failure # ", 1)[-1].strip().splitlines()[1:] if text.strip() else []
    lines = [line.strip() for line in block if line.strip() and not line.startswith((" ", "\t"))]
    detail = next((line for line in reversed(lines) if ":" in line and "Error" in line.split(":", 1)[0]), None)
    detail = (detail or (lines[-1] if lines else "no error text")).split(" Some common causes", 1)[0]
    if len(detail) > REASON_CHARS:
        detail = detail[: REASON_CHARS - 3] + "..."
    return "worker failed after retries: " + detail


@dataclass
class _Live:
    trial: optuna.trial.Trial
    generation: int | None = None
    curve: dict[str, dict[str, float]] = field(default_factory=dict)
    where: dict[str, Any] = field(default_factory=dict)
    launched: float = 0.0


class LedgerSearcher(_DriverOnly, Searcher):
    """Ray Tune's searcher, backed by the study: asks it for trials, tells it their outcomes.

    With `batch` set, a population sampler's generations run as whole batches: a trial of a later
    generation starts only once every trial of the earlier ones has finished. The generation is the
    one the sampler gave the trial (its `<Sampler>:generation` system attribute). With a `gate`, such
    a trial goes to Tune at once and waits in its worker until the driver opens its generation (Tune
    keeps its workers busy rather than ending idle ones); without one, it waits here, asked, until the
    earlier generations are done. Once a lost worker's trial is retried, the gate stays open.
    Samplers that keep no generation fall back to at most `batch` trials started before all of them
    have finished. With a `keeper` (kept weights), a completed trial's weights are taken from it and
    written into `weights_dir` before the trial is recorded.
    """

    def __init__(
        self,
        *,
        study: optuna.Study,
        space: SearchSpace,
        goals: Goals,
        n_trials: int,
        progress: Progress,
        errors: ErrorLog,
        batch: int | None = None,
        gate: Any = None,
        keeper: Any = None,
        weights_dir: Path | None = None,
    ) -> None:
        super().__init__()
        self.keeper, self.weights_dir = keeper, weights_dir
        self.study, self.space, self.goals = study, space, goals
        self.n_trials, self.progress, self.errors, self.batch = n_trials, progress, errors, batch
        self.gate, self.gate_open = gate, -1
        self.live: dict[str, _Live] = {}
        self.pending: _Live | None = None
        #: Trials the scheduler stopped, with why.
        self.stopped: dict[str, str] = {}
        self.launched = 0
        self.in_batch = 0

    def set_search_properties(self, metric: str | None, mode: str | None, config: dict, **spec: Any) -> bool:
        return True

    def save(self, checkpoint_path: str) -> None:
        """Nothing to save: the study is the searcher's state, and it is already in the ledger."""

    def restore(self, checkpoint_path: str) -> None:
        """Nothing to restore: a resumed run reads the study."""

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        if self.pending is None:
            if self.launched >= self.n_trials:
                return Searcher.FINISHED
            trial = self.study.ask()
            with params_in_one_write(self.study):
                self.space.suggest_params(trial)
            self.launched += 1
            self.pending = _Live(trial, generation=generation_of(self.study, trial) if self.batch else None)
        if self.batch and not self._may_start(self.pending):
            return None  # an earlier generation is still running
        live, self.pending = self.pending, None
        live.launched = time.time()
        self.live[trial_id] = live
        self.in_batch += 1
        config = {"params": live.trial.params, "number": live.trial.number}
        if self.gate is not None and live.generation is not None:
            self._open_gate()
            if live.generation > self.gate_open:  # it must wait; otherwise it skips the gate's round trip
                config["generation"] = live.generation
        return config

    def _open_gate(self) -> None:
        """Open the oldest generation still running (or waiting): its trials run, later ones wait."""
        generations = [live.generation for live in self.live.values() if live.generation is not None]
        if generations and min(generations) != self.gate_open and self.gate_open != GATE_RELEASED:
            self.gate_open = min(generations)
            self.gate.set.remote(self.gate_open)

    def release_generations(self) -> None:
        """Let every waiting trial run, now and for the rest of the run.

        A trial started again after its worker died needs a free worker, but trials of later
        generations waiting at the gate hold theirs; when the cluster has shrunk (a node lost) no
        worker would ever come free. Batching orders the search; it must never stall it.
        """
        if self.gate is not None and self.gate_open != GATE_RELEASED:
            self.gate_open = GATE_RELEASED
            self.gate.set.remote(GATE_RELEASED)

    def _may_start(self, pending: _Live) -> bool:
        if pending.generation is not None:
            if self.gate is not None:
                return True  # it waits at the gate, in its worker
            return all(live.generation is None or live.generation >= pending.generation for live in self.live.values())
        if self.gate is not None:
            return True  # a trial outside the generations (a sampler's extra) runs at once
        if self.batch and self.in_batch >= self.batch:
            if self.live:
                return False
            self.in_batch = 0
        return True

    def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        live = self.live.get(trial_id)
        step, values, where = result.get("step"), result.get(VALUES), result.get(WHERE)
        if live is not None and isinstance(where, str):
            live.where = json.loads(where)
        if live is not None and isinstance(step, int) and step >= 0 and isinstance(values, str):
            live.curve[str(step)] = json.loads(values)

    def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False) -> None:
        if result:
            self.on_trial_result(trial_id, result)
        live = self.live.pop(trial_id, None)
        if live is None:
            return
        if self.gate is not None:
            self._open_gate()
        text = (result or {}).get(OUTCOME)
        outcome: Mapping[str, Any] | None = json.loads(text) if isinstance(text, str) else None
        if error:
            outcome = {"status": "fail", "reason": self.errors.reason(trial_id), "curve": live.curve}
        elif outcome is None:
            last = live.curve[max(live.curve, key=int)] if live.curve else {}
            reason = self.stopped.get(trial_id, STOPPED_REASON)
            outcome = {"status": "pruned", "reason": reason, "metrics": last, "curve": live.curve}
        outcome = self._with_context(trial_id, live, outcome)
        self._keep_weights(live.trial.number, complete=outcome.get("status") == "complete")
        state = record_outcome(self.study, live.trial, outcome, self.goals)
        metrics = outcome.get("metrics") or {}
        self.progress.trial_finished(self.study, live.trial.number, state, metrics, feasible=self.goals.feasible(metrics))

    def _keep_weights(self, number: int, *, complete: bool) -> None:
        """Take the trial's weights from the mailbox; write them into the run folder if it completed."""
        if self.keeper is None or self.weights_dir is None:
            return
        import ray

        data = ray.get(self.keeper.pop.remote(weights_name(number)))
        if data is not None and complete:
            write_weights(self.weights_dir, number, data)

    def _with_context(self, trial_id: str, live: _Live, outcome: Mapping[str, Any]) -> dict[str, Any]:
        """What the driver knows of a trial that the worker could not send (stopped early, worker lost)."""
        outcome = dict(outcome)
        if outcome.get("plan") is None:
            with contextlib.suppress(Exception):  # a plan that cannot be built failed in the worker too
                outcome["plan"] = self.space.plan(live.trial.params).to_dict()
        for key in ("node", "hostname"):
            if outcome.get(key) is None and live.where.get(key) is not None:
                outcome[key] = live.where[key]
        if outcome.get("times") is None:
            started = float(live.where.get("started") or live.launched)
            finished = time.time()
            outcome["times"] = {"started": started, "finished": finished, "seconds": finished - started}
        path = self.errors.path(trial_id)
        if path is not None:
            outcome["log"] = path
        attempts = self.errors.attempts.get(trial_id)
        if attempts:
            outcome[ATTR_ATTEMPTS] = attempts
        return outcome


class StopScheduler(_DriverOnly, FIFOScheduler):
    """Stops a trial whose accuracy at a step is dominated at equal or higher compression."""

    def __init__(self, *, searcher: LedgerSearcher, rule: Any = None) -> None:
        super().__init__()
        self.searcher = searcher
        self.rule = rule

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict[str, Any]) -> str:
        step, values = result.get("step"), json.loads(result.get(VALUES) or "{}")
        if self.rule is None or not isinstance(step, int) or step < 0 or "compression" not in values or "val_accuracy" not in values:
            return TrialScheduler.CONTINUE
        verdict = self.rule(float(values["compression"]), step, float(values["val_accuracy"]))
        if verdict:
            self.searcher.stopped[trial.trial_id] = verdict if isinstance(verdict, str) else f"stopped early at step {step}: {DOMINATED}"
            return TrialScheduler.STOP
        return TrialScheduler.CONTINUE
