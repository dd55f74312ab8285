"""``DendriticLayer``: dendrites that each sample a few inputs, then somata that each sum their
own dendrites — the dendro-somatic layer of Chavlis & Poirazi (2025), as a drop-in module."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from dendritic.layers.kernels import feature_major, fusion_enabled
from dendritic.layers.sparse import GRAD_BLOCK, MaskedLinear, SparseLinear, check_init
from dendritic.wiring.connectivity import Connectivity
from dendritic.wiring.geometry import InputGeometry
from dendritic.wiring.rules import CableRule, ReceptiveFieldRule, make_cables, make_receptive_fields

__all__ = ["CABLE_WEIGHTS", "DEFAULT_SLOPE", "DendriticLayer", "seeded"]

#: Leaky-ReLU slope of the paper's dendrites and somata.
DEFAULT_SLOPE = 0.1
_CPP_DTYPES = (torch.float32, torch.float64)


def seeded(seed: int) -> tuple[np.random.Generator, torch.Generator]:
    """One seed → the wiring's generator and an independent one for the initial weights."""
    wiring_seq, weight_seq = np.random.SeedSequence(int(seed)).spawn(2)
    weight_seed = int(weight_seq.generate_state(1, np.uint64)[0] >> 1)
    return np.random.default_rng(wiring_seq), torch.Generator().manual_seed(weight_seed)


def _leaky_slope(module: nn.Module) -> float | None:
    """The slope of a plain ``nn.LeakyReLU`` (the activation the fused kernel computes), else None."""
    if type(module) is nn.LeakyReLU and 0.0 < module.negative_slope < 1.0:
        return float(module.negative_slope)
    return None


