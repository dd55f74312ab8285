"""The functional form of the sparse and dendritic layers (``dendritic.nn.functional``).

Modules hold state (weights and wiring); these functions compute. Every function picks its
implementation from its arguments alone: the C++ operators (``torch.ops.dendritic``) for CPU
float32/float64 tensors where they are built, plain PyTorch otherwise (CUDA, float16, bfloat16,
no compiler) — the same numbers up to float rounding.

The wiring is CSR over outputs: output ``o`` sums ``weight[c] · x[indices[c]]`` for ``c`` in
``offsets[o] : offsets[o + 1]`` (the last output runs to ``len(indices)``). ``transposed`` is the
wiring as the C++ input-gradient kernel reads it (a module keeps it in buffers, see
:func:`transposed_wiring`); without it the tables are built on demand and cached per wiring.
Functions ending in ``_t`` take and return feature-major activations ``(features, batch)``, the
layout networks keep between layers.
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F

from dendritic.layers import kernels

__all__ = [
    "CPP_DTYPES",
    "class_sums_t",
    "dendritic_layer_t",
    "eager_fast_path",
    "fast_autograd_enabled",
    "set_fast_autograd",
    "sparse_linear",
    "sparse_linear_t",
    "transposed_wiring",
    "uses_cpp",
]

#: Dtypes the C++ operators compute in; others take the plain-PyTorch path.
CPP_DTYPES = (torch.float32, torch.float64)
Tables = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]

#: ``DENDRITIC_FAST_AUTOGRAD=0`` turns the eager fast path off (the Python autograd formulas of
#: :mod:`dendritic.layers.ops` and the modules' full forward run instead), read at import.
FAST_ENV_VAR = "DENDRITIC_FAST_AUTOGRAD"
_fast_autograd = os.environ.get(FAST_ENV_VAR, "").strip().lower() not in ("0", "false", "no", "off")


#: The innermost active ``torch.func`` transform (None outside them).
_functorch_level = torch._C._functorch.peek_interpreter_stack


def set_fast_autograd(enabled: bool) -> bool:
    """Turn the eager fast path on or off for this process; returns the previous setting.

    On (the default), eager CPU training calls the ``*_ad`` operators, whose backward the C++
    autograd engine runs (no Python per step); off gives the registered Python formulas, the
    path ``torch.compile`` always traces (kept for comparison: ``benchmarks/bench_small_batch.py``).
    """
    global _fast_autograd
    before, _fast_autograd = _fast_autograd, bool(enabled)
    return before


def fast_autograd_enabled() -> bool:
    """Whether :func:`set_fast_autograd` (or ``DENDRITIC_FAST_AUTOGRAD``) has the fast path on."""
    return _fast_autograd


def switches() -> tuple[str | None, str | None]:
    """The environment switches that choose the operators (``DENDRITIC_FUSED``,
    ``DENDRITIC_KERNEL``): part of the key of the modules' cached call arguments."""
    return os.environ.get(kernels.FUSED_ENV_VAR), os.environ.get(kernels.ENV_VAR)


def eager_fast_path() -> bool:
    """Whether the C++-autograd operators may run now: the fast path is on, nothing is being
    traced (``torch.compile`` and ``torch.export`` see the operators with Python formulas) and no
    ``torch.func`` transform is active (they refuse C++ autograd functions)."""
    return _fast_autograd and not torch.compiler.is_compiling() and _functorch_level() is None


@torch.compiler.assume_constant_result  # type: ignore[untyped-decorator]
def _cpp_enabled() -> bool:
    """Whether the C++ operators are built and selected (``DENDRITIC_KERNEL``); read once by
    ``torch.compile`` while tracing."""
    return kernels.kernel_backend() == "cpp"


