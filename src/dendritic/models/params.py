"""Trainable-parameter counts: the real one, and the paper's closed forms (SPEC §7)."""

from __future__ import annotations

from torch import nn

from dendritic.layers.sparse import MaskedLinear, SparseLinear
from dendritic.models.variants import resolve_name

__all__ = ["count_parameters", "paper_parameter_count"]


def count_parameters(model: nn.Module) -> int:
    """Real free parameters: existing connections plus biases.

    A masked-dense layer counts only its unmasked weights, so the oracle and the compact model
    agree; any other parameter counts in full.
    """
    total = 0
    for module in model.modules():
        own = list(module.parameters(recurse=False))
        if not own:
            continue
        if isinstance(module, (SparseLinear, MaskedLinear)):
            total += module.n_connections + (0 if module.bias is None else module.bias.numel())
        else:
            total += sum(p.numel() for p in own if p.requires_grad)
    return total


def paper_parameter_count(
    name: str,
    dendrites: int,
    somata: int,
    synapses: int = 16,
    n_inputs: int = 784,
    n_classes: int = 10,
) -> int:
    """The paper's closed form for one dendro-somatic layer (defaults: 28×28 inputs, 10 classes).

    dANN / sANN: (n_syn + 2)·D·S + (K + 1)·S + K;  vANN: D·S·(n_in + 1 + S) + (K + 1)·S + K;
    vANN-R/LRF/GRF: D·S·(n_syn + 1 + S) + …;  pdANN / psANN: (n_in + 2)·D·S + ….
    The reference applied the 28×28/10-class numbers to every dataset; pass ``n_inputs`` and
    ``n_classes`` (and ``synapses`` per dendrite, e.g. 48 for RGB receptive fields) to get the
    real count of other shapes.
    """
    variant, _ = resolve_name(name)
    ds = dendrites * somata
    head = (n_classes + 1) * somata + n_classes
    fan_in = n_inputs if variant.synapses == "dense" else synapses
    if variant.cables == "dense":
        return ds * (fan_in + 1 + somata) + head
    return ds * (fan_in + 2) + head
