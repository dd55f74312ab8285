"""``DendriticSpec``: what a dendro-somatic layer is, in one frozen, validated value.

A :class:`~dendritic.nn.DendriticLayer` is built from one (its keyword arguments make one), the
paper's networks build every layer from one (``ModelSpec.layer_spec``), and every check of a
layer option lives here, once. The rules are named in one vocabulary, the wiring registries'
(:func:`dendritic.nn.receptive_fields`, :func:`dendritic.nn.cable_rules`); the paper's model
labels map to it in one table (``dendritic.models.variants``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from dendritic.layers.sparse import INITS
from dendritic.wiring.connectivity import Connectivity
from dendritic.wiring.rules import get_cable_rule, get_receptive_field

__all__ = [
    "CABLE_WEIGHTS",
    "MAX_COUNT",
    "DendriticSpec",
    "check_float",
    "check_int",
    "check_choice",
]

#: Bound of the integer sizes: far above any real run, below anything that overflows.
MAX_COUNT = 2**31 - 1
#: The dendrite → soma weights: learned (the paper), fixed at 1, fixed random positive, learned
#: positive (through a softplus).
CABLE_WEIGHTS = ("learned", "ones", "random", "positive")

Rule = str | Callable[..., Any] | Connectivity


def check_int(name: str, value: Any, *, minimum: int = 1, maximum: int = MAX_COUNT) -> int:
    """``value`` if it is an int (not a bool) in [minimum, maximum], else a one-line ValueError."""
    import numpy as np

    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not minimum <= value <= maximum:
        raise ValueError(f"{name} must be an integer in [{minimum}, {maximum}], got {value!r}")
    return int(value)


def check_float(
    name: str,
    value: Any,
    *,
    low: float,
    high: float,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """``value`` as a float if it is a finite number in the interval, else a one-line ValueError."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if ok:
        ok = (value > low if low_open else value >= low) and (value < high if high_open else value <= high)
    if not ok:
        left, right = "(" if low_open else "[", ")" if high_open or math.isinf(high) else "]"
        kind = "a finite number in" if math.isinf(high) else "in"
        raise ValueError(f"{name} must be {kind} {left}{low:g}, {high:g}{right}, got {value!r}")
    return float(value)


def check_choice(name: str, value: Any, choices: tuple[str, ...]) -> str:
    """``value`` if it is one of ``choices``, else a one-line ValueError listing them."""
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"unknown {name} {value!r}; choose one of {', '.join(choices)}")
    return value


@dataclass(frozen=True)
class DendriticSpec:
    """One dendro-somatic layer: ``somata`` S, each summing ``dendrites`` D dendrites (through
    cable weights); every dendrite has ``synapses`` synapses per input channel placed by the
    ``receptive_field`` rule, or ``branches`` B branches of that many synapses each; the
    ``cables`` rule joins dendrites to somata.

    ``receptive_field`` and ``cables`` are registered rule names (or a rule function, or a ready
    :class:`Connectivity`); ``cable_weights`` is one of :data:`CABLE_WEIGHTS`; ``init`` one of
    :data:`~dendritic.layers.sparse.INITS` (the paper's Glorot over the dense shape, or He over
    each unit's real fan-in); ``dropout`` acts on the dendrites' activations; ``bias`` gives every
    dendrite and soma a learned bias; ``linear_dendrites`` drops the dendrites' nonlinearity.
    Every value is checked here, once.
    """

    somata: int
    dendrites: int = 16
    synapses: int = 16
    receptive_field: Rule = "local"
    cables: Rule = "structured"
    branches: int = 1
    cable_weights: str = "learned"
    init: str = "glorot-dense"
    dropout: float = 0.0
    bias: bool = True
    #: Dendrites (and branches) sum their synapses without a nonlinearity: the whole layer is then
    #: one sparse linear map followed by the somata's activation (the sparse-controls study).
    linear_dendrites: bool = False

    def __post_init__(self) -> None:
        for name in ("somata", "dendrites", "synapses", "branches"):
            object.__setattr__(self, name, check_int(name, getattr(self, name)))
        object.__setattr__(
            self, "dropout", check_float("dropout", self.dropout, low=0.0, high=1.0, high_open=True)
        )
        check_choice("cable_weights", self.cable_weights, CABLE_WEIGHTS)
        check_choice("init", self.init, INITS)
        if not isinstance(self.bias, bool):
            raise ValueError(f"bias must be True or False, got {self.bias!r}")
        if not isinstance(self.linear_dendrites, bool):
            raise ValueError(f"linear_dendrites must be True or False, got {self.linear_dendrites!r}")
        if isinstance(self.receptive_field, str):
            get_receptive_field(self.receptive_field)  # an unknown name lists the registered ones
            object.__setattr__(self, "receptive_field", self.receptive_field.strip().lower())
        elif not (isinstance(self.receptive_field, Connectivity) or callable(self.receptive_field)):
            raise ValueError(
                f"receptive_field must be a rule name, a function or a Connectivity, got {self.receptive_field!r}"
            )
        if isinstance(self.cables, str):
            get_cable_rule(self.cables)
            object.__setattr__(self, "cables", self.cables.strip().lower())
        elif not (isinstance(self.cables, Connectivity) or callable(self.cables)):
            raise ValueError(f"cables must be a rule name, a function or a Connectivity, got {self.cables!r}")

    @property
    def is_plain(self) -> bool:
        """The paper's layer: one branch per dendrite, learned cable weights."""
        return self.branches == 1 and self.cable_weights == "learned"

    def to_dict(self) -> dict[str, Any]:
        """The spec as plain data (rules by name; a function or Connectivity is ``"custom"``)."""
        data = asdict(self)
        for name in ("receptive_field", "cables"):
            if not isinstance(data[name], str):
                data[name] = "custom"
        return data
