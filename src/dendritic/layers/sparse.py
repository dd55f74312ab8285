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
from typing import Any, cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from dendritic.errors import DendriticError
from dendritic.layers import functional as DF
from dendritic.layers.kernels import GRAD_BLOCK, n_blocks, transposed_wiring
from dendritic.wiring.connectivity import Connectivity
from dendritic.wiring.sampling import random_inputs

__all__ = [
    "GRAD_BLOCK",
    "INITS",
    "MaskedLinear",
    "SparseLinear",
    "WiringMismatchError",
    "check_init",
    "glorot_limit",
    "transposed_wiring",
]

KERNELS = ("auto", "bag", "blocks", "dense")
#: Initial weights: ``"glorot-dense"`` is Glorot-uniform over the layer's dense shape (Keras on
#: the reference's masked matrices: the paper's); ``"he-fan-in"`` is He-uniform over each unit's
#: real number of connections, which keeps the activity's scale through ReLU-like layers.
INITS = ("glorot-dense", "he-fan-in")
#: The transposed wiring the C++ input-gradient kernel reads: derived from ``indices`` and
#: ``offsets`` (never saved), rebuilt whenever they change.
_TABLES = ("t_starts", "t_rows", "t_perm", "t_fan_out")
#: Integer buffers that hold wiring: moved between devices with their values, never emptied.
_WIRING_BUFFERS = ("indices", "offsets", "centres", "mask", *_TABLES)
#: Buffers the fast path passes to its operator.
_FAST_BUFFERS = ("indices", "offsets", *_TABLES)


class WiringMismatchError(DendriticError, ValueError):
    """A state dict's wiring does not fit the layer it is loaded into (other sizes, indices
    outside the inputs, unsorted or repeated connections)."""


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
    weight = torch.empty(shape, device="cpu").uniform_(-limit, limit, generator=generator)
    if init == "he-fan-in":
        weight *= torch.sqrt(6.0 / fan_in.clamp(min=1).to(torch.float64)).to(weight.dtype) / limit
    return weight


def _write_weight(module: nn.Module, value: torch.Tensor) -> None:
    """Set ``module.weight`` to ``value`` in place, through its parametrization if it has one
    (e.g. positive cable weights: the stored tensor is softplus⁻¹ of the weight)."""
    weight = module.weight
    assert isinstance(weight, torch.Tensor)
    with torch.no_grad():
        if parametrize.is_parametrized(module, "weight"):
            parametrizations = cast(nn.ModuleDict, module.parametrizations)
            cast(Any, parametrizations["weight"]).right_inverse(value.to(weight.dtype))
        else:
            weight.copy_(value)


class _KeepsWiring(nn.Module):
    """Moves the wiring's buffers with the module and keeps their values.

    The wiring is data drawn on the CPU, not parameters: a module built on the ``meta`` device
    keeps it there on the CPU, and ``to_empty`` (which empties every other tensor) and ``.to()``
    carry it over unchanged, so a module built on ``meta`` and materialised holds its wiring.
    """

    def _apply(self, fn: Any, recurse: bool = True) -> Any:
        kept = {k: t for k, t in self._buffers.items() if k in _WIRING_BUFFERS and t is not None}
        super()._apply(fn, recurse)  # type: ignore[no-untyped-call]
        for name, old in kept.items():
            new = self._buffers[name]
            if new is None or old.device.type == "meta":
                continue
            self._buffers[name] = old if new.device.type == "meta" else old.to(new.device, new.dtype)
        return self

    def _tensor_ids(self) -> tuple[int, ...]:
        """Identities of the tensors the fast path passes, read from the module's own dicts (so
        an assignment, a move, a load or ``torch.func.functional_call``'s swap changes them). A
        cache that holds those tensors keeps them alive, so their ids cannot be reused."""
        p, b = self._parameters, self._buffers
        return tuple(id(p.get(name)) for name in ("weight", "bias")) + tuple(
            id(b.get(name)) for name in _FAST_BUFFERS
        )


