"""Wiring rules by name: how synapses pick their inputs (receptive fields) and how dendrites
reach somata (cables). A rule is one function; registering it makes it a name every
``DendriticLayer`` (and the CLI's models) accepts.

A receptive-field rule is called as ``rule(rng, geometry, somata, dendrites, synapses)`` and
returns the input → dendrite wiring of ``somata · dendrites`` dendrites (soma ``s`` owns dendrites
``s·D … s·D + D − 1``): a :class:`Connectivity` over ``geometry.n_inputs`` inputs, or a table
``(somata · dendrites, k)`` of flat input indices. ``geometry.expand(sites)`` turns a table of grid
sites into the inputs of every channel. Draw all randomness from ``rng``::

    from dendritic.wiring import register_receptive_field

    @register_receptive_field("stripe")
    def stripe(rng, geometry, somata, dendrites, synapses):
        rows = rng.integers(0, geometry.grid[0], size=somata * dendrites)   # one image row each
        width = geometry.grid[1]
        cols = np.sort(rng.permuted(np.tile(np.arange(width), (len(rows), 1)), axis=1)[:, :synapses], axis=1)
        return geometry.expand(rows[:, None] * width + cols)

A cable rule is called as ``rule(rng, somata, dendrites)`` and returns the dendrite → soma
:class:`Connectivity` (``somata · dendrites`` inputs, ``somata`` outputs).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar, overload

import numpy as np

from dendritic.wiring import sampling
from dendritic.wiring.budget import check_wiring_fits
from dendritic.wiring.connectivity import Connectivity
from dendritic.wiring.geometry import InputGeometry

__all__ = [
    "CableRule",
    "ReceptiveFieldRule",
    "RuleWiring",
    "cable_rules",
    "get_cable_rule",
    "get_receptive_field",
    "make_cables",
    "make_receptive_fields",
    "receptive_fields",
    "register_cable_rule",
    "register_receptive_field",
]

#: What a receptive-field rule returns: the wiring, or a table of flat input indices.
RuleWiring = Connectivity | np.ndarray
ReceptiveFieldRule = Callable[[np.random.Generator, InputGeometry, int, int, int], RuleWiring]
CableRule = Callable[[np.random.Generator, int, int], Connectivity]
_Rule = TypeVar("_Rule", bound=Callable[..., Any])
_RF = TypeVar("_RF", bound=ReceptiveFieldRule)
_Cable = TypeVar("_Cable", bound=CableRule)

_RECEPTIVE_FIELDS: dict[str, ReceptiveFieldRule] = {}
_CABLES: dict[str, CableRule] = {}


def _register(table: dict[str, Any], kind: str, name: str, rule: _Rule, replace: bool) -> _Rule:
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"a {kind} rule needs a non-empty name, got {name!r}")
    key = name.strip().lower()
    if key in table and not replace:
        raise ValueError(f"a {kind} rule named {key!r} exists; pass replace=True to override it")
    if not callable(rule):
        raise TypeError(f"a {kind} rule must be callable, got {type(rule).__name__}")
    table[key] = rule
    return rule


@overload
def register_receptive_field(
    name: str, rule: None = None, *, replace: bool = False
) -> Callable[[_RF], _RF]: ...
@overload
def register_receptive_field(name: str, rule: _RF, *, replace: bool = False) -> _RF: ...
def register_receptive_field(
    name: str, rule: _RF | None = None, *, replace: bool = False
) -> _RF | Callable[[_RF], _RF]:
    """Register ``rule`` under ``name`` (usable as a decorator)."""
    if rule is None:

        def decorate(fn: _RF) -> _RF:
            return _register(_RECEPTIVE_FIELDS, "receptive-field", name, fn, replace)

        return decorate
    return _register(_RECEPTIVE_FIELDS, "receptive-field", name, rule, replace)


@overload
def register_cable_rule(
    name: str, rule: None = None, *, replace: bool = False
) -> Callable[[_Cable], _Cable]: ...
@overload
def register_cable_rule(name: str, rule: _Cable, *, replace: bool = False) -> _Cable: ...
def register_cable_rule(
    name: str, rule: _Cable | None = None, *, replace: bool = False
) -> _Cable | Callable[[_Cable], _Cable]:
    """Register a dendrite → soma rule under ``name`` (usable as a decorator)."""
    if rule is None:

        def decorate(fn: _Cable) -> _Cable:
            return _register(_CABLES, "cable", name, fn, replace)

        return decorate
    return _register(_CABLES, "cable", name, rule, replace)


def _lookup(table: dict[str, Any], kind: str, name: str) -> Any:
    key = str(name).strip().lower()
    if key not in table:
        raise ValueError(f"unknown {kind} rule {name!r}; choose one of {', '.join(sorted(table))}")
    return table[key]


def get_receptive_field(name: str) -> ReceptiveFieldRule:
    rule: ReceptiveFieldRule = _lookup(_RECEPTIVE_FIELDS, "receptive-field", name)
    return rule


def get_cable_rule(name: str) -> CableRule:
    rule: CableRule = _lookup(_CABLES, "cable", name)
    return rule


def receptive_fields() -> list[str]:
    """Names of the registered receptive-field rules."""
    return sorted(_RECEPTIVE_FIELDS)


def cable_rules() -> list[str]:
    return sorted(_CABLES)


def make_receptive_fields(
    rule: str | ReceptiveFieldRule | Connectivity,
    rng: np.random.Generator,
    geometry: InputGeometry,
    somata: int,
    dendrites: int,
    synapses: int,
) -> Connectivity:
    """The input → dendrite wiring a rule (a name, a function, or a ready Connectivity) gives,
    checked against the layer's sizes. A built-in rule is first checked against the memory
    available (:func:`~dendritic.wiring.budget.check_wiring_fits`), so a wiring that cannot fit
    is refused in one line rather than drawn until the process is killed."""
    n_dend = somata * dendrites
    if isinstance(rule, Connectivity):
        conn = rule
    else:
        fn = get_receptive_field(rule) if isinstance(rule, str) else rule
        builtin = next((name for known, name in _BUILTIN_FIELDS.items() if known is fn), None)
        if builtin is not None:
            if builtin != "all":
                _check_fan_in(geometry, synapses)
            check_wiring_fits(builtin, geometry, somata, dendrites, synapses)
        made = fn(rng, geometry, somata, dendrites, synapses)
        conn = made if isinstance(made, Connectivity) else Connectivity.from_table(made, geometry.n_inputs)
    if (conn.n_in, conn.n_out) != (geometry.n_inputs, n_dend):
        raise ValueError(
            f"receptive-field wiring connects {conn.n_in} inputs to {conn.n_out} dendrites; the layer "
            f"has {geometry.n_inputs} inputs and {somata} somata × {dendrites} dendrites = {n_dend}"
        )
    return conn


def make_cables(
    rule: str | CableRule | Connectivity, rng: np.random.Generator, somata: int, dendrites: int
) -> Connectivity:
    """The dendrite → soma wiring a rule (name, function or Connectivity) gives, size-checked."""
    if isinstance(rule, Connectivity):
        conn = rule
    else:
        fn = get_cable_rule(rule) if isinstance(rule, str) else rule
        conn = fn(rng, somata, dendrites)
    if (conn.n_in, conn.n_out) != (somata * dendrites, somata):
        raise ValueError(
            f"cable wiring connects {conn.n_in} dendrites to {conn.n_out} somata; the layer has "
            f"{somata * dendrites} dendrites and {somata} somata"
        )
    return conn


# ---------------------------------------------------------------------------- the paper's rules


def _check_fan_in(geometry: InputGeometry, synapses: int) -> None:
    if synapses * geometry.channels > geometry.n_inputs:
        raise ValueError(f"synapses={synapses} is larger than the input ({geometry.n_inputs} values)")


@register_receptive_field("local")
def local(
    rng: np.random.Generator, geometry: InputGeometry, somata: int, dendrites: int, synapses: int
) -> RuleWiring:
    """dANN-LRF: each dendrite its own random centre, synapses on a compact patch around it."""
    _check_fan_in(geometry, synapses)
    return sampling.local_rf_inputs(rng, geometry, somata * dendrites, synapses)


@register_receptive_field("global")
def global_(
    rng: np.random.Generator, geometry: InputGeometry, somata: int, dendrites: int, synapses: int
) -> RuleWiring:
    """dANN-GRF: one centre per soma; its dendrites' patches lie around it."""
    _check_fan_in(geometry, synapses)
    return sampling.global_rf_inputs(rng, geometry, somata, dendrites, synapses)


