"""Helpers for the Ray tests: small experiments, objectives written into a test's folder, the ledger
read from outside the driver, and every Ray process of a test found (and ended) by its temp dir.

Each test's Ray lives under its own short temp dir (a unix socket path must stay under 108 bytes,
which pytest's tmp_path can exceed). Ray's processes inherit ``RAY_TMPDIR=<that dir>`` in their
environment, so ``ray_processes(dir)`` finds the raylet, the GCS and every worker ("ray::..."),
whose command lines do not name it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sqlite3
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import optuna
import yaml

from prunetune.search.ledger import run_study_name

#: Objectives for engine tests, loaded from a file by the experiment (so Ray must ship them by value).
OBJECTIVES = '''
"""Engine-test objectives: no training, answers from the plan, failures and worker deaths on demand."""

import math
import os
import signal
import time
from pathlib import Path


class Quick:
    """accuracy falls and compression rises with the mean filter ratio.

    fail_above: raise for plans whose first ratio is above it; nan_below: return NaN accuracy for
    plans whose first ratio is below it; stall_below: for those plans, report a hopeless first step
    (accuracy 0 at compression 0.5: any completed trial dominates it) and take 3 s more;
    die_dir: SIGKILL the own worker on a plan's first attempt, and on every attempt of the first
    plan seen ("cursed"); attempts are counted in files there.
    visits_dir: each call leaves a file there: the trial's number, the Ray node that ran it, the time.
    """

    directions = {"accuracy": "maximize", "compression": "maximize"}

    def __init__(self, *, fail_above=None, nan_below=None, stall_below=None, sleep=0.0, die_dir=None,
                 visits_dir=None, copies_dir=None, **context):
        self.fail_above, self.nan_below, self.stall_below = fail_above, nan_below, stall_below
        self.sleep, self.die_dir, self.visits_dir, self.copies_dir = sleep, die_dir, visits_dir, copies_dir

    def __setstate__(self, state):
        """copies_dir: each copy unpickled (in a worker) leaves a file there."""
        self.__dict__.update(state)
        if self.copies_dir is not None:
            import uuid

            (Path(self.copies_dir) / f"{os.getpid()}-{uuid.uuid4().hex}").write_text("")

    def __call__(self, plan, report=None):
        ratios = plan.sections["filters"]["ratios"]
        first = ratios["features.0"]
        mean = sum(ratios.values()) / len(ratios)
        if self.visits_dir is not None:
            import uuid

            import ray
            from ray import tune

            trial = Path(tune.get_context().get_trial_dir()).name  # trial-00007: the study's number
            visit = Path(self.visits_dir) / uuid.uuid4().hex
            visit.write_text(f"{int(trial.rsplit('-', 1)[1])} {ray.get_runtime_context().get_node_id()} {time.time()!r}")
            visit.rename(visit.with_suffix(".visit"))  # whole, for whoever watches the folder
        if self.die_dir is not None:
            self._maybe_die(f"{first:.15f}")
        time.sleep(self.sleep)
        if self.fail_above is not None and first > self.fail_above:
            raise RuntimeError(f"boom: first ratio {first:.3f} is too high")
        accuracy = math.nan if self.nan_below is not None and first < self.nan_below else 1.0 - mean**2
        compression = 1.0 / (1.0 - mean) ** 2
        if self.stall_below is not None and first < self.stall_below:
            if report is not None:
                report(0, {"val_accuracy": 0.0, "compression": 0.5})
            time.sleep(3.0)
        elif report is not None:
            report(0, {"val_accuracy": accuracy, "compression": compression})
        return {"accuracy": accuracy, "compression": compression}

    def _maybe_die(self, key):
        folder = Path(self.die_dir)
        counter = folder / f"{key}.attempts"
        attempts = int(counter.read_text()) if counter.exists() else 0
        counter.write_text(str(attempts + 1))
        claim = folder / f"{key}.claim"
        claim.write_text(key)
        try:
            os.link(claim, folder / "cursed")  # atomic: the first plan to get here is cursed
        except FileExistsError:
            pass
        if attempts == 0 or (folder / "cursed").read_text() == key:
            os.kill(os.getpid(), signal.SIGKILL)
'''


def write_objective(folder: Path) -> str:
    """Write the test objectives into `folder`; returns the experiment's `objective.type` for `Quick`."""
    path = folder / "engine_objectives.py"
    path.write_text(OBJECTIVES)
    return f"{path}:Quick"


