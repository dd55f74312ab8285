"""Dendritic layers for any PyTorch model, in the style of ``torch.nn``.

::

    import torch
    from torch import nn
    from dendritic.nn import DendriticLayer

    model = nn.Sequential(
        DendriticLayer((1, 28, 28), somata=128, dendrites=8, synapses=16, receptive_field="local"),
        nn.Linear(128, 10),
    )
    logits = model(torch.rand(32, 1, 28, 28))

:class:`DendriticLayer` takes batch-major input of any leading shape, torchvision's ``(C, H, W)``
convention, any activation module, and runs on the fused C++ operators on the CPU (plain PyTorch
elsewhere); :class:`SparseLinear` is ``nn.Linear`` over a fixed sparse wiring. Receptive-field
and dendrite → soma rules are registries: :func:`register_receptive_field` adds one.
"""

from dendritic.layers.sparse import MaskedLinear, SparseLinear, WiringMismatchError
from dendritic.nn import functional
from dendritic.nn.layer import DEFAULT_SLOPE, DendriticLayer, unfused
from dendritic.nn.readout import READOUTS, class_readout, class_readout_wiring, soma_classes
from dendritic.nn.spec import CABLE_WEIGHTS, DendriticSpec
from dendritic.wiring.connectivity import Connectivity
from dendritic.wiring.geometry import InputGeometry
from dendritic.wiring.rules import (
    cable_rules,
    receptive_fields,
    register_cable_rule,
    register_receptive_field,
)

__all__ = [
    "CABLE_WEIGHTS",
    "DEFAULT_SLOPE",
    "Connectivity",
    "DendriticLayer",
    "DendriticSpec",
    "InputGeometry",
    "MaskedLinear",
    "READOUTS",
    "SparseLinear",
    "WiringMismatchError",
    "cable_rules",
    "class_readout",
    "class_readout_wiring",
    "functional",
    "receptive_fields",
    "register_cable_rule",
    "register_receptive_field",
    "soma_classes",
    "unfused",
]