@register_receptive_field("random")
def random(
    rng: np.random.Generator, geometry: InputGeometry, somata: int, dendrites: int, synapses: int
) -> RuleWiring:
    """dANN-R: ``synapses × channels`` distinct inputs per dendrite, uniformly at random."""
    _check_fan_in(geometry, synapses)
    return sampling.random_inputs(rng, geometry.n_inputs, somata * dendrites, synapses * geometry.channels)


@register_receptive_field("scattered")
def scattered(
    rng: np.random.Generator, geometry: InputGeometry, somata: int, dendrites: int, synapses: int
) -> RuleWiring:
    """The reference's random wiring: connections uniform over the matrix, fan-in varies."""
    _check_fan_in(geometry, synapses)
    return sampling.scattered_inputs(rng, geometry.n_inputs, somata * dendrites, synapses * geometry.channels)


@register_receptive_field("all")
def all_inputs(
    rng: np.random.Generator, geometry: InputGeometry, somata: int, dendrites: int, synapses: int
) -> RuleWiring:
    """pdANN / vANN: every dendrite sees every input (``synapses`` is ignored)."""
    return Connectivity.all_to_all(geometry.n_inputs, somata * dendrites)


#: The built-in rules (by function, so a rule registered over a name is not mistaken for one),
#: whose memory :func:`~dendritic.wiring.budget.estimate_wiring_bytes` knows.
_BUILTIN_FIELDS: dict[Callable[..., Any], str] = {
    local: "local",
    global_: "global",
    random: "random",
    scattered: "scattered",
    all_inputs: "all",
}


@register_cable_rule("structured")
def structured(rng: np.random.Generator, somata: int, dendrites: int) -> Connectivity:
    """dANN: each soma sums only its own D dendrites."""
    return sampling.structured_somata(somata, dendrites)


@register_cable_rule("random")
def random_cables(rng: np.random.Generator, somata: int, dendrites: int) -> Connectivity:
    """sANN: D·S dendrite → soma connections placed uniformly at random."""
    return sampling.random_somata(rng, somata, dendrites)


@register_cable_rule("all")
def all_cables(rng: np.random.Generator, somata: int, dendrites: int) -> Connectivity:
    """vANN: every soma sums every dendrite."""
    return Connectivity.all_to_all(somata * dendrites, somata)
