"""The work of one trial, the same on a Ray worker and in a plain loop: plan -> objective -> outcome.

An outcome is plain data (status, metrics, plan, learning curve, node, timings, reason) that the
driver writes into the ledger. Any exception the objective raises becomes a failed outcome with
its reason, so one bad trial never stops the search.
"""

from __future__ import annotations

import math
import socket
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from prunetune.runtime import model_device, torch_threads
from prunetune.search.space import SearchSpace

__all__ = ["DOMINATED", "ReportSink", "StopCheck", "StopTrial", "run_trial"]

TRACEBACK_LINES = 12

#: Receives each intermediate report: (step, values).
ReportSink = Callable[[int, Mapping[str, float]], None]
#: Decides from (step, values) whether the trial should stop now (early stopping, screening): a
#: string is the reason, True the dominance rule's.
StopCheck = Callable[[int, Mapping[str, float]], "bool | str"]
#: Why a trial the dominance rule stopped was stopped.
DOMINATED = "dominated by a completed trial at equal or higher compression"


class StopTrial(Exception):
    """Raised inside the objective's report callback to end a trial early (recorded as pruned)."""


def run_trial(
    objective: Callable[..., Mapping[str, float]],
    space: SearchSpace,
    params: Mapping[str, Any],
    *,
    sink: ReportSink | None = None,
    should_stop: StopCheck | None = None,
    threads: int | None = None,
    node: str | None = None,
    keep_weights: bool = False,
    gpu_ids: Sequence[object] | None = None,
) -> dict[str, Any]:
    """Run `objective` on the plan of `params`; never raises for the objective's own failures.

    With `keep_weights`, a completed trial's outcome carries `weights`: the bytes of the model the
    objective evaluated (when it offers `take_model()`), for the driver to keep; it is taken out
    before the outcome goes into the ledger. ``gpu_ids`` are the GPUs Ray gave this worker (None
    off Ray): an objective that runs on a device (``assign_gpus``) places its trial by them, and
    the outcome records the device.
    """
    started = time.time()
    curve: dict[str, dict[str, float]] = {}
    outcome: dict[str, Any] = {"node": node or socket.gethostname(), "hostname": socket.gethostname()}

    def report(step: int, values: Mapping[str, float]) -> None:
        curve[str(step)] = {key: float(value) for key, value in values.items()}
        if sink is not None:
            sink(step, values)
        verdict = should_stop(step, values) if should_stop is not None else False
        if verdict:
            raise StopTrial(verdict if isinstance(verdict, str) else f"stopped early at step {step}: {DOMINATED}")

    try:
        space.register_methods()  # a user's method, shipped to this worker inside the space
        if callable(getattr(objective, "assign_gpus", None)):
            objective.assign_gpus(gpu_ids)
            outcome["device"] = str(objective.trial_device())
        plan = space.plan(params)
        outcome["plan"] = plan.to_dict()
        with torch_threads(threads):
            metrics = {key: float(value) for key, value in objective(plan, report).items()}
        bad = sorted(key for key, value in metrics.items() if not math.isfinite(value))
        if bad:
            raise ValueError(f"the objective returned non-finite {', '.join(bad)}")
        outcome.update(status="complete", metrics=metrics)
        applied = _take(objective, "take_applied_plan")
        if applied is not None:
            outcome["plan"] = dict(applied)
        model = _take_model(objective)
        if model is not None:  # where the evaluated weights actually lived
            outcome["device"] = str(model_device(model))
        if keep_weights and model is not None:
            from prunetune.search.weights import model_bytes

            outcome["weights"] = model_bytes(model)
    except StopTrial as stop:
        last = curve[max(curve, key=int)] if curve else {}
        outcome.update(status="pruned", reason=str(stop), metrics=last)
    except Exception as error:  # a failing trial is recorded with its reason; the search goes on
        outcome.update(
            status="fail",
            reason=f"{type(error).__name__}: {error}",
            traceback="".join(traceback.format_exception(error)[-TRACEBACK_LINES:]),
        )
    finally:
        _take(objective, "take_applied_plan")
        _take_model(objective)  # a model not kept is let go of now, not at the next trial
    outcome["curve"] = curve
    outcome["times"] = {"started": started, "finished": time.time(), "seconds": time.time() - started}
    return outcome


def _take_model(objective: object) -> Any:
    return _take(objective, "take_model")


def _take(objective: object, method: str) -> Any:
    """What the objective hands over through ``method`` (``take_model``, ``take_applied_plan``), if it offers it."""
    take = getattr(objective, method, None)
    return take() if callable(take) else None
