"""Searches on real Ray: the ledger of a distributed run, failures, lost workers, a two-node cluster,
a driver killed mid-search and resumed, and population generations run as whole batches.

Every test starts and stops its own Ray under a short temp dir of its own and, before it ends,
makes sure no process of that Ray is left (see tests/ray_helpers.py).
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import ray
from optuna.trial import TrialState
from ray_helpers import (
    end_ray_processes,
    experiment_data,
    load_ledger,
    peek_states,
    ray_environment,
    ray_processes,
    remove_temp_dir,
    short_temp_dir,
    write_experiment,
    write_objective,
)

from prunetune.pruners import METHODS, Plan
from prunetune.app.experiment import experiment_from_dict
from prunetune.search.ledger import (
    ATTR_ATTEMPTS,
    ATTR_FAIL_REASON,
    ATTR_INTERRUPTED,
    ATTR_LOG,
    ATTR_METRICS,
    ATTR_NODE,
    ATTR_PLAN,
    ATTR_TIMES,
    finished_trials,
)
from prunetune.app.runner import run_experiment


def quiet(line: str) -> None:
    pass


def check_context(trial, run_dir: Path, nodes: set[str], since: float) -> None:
    """The plan, the node that ran it, its timings and its per-trial log folder are in the ledger."""
    attrs = trial.user_attrs
    plan = Plan.from_dict(attrs[ATTR_PLAN])
    assert plan.sections["filters"]["ratios"] == {name.split(".", 1)[1]: value for name, value in trial.params.items()}
    assert attrs[ATTR_NODE] in nodes, (trial.number, attrs.get(ATTR_NODE))
    times = attrs[ATTR_TIMES]
    assert since <= times["started"] <= times["finished"] <= time.time()
    assert times["seconds"] == pytest.approx(times["finished"] - times["started"], abs=0.05)
    log = Path(attrs[ATTR_LOG])
    assert log.is_dir() and (run_dir / "trials") in log.parents, log
    assert log.name == f"trial-{trial.number:05d}"


@pytest.fixture(scope="class")
def local_ray() -> Iterator[str]:
    """Ray on this machine (2 CPUs) for the tests of a class; yields its node id. Shut down after."""
    temp = short_temp_dir()
    try:
        with ray_environment(temp):
            ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING, _temp_dir=str(temp))
        yield ray.get_runtime_context().get_node_id()
    finally:
        ray.shutdown()
        end_ray_processes(temp)
        remove_temp_dir(temp)


class TestOnLocalRay:
    def test_search_spends_its_budget_and_ledger_has_every_trial_context(self, local_ray: str, tmp_path: Path) -> None:
        since = time.time()
        data = experiment_data({"search.trials": 8, "search.early_stopping": {"enabled": True, "min_completed": 3}})
        study = run_experiment(experiment_from_dict(data), tmp_path / "run", echo=quiet)
        trials = study.get_trials(deepcopy=False)
        assert len(trials) == len(finished_trials(study)) == 8
        assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
        assert any(t.state == TrialState.COMPLETE for t in trials)
        nodes = {node["NodeID"] for node in ray.nodes() if node["Alive"]}
        assert nodes == {local_ray}
        for trial in trials:
            check_context(trial, tmp_path / "run", nodes, since)
            assert ATTR_ATTEMPTS not in trial.user_attrs  # nothing was retried
            assert "accuracy" in trial.user_attrs[ATTR_METRICS] or trial.state == TrialState.PRUNED
            assert "compression" in trial.user_attrs[ATTR_METRICS]
        for trial in (t for t in trials if t.state == TrialState.COMPLETE):
            metrics = trial.user_attrs[ATTR_METRICS]
            assert trial.values == [metrics["accuracy"], metrics["compression"]]
            folder = Path(trial.user_attrs[ATTR_LOG])
            assert (folder / "result.json").is_file()
            # Results are JSON texts: Tune writes them as JSON only, not as CSV or TensorBoard events too.
            assert not (folder / "progress.csv").exists() and not list(folder.glob("events.out.tfevents*"))
        assert os.environ.get("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS") is None  # as it was before the run

    def test_baselines_run_on_the_workers_after_a_batched_search(self, local_ray: str, tmp_path: Path) -> None:
        data = experiment_data({
            "search.trials": 4, "search.sampler": "nsga2", "search.sampler_options": {"population_size": 2},
            "search.baselines": ["uniform:0.3,0.6", "global:0.5"],
        })
        study = run_experiment(experiment_from_dict(data), tmp_path / "run", echo=quiet)
        trials = study.get_trials(deepcopy=False)
        labels = [t.user_attrs.get("baseline") for t in trials]
        assert labels == [None] * 4 + ["uniform:0.3", "uniform:0.6", "global:0.5"]
        assert len(finished_trials(study)) == 4
        assert all(t.state == TrialState.COMPLETE and t.user_attrs[ATTR_NODE] == local_ray for t in trials)
        assert [t.user_attrs[ATTR_PLAN]["filters"]["ratios"] for t in trials[4:6]] == [
            {name.split(".", 1)[1]: min(ratio, 0.9) for name in trials[0].params} for ratio in (0.3, 0.6)
        ]

    def test_screened_out_trials_stop_on_the_workers_with_their_reason(self, local_ray: str, tmp_path: Path) -> None:
        data = experiment_data({
            "search.trials": 8, "objective.objectives": {"accuracy": "maximize"},
            "search.screening": {"enabled": True, "keep_fraction": 0.2, "min_screened": 2},
        })
        study = run_experiment(experiment_from_dict(data), tmp_path / "run", echo=quiet)
        trials = study.get_trials(deepcopy=False)
        assert len(finished_trials(study)) == 8
        pruned = [t for t in trials if t.state == TrialState.PRUNED]
        assert pruned, "with 8 plans and the best 20% kept, some are screened out"
        assert all(t.user_attrs[ATTR_FAIL_REASON].startswith("screened out after pruning") for t in pruned)
        assert all(list(t.user_attrs["curve"]) == ["0"] for t in pruned)  # stopped before any fine-tuning epoch

    def test_a_method_of_the_users_own_is_searched_on_ray_workers(self, local_ray: str, tmp_path: Path) -> None:
        # A copy in the test's folder, named by path: workers cannot import it, it travels by value.
        source = Path(__file__).resolve().parent / "methods_for_tests.py"
        copy = tmp_path / "my_methods.py"
        copy.write_text(source.read_text())
        data = experiment_data({"search.trials": 4, "methods": {f"{copy}:HalveConvs": {}, "filters": {"max_ratio": 0.5}}})
        saved = dict(METHODS)
        try:
            study = run_experiment(experiment_from_dict(data), tmp_path / "run", echo=quiet)
        finally:
            METHODS.clear()
            METHODS.update(saved)
        trials = study.get_trials(deepcopy=False)
        assert len(trials) == 4 and all(t.state == TrialState.COMPLETE for t in trials), [
            t.user_attrs.get(ATTR_FAIL_REASON) for t in trials
        ]
        plans = [t.user_attrs[ATTR_PLAN] for t in trials]
        assert all(set(plan) == {"halve", "filters"} for plan in plans)
        assert any(plan["halve"]["layers"] for plan in plans)
        assert {t.user_attrs[ATTR_NODE] for t in trials} == {local_ray}

    def test_a_data_factory_is_opened_by_each_worker(self, local_ray: str, tmp_path: Path) -> None:
        # The factory lives in the test's folder and travels as its recipe (reference and options).
        source = Path(__file__).resolve().parent / "data_for_tests.py"
        copy = tmp_path / "my_data.py"
        copy.write_text(source.read_text())
        data = experiment_data({"search.trials": 4, "data": {"factory": f"{copy}:digits", "options": {"test_share": 0.3}}})
        study = run_experiment(experiment_from_dict(data), tmp_path / "run", echo=quiet)
        trials = study.get_trials(deepcopy=False)
        assert len(trials) == 4 and all(t.state == TrialState.COMPLETE for t in trials), [
            t.user_attrs.get(ATTR_FAIL_REASON) for t in trials
        ]
        assert all(0.0 < t.user_attrs[ATTR_METRICS]["test_accuracy"] <= 1.0 for t in trials)

    def test_kept_weights_travel_from_the_workers_and_export_uses_them(self, local_ray: str, tmp_path: Path) -> None:
        from prunetune.results import export_trial, load_run
        from prunetune.search.weights import weights_path
        from prunetune.zoo import load_checkpoint

        data = experiment_data({"search.trials": 4, "objective.keep_weights": "all"})
        run_experiment(experiment_from_dict(data), tmp_path / "run", echo=quiet)
        run = load_run(tmp_path / "run")
        done = run.trials[run.trials["state"] == "COMPLETE"]
        assert len(done) == 4
        assert all(weights_path(run.path, int(number)).is_file() for number in done.index)
        number = int(done.index[0])
        result = export_trial(run, number, tmp_path / "model.pt", echo=quiet)
        assert result.source == "kept weights"
        # Measured again on the exported model: exactly what the worker measured.
        assert result.metrics["accuracy"] == done.loc[number, "accuracy"]
        assert load_checkpoint(tmp_path / "model.pt").plan == run.plan(number)

    def test_each_worker_unpickles_the_objective_once_not_once_per_trial(self, local_ray: str, tmp_path: Path) -> None:
        """An objective holds the base weights and in-memory data: a reused worker keeps its copy."""
        copies = tmp_path / "copies"
        copies.mkdir()
        data = experiment_data(
            {"search.trials": 10, "objective.type": write_objective(tmp_path), "objective.options": {"copies_dir": str(copies)}}
        )
        study = run_experiment(experiment_from_dict(data), tmp_path / "run", echo=quiet)
        assert sum(t.state == TrialState.COMPLETE for t in study.get_trials(deepcopy=False)) == 10
        unpickled = [path.name.split("-")[0] for path in copies.iterdir()]
        assert 1 <= len(unpickled) <= 2, unpickled  # two workers at most, each once
        assert len(unpickled) == len(set(unpickled))  # never twice in one worker process

    def test_a_trial_stopped_early_keeps_its_plan_node_timings_and_log(self, local_ray: str, tmp_path: Path) -> None:
        since = time.time()
        objective = write_objective(tmp_path)
        data = experiment_data(
            {
                "search.trials": 6,
                "search.early_stopping": {"enabled": True, "min_completed": 1},
                "objective.type": objective,
                "objective.options": {"stall_below": 0.5},
            }
        )
        study = run_experiment(experiment_from_dict(data), tmp_path / "run", echo=quiet)
        trials = study.get_trials(deepcopy=False)
        assert len(finished_trials(study)) == len(trials) == 6
        stopped = [t for t in trials if t.state == TrialState.PRUNED]
        # Seed 0: trials 0 and 1 stall before any trial has completed (nothing can stop them); a later
        # stalling one is stopped by the driver and never sends an outcome of its own.
        assert stopped and all(t.params["filters.features.0"] < 0.5 for t in stopped)
        for trial in trials:
            check_context(trial, tmp_path / "run", {local_ray}, since)
        for trial in stopped:
            assert trial.user_attrs[ATTR_FAIL_REASON].startswith("stopped early")
            assert trial.user_attrs[ATTR_METRICS] == {"val_accuracy": 0.0, "compression": 0.5}
            assert trial.user_attrs[ATTR_TIMES]["seconds"] < 3.0  # stopped, not waited for

    def test_raising_and_nan_trials_fail_with_their_reason_and_the_budget_is_met(self, local_ray: str, tmp_path: Path) -> None:
        since = time.time()
        objective = write_objective(tmp_path)  # loaded from a file: workers get it pickled by value
        data = experiment_data(
            {"search.trials": 10, "objective.type": objective, "objective.options": {"fail_above": 0.7, "nan_below": 0.3}}
        )
        study = run_experiment(experiment_from_dict(data), tmp_path / "run", echo=quiet)
        trials = study.get_trials(deepcopy=False)
        assert len(finished_trials(study)) == len(trials) == 10
        raised = [t for t in trials if t.params["filters.features.0"] > 0.7]
        nan = [t for t in trials if t.params["filters.features.0"] < 0.3]
        assert raised and nan, "seed 0 gives plans of both kinds in 10 random trials"
        for trial in raised:
            assert trial.state == TrialState.FAIL
            assert "RuntimeError: boom: first ratio" in trial.user_attrs[ATTR_FAIL_REASON]
            assert "Traceback" in trial.user_attrs["traceback"]
        for trial in nan:
            assert trial.state == TrialState.FAIL
            assert "non-finite accuracy" in trial.user_attrs[ATTR_FAIL_REASON]
        for trial in trials:
            check_context(trial, tmp_path / "run", {local_ray}, since)
            if trial not in raised and trial not in nan:
                assert trial.state == TrialState.COMPLETE and ATTR_FAIL_REASON not in trial.user_attrs

    def test_a_killed_worker_is_retried_and_one_that_always_dies_fails_with_its_reason(
        self, local_ray: str, tmp_path: Path
    ) -> None:
        since = time.time()
        deaths = tmp_path / "deaths"
        deaths.mkdir()
        objective = write_objective(tmp_path)
        data = experiment_data(
            {
                "search.trials": 3,
                "objective.type": objective,
                "objective.options": {"die_dir": str(deaths)},
                "execution.retries": 1,
            }
        )
        study = run_experiment(experiment_from_dict(data), tmp_path / "run", echo=quiet)
        trials = study.get_trials(deepcopy=False)
        assert len(finished_trials(study)) == len(trials) == 3
        cursed = (deaths / "cursed").read_text()
        for trial in trials:
            key = f"{trial.params['filters.features.0']:.15f}"
            # The objective itself counted two calls: the worker really died once and the trial ran again.
            assert (deaths / f"{key}.attempts").read_text() == "2"
            assert trial.user_attrs[ATTR_ATTEMPTS] == 2
            check_context(trial, tmp_path / "run", {local_ray}, since)
            if key == cursed:  # died on both attempts: retries spent
                assert trial.state == TrialState.FAIL
                reason = trial.user_attrs[ATTR_FAIL_REASON]
                assert reason.startswith("worker failed after retries:") and "died" in reason, reason
            else:
                assert trial.state == TrialState.COMPLETE, trial.user_attrs.get(ATTR_FAIL_REASON)
        assert sum(t.state == TrialState.COMPLETE for t in trials) == 2

    def test_population_generations_run_as_whole_batches(self, local_ray: str, tmp_path: Path) -> None:
        objective = write_objective(tmp_path)
        data = experiment_data(
            {
                "search.trials": 12,
                "search.sampler": "nsga2",
                "search.sampler_options": {"population_size": 4},
                # Failed trials leave a generation short of complete ones: NSGA-II adds members to it
                # while the other worker's trial still runs, and the next generation must wait for that
                # one too. Trials last long enough (1 s) for the two workers to overlap.
                "objective.type": objective,
                "objective.options": {"fail_above": 0.75, "sleep": 1.0},
            }
        )
        study = run_experiment(experiment_from_dict(data), tmp_path / "run", echo=quiet)
        trials = study.get_trials(deepcopy=False)
        assert len(finished_trials(study)) == len(trials) == 12
        assert any(t.state == TrialState.FAIL for t in trials)
        generations: dict[int, list[tuple[float, float]]] = {}
        for trial in trials:
            times = trial.user_attrs[ATTR_TIMES]
            generations.setdefault(trial.system_attrs["NSGAIISampler:generation"], []).append((times["started"], times["finished"]))
        assert len(generations) >= 3 and sorted(generations) == list(range(len(generations)))
        for generation in sorted(generations)[1:]:
            earlier_finished = max(end for g in generations if g < generation for _, end in generations[g])
            first_started = min(start for start, _ in generations[generation])
            assert first_started >= earlier_finished, f"generation {generation} started before generation {generation - 1} finished"

        def overlapping(spans: list[tuple[float, float]]) -> bool:
            return any(a[0] < b[1] and b[0] < a[1] for i, a in enumerate(spans) for b in spans[i + 1 :])

        # Waiting for a generation must not cost the workers: later generations still run two at a time.
        assert any(overlapping(generations[g]) for g in generations if g >= 1), generations


def test_two_node_cluster_runs_trials_on_both_nodes(tmp_path: Path) -> None:
    from ray.cluster_utils import Cluster

    assert not ray.is_initialized(), "this test brings its own cluster"
    temp = short_temp_dir()
    cluster = None
    try:
        with ray_environment(temp):
            cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
            cluster.add_node(num_cpus=1)
            cluster.wait_for_nodes()
        objective = write_objective(tmp_path)
        data = experiment_data(
            {
                "search.trials": 6,
                "objective.type": objective,
                "objective.options": {"sleep": 1.0},
                "execution.address": cluster.address,
                "execution.cpus_per_trial": 1,
                "execution.workers": 2,
            }
        )
        study = run_experiment(experiment_from_dict(data), tmp_path / "run", echo=quiet)
        assert not ray.is_initialized(), "the executor leaves the cluster it joined"
        ray.init(address=cluster.address, log_to_driver=False, logging_level=logging.WARNING)
        nodes = {node["NodeID"] for node in ray.nodes() if node["Alive"]}
        ray.shutdown()
        trials = study.get_trials(deepcopy=False)
        assert len(nodes) == 2
        assert len(trials) == 6 and all(t.state == TrialState.COMPLETE for t in trials)
        assert {t.user_attrs[ATTR_NODE] for t in trials} == nodes
    finally:
        ray.shutdown()
        if cluster is not None:
            cluster.shutdown()
        end_ray_processes(temp)
        assert not ray_processes(temp)
        remove_temp_dir(temp)


@contextlib.contextmanager
def driver(command: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen]:
    """A `prunetune run` driver in its own session; its whole process group is killed on the way out."""
    with log.open("ab") as out:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield process
    finally:
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def test_a_driver_killed_mid_search_resumes_without_rerunning_or_losing_trials(tmp_path: Path) -> None:
    budget = 14
    run_dir = tmp_path / "run"
    experiment = write_experiment(
        tmp_path / "exp.yaml", experiment_data({"search.trials": budget, "objective.finetune.epochs": 2})
    )
    temp = short_temp_dir()
    env = {**os.environ, "RAY_TMPDIR": str(temp)}
    command = [sys.executable, "-m", "prunetune.cli", "run", str(experiment), "--run-dir", str(run_dir)]
    log = tmp_path / "driver.log"
    try:
        with driver(command, env, log) as first:
            deadline = time.monotonic() + 180
            while sum(state == "COMPLETE" for state in peek_states(run_dir).values()) < 3:
                assert first.poll() is None, "the first driver ended before it was killed:\n" + log.read_text()
                assert time.monotonic() < deadline, "no 3 trials completed in time:\n" + log.read_text()
                time.sleep(0.05)
            os.killpg(first.pid, signal.SIGKILL)
            first.wait()
        end_ray_processes(temp)
        assert not ray_processes(temp), "a Ray process of the killed driver is still running"
        assert (run_dir / ".lock").read_text().split()[-1] == str(first.pid)  # the dead driver's lock is left

        before = load_ledger(run_dir)
        completed = {
            t.number: (t.params, t.values, t.datetime_complete)
            for t in before.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        }
        running = {t.number for t in before.get_trials(deepcopy=False, states=(TrialState.RUNNING,))}
        assert len(completed) >= 3 and len(completed) < budget
        assert running, "the driver was killed while trials ran"

        with driver(command, env, log) as second:
            status = second.wait(timeout=240)
        output = log.read_text()
        assert status == 0, output
        assert "resuming:" in output and f"{len(running)} interrupted (closed)" in output
        assert not (run_dir / ".lock").exists()

        study = load_ledger(run_dir)
        trials = study.get_trials(deepcopy=False)
        counted = finished_trials(study)
        interrupted = [t for t in trials if t.user_attrs.get(ATTR_INTERRUPTED)]
        assert len(counted) == budget  # the budget, exactly: interrupted trials do not count
        assert {t.number for t in interrupted} == running
        assert all(t.state == TrialState.FAIL and "interrupted" in t.user_attrs[ATTR_FAIL_REASON] for t in interrupted)
        assert len(trials) == budget + len(interrupted)
        by_number = {t.number: t for t in trials}
        for number, (params, values, finished) in completed.items():
            trial = by_number[number]
            assert trial.state == TrialState.COMPLETE
            assert (trial.params, trial.values, trial.datetime_complete) == (params, values, finished)
        plans = [tuple(sorted(t.params.items())) for t in trials if t.state == TrialState.COMPLETE]
        assert len(plans) == len(set(plans)), "a completed plan was run again"
        resumed = [t for t in trials if t.number > max(completed) and not t.user_attrs.get(ATTR_INTERRUPTED)]
        assert resumed and all(t.datetime_start > max(c[2] for c in completed.values()) for t in resumed)
    finally:
        end_ray_processes(temp)
        assert not ray_processes(temp)
        remove_temp_dir(temp)


def test_the_command_line_joins_a_cluster_started_with_ray_start(tmp_path: Path) -> None:
    """`prunetune run --address HOST:PORT` on a head node started by `ray start --head` here, with
    token authentication (Ray's default for a new cluster): a driver without the token is told what
    to set, one with it runs there. The test ends that node's processes and leaves none behind."""
    import socket

    ray_command = str(Path(sys.executable).parent / "ray")
    temp = short_temp_dir()
    with contextlib.closing(socket.socket()) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # Its own HOME (no ~/.ray/auth_token of this machine's user) and a token of its own.
    (tmp_path / "home").mkdir()
    env = {**os.environ, "RAY_TMPDIR": str(temp), "HOME": str(tmp_path / "home"), "RAY_AUTH_MODE": "token"}
    with_token = {**env, "RAY_AUTH_TOKEN": "a" * 32}
    without_token = {key: value for key, value in env.items() if key != "RAY_AUTH_MODE"}
    experiment = write_experiment(tmp_path / "e.yaml", experiment_data({"search.trials": 3}))
    address = f"127.0.0.1:{port}"

    def run(run_dir: Path, run_env: dict[str, str]) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "prunetune.cli", "run", str(experiment), "--run-dir", str(run_dir), "--address", address]
        return subprocess.run(command, env=run_env, capture_output=True, text=True, timeout=300)

    started = subprocess.run(
        [ray_command, "start", "--head", f"--port={port}", "--num-cpus=2", "--include-dashboard=false",
         f"--temp-dir={temp}", "--disable-usage-stats"],
        env=with_token, capture_output=True, text=True, timeout=120,
    )
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        refused = run(tmp_path / "refused", without_token)
        assert refused.returncode == 2, refused.stdout[-3000:] + refused.stderr[-3000:]
        message = refused.stderr.strip().splitlines()[-1]  # after Ray's own retry warnings
        assert message.startswith(f"prunetune: error: Could not join the Ray cluster at '{address}'"), refused.stderr[-3000:]
        assert "give this driver the cluster's token (RAY_AUTH_MODE=token" in message, message
        joined = run(tmp_path / "run", with_token)
        assert joined.returncode == 0, joined.stdout[-3000:] + joined.stderr[-3000:]
        study = load_ledger(tmp_path / "run")
        trials = study.get_trials(deepcopy=False)
        assert len(trials) == 3 and all(t.state == TrialState.COMPLETE for t in trials)
        assert len({t.user_attrs[ATTR_NODE] for t in trials}) == 1  # the head node ran them
        # The driver joined that head: a Ray of its own would have opened a second session here.
        assert len(list(temp.glob("session_2*"))) == 1
    finally:
        # `ray stop` would end every Ray on this machine; end only this node's processes (found by RAY_TMPDIR)
        for pid in ray_processes(temp):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        end_ray_processes(temp)
        left = ray_processes(temp)
        remove_temp_dir(temp)
    assert left == []


