"""`DendriticNet` and `build_model`: the network of SPEC §1 for every variant of SPEC §2, built
from a :class:`~dendritic.models.spec.ModelSpec`."""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any, NamedTuple, cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.hooks import RemovableHandle

from dendritic.errors import DendriticError
from dendritic.layers.kernels import feature_major, fused_layers_enabled, head_loss_t
from dendritic.layers.sparse import SparseLinear
from dendritic.models.spec import (
    BEYOND_PAPER,
    MAX_LAYERS,
    MAX_SEED,
    ModelSpec,
    estimate_size,
    normalize_input_shape,
)
from dendritic.nn.layer import DendriticLayer, branch_cables
from dendritic.nn.readout import class_readout
from dendritic.nn.spec import DendriticSpec, check_int
from dendritic.wiring import sampling
from dendritic.wiring.budget import available_memory, gigabytes
from dendritic.wiring.connectivity import Connectivity
from dendritic.wiring.geometry import InputGeometry
from dendritic.wiring.rules import make_cables, make_receptive_fields

__all__ = [
    "BEYOND_PAPER",
    "MAX_LAYERS",
    "MAX_SEED",
    "DendriticNet",
    "FeatureNorm",
    "FusedDANN",
    "ModelTooLargeError",
    "build_model",
    "build_model_from_masks",
    "build_wiring",
    "estimate_size",
    "normalize_input_shape",
]

NEGATIVE_SLOPE = 0.1  # leaky-ReLU slope of dendrites and somata

#: One layer's wiring: (input → dendrites, dendrites → somata), or with branching dendrites
#: (input → branches, branches → dendrites, dendrites → somata).
LayerWiring = tuple[Connectivity, ...]


class FusedDANN(NamedTuple):
    """A one-layer dANN as the whole-step C++ kernels take it (``layers.kernels.train_steps_t``)."""

    params: list[torch.Tensor]  # dendrite weights and biases, soma weights and biases, output layer
    wiring: tuple[torch.Tensor, torch.Tensor, int, float]  # indices, offsets, D, leaky-ReLU slope
    n_inputs: int  # values per sample


class ModelTooLargeError(DendriticError, ValueError):
    """The requested model cannot be built in this machine's memory."""


def _check_fits(spec: ModelSpec, shape: tuple[int, ...], n_classes: int) -> None:
    params, needed = estimate_size(spec, shape, n_classes)
    available = available_memory()
    if available is not None and needed > available:
        raise ModelTooLargeError(
            f"{spec.variant.name} with D={spec.dendrites}, S={spec.somata}, {spec.layers} layer(s) has about "
            f"{params:,} parameters and needs about {gigabytes(needed)} to build and train; this machine has "
            f"{gigabytes(available)} of memory available"
        )


def _seeded(seed: int) -> tuple[np.random.Generator, int]:
    """One seed → the wiring generator and an independent seed for the initial weights."""
    wiring_seq, weight_seq = np.random.SeedSequence(seed).spawn(2)
    return np.random.default_rng(wiring_seq), int(weight_seq.generate_state(1, np.uint64)[0] >> 1)


def build_wiring(
    spec: ModelSpec, input_shape: tuple[int, ...], rng: np.random.Generator
) -> list[LayerWiring]:
    """Draw every layer's wiring for ``spec`` from one generator (SPEC §3), by the rules of
    ``spec.layer_spec()``. With ``branches`` B > 1 the receptive-field rule places S·D·B branches
    (as it places dendrites) and each dendrite sums its own B."""
    layer = spec.layer_spec()
    wiring: list[LayerWiring] = []
    shape = input_shape
    for index in range(spec.layers):
        n_in = math.prod(shape)
        channels = shape[2] if len(shape) == 3 else 1
        where = f"layer {index + 1} ({n_in} inputs)" if index else f"the input ({n_in} values)"
        if layer.receptive_field in ("local", "global") and len(shape) != 3:
            raise ValueError(f"{spec.variant.name} needs an image input_shape (H, W, C), got {shape}")
        if layer.receptive_field != "all" and spec.synapses * channels > n_in:
            raise ValueError(f"synapses={spec.synapses} is larger than {where}")
        geometry = InputGeometry.from_shape(shape, channels_last=True)
        inputs = make_receptive_fields(
            layer.receptive_field, rng, geometry, spec.somata, spec.dendrites * spec.branches, spec.synapses
        )
        cables = make_cables(layer.cables, rng, spec.somata, spec.dendrites)
        tree = branch_cables(spec.somata * spec.dendrites, spec.branches)
        wiring.append((inputs, cables) if tree is None else (inputs, tree, cables))
        shape = (*sampling.near_square_grid(spec.somata), 1)
    return wiring


