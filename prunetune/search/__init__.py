"""The search engine: spaces, the vector codec, samplers, executors, the ledger, early stopping and
goals. The only part that knows Optuna, pymoo, scipy.optimize and Ray."""

from __future__ import annotations

from prunetune.search.goals import Goals, parse_constraint
from prunetune.search.optuna_objective import OptunaObjective
from prunetune.search.space import SearchSpace
from prunetune.search.vector import VectorCodec

__all__ = [
    "Goals",
    "OptunaObjective",
    "SearchSpace",
    "VectorCodec",
    "parse_constraint",
]
