"""`DendriticNet` and `build_model`: the network of SPEC §1 for every variant of SPEC §2."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any, NamedTuple, cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dendritic.errors import DendriticError
from dendritic.layers.kernels import (
    evaluate_dann_t,
    feature_major,
    fused_layers_enabled,
    head_loss_t,
    train_steps_t,
)
from dendritic.layers.sparse import SparseLinear, check_init
from dendritic.models.variants import Variant, resolve_name
from dendritic.nn.layer import DendriticLayer, branch_cables, check_cable_weights
from dendritic.wiring import sampling
from dendritic.wiring.connectivity import Connectivity
from dendritic.wiring.geometry import InputGeometry
from dendritic.wiring.rules import make_cables, make_receptive_fields

__all__ = [
    "DendriticNet",
    "FeatureNorm",
    "ModelTooLargeError",
    "build_model",
    "build_model_from_masks",
    "build_wiring",
    "estimate_size",
    "normalize_input_shape",
]

NEGATIVE_SLOPE = 0.1  # leaky-ReLU slope of dendrites and somata
#: Seeds are 32-bit (numpy's and torch's generators take them; stores keep them as integers).
MAX_SEED = 2**32 - 1
#: Most dendro-somatic layers a network may have (the depth studies go to 20).
MAX_LAYERS = 1000
RANDOM_MODES = ("exact", "scatter")
#: Options beyond the paper, with the values that give the paper's models. Configs and model
#: configs leave them out at these values: the paper's runs keep the keys they had before the
#: options existed.
BEYOND_PAPER: dict[str, Any] = {
    "branches": 1,
    "cable_weights": "learned",
    "residual": False,
    "init": "glorot-dense",
}

#: One layer's wiring: (input → dendrites, dendrites → somata), or with branching dendrites
#: (input → branches, branches → dendrites, dendrites → somata).
LayerWiring = tuple[Connectivity, ...]


class FusedDANN(NamedTuple):
    """A one-layer dANN as the whole-step C++ kernels take it."""

    params: list[torch.Tensor]  # dendrite weights and biases, soma weights and biases, output layer
    wiring: tuple[torch.Tensor, torch.Tensor, int, float]  # indices, offsets, D, leaky-ReLU slope


#: Bytes one parameter costs while a model is built and trained: weights, gradients, Adam's two
#: moments and the int64 wiring index (and its temporaries). Only used to refuse sizes that
#: cannot fit, before numpy or torch try to allocate them.
BYTES_PER_PARAMETER = 32


class ModelTooLargeError(DendriticError, ValueError):
    """The requested model cannot be built in this machine's memory."""


def estimate_size(
    variant: Variant,
    input_shape: tuple[int, ...],
    n_classes: int,
    dendrites: int,
    somata: int,
    synapses: int,
    layers: int,
    branches: int = 1,
    residual: bool = False,
) -> tuple[int, int]:
    """(parameters, bytes needed to build and train) of a model, in closed form, allocating
    nothing. Receptive-field wiring also needs a pixel-distance table per layer. Fixed cable
    weights count here (they take the same memory), not in the trainable count."""
    params, needed = 0, 0
    shape = input_shape
    n_dendrites = dendrites * somata
    n_branches = n_dendrites * branches
    for _ in range(layers):
        n_in = math.prod(shape)
        channels = shape[2] if len(shape) == 3 else 1
        fan_in = n_in if variant.synapses == "dense" else min(n_in, synapses * channels)
        params += n_branches * (fan_in + 1)
        if branches > 1:
            params += n_branches + n_dendrites  # each dendrite sums its own branches
        params += (n_dendrites * somata if variant.cables == "dense" else n_dendrites) + somata
        if variant.synapses in ("lrf", "grf"):
            pixels = n_in // channels
            needed += 16 * pixels * pixels
        shape = (somata, 1, 1)  # a deeper layer sees the previous somata (as a near-square grid)
    if residual:
        params += 2 * somata * layers  # a normalisation before layers 2..L and before the output
    params += (somata + 1) * n_classes
    return params, needed + BYTES_PER_PARAMETER * params


