"""The paper's networks: every variant by label, built from explicit wiring."""

from dendritic.models.network import DendriticNet, build_model, build_model_from_masks, build_wiring
from dendritic.models.params import count_parameters, paper_parameter_count
from dendritic.models.registry import (
    get_model,
    get_model_builder,
    get_model_info,
    list_models,
    register_model,
)
from dendritic.models.spec import ModelSpec
from dendritic.models.variants import MODEL_NAMES, VARIANTS, Variant, resolve_name

__all__ = [
    "MODEL_NAMES",
    "VARIANTS",
    "DendriticNet",
    "ModelSpec",
    "Variant",
    "build_model",
    "build_model_from_masks",
    "build_wiring",
    "count_parameters",
    "get_model",
    "get_model_builder",
    "get_model_info",
    "list_models",
    "paper_parameter_count",
    "register_model",
    "resolve_name",
]
