"""The checks every built-in objective makes of the options they share, with one error shape."""

from __future__ import annotations

from numbers import Integral
from typing import Any

from torch import nn

from prunetune.errors import PrunetuneError, bad_parameter
from prunetune.objectives.devices import DEVICES, check_device
from prunetune.objectives.training import TrainConfig

__all__ = ["bad_option", "check_trial_options", "is_int"]


def is_int(value: object) -> bool:
    """An integer, and not a bool."""
    return isinstance(value, Integral) and not isinstance(value, bool)


#: The one error shape for an objective's options (see prunetune.errors).
bad_option = bad_parameter


def check_trial_options(owner: str, objective: Any) -> None:
    """Check the options a trial of any built-in objective uses: base, data, fine-tune, batches, threads."""
    from prunetune.zoo.datasets import DataSplits

    def bad(name: str, allowed: str) -> None:
        bad_option(owner, name, getattr(objective, name), allowed)

    if not isinstance(objective.base, nn.Module):
        bad("base", "a torch.nn.Module")
    if not isinstance(objective.data, DataSplits):
        bad("data", "a DataSplits (see prunetune.zoo.load_data)")
    finetune = objective.finetune
    if not isinstance(finetune, TrainConfig):
        bad("finetune", "a TrainConfig")
    finetune.validate()
    batch_size = objective.batch_size
    if not is_int(batch_size) or batch_size < 1:
        bad("batch_size", "an integer >= 1")
    recalibration = objective.bn_recalibration_batches
    if recalibration is not None and (not is_int(recalibration) or recalibration < 0):
        bad("bn_recalibration_batches", "None or an integer >= 0")
    if not isinstance(objective.measure_latency, bool):
        bad("measure_latency", "True or False")
    threads = objective.threads
    if threads is not None and (not is_int(threads) or threads < 1):
        bad("threads", "None or an integer >= 1")
    try:
        check_device(getattr(objective, "device", "cpu"), here=False)
    except PrunetuneError:
        bad("device", f"one of {', '.join(DEVICES)}")