class DendriticLayer(nn.Module):
    """``(*, *input_shape)`` → ``(*, somata)``: ``somata × dendrites`` dendrites, each with
    ``synapses`` synapses per channel on its receptive field, an activation, then somata that sum
    their dendrites (through learned "cable" weights) and an activation.

    Args:
        input_shape: per-sample shape in torchvision's convention — ``n`` or ``(L,)`` (a feature
            vector), ``(C, L)``, ``(C, H, W)``, ``(C, D, H, W)``; ``channels_last=True`` reads
            ``(H, W, C)``-style shapes instead. Receptive fields live on the grid; the channels of
            a site share its synapses.
        somata: S, the layer's outputs.
        dendrites: D, dendrites per soma.
        synapses: synapses per dendrite and channel (the paper: 16).
        receptive_field: how synapses pick inputs: ``"local"`` (each dendrite its own patch, the
            paper's dANN-LRF), ``"global"`` (one region per soma, dANN-GRF), ``"random"`` (dANN-R),
            ``"scattered"``, ``"all"`` (dense, pdANN/vANN), any name registered with
            :func:`dendritic.wiring.register_receptive_field`, a function, or a ready
            :class:`Connectivity`.
        cables: dendrite → soma rule: ``"structured"`` (each soma its own D dendrites, the
            dANNs), ``"random"`` (sANN), ``"all"`` (vANN), a registered name, a function or a
            :class:`Connectivity`.
        activation: module applied to dendrites and somata (default ``nn.LeakyReLU(0.1)``);
            ``dendrite_activation`` / ``soma_activation`` set one of them.
        dropout: dropout on the dendrites' activations (before the somata sum them).
        bias: learn a bias per dendrite and per soma.
        branches: B, branches per dendrite: each branch has ``synapses`` synapses and its own
            nonlinearity, and each dendrite sums its B branches (learned weights) before its own
            (a two-level dendritic tree). ``1`` (default) is the paper's dendrite. The
            receptive-field rule places the S·D·B branches as it places dendrites.
        cable_weights: the dendrite → soma weights: ``"learned"`` (the paper), ``"ones"``
            (fixed at 1), ``"random"`` (fixed, random positive), ``"positive"`` (learned, kept
            positive through a softplus).
        init: the initial weights: ``"glorot-dense"`` (the paper's: Glorot-uniform over each
            stage's dense shape, which shrinks the activity in sparse layers) or ``"he-fan-in"``
            (He-uniform over each unit's real number of connections, which keeps it).
        seed: fixes the wiring and the initial weights (a fresh seed, kept in ``self.seed``, if
            None); ``generator`` (a ``numpy.random.Generator``) draws both instead.

    The dendrites' activations are the output of the ``dendrite_activation`` submodule (a
    forward hook on it sees them) or, with ``forward(x, return_dendrites=True)``, returned. On the
    CPU, when both activations are ``nn.LeakyReLU`` with one slope, the cables are structured and
    no hook is attached, the whole layer runs as the fused ``dendritic::dendritic_layer_t``
    operator (forward and backward each one C++ pass); the results are the same.
    """

    branches: SparseLinear | MaskedLinear | None
    dendrites: SparseLinear | MaskedLinear
    somata: SparseLinear | MaskedLinear

    def __init__(
        self,
        input_shape: int | Sequence[int],
        somata: int,
        dendrites: int = 16,
        synapses: int = 16,
        *,
        receptive_field: str | ReceptiveFieldRule | Connectivity = "local",
        cables: str | CableRule | Connectivity = "structured",
        activation: nn.Module | None = None,
        dendrite_activation: nn.Module | None = None,
        soma_activation: nn.Module | None = None,
        dropout: float = 0.0,
        bias: bool = True,
        branches: int = 1,
        cable_weights: str = "learned",
        init: str = "glorot-dense",
        channels_last: bool = False,
        seed: int | None = None,
        generator: np.random.Generator | None = None,
        oracle: bool = False,
    ) -> None:
        super().__init__()
        for name, value in (
            ("somata", somata),
            ("dendrites", dendrites),
            ("synapses", synapses),
            ("branches", branches),
        ):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        geometry = InputGeometry.from_shape(input_shape, channels_last=channels_last)
        if generator is None:
            if seed is None:
                seed = int(np.random.SeedSequence().generate_state(1)[0])
            rng, weights = seeded(seed)
        else:
            rng = generator
            weights = torch.Generator().manual_seed(int(rng.integers(0, 2**62)))
        self.seed = seed
        inputs = make_receptive_fields(
            receptive_field, rng, geometry, int(somata), int(dendrites) * int(branches), int(synapses)
        )
        wiring = make_cables(cables, rng, int(somata), int(dendrites))
        self._build(
            geometry,
            inputs,
            wiring,
            branch_cables=branch_cables(int(somata) * int(dendrites), int(branches)),
            cable_weights=cable_weights,
            init=init,
            activation=activation,
            dendrite_activation=dendrite_activation,
            soma_activation=soma_activation,
            dropout=float(dropout),
            bias=bias,
            generator=weights,
            oracle=oracle,
        )
        self.synapses = int(synapses)

    @classmethod
    def from_wiring(
        cls,
        input_shape: int | Sequence[int] | InputGeometry,
        inputs: Connectivity,
        cables: Connectivity,
        *,
        branch_cables: Connectivity | None = None,
        cable_weights: str = "learned",
        init: str = "glorot-dense",
        activation: nn.Module | None = None,
        dropout: float = 0.0,
        bias: bool = True,
        channels_last: bool = False,
        generator: torch.Generator | None = None,
        oracle: bool = False,
        kernel: str = "auto",
    ) -> DendriticLayer:
        """A layer with exactly this wiring (input → dendrite, dendrite → soma; with
        ``branch_cables``, input → branch, branch → dendrite, dendrite → soma); ``generator``
        draws the initial weights (in forward order)."""
        geometry = (
            input_shape
            if isinstance(input_shape, InputGeometry)
            else InputGeometry.from_shape(input_shape, channels_last=channels_last)
        )
        layer = cls.__new__(cls)
        nn.Module.__init__(layer)
        layer.seed = None
        layer._build(
            geometry,
            inputs,
            cables,
            branch_cables=branch_cables,
            cable_weights=cable_weights,
            init=init,
            activation=activation,
            dropout=dropout,
            bias=bias,
            generator=generator,
            oracle=oracle,
            kernel=kernel,
        )
        fan_in = inputs.uniform_fan_in
        layer.synapses = fan_in // geometry.channels if fan_in is not None and not inputs.is_all_to_all else 0
        return layer

    def _build(
        self,
        geometry: InputGeometry,
        inputs: Connectivity,
        cables: Connectivity,
        *,
        branch_cables: Connectivity | None = None,
        cable_weights: str = "learned",
        init: str = "glorot-dense",
        activation: nn.Module | None = None,
        dendrite_activation: nn.Module | None = None,
        soma_activation: nn.Module | None = None,
        dropout: float = 0.0,
        bias: bool = True,
        generator: torch.Generator | None = None,
        oracle: bool = False,
        kernel: str = "auto",
    ) -> None:
        check_cable_weights(cable_weights)
        check_init(init)
        if inputs.n_in != geometry.n_inputs:
            raise ValueError(
                f"the input wiring expects {inputs.n_in} inputs; {geometry} has {geometry.n_inputs}"
            )
        if branch_cables is not None and branch_cables.uniform_fan_in == 1 and branch_cables.is_blocks:
            branch_cables = None  # one branch per dendrite: the branch is the dendrite
        dendrite_inputs = inputs if branch_cables is None else branch_cables
        if branch_cables is not None and (branch_cables.n_in != inputs.n_out or not branch_cables.is_blocks):
            raise ValueError(
                f"the branch wiring must give each dendrite its own branches of the {inputs.n_out} "
                f"the input wiring makes, got {branch_cables.n_in} → {branch_cables.n_out}"
            )
        if cables.n_in != dendrite_inputs.n_out:
            raise ValueError(
                f"the cables join {cables.n_in} dendrites, the input wiring makes {dendrite_inputs.n_out}"
            )
        self.geometry = geometry
        self.input_shape = geometry.shape
        self.in_features = geometry.n_inputs
        self.n_dendrites = dendrite_inputs.n_out
        self.somata_count = cables.n_out
        self.dendrites_per_soma = self.n_dendrites // cables.n_out if cables.is_blocks else None
        self.branch_count = 1 if branch_cables is None else inputs.n_out // branch_cables.n_out
        self.cable_weights = cable_weights
        self.init = init
        self.wiring = (inputs, cables) if branch_cables is None else (inputs, branch_cables, cables)

        def layer(conn: Connectivity) -> SparseLinear | MaskedLinear:
            if oracle:
                return MaskedLinear(conn, init=init, generator=generator)
            chosen = "dense" if kernel != "auto" and conn.is_all_to_all else kernel
            if chosen == "blocks" and not conn.is_blocks:
                chosen = "bag"
            return SparseLinear(
                conn.n_in, conn.n_out, conn, bias=bias, kernel=chosen, init=init, generator=generator
            )

        base = activation if activation is not None else nn.LeakyReLU(DEFAULT_SLOPE)
        if branch_cables is None:
            self.branches = None
        else:
            self.branches = layer(inputs)
            self.branch_activation = copy.deepcopy(base)
        self.dendrites = layer(dendrite_inputs)
        self.dendrite_activation = (
            dendrite_activation if dendrite_activation is not None else copy.deepcopy(base)
        )
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.somata = layer(cables)
        _set_cable_weights(self.somata, cable_weights)
        self.soma_activation = soma_activation if soma_activation is not None else copy.deepcopy(base)
        first = self.branches if self.branches is not None else self.dendrites
        self.n_blocks = (first.out_features + GRAD_BLOCK - 1) // GRAD_BLOCK

    # ------------------------------------------------------------------ properties
    @property
    def out_features(self) -> int:
        return self.somata_count

    @property
    def fusable(self) -> bool:
        """Whether the fused C++ pass computes the layer's first two stages (synapses → dendrites
        → somata, or synapses → branches → dendrites): sparse synapses, each unit of the second
        stage summing its own, no dropout between them, one leaky-ReLU slope for both
        activations."""
        if self.branches is None:
            pair = (self.dendrites, self.dendrite_activation, self.somata, self.soma_activation)
            between: nn.Module = self.dropout
        else:
            pair = (self.branches, self.branch_activation, self.dendrites, self.dendrite_activation)
            between = nn.Identity()
        first, first_act, second, second_act = pair
        slope = _leaky_slope(first_act)
        return (
            isinstance(first, SparseLinear)
            and isinstance(second, SparseLinear)
            and first.kernel == "bag"
            and second.kernel == "blocks"
            and first.cpp
            and first.bias is not None
            and second.bias is not None
            and isinstance(between, nn.Identity)
            and slope is not None
            and slope == _leaky_slope(second_act)
            and fusion_enabled()
        )

    @property
    def is_plain(self) -> bool:
        """The paper's layer: one branch per dendrite, learned cable weights."""
        return self.branches is None and self.cable_weights == "learned"

    def _hooked(self) -> bool:
        """A hook on a part of the layer must see its tensors: then the layer runs part by part."""
        parts: tuple[nn.Module, ...] = (
            self.dendrites,
            self.dendrite_activation,
            self.somata,
            self.soma_activation,
        )
        if self.branches is not None:
            parts = (self.branches, self.branch_activation, *parts)
        return any(m._forward_hooks or m._forward_pre_hooks for m in parts) or bool(
            nn.modules.module._global_forward_hooks or nn.modules.module._global_forward_pre_hooks
        )

    # ------------------------------------------------------------------ forward
    def _flatten(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, ...]]:
        shape = self.input_shape
        if x.dim() >= len(shape) and tuple(x.shape[x.dim() - len(shape) :]) == shape:
            lead = tuple(x.shape[: x.dim() - len(shape)])
        elif x.dim() >= 1 and x.shape[-1] == self.in_features:
            lead = tuple(x.shape[:-1])
        else:
            raise ValueError(
                f"expected input of shape (*, {', '.join(map(str, shape))}) or (*, {self.in_features}), "
                f"got {tuple(x.shape)}"
            )
        return x.reshape(-1, self.in_features), lead

    def forward(
        self, x: torch.Tensor, return_dendrites: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Somata ``(*, S)`` (and, with ``return_dendrites``, the dendrites' activations
        ``(*, S·D)``) of an input ``(*, *input_shape)`` or ``(*, in_features)``."""
        flat, lead = self._flatten(x)
        if self._hooked() or (return_dendrites and torch.is_grad_enabled()):
            # Part by part, batch-major: hooks see (batch, units) tensors, and gradients flow
            # through returned dendrites.
            z = flat if self.branches is None else self.branch_activation(self.branches(flat))
            dend: torch.Tensor | None = self.dendrite_activation(self.dendrites(z))
            out: torch.Tensor = self.soma_activation(self.somata(self.dropout(dend)))
        else:
            out_t, dend_t = self.forward_t(feature_major(flat), keep_dendrites=return_dendrites)
            out = out_t.t()
            dend = dend_t.t() if dend_t is not None else None
        out = out.reshape(*lead, self.somata_count)
        if return_dendrites:
            assert dend is not None
            return out, dend.reshape(*lead, self.n_dendrites)
        return out

    def forward_t(
        self, h: torch.Tensor, keep_dendrites: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Feature-major ``(in_features, B)`` → (somata ``(S, B)``, dendrites ``(S·D, B)`` or None).

        What networks call between layers (no transposes); the dendrites are returned when
        ``keep_dendrites`` (not differentiable on the fused path).
        """
        first = self.dendrites if self.branches is None else self.branches
        fused = self.fusable and h.is_cpu and h.dtype in _CPP_DTYPES and first.weight.dtype == h.dtype
        if self.branches is None:
            if fused:
                return self._fused_pair(h, self.dendrites, self.somata, keep_dendrites)
            dend = self._activate(self.dendrite_activation, self.dendrites.forward_t(h))
        elif fused:
            dend, _ = self._fused_pair(h, self.branches, self.dendrites, False)
        else:
            z = self._activate(self.branch_activation, self.branches.forward_t(h))
            dend = self._activate(self.dendrite_activation, self.dendrites.forward_t(z))
        out = self._activate(self.soma_activation, self.somata.forward_t(self.dropout(dend)))
        return out, (dend if keep_dendrites else None)

    def _fused_pair(
        self,
        h: torch.Tensor,
        first: SparseLinear | MaskedLinear,
        second: SparseLinear | MaskedLinear,
        keep_inner: bool,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Two stages in one ``dendritic::dendritic_layer_t`` call: sparse synapses + leaky-ReLU,
        then each unit of ``second`` summing its own block + leaky-ReLU. Returns (second's
        activations, first's activations when ``keep_inner``, not differentiable)."""
        # fusable: both are SparseLinear (never the masked oracle)
        d, s = cast(SparseLinear, first), cast(SparseLinear, second)
        need_grad = torch.is_grad_enabled() and (
            h.requires_grad or any(p.requires_grad for p in (d.weight, d.bias, s.weight, s.bias))
        )
        out, inner = torch.ops.dendritic.dendritic_layer_t(
            h.contiguous(),
            d.weight,
            d.indices,
            d.offsets,
            d.t_starts,
            d.t_rows,
            d.t_perm,
            d.t_fan_out,
            d.n_blocks,
            d.bias,
            s.weight,
            s.bias,
            d.out_features // s.out_features,
            _leaky_slope(self.dendrite_activation),
            keep_inner or need_grad,
        )
        return out, (inner if keep_inner else None)

    @staticmethod
    def _activate(activation: nn.Module, z: torch.Tensor) -> torch.Tensor:
        # A layer's product is a fresh tensor its backward does not need: leaky-ReLU may overwrite it.
        slope = _leaky_slope(activation)
        if slope is not None and not activation._forward_hooks:
            return F.leaky_relu(z, slope, inplace=True)
        out: torch.Tensor = activation(z)
        return out

    # ------------------------------------------------------------------ inspection
    def masks(self) -> tuple[np.ndarray, np.ndarray]:
        """Dense 0/1 masks (input → dendrite ``(n_in, S·D)``, dendrite → soma ``(S·D, S)``)."""
        return self.wiring[0].to_mask(), self.wiring[1].to_mask()

    def extra_repr(self) -> str:
        d = f", dendrites={self.dendrites_per_soma}" if self.dendrites_per_soma else ""
        syn = f", synapses={self.synapses}" if self.synapses else ""
        more = f", branches={self.branch_count}" if self.branch_count > 1 else ""
        if self.cable_weights != "learned":
            more += f", cable_weights={self.cable_weights}"
        if self.init != "glorot-dense":
            more += f", init={self.init}"
        return f"input_shape={self.input_shape}, somata={self.somata_count}{d}{syn}{more}"


CABLE_WEIGHTS = ("learned", "ones", "random", "positive")


def check_cable_weights(mode: str) -> None:
    if mode not in CABLE_WEIGHTS:
        raise ValueError(f"unknown cable_weights {mode!r}; choose one of {', '.join(CABLE_WEIGHTS)}")


def branch_cables(n_dendrites: int, branches: int) -> Connectivity | None:
    """Branch → dendrite wiring: each dendrite sums its own ``branches`` branches (None for 1)."""
    return None if branches == 1 else Connectivity.blocks(n_dendrites, branches)


class Softplus(nn.Module):
    """``softplus(w)``: a parametrization that keeps learned weights positive."""

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return F.softplus(w)

    def right_inverse(self, w: torch.Tensor) -> torch.Tensor:
        # softplus⁻¹(|w|) = log(expm1(|w|)), with |w| kept away from 0 (masked entries of the
        # oracle are 0 and stay 0 through the mask).
        return torch.log(torch.expm1(w.abs().clamp_min(1e-6)))


def _set_cable_weights(somata: SparseLinear | MaskedLinear, mode: str) -> None:
    """The dendrite → soma weights of ``mode`` (see ``DendriticLayer``), applied to freshly
    initialised weights."""
    if mode == "learned":
        return
    with torch.no_grad():
        if mode == "ones":
            ones = somata.mask if isinstance(somata, MaskedLinear) else torch.ones_like(somata.weight)
            somata.weight.copy_(ones)
        elif mode == "random":
            somata.weight.abs_()
    if mode in ("ones", "random"):
        somata.weight.requires_grad_(False)
    elif mode == "positive":
        parametrize.register_parametrization(somata, "weight", Softplus())
