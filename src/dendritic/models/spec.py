"""``ModelSpec``: one of the paper's networks, whole — which model, at which size, with which
options — in one frozen, validated value.

Everything that builds, trains, stores or names a network takes a ``ModelSpec``: ``DendriticNet``
and ``build_model`` build from it (each layer from :meth:`ModelSpec.layer_spec`), ``TrainConfig``
and ``ContinualConfig`` extend it, the CLI makes its model options from its fields
(:func:`model_options`), checkpoints and store keys hold its fields. A field's metadata says how
the CLI shows it and whether it goes beyond the paper, so a new option is one field here and its
use in the layer.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any

import numpy as np

from dendritic.layers.sparse import INITS
from dendritic.models.variants import Variant, resolve_name
from dendritic.nn.readout import READOUTS, check_readout
from dendritic.nn.spec import (
    CABLE_WEIGHTS,
    MAX_COUNT,
    DendriticSpec,
    check_choice,
    check_float,
    check_int,
)
from dendritic.wiring.budget import estimate_wiring_bytes
from dendritic.wiring.geometry import InputGeometry

__all__ = [
    "BEYOND_PAPER",
    "MAX_COUNT",
    "MAX_LAYERS",
    "MAX_SEED",
    "RANDOM_MODES",
    "ModelSpec",
    "OptionInfo",
    "check_float",
    "check_int",
    "estimate_size",
    "matched_somata",
    "model_options",
    "normalize_input_shape",
    "options_label",
    "trainable_parameters",
]

#: Seeds are 32-bit (numpy's and torch's generators take them; stores keep them as integers).
MAX_SEED = 2**32 - 1
#: Most dendro-somatic layers a network may have (the depth studies go to 20).
MAX_LAYERS = 1000
#: How random wiring is drawn: exactly ``synapses`` per dendrite, or the reference's scatter.
RANDOM_MODES = ("exact", "scatter")


@dataclass(frozen=True)
class OptionInfo:
    """How a :class:`ModelSpec` field appears outside Python: its CLI help, the range or choices
    the CLI accepts, and — for options beyond the paper — the word that names it in tables and
    logs (``label``, formatted with the value; the default is the paper's value)."""

    help: str
    low: float | None = None
    high: float | None = None
    high_open: bool = False
    choices: tuple[str, ...] | None = None
    beyond_paper: bool = False
    label: str = ""


def _option(default: Any, info: OptionInfo) -> Any:
    return field(default=default, metadata={"option": info})


@dataclass(frozen=True)
class ModelSpec:
    """One of the paper's models (``model``: a name of :func:`dendritic.models.list_models` or a
    dropout control ``vANN-0.2``), with D dendrites per soma, S somata, synapses per dendrite,
    dendro-somatic layers, dropout, and how random wiring is drawn (``"exact"``, or
    ``"scatter"`` as the reference code). Names are normalised (``dann-lrf`` → ``dANN-LRF``).

    Beyond the paper (:data:`BEYOND_PAPER` gives the paper's values): ``branches`` per dendrite,
    ``cable_weights`` (``learned``, ``ones``, ``random``, ``positive``), ``residual``
    connections with normalisation, the initial weights' rule ``init`` (``glorot-dense``,
    ``he-fan-in``), the ``readout`` (``dense``, ``class-specific``: see
    :func:`dendritic.nn.class_readout`) and ``linear_dendrites`` (no dendritic nonlinearity); see
    :func:`dendritic.models.build_model`. Checked once, here (the layer
    options by :class:`~dendritic.nn.DendriticSpec`)."""

    model: str = _option("dANN-LRF", OptionInfo("paper label, e.g. dANN-LRF, dANN-GRF, dANN-R, vANN, sANN"))
    dendrites: int = _option(16, OptionInfo("dendrites per soma, D (default 16)", 1, MAX_COUNT))
    somata: int = _option(256, OptionInfo("somata, S (default 256)", 1, MAX_COUNT))
    synapses: int = _option(16, OptionInfo("inputs per dendrite (default 16)", 1, MAX_COUNT))
    layers: int = _option(1, OptionInfo("dendro-somatic layers (default 1, at most 1000)", 1, MAX_LAYERS))
    dropout: float = _option(0.0, OptionInfo("after every hidden layer", 0, 1, high_open=True))
    random_mode: str = _option(
        "exact",
        OptionInfo(
            "random wiring: exactly n synapses per dendrite, or the reference's scatter", choices=RANDOM_MODES
        ),
    )
    branches: int = _option(
        1,
        OptionInfo(
            "branches per dendrite, each with --synapses synapses and its own nonlinearity (default 1)",
            1,
            1024,
            beyond_paper=True,
            label="B={}",
        ),
    )
    cable_weights: str = _option(
        "learned",
        OptionInfo(
            "dendrite -> soma weights: learned (default), ones or random (fixed), positive (learned)",
            choices=CABLE_WEIGHTS,
            beyond_paper=True,
            label="cables={}",
        ),
    )
    residual: bool = _option(
        False,
        OptionInfo(
            "residual connections + normalisation around layers 2..L", beyond_paper=True, label="residual"
        ),
    )
    init: str = _option(
        "glorot-dense",
        OptionInfo(
            "initial weights: glorot-dense (the paper's: Glorot over the dense shape) or he-fan-in "
            "(He over each unit's real fan-in)",
            choices=INITS,
            beyond_paper=True,
            label="init={}",
        ),
    )
    readout: str = _option(
        "dense",
        OptionInfo(
            "somata -> outputs: dense (the paper's) or class-specific (the somata split into one group "
            "per class, each wired only to its class's output unit)",
            choices=READOUTS,
            beyond_paper=True,
            label="readout={}",
        ),
    )

    linear_dendrites: bool = _option(
        False,
        OptionInfo(
            "dendrites without their nonlinearity (identity): the layer is one sparse linear map, then "
            "the somata's activation",
            beyond_paper=True,
            label="linear dendrites",
        ),
    )

    def __post_init__(self) -> None:
        variant, rate = resolve_name(self.model)  # raises on unknown names, listing the valid ones
        object.__setattr__(self, "model", variant.name if rate is None else f"vANN-{rate:g}")
        check_int("layers", self.layers, minimum=1, maximum=MAX_LAYERS)
        check_choice("random_mode", self.random_mode, RANDOM_MODES)
        check_readout(self.readout)
        if not isinstance(self.residual, bool):
            raise ValueError(f"residual must be True or False, got {self.residual!r}")
        if not isinstance(self.linear_dendrites, bool):
            raise ValueError(f"linear_dendrites must be True or False, got {self.linear_dendrites!r}")
        # 0 and 0.0 must key the same run
        object.__setattr__(
            self, "dropout", check_float("dropout", self.dropout, low=0.0, high=1.0, high_open=True)
        )
        if rate is not None and self.dropout not in (0.0, rate):
            raise ValueError(
                f"model {self.model!r} fixes dropout={rate:g}, but dropout={self.dropout:g} was given"
            )
        self.layer_spec()  # the layer's options, checked where they are defined

    # ------------------------------------------------------------------ what it builds
    @property
    def variant(self) -> Variant:
        """The paper's row of this model: its receptive-field and cable rules."""
        return resolve_name(self.model)[0]

    @property
    def effective_dropout(self) -> float:
        """The dropout the network uses: ``dropout``, or the rate a ``vANN-<rate>`` label fixes."""
        rate = resolve_name(self.model)[1]
        return self.dropout if rate is None else rate

    def layer_spec(self, somata: int | None = None) -> DendriticSpec:
        """Every dendro-somatic layer of the network: the model's rules in the layers' vocabulary
        (``random_mode="scatter"`` draws random wiring as the reference did)."""
        variant = self.variant
        rule = variant.receptive_field
        if rule == "random" and self.random_mode == "scatter":
            rule = "scattered"
        options = {f.name: getattr(self, f.name) for f in fields(DendriticSpec) if hasattr(self, f.name)}
        options |= {
            "somata": self.somata if somata is None else somata,
            "receptive_field": rule,
            "cables": variant.cables,
            "dropout": self.effective_dropout,
        }
        return DendriticSpec(**options)

    def model_spec(self) -> ModelSpec:
        """Only the model's fields (of a training or continual config)."""
        return ModelSpec(**{f.name: getattr(self, f.name) for f in fields(ModelSpec)})

    def paper_dict(self, data: dict[str, Any]) -> dict[str, Any]:
        """``data`` (this config as a dict) without the options beyond the paper that have their
        paper values, so the paper's runs keep their store keys."""
        return {k: v for k, v in data.items() if k not in BEYOND_PAPER or v != BEYOND_PAPER[k]}

    def network_config(self, input_shape: Sequence[int], n_classes: int, seed: int | None) -> dict[str, Any]:
        """The ``config`` a network built from this spec carries (and its checkpoint keeps)."""
        config: dict[str, Any] = {
            "name": self.variant.name,
            "input_shape": list(input_shape),
            "n_classes": int(n_classes),
            "dendrites": self.dendrites,
            "somata": self.somata,
            "synapses": self.synapses,
            "layers": self.layers,
            "dropout": self.effective_dropout,
            "seed": seed,
            "random_mode": self.random_mode,
        }
        return config | self.paper_dict({k: getattr(self, k) for k in BEYOND_PAPER})

    @classmethod
    def from_network_config(cls, config: Mapping[str, Any]) -> ModelSpec:
        """The spec a network's ``config`` describes (checkpoints); a network not built from a
        paper label (``name: custom``) keeps the paper's options."""
        name = config.get("name", "custom")
        known = {f.name for f in fields(cls)} - {"model"}
        values = {k: v for k, v in config.items() if k in known}
        if name == "custom":
            return cls(**{k: values[k] for k in (*BEYOND_PAPER, "dropout") if k in values})
        return cls(model=str(name), **values)

    def trainable_parameters(self, input_shape: int | Sequence[int], n_classes: int) -> int:
        """Trainable parameters of this spec's network, in closed form (nothing allocated)."""
        return trainable_parameters(self, input_shape, n_classes)


#: Options beyond the paper, with the values that give the paper's models. Configs and model
#: configs leave them out at these values: the paper's runs keep the keys they had before the
#: options existed.
BEYOND_PAPER: dict[str, Any] = {
    f.name: f.default for f in fields(ModelSpec) if f.metadata["option"].beyond_paper
}


def model_options() -> list[tuple[str, Any, OptionInfo]]:
    """(field, default, how it appears) of every model option, in the spec's order: what the
    CLI turns into ``--dendrites``, ``--cable-weights`` ..."""
    return [(f.name, f.default, f.metadata["option"]) for f in fields(ModelSpec)]


def options_label(config: Mapping[str, Any]) -> str:
    """The options beyond the paper a config (a dict of a run's settings) uses, in the words of
    the sweep tables and logs, e.g. ``B=2 cables=ones residual init=he-fan-in``; ``""`` for the
    paper's model."""
    words = []
    for name, default, info in model_options():
        if info.beyond_paper and config.get(name, default) != default:
            words.append(info.label.format(config[name]))
    return " ".join(words)


# ---------------------------------------------------------------------------- sizes in closed form


def normalize_input_shape(input_shape: int | Sequence[int]) -> tuple[int, ...]:
    """``784`` → ``(784,)``; ``(28, 28)`` → ``(28, 28, 1)``; ``(32, 32, 3)`` stays."""
    shape = (
        (int(input_shape),)
        if isinstance(input_shape, (int, np.integer))
        else tuple(int(v) for v in input_shape)
    )
    if len(shape) == 2:
        shape = (*shape, 1)
    if len(shape) not in (1, 3) or min(shape) <= 0:
        raise ValueError(f"input_shape must be a positive size n, (H, W) or (H, W, C), got {input_shape!r}")
    return shape


#: Bytes one parameter costs while a model is built and trained: weights, gradients, Adam's two
#: moments and the int64 wiring index (and its temporaries); the backward's tables come on top.
#: Only used to refuse sizes that cannot fit, before numpy or torch try to allocate them.
BYTES_PER_PARAMETER = 32


def estimate_size(spec: ModelSpec, input_shape: tuple[int, ...], n_classes: int) -> tuple[int, int]:
    """(parameters, bytes needed to build and train) of ``spec``'s network, in closed form,
    allocating nothing: ``BYTES_PER_PARAMETER`` per parameter, plus the most any layer's wiring
    takes while it is drawn (:func:`dendritic.wiring.budget.estimate_wiring_bytes`). Fixed cable
    weights count here (they take the same memory), not in the trainable count."""
    from dendritic.layers.kernels import dendritic_tables_bytes

    variant = spec.variant
    rule = spec.layer_spec().receptive_field
    params, needed, tables = 0, 0, 0
    shape = input_shape
    n_dendrites = spec.dendrites * spec.somata
    n_branches = n_dendrites * spec.branches
    for _ in range(spec.layers):
        n_in = math.prod(shape)
        channels = shape[2] if len(shape) == 3 else 1
        fan_in = n_in if variant.receptive_field == "all" else min(n_in, spec.synapses * channels)
        params += n_branches * (fan_in + 1)
        if spec.branches > 1:
            params += n_branches + n_dendrites  # each dendrite sums its own branches
        params += (n_dendrites * spec.somata if variant.cables == "all" else n_dendrites) + spec.somata
        geometry = InputGeometry.from_shape(shape, channels_last=True)
        drawing = estimate_wiring_bytes(
            str(rule), geometry, spec.somata, n_branches // spec.somata, spec.synapses
        )
        needed = max(needed, drawing or 0)
        tables += dendritic_tables_bytes(
            n_in, n_branches, fan_in, n_dendrites, spec.somata,
            sampled=variant.receptive_field != "all", own_cables=variant.cables != "all",
        )  # fmt: skip
        shape = (spec.somata, 1, 1)  # a deeper layer sees the previous somata (as a near-square grid)
    if spec.residual:
        params += 2 * spec.somata * spec.layers  # a normalisation before layers 2..L and before the output
    # the read-out: dense, or one weight per soma (class-specific) and a bias per class
    params += spec.somata + n_classes if spec.readout == "class-specific" else (spec.somata + 1) * n_classes
    return params, needed + tables + BYTES_PER_PARAMETER * params


def trainable_parameters(spec: ModelSpec, input_shape: int | Sequence[int], n_classes: int) -> int:
    """Closed-form trainable-parameter count of ``spec``'s network for inputs of ``input_shape``
    (channels-last for images, as :func:`build_model`) and ``n_classes`` classes: connections and
    biases of every layer, the normalisations of a residual stack, minus fixed cable weights."""
    params, _ = estimate_size(spec, normalize_input_shape(input_shape), n_classes)
    if spec.cable_weights in ("ones", "random"):
        per_layer = spec.dendrites * spec.somata * (spec.somata if spec.variant.cables == "all" else 1)
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
