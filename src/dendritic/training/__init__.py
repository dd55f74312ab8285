"""Training: ``fit`` (one loop for any ``nn.Module``), its callbacks, and ``train`` (a paper model
from a :class:`TrainConfig`, the paper's protocol, SPEC §4) built on it."""

from dendritic.training.config import MAX_EARLY_STOP_EPOCHS, TrainConfig
from dendritic.training.fit import (
    Callback,
    EpochMetrics,
    FitResult,
    FitState,
    GradientNorms,
    LogEpochs,
    RecordRun,
    SaveCheckpoint,
    TrainSet,
    fit,
)
from dendritic.training.loop import RunResult, evaluate, resolve_device, train

__all__ = [
    "MAX_EARLY_STOP_EPOCHS",
    "Callback",
    "EpochMetrics",
    "FitResult",
    "FitState",
    "GradientNorms",
    "LogEpochs",
    "RecordRun",
    "RunResult",
    "SaveCheckpoint",
    "TrainConfig",
    "TrainSet",
    "evaluate",
    "fit",
    "resolve_device",
    "train",
]
