"""The paper's training protocol (SPEC §4): one run from a config, recorded in the store."""

from dendritic.training.config import MAX_EARLY_STOP_EPOCHS, TrainConfig
from dendritic.training.loop import EpochMetrics, RunResult, evaluate, resolve_device, train

__all__ = [
    "MAX_EARLY_STOP_EPOCHS",
    "EpochMetrics",
    "RunResult",
    "TrainConfig",
    "evaluate",
    "resolve_device",
    "train",
]
