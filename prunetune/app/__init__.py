"""The application: experiment files, the runner, start points, base-model training, the demo and
the sensitivity and DLP commands. Everything here builds on the engine and the run files."""

from __future__ import annotations

from prunetune.app.experiment import Experiment, experiment_from_dict, load_experiment
from prunetune.app.runner import run_experiment

__all__ = ["Experiment", "experiment_from_dict", "load_experiment", "run_experiment"]
