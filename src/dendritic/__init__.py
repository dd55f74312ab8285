"""Dendritic artificial neural networks (Chavlis & Poirazi, Nature Communications 2025).

``dendritic.nn`` holds the layers for any PyTorch model; ``dendritic.get_model`` /
``dendritic.list_models`` the paper's twelve networks built from them.
"""

from dendritic._version import __version__
from dendritic.models import (
    MODEL_NAMES,
    DendriticNet,
    build_model,
    build_model_from_masks,
    count_parameters,
    get_model,
    get_model_info,
    list_models,
    paper_parameter_count,
    register_model,
)
from dendritic.models.checkpoint import load, save
from dendritic.models.spec import ModelSpec
from dendritic.wiring import Connectivity

__all__ = [
    "MODEL_NAMES",
    "Connectivity",
    "DendriticNet",
    "ModelSpec",
    "__version__",
    "build_model",
    "build_model_from_masks",
    "count_parameters",
    "get_model",
    "get_model_info",
    "list_models",
    "load",
    "paper_parameter_count",
    "register_model",
    "save",
]
