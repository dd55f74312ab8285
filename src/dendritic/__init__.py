"""Dendritic artificial neural networks (Chavlis & Poirazi, Nature Communications 2025).

``dendritic.nn`` holds the layers for any PyTorch model; ``dendritic.get_model`` /
``dendritic.list_models`` the paper's twelve networks built from them.

The names below are imported on first use, so ``import dendritic`` (and ``dendritic --help``)
does not load torch until something needs it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from dendritic._version import __version__

if TYPE_CHECKING:
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

_HOMES = {
    "MODEL_NAMES": "dendritic.models",
    "DendriticNet": "dendritic.models",
    "build_model": "dendritic.models",
    "build_model_from_masks": "dendritic.models",
    "count_parameters": "dendritic.models",
    "get_model": "dendritic.models",
    "get_model_info": "dendritic.models",
    "list_models": "dendritic.models",
    "paper_parameter_count": "dendritic.models",
    "register_model": "dendritic.models",
    "ModelSpec": "dendritic.models.spec",
    "load": "dendritic.models.checkpoint",
    "save": "dendritic.models.checkpoint",
    "Connectivity": "dendritic.wiring",
}
_PACKAGES = (
    "analysis", "cli", "continual", "data", "demo", "errors", "figures", "files", "layers", "models", "nn",
    "report", "rl", "sklearn", "store", "sweeps", "tabular", "training", "wiring",
)  # fmt: skip

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


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        value = getattr(importlib.import_module(_HOMES[name]), name)
    elif name in _PACKAGES:
        value = importlib.import_module(f"dendritic.{name}")
    else:
        raise AttributeError(f"module 'dendritic' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_HOMES, *_PACKAGES})
