"""Trainable-parameter counts: the real one, and the paper's closed forms (SPEC §7)."""

from __future__ import annotations

from torch import nn
from torch.nn.utils import parametrize

from dendritic.layers.sparse import MaskedLinear, SparseLinear
from dendritic.models.variants import resolve_name

__all__ = ["count_parameters", "paper_parameter_count"]


def count_parameters(model: nn.Module) -> int:
    """Real free parameters: existing connections plus biases.

    A masked-dense layer counts only its unmasked weights, so the oracle and the compact model
    agree; fixed weights (``requires_grad`` off, e.g. cable weights fixed at 1) do not count;
    any other parameter counts in full.
    """
    total = 0
    counted: set[int] = set()
    for module in model.modules():
        if isinstance(module, (SparseLinear, MaskedLinear)):
            # its weight (a parametrized one lives in a submodule) and bias; fixed weights do not count
            weight = module.n_connections if _trainable_weight(module) else 0
            total += weight + (0 if module.bias is None else module.bias.numel())
            counted.update(id(p) for p in module.parameters())
        else:
            own = [p for p in module.parameters(recurse=False) if id(p) not in counted]
            total += sum(p.numel() for p in own if p.requires_grad)
            counted.update(id(p) for p in own)
    return total


def _trainable_weight(module: SparseLinear | MaskedLinear) -> bool:
    if parametrize.is_parametrized(module, "weight"):
        original = module.get_parameter("parametrizations.weight.original")
        return bool(original.requires_grad)
    return bool(module.weight.requires_grad)


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
    fan_in = n_inputs if variant.receptive_field == "all" else synapses
    if variant.cables == "all":
        return ds * (fan_in + 1 + somata) + head
    return ds * (fan_in + 2) + head