def kill_workers_of(node) -> int:
    """SIGKILL the worker processes of a `ray.cluster_utils` node: its raylet's children (their
    command lines are retitled `ray::...`, so only the parent tells whose they are)."""
    raylet, killed = node.all_processes["raylet"][0].process.pid, 0
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                if parent == raylet:
                    os.kill(int(entry.name), signal.SIGKILL)
                    killed += 1
    return killed


def test_a_four_node_cluster_loses_a_node_mid_run_and_meets_its_budget(tmp_path: Path) -> None:
    """200 short trials (the default NSGA-II, generations batched) from a `prunetune run` driver on a
    simulated 4-node cluster; a worker node is killed while it runs a trial. Every trial runs to
    completion once, the lost node's trial is retried on another node, and the ledger names the node
    that ran each. The head node offers no CPUs, as a cluster's head often does, so every trial
    lands on a worker node whatever pace the driver keeps."""
    from ray.cluster_utils import Cluster

    budget, lose_after = 200, 60
    assert not ray.is_initialized(), "this test brings its own cluster"
    temp, visits, run_dir = short_temp_dir(), tmp_path / "visits", tmp_path / "run"
    visits.mkdir()
    cluster = None
    lost: dict[str, object] = {}

    def visits_seen() -> dict[Path, tuple[str, str, str]]:
        """Each call of the objective: (trial number, node, time)."""
        return {path: tuple(path.read_text().split()) for path in visits.glob("*.visit")}  # type: ignore[misc]

    try:
        with ray_environment(temp):
            cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
            for _ in range(3):
                cluster.add_node(num_cpus=2)
            cluster.wait_for_nodes()
        workers = {node.node_id: node for node in cluster.worker_nodes}
        nodes = {cluster.head_node.node_id, *workers}
        data = experiment_data(
            {
                "search.trials": budget,
                "search.sampler": "nsga2",
                "search.sampler_options": {"population_size": 20},
                "objective.type": write_objective(tmp_path),
                "objective.options": {"sleep": 0.5, "visits_dir": str(visits)},
                "execution.workers": 4,
                "execution.retries": 2,
            }
        )
        experiment = write_experiment(tmp_path / "e.yaml", data)
        command = [sys.executable, "-m", "prunetune.cli", "run", str(experiment), "--run-dir", str(run_dir),
                   "--address", cluster.address]
        env = {**os.environ, "RAY_TMPDIR": str(temp)}
        started = time.monotonic()
        with driver(command, env, tmp_path / "driver.log") as process:
            # Once `lose_after` trials have started, kill the node of the next trial to start on a worker node.
            seen: set[Path] = set()
            while process.poll() is None and time.monotonic() - started < 600:
                current = visits_seen()
                fresh = [visit for path, visit in current.items() if path not in seen]
                seen.update(current)
                if not lost and len(current) >= lose_after:
                    for number, node_id, _ in sorted(fresh, key=lambda visit: -float(visit[2])):  # newest first
                        if node_id in workers:
                            # The machine dies: its trial's worker with it, then the node's own processes.
                            lost.update(number=number, node=node_id, at=time.time())
                            lost["workers_killed"] = kill_workers_of(workers[node_id])
                            cluster.remove_node(workers[node_id], allow_graceful=False)
                            break
                time.sleep(0.02)
            status = process.wait(timeout=60)
        seconds = time.monotonic() - started
    finally:
        if cluster is not None:
            cluster.shutdown()
        strays = end_ray_processes(temp)
        left = ray_processes(temp)
        remove_temp_dir(temp)
    log = (tmp_path / "driver.log").read_text()
    assert status == 0, log[-4000:]
    assert left == [], strays
    assert lost, "no trial started on a worker node after the first 60"
    assert lost["workers_killed"] >= 1, lost  # the trial's worker died with its machine

    trials = load_ledger(run_dir).get_trials(deepcopy=False)
    assert [t.number for t in trials] == list(range(budget)), log[-4000:]
    unfinished = [(t.number, t.state.name, t.user_attrs.get(ATTR_FAIL_REASON)) for t in trials if t.state != TrialState.COMPLETE]
    assert not unfinished, (unfinished, log[-4000:])
    runs_of: dict[int, list[str]] = {}  # trial number -> the nodes that ran it, in order
    for number, node_id, _ in sorted(visits_seen().values(), key=lambda visit: float(visit[2])):
        runs_of.setdefault(int(number), []).append(node_id)
    assert sorted(runs_of) == list(range(budget))  # nothing ran that the ledger does not hold
    for trial in trials:
        assert len(runs_of[trial.number]) == trial.user_attrs.get(ATTR_ATTEMPTS, 1), (trial.number, runs_of[trial.number])
        assert trial.user_attrs[ATTR_NODE] == runs_of[trial.number][-1] and trial.user_attrs[ATTR_NODE] in nodes
        if trial.user_attrs[ATTR_NODE] == lost["node"]:
            assert trial.user_attrs[ATTR_TIMES]["finished"] <= lost["at"], "a trial completed on the lost node after its loss"
    # Retried: the trial seen dying with its node, and any other it was running then (2 CPUs a node).
    retried = [t for t in trials if t.user_attrs.get(ATTR_ATTEMPTS, 1) > 1]
    assert int(lost["number"]) in [t.number for t in retried] and len(retried) <= 2, [t.number for t in retried]
    for trial in retried:
        assert trial.user_attrs[ATTR_ATTEMPTS] == 2 and runs_of[trial.number][0] == lost["node"]
        assert trial.user_attrs[ATTR_NODE] in nodes - {lost["node"]}  # finished elsewhere
    # Trials ran on the worker nodes only (the head offers no CPUs), the lost one among them.
    ran = collections.Counter(t.user_attrs[ATTR_NODE] for t in trials)
    assert set(ran) <= set(workers) and lost["node"] in ran and len(ran) >= 2, ran
    print(f"4 nodes, one lost: {budget} trials in {seconds:.1f} s, {budget / seconds:.2f} trials/s, per node {sorted(ran.values())}")
