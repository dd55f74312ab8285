"""Dendritic artificial neural networks (Chavlis & Poirazi, Nature Communications 2025)."""

from dendritic.models import (
    MODEL_NAMES,
    DendriticNet,
    build_model,
    build_model_from_masks,
    count_parameters,
    paper_parameter_count,
)
from dendritic.models.checkpoint import load, save
from dendritic.wiring import Connectivity

__version__ = "0.1.0"

__all__ = [
    "MODEL_NAMES",
    "Connectivity",
    "DendriticNet",
    "__version__",
    "build_model",
    "build_model_from_masks",
    "count_parameters",
    "load",
    "paper_parameter_count",
    "save",
]
