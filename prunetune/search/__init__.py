"""The search engine: spaces, the vector codec, samplers, executors, the ledger, early stopping and
goals. The only part that knows Optuna, pymoo, scipy.optimize and Ray."""

from __future__ import annotations

from prunetune.search.goals import Goals, parse_constraint
from prunetune.search.optuna_objective import OptunaObjective
from prunetune.search.sampler_choice import SAMPLERS, SamplerEntry, create_sampler
from prunetune.search.space import SearchSpace
from prunetune.search.vector import VectorCodec

__all__ = [
    "Goals",
    "OptunaObjective",
    "SAMPLERS",
    "SamplerEntry",
    "SearchSpace",
    "VectorCodec",
    "create_sampler",
    "parse_constraint",
]
