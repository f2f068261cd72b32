"""Optimisers from other libraries behind Optuna's sampler interface, one private module each."""

from prunetune.search.samplers._pymoo import PymooSampler
from prunetune.search.samplers._scipy_de import ScipyDESampler

__all__ = ["PymooSampler", "ScipyDESampler"]
