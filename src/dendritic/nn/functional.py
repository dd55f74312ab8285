"""``dendritic.nn.functional``: the layers as functions of their weights and wiring (what the
modules call), like ``torch.nn.functional``. See :mod:`dendritic.layers.functional`."""

from dendritic.layers.functional import (
    CPP_DTYPES,
    dendritic_layer_t,
    eager_fast_path,
    fast_autograd_enabled,
    set_fast_autograd,
    sparse_linear,
    sparse_linear_t,
    transposed_wiring,
    uses_cpp,
)

__all__ = [
    "CPP_DTYPES",
    "dendritic_layer_t",
    "eager_fast_path",
    "fast_autograd_enabled",
    "set_fast_autograd",
    "sparse_linear",
    "sparse_linear_t",
    "transposed_wiring",
    "uses_cpp",
]
