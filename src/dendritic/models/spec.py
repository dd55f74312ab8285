"""``ModelSpec``: which of the paper's networks, at which size. The training and continual
configs both extend it, so a model is named, checked and built the same way everywhere."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

from dendritic.models.network import MAX_LAYERS, DendriticNet, build_model
from dendritic.models.variants import resolve_name

__all__ = ["MAX_COUNT", "ModelSpec", "check_float", "check_int"]

#: Bound of the integer sizes: far above any real run, below anything that overflows.
MAX_COUNT = 2**31 - 1
RANDOM_MODES = ("exact", "scatter")


@dataclass(frozen=True)
class ModelSpec:
    """One of the paper's models (``model``: a name of :func:`dendritic.models.list_models` or a
    dropout control ``vANN-0.2``), with D dendrites per soma, S somata, synapses per dendrite,
    dendro-somatic layers, dropout, and how random wiring is drawn (``"exact"``, or
    ``"scatter"`` as the reference code). Names are normalised (``dann-lrf`` → ``dANN-LRF``)."""

    model: str = "dANN-LRF"
    dendrites: int = 16
    somata: int = 256
    synapses: int = 16
    layers: int = 1
    dropout: float = 0.0
    random_mode: str = "exact"

    def __post_init__(self) -> None:
        variant, rate = resolve_name(self.model)  # raises on unknown names, listing the valid ones
        object.__setattr__(self, "model", variant.name if rate is None else f"vANN-{rate:g}")
        for name in ("dendrites", "somata", "synapses"):
            check_int(name, getattr(self, name), minimum=1, maximum=MAX_COUNT)
        check_int("layers", self.layers, minimum=1, maximum=MAX_LAYERS)
        check_float("dropout", self.dropout, low=0.0, high=1.0, high_open=True)
        object.__setattr__(self, "dropout", float(self.dropout))  # 0 and 0.0 must key the same run
        if self.random_mode not in RANDOM_MODES:
            raise ValueError(f"random_mode must be 'exact' or 'scatter', got {self.random_mode!r}")

    def model_spec(self) -> ModelSpec:
        """Only the model's fields (of a training or continual config)."""
        return ModelSpec(**{f.name: getattr(self, f.name) for f in fields(ModelSpec)})

    def build(self, input_shape: int | Sequence[int], n_classes: int, *, seed: int | None) -> DendriticNet:
        """The network, shaped for the data (``input_shape`` as the data gives it, classes);
        ``seed`` fixes its wiring and initial weights."""
        return build_model(
            self.model,
            input_shape,
            n_classes,
            self.dendrites,
            self.somata,
            synapses=self.synapses,
            layers=self.layers,
            dropout=self.dropout,
            seed=seed,
            random_mode=self.random_mode,
        )


def check_int(name: str, value: Any, *, minimum: int, maximum: int) -> None:
    """A one-line ValueError unless ``value`` is an int (not a bool) in [minimum, maximum]."""
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
        raise ValueError(f"{name} must be an integer in [{minimum}, {maximum}], got {value!r}")


def check_float(
    name: str,
    value: Any,
    *,
    low: float,
    high: float,
    low_open: bool = False,
    high_open: bool = False,
) -> None:
    """A one-line ValueError unless ``value`` is a finite number in the interval."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if ok:
        ok = (value > low if low_open else value >= low) and (value < high if high_open else value <= high)
    if not ok:
        left, right = "(" if low_open else "[", ")" if high_open or math.isinf(high) else "]"
        kind = "a finite number in" if math.isinf(high) else "in"
        raise ValueError(f"{name} must be {kind} {left}{low:g}, {high:g}{right}, got {value!r}")
