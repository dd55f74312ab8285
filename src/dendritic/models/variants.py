"""The paper's model variants (SPEC §2): which wiring each label uses in each dendro-somatic layer.

This table is where the paper's labels meet the layers' vocabulary: a variant names the
receptive-field rule and the cable rule of :class:`dendritic.nn.DendriticLayer` (the wiring
registries' names: ``local``, ``global``, ``random``, ``all``; ``structured``, ``random``,
``all``), nothing else.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["BEYOND_MODELS", "Variant", "VARIANTS", "MODEL_NAMES", "resolve_name"]

#: How inputs reach dendrites (receptive-field rules).
RECEPTIVE_FIELDS = ("random", "local", "global", "all", "scattered")
#: How dendrites reach somata (cable rules).
CABLES = ("structured", "random", "all")


@dataclass(frozen=True)
class Variant:
    """One row of the paper's model table."""

    name: str
    receptive_field: str  # input → dendrite: random | local | global | all
    cables: str  # dendrite → soma: structured | random | all
    description: str

    @property
    def family(self) -> str:
        """dANN (structured dendrites), sANN (random sparse), or vANN (dense somata)."""
        return {"structured": "dANN", "random": "sANN", "all": "vANN"}[self.cables]


_TABLE = [
    Variant("dANN-R", "random", "structured", "random input sampling, structured dendrites"),
    Variant("dANN-LRF", "local", "structured", "local receptive field per dendrite, structured dendrites"),
    Variant("dANN-GRF", "global", "structured", "one receptive field per soma, structured dendrites"),
    Variant("pdANN", "all", "structured", "all-to-all inputs, structured dendrites"),
    Variant("vANN", "all", "all", "plain two-hidden-layer MLP"),
    Variant("vANN-R", "random", "all", "random input sampling, dense dendrite→soma"),
    Variant("vANN-LRF", "local", "all", "local receptive fields, dense dendrite→soma"),
    Variant("vANN-GRF", "global", "all", "somatic receptive fields, dense dendrite→soma"),
    Variant("sANN", "random", "random", "random inputs, random sparse dendrite→soma"),
    Variant("sANN-LRF", "local", "random", "local receptive fields, random sparse dendrite→soma"),
    Variant("sANN-GRF", "global", "random", "somatic receptive fields, random sparse dendrite→soma"),
    Variant("psANN", "all", "random", "all-to-all inputs, random sparse dendrite→soma"),
]

#: Controls beyond the paper's table (not in :data:`MODEL_NAMES`, so the paper's grids keep their
#: size): the Erdős–Rényi random-sparse MLP of the sparse-controls study (issue 23). Its two
#: hidden layers have the dANN's widths (S·D dendrites, S somata) and the dANN's nonzeros per
#: layer (S·D·synapses, S·D), each placed uniformly over the whole weight matrix (a G(n, M)
#: draw: every weight kept with the same probability, fan-in and fan-out vary).
_BEYOND = [
    Variant(
        "ER-MLP",
        "scattered",
        "random",
        "Erdős–Rényi random-sparse MLP with the dANN's widths and nonzeros per layer",
    ),
]

VARIANTS: dict[str, Variant] = {v.name: v for v in (*_TABLE, *_BEYOND)}
MODEL_NAMES: tuple[str, ...] = tuple(v.name for v in _TABLE)
#: The models beyond the paper's table, by name.
BEYOND_MODELS: tuple[str, ...] = tuple(v.name for v in _BEYOND)
_BY_LOWER = {name.lower(): variant for name, variant in VARIANTS.items()}
_DROPOUT_LABEL = re.compile(r"^vann-(0?\.\d+)$")


def resolve_name(name: str) -> tuple[Variant, float | None]:
    """Look a label up case-insensitively; ``vANN-0.5`` style labels also give a dropout rate."""
    if not isinstance(name, str):
        raise ValueError(f"model name must be a string, got {type(name).__name__}")
    key = name.strip().lower()
    if key in _BY_LOWER:
        return _BY_LOWER[key], None
    match = _DROPOUT_LABEL.match(key)
    if match:
        return VARIANTS["vANN"], float(match.group(1))
    valid = ", ".join(VARIANTS)
    raise ValueError(f"unknown model {name!r}; valid models: {valid}, and vANN-<rate> for dropout")
