"""Models by name, torchvision style: ``register_model``, ``list_models``, ``get_model``.

The paper's twelve networks (and the controls beyond it, e.g. ``ER-MLP``) are registered here; a user's builder joins them with the same
decorator::

    from dendritic.models import register_model, get_model

    @register_model("tiny-dann")
    def tiny_dann(*, n_classes=10, seed=None):
        return get_model("dANN-LRF", dendrites=4, somata=32, n_classes=n_classes, seed=seed)

    model = get_model("tiny-dann", seed=1)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from torch import nn

from dendritic.models.network import DendriticNet
from dendritic.models.spec import ModelSpec
from dendritic.models.variants import BEYOND_MODELS, MODEL_NAMES, Variant, resolve_name

__all__ = ["get_model", "get_model_builder", "get_model_info", "list_models", "register_model"]

Builder = Callable[..., nn.Module]
_B = TypeVar("_B", bound=Builder)
_BUILDERS: dict[str, tuple[str, Builder]] = {}  # lower-case name → (name as registered, builder)


def register_model(name: str | None = None) -> Callable[[_B], _B]:
    """Register a builder (a function of keyword arguments returning an ``nn.Module``) under
    ``name`` (default: the function's name); names are case-insensitive and unique."""

    def decorate(builder: _B) -> _B:
        key = builder.__name__ if name is None else name
        if not isinstance(key, str) or not key.strip():
            raise ValueError(f"a model needs a non-empty name, got {key!r}")
        if not callable(builder):
            raise TypeError(f"a model builder must be callable, got {type(builder).__name__}")
        lower = key.strip().lower()
        if lower in _BUILDERS:
            raise ValueError(f"a model named {_BUILDERS[lower][0]!r} is already registered")
        _BUILDERS[lower] = (key.strip(), builder)
        return builder

    return decorate


def list_models() -> list[str]:
    """Names :func:`get_model` accepts, the paper's first in the paper's order (``vANN-<rate>``,
    the dropout controls, are accepted too)."""
    return [name for name, _ in _BUILDERS.values()]


def get_model_builder(name: str) -> Builder:
    """The builder registered under ``name`` (a ``vANN-<rate>`` label gives the paper's)."""
    if not isinstance(name, str):
        raise ValueError(f"model name must be a string, got {type(name).__name__}")
    entry = _BUILDERS.get(name.strip().lower())
    if entry is not None:
        return entry[1]
    try:
        resolve_name(name)  # vANN-0.2 and friends
    except ValueError:
        raise ValueError(
            f"unknown model {name!r}; registered models: {', '.join(list_models())}, and vANN-<rate> for dropout"
        ) from None

    def dropout_control(**config: Any) -> DendriticNet:
        return _paper_model(name, **config)

    return dropout_control


def get_model(name: str, /, **config: Any) -> nn.Module:
    """The model ``name`` built by its registered builder with ``config`` (keywords only). The
    paper's models take :func:`dendritic.models.build_model`'s arguments, with the paper's
    defaults: Fashion-MNIST-shaped input ``(28, 28, 1)`` (channels last, as the paper's code),
    10 classes, D = 16, S = 256, 16 synapses."""
    return get_model_builder(name)(**config)


def get_model_info(name: str) -> Variant:
    """How one of the paper's models wires its layers: receptive field, cables, a description."""
    return resolve_name(name)[0]


def _paper_model(
    name: str,
    *,
    input_shape: int | Sequence[int] = (28, 28, 1),
    n_classes: int = 10,
    seed: int | None = None,
    oracle: bool = False,
    kernel: str = "auto",
    **spec: Any,
) -> DendriticNet:
    """The paper's network ``name``: ``spec`` holds :class:`ModelSpec`'s fields (``dendrites``,
    ``somata``, ``synapses``, ``layers``, ``dropout``, ``random_mode``, ``branches``, ...)."""
    return DendriticNet(
        ModelSpec(name, **spec), input_shape, n_classes, seed=seed, oracle=oracle, kernel=kernel
    )


def _register_paper_models() -> None:
    for paper_name in (*MODEL_NAMES, *BEYOND_MODELS):

        def builder(*, _name: str = paper_name, **config: Any) -> DendriticNet:
            return _paper_model(_name, **config)

        builder.__doc__ = f"{paper_name}: {resolve_name(paper_name)[0].description}."
        register_model(paper_name)(builder)


_register_paper_models()