class FeatureNorm(nn.Module):
    """Layer normalisation over the units of a feature-major ``(units, batch)`` tensor (what
    ``nn.LayerNorm`` does over the last dimension of ``(batch, units)``), with a learned gain
    and bias per unit."""

    def __init__(
        self,
        units: int,
        eps: float = 1e-5,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.units = units
        self.eps = eps
        self.weight = nn.Parameter(torch.empty(units, device=device, dtype=dtype))
        self.bias = nn.Parameter(torch.empty(units, device=device, dtype=dtype))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Gain 1, bias 0."""
        nn.init.ones_(self.weight)
        nn.init.zeros_(self.bias)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        mean = h.mean(dim=0, keepdim=True)
        var = h.var(dim=0, unbiased=False, keepdim=True)
        return (h - mean) * torch.rsqrt(var + self.eps) * self.weight[:, None] + self.bias[:, None]

    def extra_repr(self) -> str:
        return f"{self.units}, eps={self.eps}"


class DendriticNet(nn.Module):
    """Input → L × (dendrites → somata) → Dense(n_classes) logits (softmax lives in the loss).

    Built from a :class:`~dendritic.models.spec.ModelSpec` (``DendriticNet(spec, input_shape,
    n_classes, seed=1)``, or :func:`build_model` by paper label): ``seed`` draws the wiring and
    the initial weights. ``wiring`` gives the exact wiring instead (checkpoints,
    :func:`build_model_from_masks`); ``generator`` then draws the weights. ``oracle=True`` builds
    the masked-dense reference computation. ``model(x, return_activations=True)`` also returns
    every hidden layer's post-activation output, from the same forward pass, for the
    node-activity analyses. :meth:`register_activation_hook` hands them, differentiable, to a
    function during every forward pass (a loss on the activations, on the fused C++ path).
    """

    def __init__(
        self,
        spec: ModelSpec,
        input_shape: int | Sequence[int],
        n_classes: int,
        *,
        seed: int | None = None,
        wiring: Sequence[LayerWiring] | None = None,
        generator: torch.Generator | None = None,
        oracle: bool = False,
        kernel: str = "auto",
        config: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(spec, ModelSpec):
            raise TypeError(f"spec must be a ModelSpec, got {type(spec).__name__}")
        shape = normalize_input_shape(input_shape)
        n_classes = check_int("n_classes", n_classes)
        if seed is None and wiring is None:
            seed = int(np.random.SeedSequence().generate_state(1)[0])
        elif seed is not None:
            seed = check_int("seed", seed, minimum=0, maximum=MAX_SEED)
        if wiring is None:
            assert seed is not None
            _check_fits(spec, shape, n_classes)
            wiring_rng, weight_seed = _seeded(seed)
            wiring = build_wiring(spec, shape, wiring_rng)
            generator = generator if generator is not None else torch.Generator().manual_seed(weight_seed)
        elif generator is None:
            generator = torch.Generator().manual_seed(_seeded(int(seed or 0))[1])
        self.spec = spec
        self.input_shape = shape
        self.n_inputs = math.prod(shape)
        self.n_classes = n_classes
        self.oracle = oracle
        self.config = dict(config) if config is not None else spec.network_config(shape, n_classes, seed)
        self.layers = nn.ModuleList(self._build_layers(wiring, generator, oracle, kernel))
        previous = self._blocks[-1].out_features
        #: Dropout after every layer's somata (each layer also drops its dendrites' activations).
        rate = spec.effective_dropout
        self.dropout = nn.Dropout(rate) if rate > 0 else nn.Identity()
        #: Residual stream: layers 2..L add to their input, each reading it normalised (pre-norm),
        #: and the output layer reads it normalised.
        if self.residual:
            widths = [b.in_features for b in self._blocks[1:]]
            if any(w != layer.out_features for w, layer in zip(widths, self._blocks[1:], strict=True)):
                raise ValueError("residual connections need layers 2..L to keep their width")
            self.norms = nn.ModuleList([FeatureNorm(w) for w in widths])
            self.final_norm = FeatureNorm(previous)
        self.output = (
            class_readout(previous, n_classes, generator=generator)
            if spec.readout == "class-specific"
            else SparseLinear(previous, n_classes, generator=generator)
        )

    def _build_layers(
        self, wiring: Sequence[LayerWiring], generator: torch.Generator, oracle: bool, kernel: str
    ) -> list[DendriticLayer]:
        """One ``DendriticLayer`` per layer of ``wiring``, weights drawn from ``generator`` in order."""
        if not wiring:
            raise ValueError("a network needs at least one dendro-somatic layer")
        previous, blocks = self.n_inputs, []
        for index, parts in enumerate(wiring, start=1):
            if len(parts) not in (2, 3):
                raise ValueError(f"layer {index} wiring must have 2 or 3 parts, got {len(parts)}")
            inputs, cables = parts[0], parts[-1]
            dendrites = parts[1] if len(parts) == 3 else inputs
            if inputs.n_in != previous or cables.n_in != dendrites.n_out:
                raise ValueError(
                    f"layer {index} wiring does not chain: expected {previous} inputs and "
                    f"{dendrites.n_out} dendrites, got {inputs.n_in} inputs and {cables.n_in} dendrites"
                )
            # The paper's images are channels-last (H, W, C); deeper layers see the previous somata.
            geometry = (
                InputGeometry.from_shape(self.input_shape, channels_last=True)
                if index == 1
                else InputGeometry((previous,))
            )
            blocks.append(
                DendriticLayer.from_wiring(
                    geometry,
                    inputs,
                    cables,
                    branch_cables=parts[1] if len(parts) == 3 else None,
                    spec=self._layer_spec(inputs, cables, len(parts)),
                    generator=generator,
                    oracle=oracle,
                    kernel=kernel,
                )
            )
            previous = cables.n_out
        return blocks

    def _layer_spec(self, inputs: Connectivity, cables: Connectivity, parts: int) -> DendriticSpec:
        """The spec's layer, at this layer's sizes (a network of given wiring, e.g. from masks,
        may not have the spec's D, S and synapses): the options are the spec's."""
        somata = cables.n_out
        dendrites = max(1, cables.n_in // somata)
        branches = max(1, inputs.n_out // cables.n_in) if parts == 3 else 1
        fan_in = inputs.uniform_fan_in
        synapses = self.spec.synapses if fan_in is None or inputs.is_all_to_all else fan_in
        layer = self.spec.layer_spec()
        if (somata, dendrites, branches) == (layer.somata, layer.dendrites, layer.branches):
            return layer
        return replace(
            layer, somata=somata, dendrites=dendrites, branches=branches, synapses=max(1, synapses)
        )

    @property
    def residual(self) -> bool:
        return self.spec.residual

    @property
    def cable_weights(self) -> str:
        return self.spec.cable_weights

    @property
    def init(self) -> str:
        return self.spec.init

    @property
    def wiring(self) -> list[LayerWiring]:
        """Every layer's wiring, read from the layers' buffers (so always the loaded one)."""
        return [layer.wiring for layer in self._blocks]

    @property
    def _blocks(self) -> Sequence[DendriticLayer]:
        """``self.layers``, typed (a ModuleList holds plain Modules)."""
        return cast("Sequence[DendriticLayer]", self.layers)

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Draw every initial weight again, in the order the network was built: from
        ``generator``, else from the network's seed (so it is as built), else torch's global
        generator."""
        seed = self.config.get("seed")
        if generator is None and isinstance(seed, int):
            generator = torch.Generator().manual_seed(_seeded(seed)[1])
        for layer in self._blocks:
            layer.reset_parameters(generator)
        if self.residual:
            for norm in [*self.norms, self.final_norm]:
                norm.reset_parameters()
        self.output.reset_parameters(generator)

    def _flatten(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() >= 2 and tuple(x.shape[1:]) == self.input_shape:
            return x.reshape(x.shape[0], self.n_inputs)
        if x.dim() == 2 and x.shape[1] == self.n_inputs:
            return x
        if (
            len(self.input_shape) == 3
            and x.dim() == 3
            and self.input_shape[2] == 1
            and tuple(x.shape[1:]) == self.input_shape[:2]
        ):
            return x.reshape(x.shape[0], self.n_inputs)
        raise ValueError(
            f"expected input of shape (batch, {self.n_inputs}) or (batch, {', '.join(map(str, self.input_shape))}), "
            f"got {tuple(x.shape)}"
        )

    def forward(
        self, x: torch.Tensor, return_activations: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, dict[str, torch.Tensor]]:
        h, activations = self._hidden(x, return_activations)
        logits = self.output.forward_t(h).t()
        return (logits, activations) if return_activations else logits

    def loss_and_correct(self, x: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean cross-entropy of a batch and its number of correct predictions (what a training
        step needs). On the CPU the output layer, loss and count are one C++ call each way."""
        h, _ = self._hidden(x, False)
        if fused_layers_enabled(h) and self.output.kernel == "dense" and h.dtype == self.output.weight.dtype:
            return head_loss_t(h, self.output.weight, self.output.bias, target)
        logits = self.output.forward_t(h).t()
        loss = F.cross_entropy(logits, target)
        with torch.no_grad():
            correct = (logits.argmax(dim=1) == target).sum()
        return loss, correct

    def register_activation_hook(
        self, hook: Callable[[nn.Module, str, torch.Tensor], None]
    ) -> RemovableHandle:
        """Call ``hook(model, name, activations)`` in every forward pass with each hidden layer's
        dendrites and somata (``"dendrites_1"``, ``"somata_1"``, ...; feature-major ``(units,
        batch)``, differentiable, as the layers compute them: on the fused C++ path where they
        take it). Returns a handle whose ``remove()`` detaches the hook."""
        hooks = self.__dict__.setdefault("_activation_hooks", OrderedDict())  # weakly referenced
        handle = RemovableHandle(hooks)
        hooks[handle.id] = hook
        return handle

    def _hidden(
        self, x: torch.Tensor, return_activations: bool
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The last hidden layer's output, feature-major (units, batch), and the recorded activations."""
        h = feature_major(self._flatten(x))
        activations: dict[str, torch.Tensor] = {}
        hooks = list(self.__dict__.get("_activation_hooks", {}).values())
        for index, layer in enumerate(self._blocks, start=1):
            skip = self.residual and index > 1  # layers 2..L read the stream normalised, add to it
            out, dendrites = layer.forward_t(
                self.norms[index - 2](h) if skip else h, keep_dendrites=return_activations or bool(hooks)
            )
            h = h + out if skip else out
            for hook in hooks:
                assert dendrites is not None
                hook(self, f"dendrites_{index}", dendrites)
                hook(self, f"somata_{index}", out)
            if return_activations:
                assert dendrites is not None
                activations[f"dendrites_{index}"] = dendrites.t()
                activations[f"somata_{index}"] = out.t()
            h = self.dropout(h)
        if self.residual:
            h = self.final_norm(h)
        return h, activations

    # ------------------------------------------------------------------ the fast path's contract
    def fused_plan(self) -> FusedDANN | None:
        """This network as the whole-step C++ kernels take it, when it is one they run: one fused
        dendro-somatic layer of the paper's kind (sparse dendrites, each soma summing its own, no
        dropout), a dense read-out, six float32/float64 CPU parameters of one dtype; else
        None. The training engine (``dendritic.training.engine``) asks for it
        once per run; the model knows nothing of optimizers."""
        if not (
            len(self._blocks) == 1
            and not self.residual
            and self._blocks[0].is_plain
            and self._blocks[0].fusable
            and isinstance(self.dropout, nn.Identity)
            and self.output.kernel == "dense"
        ):
            return None
        layer = self._blocks[0]
        # fusable: sparse dendrites and somata (never the masked oracle)
        d, s, o = (
            cast(SparseLinear, layer.dendrite_linear),
            cast(SparseLinear, layer.soma_linear),
            self.output,
        )
        params = [d.weight, d.bias, s.weight, s.bias, o.weight, o.bias]
        dtype = d.weight.dtype
        if (
            any(p is None or p.dtype != dtype or not p.is_cpu for p in params)
            or dtype not in (torch.float32, torch.float64)
            or sum(1 for _ in self.parameters()) != len(params)
        ):
            return None
        assert d.indices is not None and d.offsets is not None
        per_soma = cast(int, layer.dendrites_per_soma)  # fusable: structured cables
        return FusedDANN(
            cast(list[torch.Tensor], params), (d.indices, d.offsets, per_soma, NEGATIVE_SLOPE), self.n_inputs
        )

    # ------------------------------------------------------------------ inspection
    @property
    def n_layers(self) -> int:
        return len(self.layers)

    def masks(self) -> list[np.ndarray]:
        """Dense 0/1 masks ``[in→dend (n_in, D·S), dend→soma (D·S, S), …]`` per layer, Keras layout
        (with branching dendrites each layer has three: in→branch, branch→dend, dend→soma)."""
        return [conn.to_mask() for parts in self.wiring for conn in parts]

    def parameter_groups(self) -> list[tuple[str, nn.Module]]:
        """(name, module) of every dendro-somatic layer and the output layer, in forward order:
        the groups whose gradient norms ``training.GradientNorms`` reports."""
        groups: list[tuple[str, nn.Module]] = [(f"layer_{i}", b) for i, b in enumerate(self._blocks, start=1)]
        groups.append(("output", self.output))
        return groups

    def hidden_layers(self) -> list[tuple[str, nn.Module]]:
        """(name, layer) of every hidden weight layer in forward order, e.g. ``dendrites_1``."""
        named: list[tuple[str, nn.Module]] = []
        for index, layer in enumerate(self._blocks, start=1):
            named.append((f"dendrites_{index}", layer.dendrite_linear))
            named.append((f"somata_{index}", layer.soma_linear))
        return named

    def extra_repr(self) -> str:
        name = self.config.get("name", "custom")
        more = ", residual=True" if self.residual else ""
        if self.init != "glorot-dense":
            more += f", init={self.init}"
        return f"name={name}, input_shape={self.input_shape}, n_classes={self.n_classes}{more}"


def build_model(
    name: str,
    input_shape: int | Sequence[int],
    n_classes: int,
    dendrites: int,
    somata: int,
    synapses: int = 16,
    layers: int = 1,
    dropout: float = 0.0,
    seed: int | None = None,
    *,
    random_mode: str = "exact",
    oracle: bool = False,
    kernel: str = "auto",
    **options: Any,
) -> DendriticNet:
    """Build the paper's model ``name`` (case-insensitive, e.g. ``"dANN-LRF"``): the network of
    ``ModelSpec(name, dendrites, somata, ...)`` (see there for every option).

    ``dendrites`` is D, dendrites per soma; ``somata`` is S; ``synapses`` is inputs per dendrite
    (per channel for images, so an RGB dendrite has ``3 × synapses``). ``seed`` fixes the wiring
    (a ``numpy.random.Generator``) and the initial weights; ``None`` draws a fresh seed, which is
    recorded in ``model.config``. ``random_mode="scatter"`` reproduces the reference's random
    wiring (variable fan-in). ``oracle=True`` builds the masked-dense reference computation.
    ``options`` are the spec's options beyond the paper: ``branches``, ``cable_weights``,
    ``residual``, ``init``, ``readout``.
    """
    spec = ModelSpec(
        name, dendrites, somata, synapses, layers, dropout, random_mode=random_mode, **options
    )  # every option checked here
    return DendriticNet(spec, input_shape, n_classes, seed=seed, oracle=oracle, kernel=kernel)


def build_model_from_masks(
    masks: Sequence[np.ndarray],
    input_shape: int | Sequence[int],
    n_classes: int,
    *,
    dropout: float = 0.0,
    seed: int | None = 0,
    oracle: bool = False,
) -> DendriticNet:
    """Build a network whose wiring is given as dense 0/1 masks, e.g. saved by the reference code.

    ``masks`` alternates input→dendrite ``(n_in, n_dendrites)`` and dendrite→soma
    ``(n_dendrites, n_somata)`` per layer (Keras kernel orientation). An all-ones mask gives a
    dense layer. ``seed`` only sets the initial weights.
    """
    shape = normalize_input_shape(input_shape)
    if len(masks) == 0 or len(masks) % 2:
        raise ValueError(f"need an even, non-zero number of masks (2 per layer), got {len(masks)}")
    conns = [Connectivity.from_mask(mask) for mask in masks]
    wiring = [(conns[i], conns[i + 1]) for i in range(0, len(conns), 2)]
    if wiring[0][0].n_in != math.prod(shape):
        raise ValueError(
            f"the first mask has {wiring[0][0].n_in} inputs but input_shape {shape} has {math.prod(shape)}"
        )
    config = {
        "name": "custom",
        "input_shape": list(shape),
        "n_classes": int(n_classes),
        "layers": len(wiring),
        "dropout": float(dropout),
        "seed": seed,
    }
    spec = ModelSpec(dropout=dropout, layers=len(wiring))
    return DendriticNet(spec, shape, n_classes, seed=seed, wiring=wiring, oracle=oracle, config=config)
