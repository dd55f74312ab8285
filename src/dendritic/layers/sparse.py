"""Layers that hold only real connections, and the masked-dense layer used as their test oracle.

Kernels (measured in ``benchmarks/bench_layers.py``, batch 128, one thread):

* ``bag`` — any sparse wiring: ``out[o] = Σ_c w[c] · h[indices[c]]`` over the feature-major
  input, by :func:`dendritic.layers.kernels.sparse_matmul_t` — a small C++ kernel compiled on
  first use (fused gradients), or ``F.embedding_bag`` over the transposed input (every input unit
  an embedding row of length B, every output a bag of its inputs, the weights as per-sample
  weights). Neither ever builds a (batch × connections) buffer; about 10× faster than a dense
  matmul at (D, S) = (16, 256).
* ``blocks`` — the dendrite → soma structure: each soma sums its own D dendrites. On the CPU
  the C++ kernel does it in one pass; elsewhere a reshape to (S, D, B), weight and sum.
* ``dense`` — all-to-all wiring: a plain ``F.linear``.

All weights are initialised Glorot-uniform on the *dense* shape (limit √(6/(n_in + n_out))) and
biases at zero, as in the reference, so results are comparable with the paper.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dendritic.layers.kernels import kernel_backend, sparse_matmul_t
from dendritic.wiring.connectivity import Connectivity

__all__ = ["SparseLinear", "MaskedLinear", "glorot_limit"]

KERNELS = ("auto", "bag", "blocks", "dense")


def glorot_limit(n_in: int, n_out: int) -> float:
    """Glorot-uniform bound computed on the dense (n_in, n_out) shape, as Keras does."""
    return math.sqrt(6.0 / (n_in + n_out))


class SparseLinear(nn.Module):
    """``y = x Wᵀ + b`` over the connections of a :class:`Connectivity` only.

    ``weight`` holds one value per real connection, in the connectivity's CSR order
    (output-major, inputs ascending); all-to-all wiring holds the usual ``(n_out, n_in)`` matrix.
    The wiring lives in buffers (``indices``, ``offsets``) so it is saved with the model.
    """

    def __init__(
        self,
        connectivity: Connectivity,
        *,
        kernel: str = "auto",
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        if kernel not in KERNELS:
            raise ValueError(f"unknown kernel {kernel!r}; choose one of {', '.join(KERNELS)}")
        self.in_features = connectivity.n_in
        self.out_features = connectivity.n_out
        self.connectivity = connectivity
        if kernel == "auto":
            if connectivity.is_all_to_all:
                kernel = "dense"
            elif connectivity.is_blocks:
                kernel = "blocks"
            else:
                kernel = "bag"
        if kernel == "dense" and not connectivity.is_all_to_all:
            raise ValueError("the dense kernel needs all-to-all wiring")
        if kernel == "blocks" and not connectivity.is_blocks:
            raise ValueError("the blocks kernel needs block (dendrite → soma) wiring")
        if kernel == "bag" and connectivity.is_all_to_all:
            raise ValueError("the bag kernel needs sparse wiring")
        self.kernel = kernel
        if connectivity.is_all_to_all:
            shape: tuple[int, ...] = (self.out_features, self.in_features)
            self.register_buffer("indices", torch.empty(0, dtype=torch.long), persistent=False)
            self.register_buffer("offsets", torch.empty(0, dtype=torch.long), persistent=False)
        else:
            shape = (connectivity.n_connections,)
            assert connectivity.indptr is not None and connectivity.indices is not None
            self.register_buffer("indices", torch.from_numpy(connectivity.indices.copy()))
            self.register_buffer("offsets", torch.from_numpy(connectivity.indptr[:-1].copy()))
        limit = glorot_limit(self.in_features, self.out_features)
        weight = torch.empty(shape).uniform_(-limit, limit, generator=generator)
        self.weight = nn.Parameter(weight)
        self.bias = nn.Parameter(torch.zeros(self.out_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(batch, n_in)`` → ``(batch, n_out)``, like ``nn.Linear``."""
        return self.forward_t(x.t().contiguous()).t()

    def forward_t(self, h: torch.Tensor) -> torch.Tensor:
        """Feature-major ``(n_in, batch)`` → ``(n_out, batch)``.

        Networks keep activations feature-major: the bag kernel reads its input that way, so no
        layer has to transpose, and every element-wise op sees contiguous memory.
        """
        if self.kernel == "dense":
            return torch.addmm(self.bias[:, None], self.weight, h)
        if self.kernel == "blocks" and not (h.device.type == "cpu" and kernel_backend() == "cpp"):
            # reshape-and-sum: each soma weights and sums its own D dendrites
            block = self.in_features // self.out_features
            weighted = h.view(self.out_features, block, -1) * self.weight.view(self.out_features, block, 1)
            return weighted.sum(dim=1) + self.bias[:, None]
        # bag (and blocks on the CPU, where the C++ kernel is faster than three elementwise passes):
        # the fused C++ kernel where it builds, else embedding_bag (see layers.kernels). The
        # product is a fresh tensor, so the bias is added in place.
        out = sparse_matmul_t(h, self.weight, self.indices, self.offsets, self.out_features)
        return out.add_(self.bias[:, None])

    @property
    def n_connections(self) -> int:
        return self.weight.numel()

    def dense_weight(self) -> torch.Tensor:
        """The ``(n_out, n_in)`` weight matrix with zeros where there is no connection."""
        if self.kernel == "dense":
            return self.weight.detach().clone()
        outputs, inputs = self.connectivity.pairs()
        dense = torch.zeros(self.out_features, self.in_features, dtype=self.weight.dtype)
        dense[torch.from_numpy(outputs), torch.from_numpy(inputs)] = self.weight.detach().cpu()
        return dense

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"connections={self.n_connections}, kernel={self.kernel}"
        )


class MaskedLinear(nn.Module):
    """A dense layer multiplied by a fixed 0/1 mask: the reference's method, kept as test oracle.

    Absent connections are zero in the forward pass and get zero gradient, so with Adam they
    never change — the same as not having them.
    """

    def __init__(self, connectivity: Connectivity, *, generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.in_features = connectivity.n_in
        self.out_features = connectivity.n_out
        mask = torch.from_numpy(np.ascontiguousarray(connectivity.to_mask(np.float32).T))
        self.register_buffer("mask", mask)
        limit = glorot_limit(self.in_features, self.out_features)
        weight = torch.empty(self.out_features, self.in_features).uniform_(-limit, limit, generator=generator)
        self.weight = nn.Parameter(weight * mask)
        self.bias = nn.Parameter(torch.zeros(self.out_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight * self.mask, self.bias)

    def forward_t(self, h: torch.Tensor) -> torch.Tensor:
        """Feature-major ``(n_in, batch)`` → ``(n_out, batch)``."""
        return torch.addmm(self.bias[:, None], self.weight * self.mask, h)

    @property
    def n_connections(self) -> int:
        return int(self.mask.sum().item())

    def dense_weight(self) -> torch.Tensor:
        return (self.weight * self.mask).detach().clone()

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, connections={self.n_connections}"
