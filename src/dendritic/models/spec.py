"""``ModelSpec``: which of the paper's networks, at which size. The training and continual
configs both extend it, so a model is named, checked and built the same way everywhere."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any

from dendritic.layers.sparse import check_init
from dendritic.models.network import (
    BEYOND_PAPER,
    MAX_LAYERS,
    DendriticNet,
    build_model,
    estimate_size,
    normalize_input_shape,
)
from dendritic.models.variants import resolve_name
from dendritic.nn.layer import check_cable_weights

__all__ = [
    "BEYOND_PAPER",
    "MAX_COUNT",
    "ModelSpec",
    "check_float",
    "check_int",
    "matched_somata",
    "options_label",
]

#: Bound of the integer sizes: far above any real run, below anything that overflows.
MAX_COUNT = 2**31 - 1
RANDOM_MODES = ("exact", "scatter")


@dataclass(frozen=True)
class ModelSpec:
    """One of the paper's models (``model``: a name of :func:`dendritic.models.list_models` or a
    dropout control ``vANN-0.2``), with D dendrites per soma, S somata, synapses per dendrite,
    dendro-somatic layers, dropout, and how random wiring is drawn (``"exact"``, or
    ``"scatter"`` as the reference code). Names are normalised (``dann-lrf`` → ``dANN-LRF``).

    Beyond the paper (:data:`BEYOND_PAPER` gives the paper's values): ``branches`` per dendrite,
    ``cable_weights`` (``learned``, ``ones``, ``random``, ``positive``), ``residual``
    connections with normalisation and the initial weights' rule ``init`` (``glorot-dense``,
    ``he-fan-in``); see :func:`dendritic.models.build_model`."""

    model: str = "dANN-LRF"
    dendrites: int = 16
    somata: int = 256
    synapses: int = 16
    layers: int = 1
    dropout: float = 0.0
    random_mode: str = "exact"
    branches: int = 1
    cable_weights: str = "learned"
    residual: bool = False
    init: str = "glorot-dense"

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
        check_int("branches", self.branches, minimum=1, maximum=MAX_COUNT)
        check_cable_weights(self.cable_weights)
        if not isinstance(self.residual, bool):
            raise ValueError(f"residual must be True or False, got {self.residual!r}")
        check_init(self.init)

    def paper_dict(self, data: dict[str, Any]) -> dict[str, Any]:
        """``data`` (this config as a dict) without the options beyond the paper that have their
        paper values, so the paper's runs keep their store keys."""
        return {k: v for k, v in data.items() if k not in BEYOND_PAPER or v != BEYOND_PAPER[k]}

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
            branches=self.branches,
            cable_weights=self.cable_weights,
            residual=self.residual,
            init=self.init,
        )

    def trainable_parameters(self, input_shape: int | Sequence[int], n_classes: int) -> int:
        """Trainable parameters of :meth:`build`'s network, in closed form (nothing allocated)."""
        return trainable_parameters(self, input_shape, n_classes)


def options_label(config: Mapping[str, Any]) -> str:
    """The options beyond the paper a config (a dict of a run's settings) uses, in the words of
    the sweep tables and logs, e.g. ``B=2 cables=ones residual init=he-fan-in``; ``""`` for the
    paper's model."""
    words = {"branches": "B={}", "cable_weights": "cables={}", "residual": "residual", "init": "init={}"}
    used = [k for k in BEYOND_PAPER if config.get(k, BEYOND_PAPER[k]) != BEYOND_PAPER[k]]
    return " ".join(words[k].format(config[k]) for k in used)


def trainable_parameters(spec: ModelSpec, input_shape: int | Sequence[int], n_classes: int) -> int:
    """Closed-form trainable-parameter count of ``spec``'s network for inputs of ``input_shape``
    (channels-last for images, as :func:`build_model`) and ``n_classes`` classes: connections and
    biases of every layer, the normalisations of a residual stack, minus fixed cable weights."""
    variant, _ = resolve_name(spec.model)
    shape = normalize_input_shape(input_shape)
    params, _ = estimate_size(
        variant,
        shape,
        n_classes,
        spec.dendrites,
        spec.somata,
        spec.synapses,
        spec.layers,
        spec.branches,
        spec.residual,
    )
    if spec.cable_weights in ("ones", "random"):
        per_layer = spec.dendrites * spec.somata * (spec.somata if variant.cables == "dense" else 1)
        params -= per_layer * spec.layers
    return params


def matched_somata(
    spec: ModelSpec, target: int, input_shape: int | Sequence[int], n_classes: int, *, most: int = 8192
) -> int:
    """The number of somata S (1 … ``most``) whose network has the trainable-parameter count
    closest to ``target``, the other fields as in ``spec`` (ties: the smaller S)."""
    best, best_gap = 1, math.inf
    for somata in range(1, most + 1):
        count = trainable_parameters(replace(spec, somata=somata), input_shape, n_classes)
        gap = abs(count - target)
        if gap < best_gap:
            best, best_gap = somata, gap
        if count > target:  # the count grows with S: nothing further is closer
            break
    return best


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
