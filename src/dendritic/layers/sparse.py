"""Layers that hold only real connections, and the masked-dense layer used as their test oracle.

Kernels of :class:`SparseLinear` (measured in ``benchmarks/bench_layers.py``):

* ``bag`` — any sparse wiring: ``out[o] = Σ_c w[c] · h[indices[c]]`` over the feature-major input.
  On the CPU the ``dendritic::sparse_linear_t`` operator (C++, with fused gradients; see
  :mod:`dendritic.layers.kernels`), elsewhere ``F.embedding_bag`` over the transposed input
  (every input unit an embedding row of length B, every output a bag of its inputs, the weights
  as per-sample weights). Neither ever builds a (batch × connections) buffer.
* ``blocks`` — the dendrite → soma structure: each soma sums its own D dendrites. On the CPU the
  same C++ operator; elsewhere a reshape to (S, D, B), weight and sum.
* ``dense`` — all-to-all wiring: a plain matrix product.

All weights are initialised Glorot-uniform on the *dense* shape (limit √(6/(n_in + n_out))) and
biases at zero, as in the reference, so results are comparable with the paper.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dendritic.layers.kernels import GRAD_BLOCK, kernel_backend, transposed_wiring
from dendritic.wiring.connectivity import Connectivity
from dendritic.wiring.sampling import random_inputs

__all__ = [
    "GRAD_BLOCK",
    "INITS",
    "MaskedLinear",
    "SparseLinear",
    "check_init",
    "glorot_limit",
    "transposed_wiring",
]

KERNELS = ("auto", "bag", "blocks", "dense")
#: Initial weights: ``"glorot-dense"`` is Glorot-uniform over the layer's dense shape (Keras on
#: the reference's masked matrices: the paper's); ``"he-fan-in"`` is He-uniform over each unit's
#: real number of connections, which keeps the activity's scale through ReLU-like layers.
INITS = ("glorot-dense", "he-fan-in")
_CPP_DTYPES = (torch.float32, torch.float64)
_TABLES = ("t_starts", "t_rows", "t_perm", "t_fan_out")


def glorot_limit(n_in: int, n_out: int) -> float:
    """Glorot-uniform bound computed on the dense (n_in, n_out) shape, as Keras does."""
    return math.sqrt(6.0 / (n_in + n_out))


def check_init(init: object) -> str:
    """``init`` if it names one of :data:`INITS`, else a one-line ``ValueError``."""
    if init not in INITS:
        raise ValueError(f"unknown init {init!r}; choose one of {', '.join(INITS)}")
    return str(init)


def _initial_weight(
    shape: tuple[int, ...],
    fan_in: torch.Tensor,
    n_in: int,
    n_out: int,
    init: str,
    generator: torch.Generator | None,
) -> torch.Tensor:
    """Uniform weights of ``shape`` by the rule ``init`` (checked by the caller); ``fan_in`` holds
    each weight's unit's number of connections.

    Both rules draw the same numbers from ``generator`` (the dense shape's Glorot bound, then
    He's rescaling per unit), so one seed gives the same wiring and the same weights up to a
    factor per unit whichever rule is chosen."""
    limit = glorot_limit(n_in, n_out)
    weight = torch.empty(shape).uniform_(-limit, limit, generator=generator)
    if init == "he-fan-in":
        weight *= torch.sqrt(6.0 / fan_in.clamp(min=1).to(torch.float64)).to(weight.dtype) / limit
    return weight


class SparseLinear(nn.Module):
    """``y = x Wᵀ + b`` over the connections of a :class:`Connectivity` only; like ``nn.Linear``
    it maps ``(*, in_features)`` to ``(*, out_features)``.

    ``weight`` holds one value per real connection, in the connectivity's CSR order
    (output-major, inputs ascending); all-to-all wiring (``connectivity=None``) holds the usual
    ``(out_features, in_features)`` matrix. The wiring lives in buffers (``indices``, ``offsets``),
    so it is saved with the model; on the CPU the product is the ``dendritic::sparse_linear_t``
    operator (C++, differentiable, traceable by ``torch.compile``), elsewhere plain PyTorch.

    Build one from a rule with :meth:`random` or from a 0/1 matrix with :meth:`from_mask`.
    ``init`` (:data:`INITS`) picks the initial weights' rule: the paper's Glorot over the dense
    shape, or He over each output's real fan-in.
    """

    indices: torch.Tensor
    offsets: torch.Tensor
    t_starts: torch.Tensor
    t_rows: torch.Tensor
    t_perm: torch.Tensor
    t_fan_out: torch.Tensor

    def __init__(
        self,
        in_features: int,
        out_features: int,
        connectivity: Connectivity | None = None,
        *,
        bias: bool = True,
        kernel: str = "auto",
        init: str = "glorot-dense",
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        self.init = check_init(init)
        if connectivity is None:
            connectivity = Connectivity.all_to_all(in_features, out_features)
        if (connectivity.n_in, connectivity.n_out) != (in_features, out_features):
            raise ValueError(
                f"the connectivity joins {connectivity.n_in} inputs to {connectivity.n_out} outputs, "
                f"not {in_features} to {out_features}"
            )
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
        # The C++ operator where it is built (decided once: forward must not consult the
        # environment while torch.compile traces it), with its transposed wiring.
        self.cpp = kernel != "dense" and kernel_backend() == "cpp"
        self.n_blocks = (self.out_features + GRAD_BLOCK - 1) // GRAD_BLOCK
        tables = transposed_wiring(self.indices, self.offsets, self.in_features) if self.cpp else ()
        for name, table in zip(_TABLES, tables or [torch.empty(0, dtype=torch.long)] * 4, strict=True):
            self.register_buffer(name, table, persistent=False)
        if connectivity.is_all_to_all:
            fan_in = torch.full((self.out_features, 1), float(self.in_features))
        else:  # each connection's unit's fan-in, in the weights' CSR order
            assert connectivity.indptr is not None
            counts = torch.from_numpy(np.diff(connectivity.indptr))
            fan_in = torch.repeat_interleave(counts.to(torch.float64), counts)
        self.weight = nn.Parameter(
            _initial_weight(shape, fan_in, self.in_features, self.out_features, init, generator)
        )
        if bias:
            self.bias = nn.Parameter(torch.zeros(self.out_features))
        else:
            self.register_parameter("bias", None)

    # ------------------------------------------------------------------ constructors
    @classmethod
    def random(
        cls,
        in_features: int,
        out_features: int,
        fan_in: int,
        *,
        seed: int | None = None,
        bias: bool = True,
        init: str = "glorot-dense",
    ) -> SparseLinear:
        """Every output connected to ``fan_in`` distinct inputs drawn uniformly (seeded)."""
        rng = np.random.default_rng(seed)
        conn = random_inputs(rng, in_features, out_features, fan_in)
        generator = torch.Generator().manual_seed(int(rng.integers(0, 2**62)))
        return cls(in_features, out_features, conn, bias=bias, init=init, generator=generator)

    @classmethod
    def from_mask(
        cls,
        mask: torch.Tensor | np.ndarray,
        *,
        bias: bool = True,
        init: str = "glorot-dense",
        generator: torch.Generator | None = None,
    ) -> SparseLinear:
        """From a 0/1 matrix shaped like ``nn.Linear``'s weight, ``(out_features, in_features)``."""
        array = mask.detach().cpu().numpy() if isinstance(mask, torch.Tensor) else np.asarray(mask)
        if array.ndim != 2:
            raise ValueError(f"a mask must be 2-D (out_features, in_features), got shape {array.shape}")
        conn = Connectivity.from_mask(array.T)
        return cls(conn.n_in, conn.n_out, conn, bias=bias, init=init, generator=generator)

    # ------------------------------------------------------------------ forward
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(*, in_features)`` → ``(*, out_features)``, like ``nn.Linear``."""
        if x.dim() == 0 or x.shape[-1] != self.in_features:
            raise ValueError(f"expected input of shape (*, {self.in_features}), got {tuple(x.shape)}")
        lead = x.shape[:-1]
        out = self.forward_t(x.reshape(-1, self.in_features).t().contiguous()).t()
        return out.reshape(*lead, self.out_features)

    def forward_t(self, h: torch.Tensor) -> torch.Tensor:
        """Feature-major ``(in_features, batch)`` → ``(out_features, batch)``.

        Networks keep activations feature-major: the sparse kernels read their input that way,
        so no layer has to transpose, and every element-wise op sees contiguous memory.
        """
        if self.kernel == "dense":
            if self.bias is None:
                return self.weight @ h
            return torch.addmm(self.bias[:, None], self.weight, h)
        out: torch.Tensor
        if self.cpp and h.is_cpu and h.dtype in _CPP_DTYPES and self.weight.dtype == h.dtype:
            out = torch.ops.dendritic.sparse_linear_t(
                h.contiguous(),
                self.weight,
                self.indices,
                self.offsets,
                self.t_starts,
                self.t_rows,
                self.t_perm,
                self.t_fan_out,
                self.out_features,
                self.n_blocks,
            )
        elif self.kernel == "blocks":
            # reshape-and-sum: each soma weights and sums its own D dendrites
            block = self.in_features // self.out_features
            out = (h.view(self.out_features, block, -1) * self.weight.view(self.out_features, block, 1)).sum(
                dim=1
            )
        else:
            out = F.embedding_bag(self.indices, h, self.offsets, mode="sum", per_sample_weights=self.weight)
        # The product is a fresh tensor its backward does not need: the bias is added in place.
        return out if self.bias is None else out.add_(self.bias[:, None])

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
            f"connections={self.n_connections}, bias={self.bias is not None}, kernel={self.kernel}"
            + ("" if self.init == "glorot-dense" else f", init={self.init}")
        )


class MaskedLinear(nn.Module):
    """A dense layer multiplied by a fixed 0/1 mask: the reference's method, kept as test oracle.

    Absent connections are zero in the forward pass and get zero gradient, so with Adam they
    never change — the same as not having them.
    """

    mask: torch.Tensor

    def __init__(
        self,
        connectivity: Connectivity,
        *,
        init: str = "glorot-dense",
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        self.kernel = "masked"
        self.init = check_init(init)
        self.in_features = connectivity.n_in
        self.out_features = connectivity.n_out
        mask = torch.from_numpy(np.ascontiguousarray(connectivity.to_mask(np.float32).T))
        self.register_buffer("mask", mask)
        shape = (self.out_features, self.in_features)
        weight = _initial_weight(shape, mask.sum(dim=1, keepdim=True), *shape[::-1], init, generator)
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
