"""The search: spaces, samplers, the study ledger and the executors. The only part that knows
Optuna, pymoo, scipy.optimize and Ray."""

from __future__ import annotations

from prunetune.search.experiment import Experiment, load_experiment
from prunetune.search.goals import Goals
from prunetune.search.optuna_objective import OptunaObjective
from prunetune.search.runner import run_experiment
from prunetune.search.space import SearchSpace
from prunetune.search.vector import VectorCodec

__all__ = [
    "Experiment",
    "Goals",
    "OptunaObjective",
    "SearchSpace",
    "VectorCodec",
    "load_experiment",
    "run_experiment",
]
