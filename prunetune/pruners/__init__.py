"""Model surgery in plain PyTorch: pruning methods, their search dimensions, plans and measurements.

This package imports torch, torch-pruning, numpy and scikit-learn (PCA, PLS, k-means), never Optuna
or Ray, so plans can be applied wherever a model runs.
"""

from __future__ import annotations

from prunetune.pruners.criteria import FPGM, L1, L2, Criterion, Random, Taylor, get_criterion
from prunetune.pruners.discriminative import dlp_drop_set, dlp_plan, dlp_ranking
from prunetune.pruners.drop import DropCandidate, DropLayers, drop_units, droppable_units
from prunetune.pruners.measure import Latency, Measurement, measure, measure_latency
from prunetune.pruners.methods import Dimension, FilterPruning, PruningMethod, WeightPruning
from prunetune.pruners.ordering import OrderedPruning
from prunetune.pruners.pca import PCAWidths, pca_widths
from prunetune.pruners.quantize import Quantization
from prunetune.pruners.registry import (
    METHODS,
    get_method,
    make_method,
    method_source,
    register_method,
    resolve_method,
)
from prunetune.pruners.plan import Plan, apply_plan
from prunetune.pruners.structured import channels_to_remove, prune_filters
from prunetune.pruners.units import Unit, discover_units
from prunetune.pruners.unstructured import apply_weight_masks, make_masks_permanent, prunable_weight_layers

__all__ = [
    "FPGM",
    "L1",
    "L2",
    "METHODS",
    "Criterion",
    "Dimension",
    "DropCandidate",
    "DropLayers",
    "FilterPruning",
    "Latency",
    "Measurement",
    "OrderedPruning",
    "PCAWidths",
    "Plan",
    "PruningMethod",
    "Quantization",
    "Random",
    "Taylor",
    "Unit",
    "WeightPruning",
    "apply_plan",
    "apply_weight_masks",
    "channels_to_remove",
    "discover_units",
    "dlp_drop_set",
    "dlp_plan",
    "dlp_ranking",
    "drop_units",
    "droppable_units",
    "get_criterion",
    "get_method",
    "make_method",
    "make_masks_permanent",
    "measure",
    "measure_latency",
    "method_source",
    "pca_widths",
    "prunable_weight_layers",
    "prune_filters",
    "register_method",
    "resolve_method",
]
