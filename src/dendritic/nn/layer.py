"""``DendriticLayer``: dendrites that each sample a few inputs, then somata that each sum their
own dendrites — the dendro-somatic layer of Chavlis & Poirazi (2025), as a drop-in module."""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator, Sequence
from typing import Any, cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from dendritic.layers import functional as DF
from dendritic.layers.kernels import feature_major, fusion_enabled
from dendritic.layers.sparse import MaskedLinear, SparseLinear
from dendritic.nn.spec import CABLE_WEIGHTS, DendriticSpec, Rule, check_choice
from dendritic.wiring.connectivity import Connectivity
from dendritic.wiring.geometry import InputGeometry
from dendritic.wiring.rules import make_cables, make_receptive_fields

__all__ = ["CABLE_WEIGHTS", "DEFAULT_SLOPE", "DendriticLayer", "branch_cables", "seeded", "unfused"]

#: Leaky-ReLU slope of the paper's dendrites and somata.
DEFAULT_SLOPE = 0.1
#: State-dict names of the layer's parts before version 2 (``somata`` was a submodule then).
_LEGACY_NAMES = {"branches.": "branch_linear.", "dendrites.": "dendrite_linear.", "somata.": "soma_linear."}

Stage = SparseLinear | MaskedLinear


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


def branch_cables(n_dendrites: int, branches: int) -> Connectivity | None:
    """Branch → dendrite wiring: each dendrite sums its own ``branches`` branches (None for 1)."""
    return None if branches == 1 else Connectivity.blocks(n_dendrites, branches)