class SparseLinear(_KeepsWiring):
    """``y = x Wᵀ + b`` over the connections of a :class:`Connectivity` only; like ``nn.Linear``
    it maps ``(*, in_features)`` to ``(*, out_features)``.

    ``weight`` holds one value per real connection, in the connectivity's CSR order
    (output-major, inputs ascending); all-to-all wiring (``connectivity=None``) holds the usual
    ``(out_features, in_features)`` matrix. The wiring lives in buffers (``indices``, ``offsets``,
    and ``centres`` where the rule placed receptive fields), so it is saved with the model and
    loading a state dict loads it too: everything derived from it (the kernel, the transposed
    tables of the backward, :attr:`connectivity`, :meth:`dense_weight`) follows. On the CPU the
    product is the ``dendritic::sparse_linear_t`` operator (C++, differentiable, traceable by
    ``torch.compile``), elsewhere plain PyTorch (:mod:`dendritic.nn.functional`).

    Build one from a rule with :meth:`random` or from a 0/1 matrix with :meth:`from_mask`.
    ``init`` (:data:`INITS`) picks the initial weights' rule: the paper's Glorot over the dense
    shape, or He over each output's real fan-in; :meth:`reset_parameters` draws them again.
    """

    indices: torch.Tensor | None
    offsets: torch.Tensor | None
    centres: torch.Tensor | None
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
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.init = check_init(init)
        if kernel not in KERNELS:
            raise ValueError(f"unknown kernel {kernel!r}; choose one of {', '.join(KERNELS)}")
        if connectivity is None:
            connectivity = Connectivity.all_to_all(in_features, out_features)
        if (connectivity.n_in, connectivity.n_out) != (in_features, out_features):
            raise ValueError(
                f"the connectivity joins {connectivity.n_in} inputs to {connectivity.n_out} outputs, "
                f"not {in_features} to {out_features}"
            )
        self.in_features = connectivity.n_in
        self.out_features = connectivity.n_out
        self.kernel_choice = kernel
        factory: dict[str, Any] = {"device": device, "dtype": dtype}
        if connectivity.is_all_to_all:
            shape: tuple[int, ...] = (self.out_features, self.in_features)
            for name in ("indices", "offsets", "centres"):
                self.register_buffer(name, None)
        else:
            shape = (connectivity.n_connections,)
            assert connectivity.indptr is not None and connectivity.indices is not None
            # The wiring is data drawn on the CPU: it stays there on the meta device (see _KeepsWiring).
            where = None if device is None or torch.device(device).type == "meta" else device
            self.register_buffer("indices", torch.tensor(connectivity.indices, device=where or "cpu"))
            self.register_buffer("offsets", torch.tensor(connectivity.indptr[:-1], device=where or "cpu"))
            centres = connectivity.centres
            self.register_buffer(
                "centres", None if centres is None else torch.tensor(centres, device=where or "cpu")
            )
        for name in _TABLES:
            self.register_buffer(name, torch.empty(0, dtype=torch.long), persistent=False)
        self.weight = nn.Parameter(torch.empty(shape, **factory))
        if bias:
            self.bias = nn.Parameter(torch.empty(self.out_features, **factory))
        else:
            self.register_parameter("bias", None)
        self._wiring_changed()
        self.reset_parameters(generator)

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
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> SparseLinear:
        """Every output connected to ``fan_in`` distinct inputs drawn uniformly (seeded)."""
        rng = np.random.default_rng(seed)
        conn = random_inputs(rng, in_features, out_features, fan_in)
        generator = torch.Generator().manual_seed(int(rng.integers(0, 2**62)))
        return cls(
            in_features,
            out_features,
            conn,
            bias=bias,
            init=init,
            generator=generator,
            device=device,
            dtype=dtype,
        )

    @classmethod
    def from_mask(
        cls,
        mask: torch.Tensor | np.ndarray,
        *,
        bias: bool = True,
        init: str = "glorot-dense",
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> SparseLinear:
        """From a 0/1 matrix shaped like ``nn.Linear``'s weight, ``(out_features, in_features)``."""
        array = mask.detach().cpu().numpy() if isinstance(mask, torch.Tensor) else np.asarray(mask)
        if array.ndim != 2:
            raise ValueError(f"a mask must be 2-D (out_features, in_features), got shape {array.shape}")
        conn = Connectivity.from_mask(array.T)
        return cls(
            conn.n_in, conn.n_out, conn, bias=bias, init=init, generator=generator, device=device, dtype=dtype
        )

    # ------------------------------------------------------------------ state
    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Draw the initial weights again over the current wiring (by :attr:`init`, from
        ``generator`` or torch's global generator) and zero the bias."""
        if self.weight.is_meta:
            return
        if self.indices is None:
            fan_in = torch.full((self.out_features, 1), float(self.in_features))
        else:  # each connection's unit's fan-in, in the weights' CSR order
            counts = self._fan_in().cpu()
            fan_in = torch.repeat_interleave(counts.to(torch.float64), counts)
        shape = tuple(self.weight.shape)
        _write_weight(
            self, _initial_weight(shape, fan_in, self.in_features, self.out_features, self.init, generator)
        )
        if self.bias is not None:
            with torch.no_grad():
                self.bias.zero_()

    def _fan_in(self) -> torch.Tensor:
        """Connections of every output (int64), from the wiring buffers."""
        assert self.indices is not None and self.offsets is not None
        ends = torch.cat([self.offsets[1:], self.offsets.new_tensor([self.indices.numel()])])
        return ends - self.offsets

    def _wiring_changed(self) -> None:
        """Derive what depends on the wiring: the kernel and the backward's transposed tables."""
        sparse, blocks = self.indices is not None, self._is_blocks()
        kernel = self.kernel_choice
        if kernel == "auto":
            kernel = "dense" if not sparse else "blocks" if blocks else "bag"
        if kernel == "dense" and sparse:
            raise ValueError("the dense kernel needs all-to-all wiring")
        if kernel == "blocks" and not blocks:
            raise ValueError("the blocks kernel needs block (dendrite → soma) wiring")
        if kernel == "bag" and not sparse:
            raise ValueError("the bag kernel needs sparse wiring")
        self.kernel = kernel
        nnz = self.indices.numel() if self.indices is not None else 0
        self.n_blocks = n_blocks(self.out_features, self.in_features, nnz)
        if self.indices is not None and self.offsets is not None:
            tables = DF.transposed_wiring(self.indices, self.offsets, self.in_features)
            for name, table in zip(_TABLES, tables, strict=True):
                setattr(self, name, table)

    def _is_blocks(self) -> bool:
        """Output ``o`` owns inputs ``o·k … o·k + k − 1`` (each soma its own dendrites)."""
        if self.indices is None or self.offsets is None or self.in_features % self.out_features:
            return False
        k = self.in_features // self.out_features
        return bool(
            self.indices.numel() == self.in_features
            and torch.equal(self.offsets.cpu(), torch.arange(0, self.in_features, k, device="cpu"))
            and torch.equal(self.indices.cpu(), torch.arange(self.in_features, device="cpu"))
        )

    def _load_from_state_dict(
        self,
        state_dict: dict[str, Any],
        prefix: str,
        local_metadata: dict[str, Any],
        strict: bool,
        missing_keys: list[str],
        unexpected_keys: list[str],
        error_msgs: list[str],
    ) -> None:
        """Load the wiring with the weights (checked first), then rebuild what derives from it."""
        if self.indices is not None and prefix + "indices" in state_dict and prefix + "offsets" in state_dict:
            self._check_wiring(state_dict[prefix + "indices"], state_dict[prefix + "offsets"], prefix)
            centres = state_dict.get(prefix + "centres")
            # Centres come and go with the wiring: a state without them leaves none behind.
            self.centres = None if centres is None else torch.empty_like(centres, device=self.indices.device)
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )
        self._wiring_changed()

    def _check_wiring(self, indices: Any, offsets: Any, prefix: str) -> None:
        where = f"{prefix.rstrip('.') or 'state dict'}: cannot load its wiring into {self._describe()}"
        if not isinstance(indices, torch.Tensor) or not isinstance(offsets, torch.Tensor):
            raise WiringMismatchError(f"{where}: indices and offsets must be tensors")
        if offsets.shape != (self.out_features,) or indices.shape != (self.n_connections,):
            raise WiringMismatchError(
                f"{where}: the state has {tuple(offsets.shape)[0] if offsets.dim() else '?'} outputs and "
                f"{indices.numel()} connections; build the layer with the same sizes"
            )
        if offsets.is_meta or indices.is_meta:
            return
        try:
            indptr = torch.cat([offsets.cpu(), offsets.new_tensor([indices.numel()]).cpu()])
            Connectivity.from_csr(self.in_features, self.out_features, indptr.numpy(), indices.cpu().numpy())
        except ValueError as error:
            raise WiringMismatchError(f"{where}: {error}") from None

    def _describe(self) -> str:
        return f"SparseLinear({self.in_features} → {self.out_features}, {self.n_connections} connections)"

    # ------------------------------------------------------------------ forward
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(*, in_features)`` → ``(*, out_features)``, like ``nn.Linear``."""
        if x.dim() == 0 or x.shape[-1] != self.in_features:
            raise ValueError(f"expected input of shape (*, {self.in_features}), got {tuple(x.shape)}")
        if DF.eager_fast_path():
            args = self._fast_args()
            if args is not None and x.is_cpu and x.dtype == args[0].dtype and x.dtype in DF.CPP_DTYPES:
                # One C++ call with its backward in C++: transposes, product, bias.
                flat = x if x.dim() == 2 else x.reshape(-1, self.in_features)
                fast: torch.Tensor = torch.ops.dendritic.sparse_linear_ad(flat, *args, True)
                return fast if x.dim() == 2 else fast.reshape(*x.shape[:-1], self.out_features)
        lead = x.shape[:-1]
        out = self.forward_t(x.reshape(-1, self.in_features).t().contiguous()).t()
        return out.reshape(*lead, self.out_features)

    def _fast_args(self) -> tuple[Any, ...] | None:
        """The arguments of ``dendritic::sparse_linear_ad`` after the input, or None where the
        C++ operators do not compute this layer (dense wiring, not built, ``DENDRITIC_KERNEL=bag``).

        Kept between calls while nothing they are made of changes (the same tensors, see
        :meth:`_tensor_ids`, and switches): a small batch's step is mostly such Python otherwise.
        A parametrized weight (positive cable weights) is computed afresh every call.
        """
        key = (self._tensor_ids(), type(self), DF.switches())
        cache = self.__dict__.get("_fast_cache")
        if cache is not None and cache[0] == key:
            cached: tuple[Any, ...] | None = cache[1]
            return cached
        args: tuple[Any, ...] | None = None
        if self.indices is not None and self.offsets is not None and DF._cpp_enabled():
            tables = DF._tables(self.indices, self.offsets, self.in_features, self.tables)
            args = (
                self.weight,
                self.bias,
                self.indices,
                self.offsets,
                *tables,
                self.out_features,
                self.n_blocks,
            )
        if not parametrize.is_parametrized(self):
            self.__dict__["_fast_cache"] = (key, args)
        return args

    def forward_t(self, h: torch.Tensor) -> torch.Tensor:
        """Feature-major ``(in_features, batch)`` → ``(out_features, batch)``.

        Networks keep activations feature-major: the sparse kernels read their input that way,
        so no layer has to transpose, and every element-wise op sees contiguous memory.
        """
        return DF.sparse_linear_t(
            h,
            self.weight,
            self.indices,
            self.offsets,
            self.bias,
            transposed=self.tables,
            blocks=self.kernel == "blocks",
        )

    @property
    def tables(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """The transposed wiring of the input-gradient kernel (derived buffers)."""
        return self.t_starts, self.t_rows, self.t_perm, self.t_fan_out

    # ------------------------------------------------------------------ inspection
    @property
    def n_connections(self) -> int:
        return self.weight.numel()

    @property
    def connectivity(self) -> Connectivity:
        """The wiring, read from the buffers (so it is always the loaded one)."""
        if self.indices is None or self.offsets is None:
            return Connectivity.all_to_all(self.in_features, self.out_features)
        indices = self.indices.cpu().numpy()
        indptr = np.append(self.offsets.cpu().numpy(), indices.size)
        conn = Connectivity(self.in_features, self.out_features, indptr, indices)
        return conn if self.centres is None else conn.with_centres(self.centres.cpu().numpy())

    def dense_weight(self) -> torch.Tensor:
        """The ``(n_out, n_in)`` weight matrix with zeros where there is no connection."""
        weight = self.weight.detach()
        if self.indices is None:
            return weight.clone()
        rows = torch.repeat_interleave(torch.arange(self.out_features, device=weight.device), self._fan_in())
        dense = weight.new_zeros(self.out_features, self.in_features)
        dense[rows, self.indices] = weight
        return dense.cpu()

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"connections={self.n_connections}, bias={self.bias is not None}, kernel={self.kernel}"
            + ("" if self.init == "glorot-dense" else f", init={self.init}")
        )


class MaskedLinear(_KeepsWiring):
    """A dense layer multiplied by a fixed 0/1 mask: the reference's method, kept as test oracle.

    Absent connections are zero in the forward pass and get zero gradient, so with Adam they
    never change — the same as not having them. The mask is a buffer: loading a state dict
    loads it with the weights.
    """

    mask: torch.Tensor

    def __init__(
        self,
        connectivity: Connectivity,
        *,
        init: str = "glorot-dense",
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.kernel = "masked"
        self.init = check_init(init)
        self.in_features = connectivity.n_in
        self.out_features = connectivity.n_out
        factory: dict[str, Any] = {"device": device, "dtype": dtype}
        mask = torch.from_numpy(np.ascontiguousarray(connectivity.to_mask(np.float32).T))
        self.register_buffer("mask", mask.to(**factory))
        self.weight = nn.Parameter(torch.empty(self.out_features, self.in_features, **factory))
        self.bias = nn.Parameter(torch.empty(self.out_features, **factory))
        self.reset_parameters(generator)

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Draw the initial weights again (zero where the mask is) and zero the bias."""
        if self.weight.is_meta:
            return
        mask = self.mask.detach().cpu().float()
        shape = (self.out_features, self.in_features)
        weight = _initial_weight(shape, mask.sum(dim=1, keepdim=True), *shape[::-1], self.init, generator)
        _write_weight(self, weight * mask)
        with torch.no_grad():
            self.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight * self.mask, self.bias)

    def forward_t(self, h: torch.Tensor) -> torch.Tensor:
        """Feature-major ``(n_in, batch)`` → ``(n_out, batch)``."""
        return torch.addmm(self.bias[:, None], self.weight * self.mask, h)

    @property
    def n_connections(self) -> int:
        return int(self.mask.sum().item())

    @property
    def connectivity(self) -> Connectivity:
        """The wiring the mask holds."""
        return Connectivity.from_mask(self.mask.detach().cpu().numpy().T)

    def dense_weight(self) -> torch.Tensor:
        return (self.weight * self.mask).detach().clone()

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, connections={self.n_connections}"