def experiment_data(changes: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A small experiment: LeNet-5 on digits trained 3 epochs, 1 fine-tuning epoch, 2 Ray workers,
    the random sampler, no early stopping; `changes` are dotted keys (`{"search.trials": 8}`)."""
    data: dict[str, Any] = {
        "model": {"train": {"epochs": 3}},
        "objective": {"finetune": {"epochs": 1}, "bn_recalibration_batches": 0},
        "search": {"sampler": "random", "trials": 6, "early_stopping": {"enabled": False}},
        "execution": {"executor": "ray", "workers": 2, "cpus_per_trial": 1},
    }
    for dotted, value in (changes or {}).items():
        *parents, leaf = dotted.split(".")
        node = data
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return data


def write_experiment(path: Path, data: Mapping[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(dict(data), sort_keys=False))
    return path


def load_ledger(run_dir: Path) -> optuna.Study:
    """The run's study, opened after its driver has finished."""
    return optuna.load_study(study_name=run_study_name(run_dir), storage=f"sqlite:///{run_dir / 'study.db'}")


def peek_states(run_dir: Path) -> dict[int, str]:
    """Trial number -> state, read-only, while a driver may be writing (empty if not readable yet)."""
    db = run_dir / "study.db"
    if not db.exists():
        return {}
    try:
        with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)) as connection:
            return dict(connection.execute("SELECT number, state FROM trials").fetchall())
    except sqlite3.Error:
        return {}


# -- Ray processes --------------------------------------------------------------------------------


def short_temp_dir() -> Path:
    return Path(tempfile.mkdtemp(prefix="ptray-", dir="/tmp"))


def ray_processes(temp_dir: Path) -> list[int]:
    """Live processes started for the Ray whose temp dir is `temp_dir` (by environment or command line)."""
    needles = (f"RAY_TMPDIR={temp_dir}".encode(), str(temp_dir).encode())
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            text = (entry / "cmdline").read_bytes() + b"\0" + (entry / "environ").read_bytes()
        except OSError:
            continue  # gone, or not ours to read
        if any(needle in text for needle in needles):
            found.append(int(entry.name))
    return found


def end_ray_processes(temp_dir: Path, *, grace: float = 20.0) -> list[int]:
    """Wait up to `grace` seconds for that Ray's processes to exit, then SIGKILL the rest by pid.

    Returns the pids that had to be killed (an empty list: Ray cleaned up after itself).
    """
    deadline = time.monotonic() + grace
    while ray_processes(temp_dir) and time.monotonic() < deadline:
        time.sleep(0.25)
    strays = ray_processes(temp_dir)
    for pid in strays:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while ray_processes(temp_dir) and time.monotonic() < deadline:  # killed ones take a moment to go
        time.sleep(0.1)
    return strays


@contextlib.contextmanager
def ray_environment(temp_dir: Path) -> Iterator[None]:
    """RAY_TMPDIR set while Ray processes are started in this process (they inherit it; we find them by it)."""
    previous = os.environ.get("RAY_TMPDIR")
    os.environ["RAY_TMPDIR"] = str(temp_dir)
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("RAY_TMPDIR", None)
        else:
            os.environ["RAY_TMPDIR"] = previous


def remove_temp_dir(temp_dir: Path) -> None:
    shutil.rmtree(temp_dir, ignore_errors=True)