class DendriticLayer(nn.Module):
    """``(*, *input_shape)`` → ``(*, somata)``: ``somata × dendrites`` dendrites, each with
    ``synapses`` synapses per channel on its receptive field, an activation, then somata that sum
    their dendrites (through learned "cable" weights) and an activation.

    Args:
        input_shape: per-sample shape in torchvision's convention — ``n`` or ``(L,)`` (a feature
            vector), ``(C, L)``, ``(C, H, W)``, ``(C, D, H, W)``; ``channels_last=True`` reads
            ``(H, W, C)``-style shapes instead. Receptive fields live on the grid; the channels of
            a site share its synapses.
        somata, dendrites, synapses, receptive_field, cables, branches, cable_weights, init,
            dropout, bias: the layer's :class:`~dendritic.nn.DendriticSpec` (see there); or pass
            ``spec=`` whole. ``receptive_field`` is ``"local"`` (dANN-LRF), ``"global"``
            (dANN-GRF), ``"random"`` (dANN-R), ``"scattered"``, ``"all"`` (dense), a registered
            name, a function or a :class:`Connectivity`; ``cables`` is ``"structured"`` (dANNs),
            ``"random"`` (sANN), ``"all"`` (vANN), ...
        activation: module applied to dendrites and somata (default ``nn.LeakyReLU(0.1)``);
            ``dendrite_activation`` / ``soma_activation`` set one of them.
        seed: fixes the wiring and the initial weights (a fresh seed, kept in ``self.seed``, if
            None and no ``rng``); ``rng`` (a ``numpy.random.Generator``) draws the wiring instead
            and ``generator`` (a ``torch.Generator``) the initial weights.
        wiring: the exact wiring instead of drawing it: ``(input → dendrites, dendrites →
            somata)``, or with branches ``(input → branches, branches → dendrites, dendrites →
            somata)`` (see :meth:`from_wiring`).
        fused: run the whole layer as one C++ operator where it can (below).
        device, dtype: where and in which float type the parameters live (``torch.nn`` style).

    The parts are submodules, in forward order: ``branch_linear`` and ``branch_activation``
    (with branches), ``dendrite_linear``, ``dendrite_activation``, ``dropout``, ``soma_linear``,
    ``soma_activation``. The wiring is in their buffers; ``load_state_dict`` loads it with the
    weights, and everything derived from it follows. The dendrites' activations come back with
    ``forward(x, return_dendrites=True)``.

    **Fast path.** On the CPU, when both activations are ``nn.LeakyReLU`` with one slope, the
    cables are structured and there is no dendritic dropout, the first two stages run as the
    fused ``dendritic::dendritic_layer_t`` operator (forward and backward one C++ pass each); the
    numbers are those of the parts. Like ``torch.nn``'s own fast paths, it does not call the
    parts, so forward hooks on them do not run there: set ``layer.fused = False`` (or use
    :func:`dendritic.nn.unfused`) to run part by part, or use ``return_dendrites=True``.
    """

    _version = 2

    branch_linear: Stage | None
    dendrite_linear: Stage
    soma_linear: Stage

    def __init__(
        self,
        input_shape: int | Sequence[int] | InputGeometry,
        somata: int | None = None,
        dendrites: int = 16,
        synapses: int = 16,
        *,
        receptive_field: Rule = "local",
        cables: Rule = "structured",
        branches: int = 1,
        cable_weights: str = "learned",
        init: str = "glorot-dense",
        dropout: float = 0.0,
        bias: bool = True,
        spec: DendriticSpec | None = None,
        activation: nn.Module | None = None,
        dendrite_activation: nn.Module | None = None,
        soma_activation: nn.Module | None = None,
        channels_last: bool = False,
        seed: int | None = None,
        rng: np.random.Generator | None = None,
        generator: torch.Generator | None = None,
        wiring: Sequence[Connectivity] | None = None,
        fused: bool = True,
        oracle: bool = False,
        kernel: str = "auto",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        if spec is None:
            if somata is None:
                raise ValueError("a DendriticLayer needs somata (or spec=)")
            spec = DendriticSpec(
                somata=somata, dendrites=dendrites, synapses=synapses, receptive_field=receptive_field,
                cables=cables, branches=branches, cable_weights=cable_weights, init=init, dropout=dropout,
                bias=bias,
            )  # fmt: skip
        elif not isinstance(spec, DendriticSpec):
            raise TypeError(f"spec must be a DendriticSpec, got {type(spec).__name__}")
        self.spec = spec
        self.geometry = (
            input_shape
            if isinstance(input_shape, InputGeometry)
            else InputGeometry.from_shape(input_shape, channels_last=channels_last)
        )
        if (wiring is None and rng is None) or generator is None:
            if seed is None and rng is not None:  # a wiring generator alone: the weights' seed from it
                if generator is None:
                    generator = torch.Generator().manual_seed(int(rng.integers(0, 2**62)))
            else:
                if seed is None:
                    seed = int(np.random.SeedSequence().generate_state(1)[0])
                seeded_rng, seeded_weights = seeded(seed)
                rng = seeded_rng if rng is None else rng
                generator = seeded_weights if generator is None else generator
        self.seed = seed
        self.fused = bool(fused)
        parts = tuple(wiring) if wiring is not None else self._draw_wiring(cast(np.random.Generator, rng))
        self._build(
            parts, activation, dendrite_activation, soma_activation, oracle, kernel, generator, device, dtype
        )

    def _draw_wiring(self, rng: np.random.Generator) -> tuple[Connectivity, ...]:
        """The spec's rules, drawn from ``rng``: input → dendrites (or branches), dendrites → somata."""
        s = self.spec
        inputs = make_receptive_fields(
            s.receptive_field, rng, self.geometry, s.somata, s.dendrites * s.branches, s.synapses
        )
        cables = make_cables(s.cables, rng, s.somata, s.dendrites)
        tree = branch_cables(s.somata * s.dendrites, s.branches)
        return (inputs, cables) if tree is None else (inputs, tree, cables)

    def _build(
        self,
        wiring: tuple[Connectivity, ...],
        activation: nn.Module | None,
        dendrite_activation: nn.Module | None,
        soma_activation: nn.Module | None,
        oracle: bool,
        kernel: str,
        generator: torch.Generator | None,
        device: torch.device | str | None,
        dtype: torch.dtype | None,
    ) -> None:
        """The parts, their initial weights drawn from ``generator`` in forward order."""
        if len(wiring) not in (2, 3):
            raise ValueError(f"a layer's wiring has 2 parts (or 3 with branches), got {len(wiring)}")
        inputs, cables = wiring[0], wiring[-1]
        tree = wiring[1] if len(wiring) == 3 else None
        if tree is not None and tree.uniform_fan_in == 1 and tree.is_blocks:
            tree = None  # one branch per dendrite: the branch is the dendrite
        dendrite_inputs = inputs if tree is None else tree
        if inputs.n_in != self.geometry.n_inputs:
            raise ValueError(
                f"the input wiring expects {inputs.n_in} inputs; {self.geometry} has {self.geometry.n_inputs}"
            )
        if tree is not None and (tree.n_in != inputs.n_out or not tree.is_blocks):
            raise ValueError(
                f"the branch wiring must give each dendrite its own branches of the {inputs.n_out} "
                f"the input wiring makes, got {tree.n_in} → {tree.n_out}"
            )
        if cables.n_in != dendrite_inputs.n_out:
            raise ValueError(
                f"the cables join {cables.n_in} dendrites, the input wiring makes {dendrite_inputs.n_out}"
            )
        factory: dict[str, Any] = {"device": device, "dtype": dtype, "generator": generator}

        def stage(conn: Connectivity) -> Stage:
            if oracle:
                return MaskedLinear(conn, init=self.spec.init, **factory)
            chosen = "dense" if kernel != "auto" and conn.is_all_to_all else kernel
            if chosen == "blocks" and not conn.is_blocks:
                chosen = "bag"
            return SparseLinear(
                conn.n_in,
                conn.n_out,
                conn,
                bias=self.spec.bias,
                kernel=chosen,
                init=self.spec.init,
                **factory,
            )

        base = activation if activation is not None else nn.LeakyReLU(DEFAULT_SLOPE)
        # linear dendrites: identity where the dendrites' (and branches') nonlinearity would be
        dendritic: nn.Module = nn.Identity() if self.spec.linear_dendrites else base
        if tree is None:
            self.branch_linear = None
        else:
            self.branch_linear = stage(inputs)
            self.branch_activation = copy.deepcopy(dendritic)
        self.dendrite_linear = stage(dendrite_inputs)
        self.dendrite_activation = (
            dendrite_activation if dendrite_activation is not None else copy.deepcopy(dendritic)
        )
        self.dropout = nn.Dropout(self.spec.dropout) if self.spec.dropout > 0 else nn.Identity()
        self.soma_linear = stage(cables)
        self._set_cable_weights()
        if self.spec.cable_weights == "positive":
            parametrize.register_parametrization(self.soma_linear, "weight", Softplus())
        elif self.spec.cable_weights in ("ones", "random"):
            self.soma_linear.weight.requires_grad_(False)
        self.soma_activation = soma_activation if soma_activation is not None else copy.deepcopy(base)

    @classmethod
    def from_wiring(
        cls,
        input_shape: int | Sequence[int] | InputGeometry,
        inputs: Connectivity,
        cables: Connectivity,
        *,
        branch_cables: Connectivity | None = None,
        **kwargs: Any,
    ) -> DendriticLayer:
        """A layer with exactly this wiring (input → dendrite, dendrite → soma; with
        ``branch_cables``, input → branch, branch → dendrite, dendrite → soma); the other
        arguments are the constructor's (``generator`` draws the initial weights; ``spec`` the
        spec the wiring was drawn for, else one is made from the wiring's sizes). Calls
        ``cls(...)``, so subclasses get their own ``__init__``."""
        wiring = (inputs, cables) if branch_cables is None else (inputs, branch_cables, cables)
        if "spec" in kwargs:  # the spec the wiring was drawn for
            return cls(input_shape, wiring=wiring, **kwargs)
        n_dend = cables.n_in
        branches = 1 if branch_cables is None else max(1, inputs.n_out // max(1, branch_cables.n_out))
        geometry = (
            input_shape
            if isinstance(input_shape, InputGeometry)
            else InputGeometry.from_shape(input_shape, channels_last=kwargs.pop("channels_last", False))
        )
        fan_in = inputs.uniform_fan_in
        synapses = fan_in // geometry.channels if fan_in and not inputs.is_all_to_all else 1
        return cls(
            geometry,
            cables.n_out,
            max(1, n_dend // cables.n_out),
            max(1, synapses),
            branches=branches,
            wiring=wiring,
            **kwargs,
        )

    @classmethod
    def from_spec(
        cls, input_shape: int | Sequence[int] | InputGeometry, spec: DendriticSpec, **kwargs: Any
    ) -> DendriticLayer:
        """A layer of ``spec`` (the other arguments are the constructor's)."""
        return cls(input_shape, spec=spec, **kwargs)

    # ------------------------------------------------------------------ state
    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Draw the initial weights again, stage by stage in forward order: from ``generator``,
        else from the layer's seed (so the layer is as built), else torch's global generator."""
        if generator is None and self.seed is not None:
            generator = seeded(self.seed)[1]
        for part in self._stages():
            part.reset_parameters(generator)
        self._set_cable_weights()

    def _set_cable_weights(self) -> None:
        """Fixed cable weights (``"ones"``, ``"random"``) from the freshly drawn ones."""
        mode, somata = self.spec.cable_weights, self.soma_linear
        if mode not in ("ones", "random") or somata.weight.is_meta:
            return
        with torch.no_grad():
            if mode == "ones":
                ones = somata.mask if isinstance(somata, MaskedLinear) else torch.ones_like(somata.weight)
                somata.weight.copy_(ones)
            else:
                somata.weight.abs_()

    def _stages(self) -> list[Stage]:
        first = [] if self.branch_linear is None else [self.branch_linear]
        return [*first, self.dendrite_linear, self.soma_linear]

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
        """States saved before version 2 name the parts ``dendrites.``/``somata.``/``branches.``."""
        version = local_metadata.get("version")
        if version is None or version < 2:
            for key in [k for k in state_dict if k.startswith(prefix)]:
                rest = key[len(prefix) :]
                for old, new in _LEGACY_NAMES.items():
                    if rest.startswith(old) and prefix + new + rest[len(old) :] not in state_dict:
                        state_dict[prefix + new + rest[len(old) :]] = state_dict.pop(key)
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )

    # ------------------------------------------------------------------ sizes (read off the wiring)
    @property
    def input_shape(self) -> tuple[int, ...]:
        return self.geometry.shape

    @property
    def in_features(self) -> int:
        return self.geometry.n_inputs

    @property
    def somata(self) -> int:
        """S, the layer's outputs."""
        return self.soma_linear.out_features

    @property
    def out_features(self) -> int:
        return self.soma_linear.out_features

    @property
    def n_dendrites(self) -> int:
        """All dendrites, S·D."""
        return self.dendrite_linear.out_features

    @property
    def dendrites(self) -> int | None:
        """D, dendrites per soma (None if the dendrites do not split evenly over the somata)."""
        n, s = self.n_dendrites, self.somata
        return n // s if n % s == 0 else None

    @property
    def branches(self) -> int:
        """B, branches per dendrite (1: the paper's dendrite)."""
        return 1 if self.branch_linear is None else self.branch_linear.out_features // self.n_dendrites

    @property
    def synapses(self) -> int | None:
        """Synapses per dendrite (or branch) and channel; None for dense or uneven wiring."""
        first = self.branch_linear if self.branch_linear is not None else self.dendrite_linear
        if isinstance(first, MaskedLinear):
            fan_in = None if bool(first.mask.all()) else _uniform(first.mask.sum(dim=1).long())
        else:
            fan_in = None if first.indices is None else _uniform(first._fan_in())
        return None if fan_in is None else fan_in // self.geometry.channels

    @property
    def dendrites_per_soma(self) -> int | None:
        """D when each soma sums exactly its own block of D dendrites (structured cables)."""
        somata = self.soma_linear
        blocks = (
            somata.kernel == "blocks" if isinstance(somata, SparseLinear) else somata.connectivity.is_blocks
        )
        return self.dendrites if blocks else None

    @property
    def cable_weights(self) -> str:
        return self.spec.cable_weights

    @property
    def init(self) -> str:
        return self.spec.init

    @property
    def wiring(self) -> tuple[Connectivity, ...]:
        """The wiring, read from the parts' buffers: (input → dendrites, dendrites → somata), or
        (input → branches, branches → dendrites, dendrites → somata)."""
        return tuple(part.connectivity for part in self._stages())

    @property
    def fusable(self) -> bool:
        """Whether the fused C++ pass computes the layer's first two stages (synapses → dendrites
        → somata, or synapses → branches → dendrites): ``fused`` is on, sparse synapses, each unit
        of the second stage summing its own, no dropout between them, one leaky-ReLU slope for
        both activations."""
        if not self.fused:
            return False
        if self.branch_linear is None:
            pair = (self.dendrite_linear, self.dendrite_activation, self.soma_linear, self.soma_activation)
            between: nn.Module = self.dropout
        else:
            pair = (
                self.branch_linear,
                self.branch_activation,
                self.dendrite_linear,
                self.dendrite_activation,
            )
            between = nn.Identity()
        first, first_act, second, second_act = pair
        slope = _leaky_slope(first_act)
        return (
            isinstance(first, SparseLinear)
            and isinstance(second, SparseLinear)
            and first.kernel == "bag"
            and second.kernel == "blocks"
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
        return self.branch_linear is None and self.spec.cable_weights == "learned"

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
        if not return_dendrites:
            fast = self._fast_forward(x)
            if fast is not None:
                return fast
        flat, lead = self._flatten(x)
        if not self.fused or (return_dendrites and torch.is_grad_enabled()):
            # Part by part, batch-major: every part is called (hooks see (batch, units) tensors),
            # and gradients flow through returned dendrites.
            z = flat if self.branch_linear is None else self.branch_activation(self.branch_linear(flat))
            dend: torch.Tensor | None = self.dendrite_activation(self.dendrite_linear(z))
            out: torch.Tensor = self.soma_activation(self.soma_linear(self.dropout(dend)))
        else:
            out_t, dend_t = self.forward_t(feature_major(flat), keep_dendrites=return_dendrites)
            out = out_t.t()
            dend = dend_t.t() if dend_t is not None else None
        out = out.reshape(*lead, self.somata)
        if return_dendrites:
            assert dend is not None
            return out, dend.reshape(*lead, self.n_dendrites)
        return out

    def _fast_forward(self, x: torch.Tensor) -> torch.Tensor | None:
        """The whole fused layer as one ``dendritic::dendritic_layer_ad`` call on the batch-major
        input (transposes, forward and backward in C++), or None where it does not apply: not
        fusable, branches, not CPU float32/float64, the fast path off, or tracing (see
        :func:`dendritic.nn.functional.eager_fast_path`). What a small-batch step (RL) spends
        its time on otherwise is the Python around the arithmetic."""
        if not DF.eager_fast_path():
            return None
        plan = self._fast_plan()
        if plan is None:
            return None
        args, flat_input, n_in, somata = plan
        weight = args[0]
        if not (x.is_cpu and x.dtype == weight.dtype and x.dtype in DF.CPP_DTYPES):
            return None
        if flat_input and x.dim() == 2 and x.shape[1] == n_in:
            out: torch.Tensor = torch.ops.dendritic.dendritic_layer_ad(x, *args, True)
            return out
        flat, lead = self._flatten(x)
        out = torch.ops.dendritic.dendritic_layer_ad(flat, *args, True)
        return out if len(lead) == 1 else out.reshape(*lead, somata)

    def _fast_plan(self) -> tuple[tuple[Any, ...], bool, int, int] | None:
        """(``dendritic_layer_ad``'s arguments after the input, 1-D input?, in_features, somata),
        or None where the fused operator does not compute this layer. Kept between calls while
        its key holds: the parts and activations (and their slopes), the parts' tensors (see
        :meth:`SparseLinear._fast_args`), ``fused`` and the switches."""
        m = cast(dict[str, nn.Module], self._modules)  # the parts are always set (None only for branches)
        d, s = m["dendrite_linear"], m["soma_linear"]
        da, sa = m["dendrite_activation"], m["soma_activation"]
        key = (
            self.fused, self.branch_linear, d, s, da, sa, m["dropout"], type(d), type(s), type(da), type(sa),
            getattr(da, "negative_slope", None), getattr(sa, "negative_slope", None),
            d._tensor_ids() if isinstance(d, SparseLinear) else None,
            s._tensor_ids() if isinstance(s, SparseLinear) else None, DF.switches(),
        )  # fmt: skip
        cache = self.__dict__.get("_fast_cache")
        if cache is not None and cache[0] == key:
            cached: tuple[tuple[Any, ...], bool, int, int] | None = cache[1]
            return cached
        plan = None
        if self.branch_linear is None and self.fusable:
            dl, sl = cast(SparseLinear, d), cast(SparseLinear, s)
            assert dl.indices is not None and dl.offsets is not None
            slope = _leaky_slope(da)
            assert slope is not None
            args = (
                dl.weight, dl.bias, sl.weight, sl.bias, dl.indices, dl.offsets,
                *DF._tables(dl.indices, dl.offsets, dl.in_features, dl.tables), dl.n_blocks,
                self.n_dendrites // self.somata, slope,
            )  # fmt: skip
            plan = (args, len(self.input_shape) == 1, self.in_features, self.somata)
        if not parametrize.is_parametrized(s):  # positive cable weights: softplus every call
            self.__dict__["_fast_cache"] = (key, plan)
        return plan

    def forward_t(
        self, h: torch.Tensor, keep_dendrites: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Feature-major ``(in_features, B)`` → (somata ``(S, B)``, dendrites ``(S·D, B)`` or None).

        What networks call between layers (no transposes); the dendrites are returned when
        ``keep_dendrites`` (differentiable, on the fused path too).
        """
        fused = self.fusable
        if self.branch_linear is None:
            if fused:
                return self._fused_pair(h, self.dendrite_linear, self.soma_linear, keep_dendrites)
            dend = self._activate(self.dendrite_activation, self.dendrite_linear.forward_t(h))
        elif fused:
            dend, _ = self._fused_pair(h, self.branch_linear, self.dendrite_linear, False)
        else:
            z = self._activate(self.branch_activation, self.branch_linear.forward_t(h))
            dend = self._activate(self.dendrite_activation, self.dendrite_linear.forward_t(z))
        out = self._activate(self.soma_activation, self.soma_linear.forward_t(self.dropout(dend)))
        return out, (dend if keep_dendrites else None)

    def _fused_pair(
        self, h: torch.Tensor, first: Stage, second: Stage, keep_inner: bool
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Two stages in one call (:func:`dendritic.nn.functional.dendritic_layer_t`): sparse
        synapses + leaky-ReLU, then each unit of ``second`` summing its own block + leaky-ReLU.
        Returns (second's activations, first's activations when ``keep_inner``)."""
        d, s = cast(SparseLinear, first), cast(SparseLinear, second)  # fusable: both SparseLinear
        assert d.indices is not None and d.offsets is not None and d.bias is not None and s.bias is not None
        slope = _leaky_slope(self.dendrite_activation)
        assert slope is not None
        return DF.dendritic_layer_t(
            h, d.weight, d.bias, d.indices, d.offsets, s.weight, s.bias,
            slope=slope, transposed=d.tables, keep_dendrites=keep_inner,
        )  # fmt: skip

    def _activate(self, activation: nn.Module, z: torch.Tensor) -> torch.Tensor:
        """``activation(z)``; on the fast path a leaky-ReLU overwrites ``z`` (a fresh product its
        backward does not need) instead of calling the module."""
        slope = _leaky_slope(activation)
        if slope is not None and self.fused:
            return F.leaky_relu(z, slope, inplace=True)
        out: torch.Tensor = activation(z)
        return out

    # ------------------------------------------------------------------ inspection
    def masks(self) -> tuple[np.ndarray, ...]:
        """Dense 0/1 masks of the wiring, Keras layout: (input → dendrite ``(n_in, S·D)``,
        dendrite → soma ``(S·D, S)``); with branches, (input → branch, branch → dendrite,
        dendrite → soma)."""
        return tuple(conn.to_mask() for conn in self.wiring)

    def extra_repr(self) -> str:
        d = f", dendrites={self.dendrites_per_soma}" if self.dendrites_per_soma else ""
        syn = f", synapses={self.synapses}" if self.synapses else ""
        more = f", branches={self.branches}" if self.branches > 1 else ""
        if self.spec.cable_weights != "learned":
            more += f", cable_weights={self.spec.cable_weights}"
        if self.spec.init != "glorot-dense":
            more += f", init={self.spec.init}"
        if not self.fused:
            more += ", fused=False"
        return f"input_shape={self.input_shape}, somata={self.somata}{d}{syn}{more}"


@contextlib.contextmanager
def unfused(model: nn.Module) -> Iterator[nn.Module]:
    """Run every :class:`DendriticLayer` in ``model`` part by part inside the block, so that
    forward hooks on their parts see their tensors; each layer's ``fused`` comes back after."""
    layers = [m for m in model.modules() if isinstance(m, DendriticLayer)]
    before = [layer.fused for layer in layers]
    for layer in layers:
        layer.fused = False
    try:
        yield model
    finally:
        for layer, fused in zip(layers, before, strict=True):
            layer.fused = fused


def _uniform(counts: torch.Tensor) -> int | None:
    """The common value of ``counts`` if they are all equal, else None."""
    if counts.numel() == 0:
        return None
    first = int(counts[0])
    return first if bool((counts == first).all()) else None


def check_cable_weights(mode: str) -> None:
    check_choice("cable_weights", mode, CABLE_WEIGHTS)


class Softplus(nn.Module):
    """``softplus(w)``: a parametrization that keeps learned weights positive."""

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return F.softplus(w)

    def right_inverse(self, w: torch.Tensor) -> torch.Tensor:
        # softplus⁻¹(|w|) = log(expm1(|w|)), with |w| kept away from 0 (masked entries of the
        # oracle are 0 and stay 0 through the mask).
        return torch.log(torch.expm1(w.abs().clamp_min(1e-6)))
