"""Layers holding only real connections, plus the masked-dense oracle."""

from dendritic.layers.sparse import MaskedLinear, SparseLinear, glorot_limit

__all__ = ["MaskedLinear", "SparseLinear", "glorot_limit"]