def uses_cpp(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether the C++ operators compute a layer with ``weight`` on input ``x``."""
    return x.is_cpu and x.dtype in CPP_DTYPES and weight.dtype == x.dtype and _cpp_enabled()


def transposed_wiring(indices: torch.Tensor, offsets: torch.Tensor, in_features: int) -> Tables:
    """The input → connections tables of the input-gradient kernel, on the wiring's device
    (built on the CPU; empty where the C++ operators are not built)."""
    if not _cpp_enabled():
        empty = torch.empty(0, dtype=torch.long, device=indices.device)
        return empty, empty, empty, empty
    tables = kernels.transposed_wiring(indices.cpu(), offsets.cpu(), in_features)
    a, b, c, d = (t.to(indices.device) for t in tables)
    return a, b, c, d


def _tables(indices: torch.Tensor, offsets: torch.Tensor, in_features: int, given: Tables | None) -> Tables:
    if given is not None and given[0].numel():
        return given
    plan = kernels._plan(indices, offsets, in_features, offsets.numel(), None)
    a, b, c, d = plan.tables(indices, offsets)
    return a, b, c, d


def sparse_linear_t(
    h: torch.Tensor,
    weight: torch.Tensor,
    indices: torch.Tensor | None = None,
    offsets: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
    *,
    transposed: Tables | None = None,
    blocks: bool = False,
) -> torch.Tensor:
    """Feature-major ``(in_features, B)`` → ``(out_features, B)``.

    ``indices``/``offsets`` None: all-to-all, ``weight`` is ``(out, in)``. ``blocks`` says that
    output ``o`` owns inputs ``o·k … o·k + k − 1`` (each soma its own dendrites), which the
    plain-PyTorch path computes as a reshape and sum.
    """
    if indices is None or offsets is None:
        return weight @ h if bias is None else torch.addmm(bias[:, None], weight, h)
    n_out = offsets.shape[0]
    out: torch.Tensor
    if uses_cpp(h, weight):
        tables = _tables(indices, offsets, h.shape[0], transposed)
        if eager_fast_path():  # bias and backward in C++
            fast: torch.Tensor = torch.ops.dendritic.sparse_linear_ad(
                h,
                weight,
                bias,
                indices,
                offsets,
                *tables,
                n_out,
                kernels.n_blocks(n_out, h.shape[0], indices.numel()),
                False,
            )
            return fast
        out = torch.ops.dendritic.sparse_linear_t(
            h.contiguous(),
            weight,
            indices,
            offsets,
            *tables,
            n_out,
            kernels.n_blocks(n_out, h.shape[0], indices.numel()),
        )
    elif blocks:
        block = h.shape[0] // n_out
        out = (h.reshape(n_out, block, -1) * weight.reshape(n_out, block, 1)).sum(dim=1)
    else:
        out = F.embedding_bag(indices, h, offsets, mode="sum", per_sample_weights=weight)
    # The product is a fresh tensor its backward does not need: the bias is added in place.
    return out if bias is None else out.add_(bias[:, None])


def sparse_linear(
    x: torch.Tensor,
    weight: torch.Tensor,
    indices: torch.Tensor | None = None,
    offsets: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
    *,
    transposed: Tables | None = None,
    blocks: bool = False,
) -> torch.Tensor:
    """``(*, in_features)`` → ``(*, out_features)``, like ``F.linear`` over the wiring's
    connections only (see :func:`sparse_linear_t`)."""
    if indices is None or offsets is None:
        return F.linear(x, weight, bias)
    lead = x.shape[:-1]
    h = x.reshape(-1, x.shape[-1]).t().contiguous()
    out = sparse_linear_t(h, weight, indices, offsets, bias, transposed=transposed, blocks=blocks)
    return out.t().reshape(*lead, offsets.shape[0])


def dendritic_layer_t(
    h: torch.Tensor,
    dendrite_weight: torch.Tensor,
    dendrite_bias: torch.Tensor,
    indices: torch.Tensor,
    offsets: torch.Tensor,
    soma_weight: torch.Tensor,
    soma_bias: torch.Tensor,
    *,
    slope: float,
    transposed: Tables | None = None,
    keep_dendrites: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """A whole dendro-somatic layer, feature-major: dendrite ``d`` = leaky(Σ synapses + bias),
    soma ``s`` = leaky(Σ of its own ``D`` dendrites' weighted activations + bias), where each soma
    owns a block of ``D = len(offsets) // len(soma_bias)`` dendrites. Returns the somata ``(S, B)``
    and, with ``keep_dendrites``, the dendrites' activations ``(S·D, B)``, differentiable (a loss
    on them reaches the weights through the same one backward pass).

    One C++ pass each way for CPU float32/float64 (the ``dendritic::dendritic_layer_t`` operator);
    elsewhere the same computation in plain PyTorch.
    """
    n_dend, n_soma = offsets.shape[0], soma_bias.shape[0]
    per_soma = n_dend // n_soma
    if uses_cpp(h, dendrite_weight) and not keep_dendrites and eager_fast_path():
        out_fast: torch.Tensor = torch.ops.dendritic.dendritic_layer_ad(
            h, dendrite_weight, dendrite_bias, soma_weight, soma_bias, indices, offsets,
            *_tables(indices, offsets, h.shape[0], transposed), kernels.n_blocks(n_dend, h.shape[0], indices.numel()),
            per_soma, float(slope),
            False,
        )  # fmt: skip
        return out_fast, None
    if uses_cpp(h, dendrite_weight):
        params = (dendrite_weight, dendrite_bias, soma_weight, soma_bias)
        need_grad = torch.is_grad_enabled() and (h.requires_grad or any(p.requires_grad for p in params))
        tables = _tables(indices, offsets, h.shape[0], transposed)
        out, dendrites = torch.ops.dendritic.dendritic_layer_t(
            h.contiguous(), dendrite_weight, indices, offsets, *tables, kernels.n_blocks(n_dend, h.shape[0], indices.numel()),
            dendrite_bias, soma_weight, soma_bias, per_soma, float(slope), keep_dendrites or need_grad,
        )  # fmt: skip
        return out, (dendrites if keep_dendrites else None)
    dend = F.leaky_relu(sparse_linear_t(h, dendrite_weight, indices, offsets, dendrite_bias), slope)
    summed = (dend.reshape(n_soma, per_soma, -1) * soma_weight.reshape(n_soma, per_soma, 1)).sum(dim=1)
    out = F.leaky_relu(summed + soma_bias[:, None], slope)
    return out, (dend if keep_dendrites else None)


def class_sums_t(activations: torch.Tensor, labels: torch.Tensor, n_classes: int) -> torch.Tensor:
    """``(K, nodes)``: per class, the sum of max(a, 0) over the batch's samples of that class, for
    feature-major activations ``(nodes, B)`` (the selectivity regulariser's class means, times the
    counts). One C++ pass each way for CPU float32/float64 (``dendritic::class_sums_t``); elsewhere
    ``relu(a) @ one_hot(labels)`` in plain PyTorch. The gradient at a = 0 is relu's (zero)."""
    labels = labels.long()
    if activations.is_cpu and activations.dtype in CPP_DTYPES and _cpp_enabled():
        sums: torch.Tensor = torch.ops.dendritic.class_sums_t(
            activations.contiguous(), labels.cpu().contiguous(), int(n_classes)
        )
        return sums
    onehot = F.one_hot(labels.to(activations.device), n_classes).to(activations.dtype)
    return (torch.relu(activations) @ onehot).t()
