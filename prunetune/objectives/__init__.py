"""What a trial measures: prune, briefly fine-tune, evaluate. Knows torch and `pruners`, never Optuna or Ray."""

from __future__ import annotations

from prunetune.objectives.training import (
    EpochStats,
    Evaluation,
    TrainConfig,
    TrainingDiverged,
    evaluate,
    train,
)

__all__ = ["EpochStats", "Evaluation", "TrainConfig", "TrainingDiverged", "evaluate", "train"]