def _available_memory() -> int | None:
    """Bytes of memory available now (Linux's MemAvailable), or None where unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, ValueError, OSError):
        return None


def _check_fits(name: str, size: tuple[int, int], dendrites: int, somata: int, layers: int) -> None:
    params, needed = size
    available = _available_memory()
    if available is not None and needed > available:
        raise ModelTooLargeError(
            f"{name} with D={dendrites}, S={somata}, {layers} layer(s) has about {params:,} parameters "
            f"and needs about {_gigabytes(needed)} to build and train; this machine has "
            f"{_gigabytes(available)} of memory available"
        )


def _gigabytes(n: int) -> str:
    return f"{n / 1e9:.3g} GB" if n < 1e15 else f"{n / 1e9:.2e} GB"


def normalize_input_shape(input_shape: int | Sequence[int]) -> tuple[int, ...]:
    """``784`` → ``(784,)``; ``(28, 28)`` → ``(28, 28, 1)``; ``(32, 32, 3)`` stays."""
    shape = (
        (int(input_shape),)
        if isinstance(input_shape, (int, np.integer))
        else tuple(int(v) for v in input_shape)
    )
    if len(shape) == 2:
        shape = (*shape, 1)
    if len(shape) not in (1, 3) or min(shape) <= 0:
        raise ValueError(f"input_shape must be a positive size n, (H, W) or (H, W, C), got {input_shape!r}")
    return shape


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def build_wiring(
    variant: Variant,
    input_shape: tuple[int, ...],
    dendrites: int,
    somata: int,
    synapses: int,
    layers: int,
    rng: np.random.Generator,
    random_mode: str = "exact",
    branches: int = 1,
) -> list[LayerWiring]:
    """Draw every layer's wiring for ``variant`` from one generator (SPEC §3). With ``branches``
    B > 1 the receptive-field rule places S·D·B branches (as it places dendrites) and each
    dendrite sums its own B."""
    if random_mode not in RANDOM_MODES:
        raise ValueError(f"unknown random_mode {random_mode!r}; choose one of {', '.join(RANDOM_MODES)}")
    wiring: list[LayerWiring] = []
    shape = input_shape
    for layer in range(layers):
        n_in = math.prod(shape)
        channels = shape[2] if len(shape) == 3 else 1
        where = f"layer {layer + 1} ({n_in} inputs)" if layer else f"the input ({n_in} values)"
        if variant.synapses in ("lrf", "grf") and len(shape) != 3:
            raise ValueError(f"{variant.name} needs an image input_shape (H, W, C), got {shape}")
        if variant.synapses != "dense" and synapses * channels > n_in:
            raise ValueError(f"synapses={synapses} is larger than {where}")
        geometry = InputGeometry.from_shape(shape, channels_last=True)
        field = {"lrf": "local", "grf": "global", "dense": "all"}.get(variant.synapses)
        if field is None:  # random
            field = "scattered" if random_mode == "scatter" else "random"
        inputs = make_receptive_fields(field, rng, geometry, somata, dendrites * branches, synapses)
        cables = make_cables({"dense": "all"}.get(variant.cables, variant.cables), rng, somata, dendrites)
        tree = branch_cables(somata * dendrites, branches)
        wiring.append((inputs, cables) if tree is None else (inputs, tree, cables))
        shape = (*sampling.near_square_grid(somata), 1)
    return wiring


class FeatureNorm(nn.Module):
    """Layer normalisation over the units of a feature-major ``(units, batch)`` tensor (what
    ``nn.LayerNorm`` does over the last dimension of ``(batch, units)``), with a learned gain
    and bias per unit."""

    def __init__(self, units: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.units = units
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(units))
        self.bias = nn.Parameter(torch.zeros(units))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        mean = h.mean(dim=0, keepdim=True)
        var = h.var(dim=0, unbiased=False, keepdim=True)
        return (h - mean) * torch.rsqrt(var + self.eps) * self.weight[:, None] + self.bias[:, None]

    def extra_repr(self) -> str:
        return f"{self.units}, eps={self.eps}"


class DendriticNet(nn.Module):
    """Input → L × (dendrites → somata) → Dense(n_classes) logits (softmax lives in the loss).

    Build it with :func:`build_model` (by paper label) or :func:`build_model_from_masks`.
    ``model(x, return_activations=True)`` also returns every hidden layer's post-activation
    output, from the same forward pass, for the node-activity analyses.
    """

    def __init__(
        self,
        wiring: Sequence[LayerWiring],
        input_shape: tuple[int, ...],
        n_classes: int,
        *,
        dropout: float = 0.0,
        oracle: bool = False,
        kernel: str = "auto",
        generator: torch.Generator | None = None,
        config: dict[str, Any] | None = None,
        residual: bool = False,
        cable_weights: str = "learned",
        init: str = "glorot-dense",
    ) -> None:
        super().__init__()
        if not wiring:
            raise ValueError("a network needs at least one dendro-somatic layer")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        n_classes = _positive_int("n_classes", n_classes)
        self.input_shape = input_shape
        self.n_inputs = math.prod(input_shape)
        self.n_classes = n_classes
        self.oracle = oracle
        self.wiring = [tuple(parts) for parts in wiring]
        previous = self.n_inputs
        blocks = []
        for index, parts in enumerate(self.wiring, start=1):
            if len(parts) not in (2, 3):
                raise ValueError(f"layer {index} wiring must have 2 or 3 parts, got {len(parts)}")
            inputs, cables = parts[0], parts[-1]
            tree = parts[1] if len(parts) == 3 else None
            dendrites = inputs if tree is None else tree
            if inputs.n_in != previous or cables.n_in != dendrites.n_out:
                raise ValueError(
                    f"layer {index} wiring does not chain: expected {previous} inputs and "
                    f"{dendrites.n_out} dendrites, got {inputs.n_in} inputs and {cables.n_in} dendrites"
                )
            # The paper's images are channels-last (H, W, C); deeper layers see the previous somata.
            geometry = (
                InputGeometry.from_shape(input_shape, channels_last=True)
                if index == 1
                else InputGeometry((previous,))
            )
            blocks.append(
                DendriticLayer.from_wiring(
                    geometry,
                    inputs,
                    cables,
                    branch_cables=tree,
                    cable_weights=cable_weights,
                    init=init,
                    activation=nn.LeakyReLU(NEGATIVE_SLOPE),
                    dropout=dropout,
                    generator=generator,
                    oracle=oracle,
                    kernel=kernel,
                )
            )
            previous = cables.n_out
        self.layers = nn.ModuleList(blocks)
        #: Dropout after every layer's somata (each layer also drops its dendrites' activations).
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        #: Residual stream: layers 2..L add to their input, each reading it normalised (pre-norm),
        #: and the output layer reads it normalised.
        self.residual = bool(residual)
        self.cable_weights = cable_weights
        self.init = init
        if self.residual:
            widths = [b.in_features for b in blocks[1:]]
            if any(w != layer.out_features for w, layer in zip(widths, blocks[1:], strict=True)):
                raise ValueError("residual connections need layers 2..L to keep their width")
            self.norms = nn.ModuleList([FeatureNorm(w) for w in widths])
            self.final_norm = FeatureNorm(previous)
        self.output = SparseLinear(previous, n_classes, generator=generator)
        self.config = dict(config or {})

    @property
    def _blocks(self) -> Sequence[DendriticLayer]:
        """``self.layers``, typed (a ModuleList holds plain Modules)."""
        return cast("Sequence[DendriticLayer]", self.layers)

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
        if fused_layers_enabled(h) and self.output.kernel == "dense":
            return head_loss_t(h, self.output.weight, self.output.bias, target)
        logits = self.output.forward_t(h).t()
        loss = F.cross_entropy(logits, target)
        with torch.no_grad():
            correct = (logits.argmax(dim=1) == target).sum()
        return loss, correct

    def _hidden(
        self, x: torch.Tensor, return_activations: bool
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The last hidden layer's output, feature-major (units, batch), and the recorded activations."""
        h = feature_major(self._flatten(x))
        activations: dict[str, torch.Tensor] = {}
        for index, layer in enumerate(self._blocks, start=1):
            skip = self.residual and index > 1  # layers 2..L read the stream normalised, add to it
            out, dendrites = layer.forward_t(
                self.norms[index - 2](h) if skip else h, keep_dendrites=return_activations
            )
            h = h + out if skip else out
            if return_activations:
                assert dendrites is not None
                activations[f"dendrites_{index}"] = dendrites.t()
                activations[f"somata_{index}"] = out.t()
            h = self.dropout(h)
        if self.residual:
            h = self.final_norm(h)
        return h, activations

    # ------------------------------------------------------------------ fast paths
    # The training loop asks any model for these (duck typing) and falls back to plain steps.

    def fused_evaluation_plan(self, x: torch.Tensor, y: torch.Tensor) -> FusedDANN | None:
        """This model as the whole-step C++ kernels take it, when they can run it on ``x``, ``y``:
        one fused dendro-somatic layer (sparse dendrites, each soma summing its own, no dropout),
        a dense output layer, CPU tensors of one float dtype; else None."""
        if not (
            len(self._blocks) == 1
            and not self.residual
            and self._blocks[0].is_plain
            and self._blocks[0].fusable
            and isinstance(self.dropout, nn.Identity)
            and self.output.kernel == "dense"
            and fused_layers_enabled(x)
            and x.is_contiguous()
            and x.numel() == len(x) * self.n_inputs
            and y.dtype == torch.int64
            and y.is_cpu
            and y.is_contiguous()
        ):
            return None
        layer = self._blocks[0]
        # fusable: sparse dendrites and somata (never the masked oracle)
        d, s, o = cast(SparseLinear, layer.dendrites), cast(SparseLinear, layer.somata), self.output
        params: list[torch.Tensor] = [d.weight, d.bias, s.weight, s.bias, o.weight, o.bias]
        if any(p is None or p.dtype != x.dtype for p in params) or sum(1 for _ in self.parameters()) != len(
            params
        ):
            return None
        per_soma = cast(int, layer.dendrites_per_soma)  # fusable: structured cables
        return FusedDANN(params, (d.indices, d.offsets, per_soma, NEGATIVE_SLOPE))

    def fused_training_plan(
        self, optimizer: Any, x: torch.Tensor, y: torch.Tensor
    ) -> tuple[FusedDANN, Any] | None:
        """(the model's parts, the optimizer's state) when whole training steps can run in C++:
        :meth:`fused_evaluation_plan` applies, the model trains with every parameter trainable,
        and the optimizer offers its moments for exactly these parameters (``fused_state``, as
        :class:`dendritic.training.optim.Adam` does); else None."""
        if not self.training or not hasattr(optimizer, "fused_state"):
            return None
        plan = self.fused_evaluation_plan(x, y)
        if plan is None or not all(p.requires_grad for p in plan.params):
            return None
        state = optimizer.fused_state(plan.params)
        return None if state is None else (plan, state)

    def fused_train_steps(
        self,
        optimizer: Any,
        x_train: torch.Tensor,
        y_train: torch.Tensor,
        order: torch.Tensor,
        batch: int,
        loss_sum: torch.Tensor,
        correct: torch.Tensor,
    ) -> bool:
        """``ceil(len(order) / batch)`` training steps in one C++ call (``layers.kernels.train_steps_t``:
        the same kernels in the same order as step by step, so the same parameters), if
        :meth:`fused_training_plan` allows; returns whether it ran. Adds each batch's summed loss
        and correct count to ``loss_sum`` and ``correct``."""
        fused = self.fused_training_plan(optimizer, x_train, y_train)
        if fused is None:
            return False
        plan, (exp_avgs, exp_avg_sqs, step, group) = fused
        sums = (
            loss_sum
            if loss_sum.dtype == x_train.dtype and loss_sum.is_cpu
            else torch.zeros((), dtype=x_train.dtype)
        )
        count = (
            correct if correct.dtype == torch.int64 and correct.is_cpu else torch.zeros((), dtype=torch.int64)
        )
        train_steps_t(
            x_train.reshape(len(x_train), self.n_inputs),
            y_train,
            order,
            batch,
            plan.params,
            *plan.wiring,
            exp_avgs,
            exp_avg_sqs,
            step,
            float(group["lr"]),
            tuple(group["betas"]),
            float(group["eps"]),
            sums,
            count,
            keras=group.get("form") == "keras",
        )
        optimizer.advance(math.ceil(len(order) / batch))
        for p in plan.params:
            p.grad = None  # the per-step path leaves the last gradients; these were never materialised
        if sums is not loss_sum:
            loss_sum.add_(sums.to(loss_sum))
        if count is not correct:
            correct.add_(count.to(correct))
        return True

    def fused_evaluate(self, x: torch.Tensor, y: torch.Tensor, batch: int) -> tuple[float, int] | None:
        """(Σ cross-entropy, correct count) over ``x`` in one C++ call, when
        :meth:`fused_evaluation_plan` allows; else None."""
        plan = self.fused_evaluation_plan(x, y)
        if plan is None:
            return None
        return evaluate_dann_t(x.reshape(len(x), self.n_inputs), y, batch, plan.params, *plan.wiring)

    # ------------------------------------------------------------------ inspection
    @property
    def n_layers(self) -> int:
        return len(self.layers)

    def masks(self) -> list[np.ndarray]:
        """Dense 0/1 masks ``[in→dend (n_in, D·S), dend→soma (D·S, S), …]`` per layer, Keras layout
        (with branching dendrites each layer has three: in→branch, branch→dend, dend→soma)."""
        return [conn.to_mask() for pair in self.wiring for conn in pair]

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
            named.append((f"dendrites_{index}", layer.dendrites))
            named.append((f"somata_{index}", layer.somata))
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
    branches: int = 1,
    cable_weights: str = "learned",
    residual: bool = False,
    init: str = "glorot-dense",
) -> DendriticNet:
    """Build the paper's model ``name`` (case-insensitive, e.g. ``"dANN-LRF"``).

    ``dendrites`` is D, dendrites per soma; ``somata`` is S; ``synapses`` is inputs per dendrite
    (per channel for images, so an RGB dendrite has ``3 × synapses``). ``seed`` fixes the wiring
    (a ``numpy.random.Generator``) and the initial weights; ``None`` draws a fresh seed, which is
    recorded in ``model.config``. ``random_mode="scatter"`` reproduces the reference's random
    wiring (variable fan-in). ``oracle=True`` builds the masked-dense reference computation.

    Beyond the paper (defaults give the paper's models): ``branches`` B splits each dendrite into
    B branches of ``synapses`` synapses with their own nonlinearity (a two-level tree);
    ``cable_weights`` makes the dendrite → soma weights ``"ones"`` or ``"random"`` (fixed) or
    ``"positive"`` (learned, positive); ``residual`` adds residual connections with
    normalisation around layers 2..L (see :class:`DendriticNet`); ``init="he-fan-in"`` draws the
    dendro-somatic layers' weights He-uniform over each unit's real fan-in instead of the
    paper's Glorot-uniform over the dense shape (the output layer keeps Glorot's rule).
    """
    variant, label_dropout = resolve_name(name)
    if label_dropout is not None:
        if dropout and dropout != label_dropout:
            raise ValueError(f"model {name!r} fixes dropout={label_dropout}, but dropout={dropout} was given")
        dropout = label_dropout
    shape = normalize_input_shape(input_shape)
    dendrites = _positive_int("dendrites", dendrites)
    somata = _positive_int("somata", somata)
    synapses = _positive_int("synapses", synapses)
    layers = _positive_int("layers", layers)
    branches = _positive_int("branches", branches)
    check_cable_weights(cable_weights)
    check_init(init)
    if not isinstance(residual, bool):
        raise ValueError(f"residual must be True or False, got {residual!r}")
    if layers > MAX_LAYERS:
        raise ValueError(f"layers must be at most {MAX_LAYERS}, got {layers}")
    n_classes = _positive_int("n_classes", n_classes)
    if not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
    if seed is None:
        seed = int(np.random.SeedSequence().generate_state(1)[0])
    elif isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed <= MAX_SEED:
        raise ValueError(f"seed must be an integer in [0, {MAX_SEED}], got {seed!r}")
    size = estimate_size(variant, shape, n_classes, dendrites, somata, synapses, layers, branches, residual)
    _check_fits(variant.name, size, dendrites, somata, layers)
    wiring_rng, weight_seed = _seeded(int(seed))
    wiring = build_wiring(
        variant, shape, dendrites, somata, synapses, layers, wiring_rng, random_mode, branches=branches
    )
    config = {
        "name": variant.name,
        "input_shape": list(shape),
        "n_classes": n_classes,
        "dendrites": dendrites,
        "somata": somata,
        "synapses": synapses,
        "layers": layers,
        "dropout": float(dropout),
        "seed": int(seed),
        "random_mode": random_mode,
    }
    # Beyond the paper: recorded only when used, so the paper's models keep their config.
    options = {"branches": branches, "cable_weights": cable_weights, "residual": residual, "init": init}
    config |= {k: v for k, v in options.items() if v != BEYOND_PAPER[k]}
    generator = torch.Generator().manual_seed(weight_seed)
    return DendriticNet(
        wiring,
        shape,
        n_classes,
        dropout=float(dropout),
        oracle=oracle,
        kernel=kernel,
        generator=generator,
        config=config,
        residual=residual,
        cable_weights=cable_weights,
        init=init,
    )


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
    _, weight_seed = _seeded(int(seed or 0))
    config = {
        "name": "custom",
        "input_shape": list(shape),
        "n_classes": int(n_classes),
        "layers": len(wiring),
        "dropout": float(dropout),
        "seed": seed,
    }
    generator = torch.Generator().manual_seed(weight_seed)
    return DendriticNet(
        wiring, shape, n_classes, dropout=dropout, oracle=oracle, generator=generator, config=config
    )


def _seeded(seed: int) -> tuple[np.random.Generator, int]:
    """One seed → the wiring generator and an independent seed for the initial weights."""
    wiring_seq, weight_seq = np.random.SeedSequence(seed).spawn(2)
    return np.random.default_rng(wiring_seq), int(weight_seq.generate_state(1, np.uint64)[0] >> 1)
