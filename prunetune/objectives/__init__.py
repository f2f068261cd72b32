"""What a trial measures: prune, briefly fine-tune, evaluate. Knows torch and `pruners`, never Optuna or Ray."""

from __future__ import annotations

from prunetune.objectives.base_training import train_base
from prunetune.objectives.batchnorm import (
    DEFAULT_RECALIBRATION_BATCHES,
    has_batchnorm,
    recalibrate_batchnorm,
)
from prunetune.objectives.classification import (
    DEFAULT_FINETUNE,
    DIRECTIONS,
    REPORT_ACCURACY,
    REPORT_COMPRESSION,
    BaseScores,
    ClassificationObjective,
)
from prunetune.objectives.protocol import (
    FunctionObjective,
    Objective,
    Report,
    check_directions,
    check_metrics,
    load_objective,
)
from prunetune.objectives.metrics import METRICS, Metric
from prunetune.objectives.prune_finetune import PruneResult, Task, classification_task, prune_and_finetune
from prunetune.objectives.reconstruction import ReconstructionObjective, train_autoencoder
from prunetune.objectives.training import (
    EpochStats,
    Evaluation,
    TrainConfig,
    TrainingDiverged,
    evaluate,
    train,
)

__all__ = [
    "DEFAULT_FINETUNE",
    "DEFAULT_RECALIBRATION_BATCHES",
    "DIRECTIONS",
    "METRICS",
    "REPORT_ACCURACY",
    "REPORT_COMPRESSION",
    "BaseScores",
    "ClassificationObjective",
    "EpochStats",
    "Evaluation",
    "FunctionObjective",
    "Metric",
    "Objective",
    "PruneResult",
    "ReconstructionObjective",
    "Report",
    "Task",
    "TrainConfig",
    "TrainingDiverged",
    "check_directions",
    "check_metrics",
    "classification_task",
    "evaluate",
    "has_batchnorm",
    "load_objective",
    "prune_and_finetune",
    "recalibrate_batchnorm",
    "train",
    "train_autoencoder",
    "train_base",
]
