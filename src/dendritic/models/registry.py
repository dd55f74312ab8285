"""The paper's twelve models by name, torchvision style: ``list_models()`` and ``get_model()``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from dendritic.models.network import DendriticNet, build_model
from dendritic.models.variants import MODEL_NAMES, Variant, resolve_name

__all__ = ["get_model", "get_model_info", "list_models"]


def list_models() -> list[str]:
    """Names :func:`get_model` accepts, in the paper's order (plus ``vANN-<rate>`` for dropout)."""
    return list(MODEL_NAMES)


def get_model_info(name: str) -> Variant:
    """How a model wires its layers: synapses (random/lrf/grf/dense), cables, a description."""
    return resolve_name(name)[0]


def get_model(
    name: str,
    *,
    input_shape: int | Sequence[int] = (28, 28, 1),
    n_classes: int = 10,
    dendrites: int = 16,
    somata: int = 256,
    synapses: int = 16,
    layers: int = 1,
    dropout: float = 0.0,
    seed: int | None = None,
    **options: Any,
) -> DendriticNet:
    """The paper's model ``name`` (flatten → dendritic layer(s) → linear output), with the
    paper's defaults: Fashion-MNIST-shaped input ``(28, 28, 1)`` (channels last, as the paper's
    code), 10 classes, D = 16, S = 256, 16 synapses. Other ``options`` are those of
    :func:`dendritic.models.build_model` (``random_mode``, ``oracle``, ``kernel``, and beyond the
    paper ``branches``, ``cable_weights``, ``residual``)."""
    return build_model(
        name, input_shape, n_classes, dendrites, somata, synapses, layers, dropout, seed, **options
    )
