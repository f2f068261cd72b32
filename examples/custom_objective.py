"""A custom objective to copy: the built-in classification objective plus an on-device latency estimate.

Searches call an objective once per trial as ``objective(plan, report)`` and read back a mapping of
metric names to floats; the objective's ``directions`` say which way each metric is better (the
protocol is in ``prunetune/objectives/protocol.py``). This one adds ``device_ms``, a roofline
estimate of one image's latency on a target device that you cannot time from here (a
microcontroller, an accelerator): the slower of doing its multiply-accumulates and reading its
weights, each at the device's rate.

Name it in an experiment file; its options are the arguments below::

    objective:
      type: examples/custom_objective.py:LatencyAwareObjective
      options: {macs_per_second: 1.0e8, bytes_per_second: 5.0e7}
      objectives: {accuracy: maximize, device_ms: minimize}

or load it in Python::

    from prunetune.objectives import load_objective
    objective = load_objective("examples/custom_objective.py:LatencyAwareObjective", base=model, data=data)
    metrics = objective({"filters": {"ratios": {"features.0": 0.5}}})

Only this file is imported (its folder is not put on ``sys.path``), so import what it needs from
installed packages, not from files next to it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from prunetune.objectives import DIRECTIONS, ClassificationObjective, Report
from prunetune.pruners import Plan

__all__ = ["LatencyAwareObjective", "roofline_ms"]


def roofline_ms(*, macs: float, weight_bytes: float, macs_per_second: float, bytes_per_second: float) -> float:
    """Milliseconds for one forward pass bound by compute or by weight traffic, whichever is slower.

    A first-order model: it ignores activations, caches and overlap, which is fine for ranking
    pruned variants of one network against each other on one device.
    """
    return 1000.0 * max(macs / macs_per_second, weight_bytes / bytes_per_second)


class LatencyAwareObjective:
    """ClassificationObjective's metrics plus ``device_ms``, the estimated latency on a target device.

    Args:
        macs_per_second: The device's sustained multiply-accumulates per second (the defaults
            describe a microcontroller-class target; put in your device's figures).
        bytes_per_second: How fast the device reads weights from where they are stored.
        **classification: Everything ClassificationObjective takes (``base``, ``data``,
            ``finetune``, ``batch_size``, ``bn_recalibration_batches``, ``measure_latency``, ``threads``).
    """

    # Every metric this objective can return: the built-in ones and the one it adds.
    directions: Mapping[str, str] = {**DIRECTIONS, "device_ms": "minimize"}

    def __init__(self, *, macs_per_second: float = 1.0e8, bytes_per_second: float = 1.0e8, **classification: Any) -> None:
        # Store only: plain attributes pickle cheaply when a search ships the objective to its workers.
        self.macs_per_second = macs_per_second
        self.bytes_per_second = bytes_per_second
        self.classification = ClassificationObjective(**classification)

    def __call__(self, plan: Plan | Mapping[str, Any], report: Report | None = None) -> dict[str, float]:
        # Pass `report` through: the search's early stopping watches val_accuracy and compression.
        metrics = self.classification(plan, report)
        # `bits` counts the nonzero parameters at their stored widths: the bytes a sparse, quantized
        # deployment reads. `macs` is counted on the physically smaller model.
        metrics["device_ms"] = roofline_ms(
            macs=metrics["macs"],
            weight_bytes=metrics["bits"] / 8.0,
            macs_per_second=self.macs_per_second,
            bytes_per_second=self.bytes_per_second,
        )
        return metrics
