"""The C++ kernels as PyTorch operators: fake (meta) kernels and autograd formulas.

``csrc/ops.cpp`` defines the operators (``torch.ops.dendritic.*``) with their schemas and CPU
kernels. This module tells PyTorch the rest: the shape of every output without running it (fake
kernels, so ``torch.compile`` and ``torch.export`` can trace through), and the backward of the
two operators modules call, ``sparse_linear_t`` and ``dendritic_layer_t`` (so autograd, and
AOTAutograd under ``torch.compile``, differentiate them). :func:`register` runs once, right after
the library is loaded (``dendritic.layers.kernels``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar, cast

import torch

__all__ = ["register"]

T = torch.Tensor

_lock = threading.Lock()
_registered = False


def register() -> None:
    """Register the fake kernels and autograd formulas (idempotent)."""
    global _registered
    with _lock:
        if _registered:
            return
        _register_fakes()
        _register_training_fakes()
        _register_autograd()
        _registered = True


def _ops() -> Any:
    return torch.ops.dendritic


# ---------------------------------------------------------------------------- fake kernels


_F = TypeVar("_F", bound=Callable[..., Any])


def fake(name: str) -> Callable[[_F], _F]:
    """``torch.library.register_fake`` as a typed decorator."""
    decorate: Callable[[_F], _F] = torch.library.register_fake(name)
    return decorate


#: ``torch._check``: a condition stated for tracing (an error at trace time, a guard under
#: dynamic shapes), typed for this strictly checked module.
_check = cast(Callable[..., None], torch._check)


def _check_wiring(indices: T, offsets: T, *, n_out: int | None = None) -> None:
    """What every kernel asks of a CSR wiring, stated for tracing (``torch._check``)."""
    _check(indices.dim() == 1 and offsets.dim() == 1, lambda: "indices and offsets must be 1-D")
    _check(
        indices.dtype == torch.int64 and offsets.dtype == torch.int64,
        lambda: "indices and offsets must be int64",
    )
    if n_out is not None:
        _check(offsets.shape[0] == n_out, lambda: "offsets must have one entry per output")


def _check_sparse(h: T, weight: T, indices: T, offsets: T) -> None:
    _check(h.dim() == 2, lambda: f"h must be (n_in, batch), got {h.dim()} dimensions")
    _check(weight.dim() == 1, lambda: "weight must hold one value per connection")
    _check(
        weight.shape[0] == indices.shape[0],
        lambda: "weight and indices must have one entry each per connection",
    )
    _check(weight.dtype == h.dtype, lambda: "weight and h must have one dtype")
    _check_wiring(indices, offsets)


def _check_slope(slope: float) -> None:
    _check(0.0 < slope < 1.0, lambda: f"the fused layer needs a leaky-ReLU slope in (0, 1), got {slope}")


def _check_layer(
    x: T, weight: T, indices: T, offsets: T, bias_d: T, weight_s: T, bias_s: T, per_soma: int
) -> None:
    _check_sparse(x, weight, indices, offsets)
    _check(bias_d.shape[0] == offsets.shape[0], lambda: "one dendrite bias per dendrite")
    _check(weight_s.shape[0] == offsets.shape[0], lambda: "one cable weight per dendrite")
    _check(bias_s.shape[0] * per_soma == offsets.shape[0], lambda: "each soma owns per_soma dendrites")


def _register_fakes() -> None:
    @fake("dendritic::spmm_t")
    def _spmm_t(h: T, weight: T, indices: T, offsets: T, n_out: int) -> T:
        _check_sparse(h, weight, indices, offsets)
        _check(offsets.shape[0] == n_out, lambda: "offsets must have n_out entries")
        return h.new_empty((n_out, h.shape[1]))

    @fake("dendritic::sddmm_t")
    def _sddmm_t(grad_out: T, h: T, indices: T, offsets: T) -> T:
        _check_wiring(indices, offsets, n_out=grad_out.shape[0])
        _check(grad_out.dim() == 2 and h.dim() == 2, lambda: "grad_out and h must be 2-D")
        _check(grad_out.shape[1] == h.shape[1], lambda: "grad_out and h must have one batch")
        return h.new_empty((indices.shape[0],))

    @fake("dendritic::transpose_blocked")
    def _transpose_blocked(indices: T, offsets: T, n_in: int, block: int) -> tuple[T, T, T, T]:
        _check_wiring(indices, offsets)
        _check(block > 0, lambda: "block must be positive")
        n_blocks = (offsets.shape[0] + block - 1) // block
        nnz = indices.shape[0]
        return (
            indices.new_empty((n_blocks * n_in + 1,)),
            indices.new_empty((nnz,)),
            indices.new_empty((nnz,)),
            indices.new_empty((n_in + 1,)),
        )

    @fake("dendritic::spmm_t_transposed")
    def _spmm_t_transposed(
        grad_out: T, weight: T, starts: T, rows: T, perm: T, fan_out: T, n_in: int, n_blocks: int
    ) -> T:
        _check(grad_out.dim() == 2, lambda: "grad_out must be (n_out, batch)")
        _check(rows.shape[0] == weight.shape[0] and perm.shape[0] == weight.shape[0],
                     lambda: "the transposed wiring must have one entry per connection")  # fmt: skip
        _check(fan_out.shape[0] == n_in + 1, lambda: "fan_out must have n_in + 1 entries")
        return grad_out.new_empty((n_in, grad_out.shape[1]))

    @fake("dendritic::sparse_linear_t")
    def _sparse_linear_t(
        h: T, weight: T, indices: T, offsets: T, t_starts: T, t_rows: T, t_perm: T, t_fan_out: T, n_out: int,
        n_blocks: int,
    ) -> T:  # fmt: skip
        _check_sparse(h, weight, indices, offsets)
        _check(offsets.shape[0] == n_out, lambda: "offsets must have n_out entries")
        _check(t_fan_out.shape[0] == h.shape[0] + 1, lambda: "the transposed wiring is for another n_in")
        return h.new_empty((n_out, h.shape[1]))

    def layer_outputs(x: T, offsets: T, bias_s: T, keep: bool) -> tuple[T, T]:
        batch = x.shape[1]
        dendrites = x.new_empty((offsets.shape[0], batch)) if keep else x.new_empty((0,))
        return x.new_empty((bias_s.shape[0], batch)), dendrites

    @fake("dendritic::dendritic_layer")
    def _dendritic_layer(
        x: T, weight: T, indices: T, offsets: T, bias_d: T, weight_s: T, bias_s: T, per_soma: int, slope: float,
        keep: bool,
    ) -> tuple[T, T]:  # fmt: skip
        _check_layer(x, weight, indices, offsets, bias_d, weight_s, bias_s, per_soma)
        _check_slope(slope)
        return layer_outputs(x, offsets, bias_s, keep)

    @fake("dendritic::dendritic_layer_t")
    def _dendritic_layer_t(
        x: T, weight: T, indices: T, offsets: T, t_starts: T, t_rows: T, t_perm: T, t_fan_out: T, n_blocks: int,
        bias_d: T, weight_s: T, bias_s: T, per_soma: int, slope: float, keep: bool,
    ) -> tuple[T, T]:  # fmt: skip
        _check_layer(x, weight, indices, offsets, bias_d, weight_s, bias_s, per_soma)
        _check_slope(slope)
        _check(t_fan_out.shape[0] == x.shape[0] + 1, lambda: "the transposed wiring is for another n_in")
        return layer_outputs(x, offsets, bias_s, keep)

    @fake("dendritic::dendritic_layer_backward")
    def _dendritic_layer_backward(
        grad_out: T, out: T, dendrites: T, x: T, weight: T, indices: T, offsets: T, weight_s: T, per_soma: int,
        slope: float, need_grad_x: bool, grad_dendrites: T | None = None,
    ) -> tuple[T, T, T, T, T]:  # fmt: skip
        _check_sparse(x, weight, indices, offsets)
        _check_slope(slope)
        _check(grad_out.shape == out.shape, lambda: "grad_out must be shaped like out")
        _check(dendrites.dim() == 2, lambda: "the forward must have kept the dendrites")
        if grad_dendrites is not None:
            _check(
                grad_dendrites.shape == dendrites.shape,
                lambda: "grad_dendrites must be shaped like the dendrites",
            )
        n_dend = offsets.shape[0]
        pre = x.new_empty((n_dend, x.shape[1])) if need_grad_x else x.new_empty((0,))
        return (
            x.new_empty((indices.shape[0],)),
            x.new_empty((n_dend,)),
            x.new_empty((n_dend,)),
            x.new_empty((out.shape[0],)),
            pre,
        )


def _register_training_fakes() -> None:
    @fake("dendritic::transpose_2d")
    def _transpose_2d(x: T) -> T:
        _check(x.dim() == 2, lambda: "transpose_2d takes a 2-D tensor")
        return x.new_empty((x.shape[1], x.shape[0]))

    @fake("dendritic::class_sums_t")
    def _class_sums_t(a: T, labels: T, n_classes: int) -> T:
        _check(a.dim() == 2, lambda: "activations must be 2-D (nodes, batch)")
        _check(labels.dim() == 1 and labels.shape[0] == a.shape[1], lambda: "one label per sample")
        _check(n_classes >= 1, lambda: "n_classes must be positive")
        return a.new_empty((n_classes, a.shape[0]))

    @fake("dendritic::class_sums_t_backward")
    def _class_sums_t_backward(grad: T, a: T, labels: T) -> T:
        _check(a.dim() == 2 and grad.dim() == 2, lambda: "grad and activations must be 2-D")
        _check(grad.shape[1] == a.shape[0], lambda: "grad must be (classes, nodes)")
        _check(labels.dim() == 1 and labels.shape[0] == a.shape[1], lambda: "one label per sample")
        return a.new_empty(a.shape)

    @fake("dendritic::head_forward")
    def _head_forward(h: T, weight: T, bias: T, target: T) -> tuple[T, T, T]:
        _check(h.dim() == 2 and weight.dim() == 2, lambda: "h and weight must be 2-D")
        _check(weight.shape[1] == h.shape[0], lambda: "weight must read h's units")
        _check(target.shape[0] == h.shape[1], lambda: "one target per sample")
        return h.new_empty(()), h.new_empty((weight.shape[0], h.shape[1])), target.new_empty(())

    @fake("dendritic::head_backward")
    def _head_backward(grad_loss: T, probs: T, h: T, weight: T, target: T, need_h: bool) -> tuple[T, T, T]:
        _check(probs.shape[0] == weight.shape[0], lambda: "probs must have one row per class")
        grad_h = h.new_empty(h.shape) if need_h else h.new_empty((0,))
        return grad_h, weight.new_empty(weight.shape), weight.new_empty((weight.shape[0],))

    @fake("dendritic::adam_step_")
    def _adam_step_(
        params: list[T], grads: list[T], exp_avgs: list[T], exp_avg_sqs: list[T], step: int, lr: float,
        beta1: float, beta2: float, eps: float, keras: bool = False,
    ) -> None:  # fmt: skip
        _check(len(params) == len(grads) == len(exp_avgs) == len(exp_avg_sqs),
                     lambda: "one gradient and two moments per parameter")  # fmt: skip
        return None

    @fake("dendritic::train_steps")
    def _train_steps(
        x_train: T, y_train: T, order: T, batch: int, params: list[T], exp_avgs: list[T], exp_avg_sqs: list[T],
        indices: T, offsets: T, per_soma: int, slope: float, step0: int, lr: float,
        beta1: float, beta2: float, eps: float, keras: bool, loss_sum: T, correct: T,
    ) -> None:  # fmt: skip
        _check(len(params) == 6 and len(exp_avgs) == 6 and len(exp_avg_sqs) == 6,
                     lambda: "six parameters and their two moments each")  # fmt: skip
        _check_wiring(indices, offsets)
        return None

    @fake("dendritic::evaluate_dann")
    def _evaluate_dann(
        x: T, y: T, batch: int, params: list[T], indices: T, offsets: T, per_soma: int, slope: float
    ) -> tuple[T, T]:
        _check(len(params) == 6, lambda: "six parameters")
        _check_wiring(indices, offsets)
        return x.new_empty((), dtype=torch.float64), y.new_empty((), dtype=torch.int64)


# ---------------------------------------------------------------------------- autograd


def _sparse_linear_setup(ctx: Any, inputs: tuple[Any, ...], output: torch.Tensor) -> None:
    h, weight, indices, offsets, t_starts, t_rows, t_perm, t_fan_out, _n_out, n_blocks = inputs
    ctx.save_for_backward(h, weight, indices, offsets, t_starts, t_rows, t_perm, t_fan_out)
    ctx.n_blocks = n_blocks


def _sparse_linear_backward(ctx: Any, grad_out: torch.Tensor) -> tuple[Any, ...]:
    h, weight, indices, offsets, t_starts, t_rows, t_perm, t_fan_out = ctx.saved_tensors
    grad_out = grad_out.to(h.dtype).contiguous()
    grad_h = grad_weight = None
    if ctx.needs_input_grad[0]:
        grad_h = _ops().spmm_t_transposed(
            grad_out, weight, t_starts, t_rows, t_perm, t_fan_out, h.shape[0], ctx.n_blocks
        )
    if ctx.needs_input_grad[1]:
        grad_weight = _ops().sddmm_t(grad_out, h, indices, offsets)
    return grad_h, grad_weight, None, None, None, None, None, None, None, None


def _layer_setup(ctx: Any, inputs: tuple[Any, ...], output: tuple[torch.Tensor, torch.Tensor]) -> None:
    (x, weight, indices, offsets, t_starts, t_rows, t_perm, t_fan_out, n_blocks, _bias_d, weight_s, _bias_s,
     per_soma, slope, _keep) = inputs  # fmt: skip
    out, dendrites = output
    ctx.save_for_backward(
        x, weight, indices, offsets, t_starts, t_rows, t_perm, t_fan_out, weight_s, out, dendrites
    )
    ctx.n_blocks, ctx.per_soma, ctx.slope = n_blocks, per_soma, slope
    if dendrites.dim() != 2:  # keep=False: an empty placeholder
        ctx.mark_non_differentiable(dendrites)


def _layer_backward(
    ctx: Any, grad_out: torch.Tensor | None, grad_dendrites: torch.Tensor | None
) -> tuple[Any, ...]:
    """Gradients of ``dendritic_layer_t`` from the somata's gradient and, where the kept dendrites
    feed a loss of their own (the selectivity regulariser), theirs: one C++ pass."""
    x, weight, indices, offsets, t_starts, t_rows, t_perm, t_fan_out, weight_s, out, dendrites = (
        ctx.saved_tensors
    )
    if dendrites.dim() != 2:
        raise RuntimeError("dendritic_layer_t ran with keep=False, so it saved nothing to differentiate")
    need_x = bool(ctx.needs_input_grad[0])
    grad_out = torch.zeros_like(out) if grad_out is None else grad_out.to(x.dtype).contiguous()
    grad_w, grad_bd, grad_v, grad_bs, pre = _ops().dendritic_layer_backward(
        grad_out, out, dendrites, x, weight, indices, offsets, weight_s, ctx.per_soma, ctx.slope, need_x,
        grad_dendrites,
    )  # fmt: skip
    grad_x = None
    if need_x:
        grad_x = _ops().spmm_t_transposed(
            pre, weight, t_starts, t_rows, t_perm, t_fan_out, x.shape[0], ctx.n_blocks
        )
    return (
        grad_x,
        grad_w,
        None,
        None,
        None,
        None,
        None,
        None,
        None,
        grad_bd,
        grad_v,
        grad_bs,
        None,
        None,
        None,
    )


def _class_sums_setup(ctx: Any, inputs: tuple[Any, ...], output: torch.Tensor) -> None:
    a, labels, _n_classes = inputs
    ctx.save_for_backward(a, labels)


def _class_sums_backward(ctx: Any, grad: torch.Tensor) -> tuple[Any, ...]:
    a, labels = ctx.saved_tensors
    grad_a = _ops().class_sums_t_backward(grad.to(a.dtype), a, labels) if ctx.needs_input_grad[0] else None
    return grad_a, None, None


def _register_autograd() -> None:
    torch.library.register_autograd(
        "dendritic::class_sums_t", _class_sums_backward, setup_context=_class_sums_setup
    )
    torch.library.register_autograd(
        "dendritic::sparse_linear_t", _sparse_linear_backward, setup_context=_sparse_linear_setup
    )
    torch.library.register_autograd(
        "dendritic::dendritic_layer_t", _layer_backward, setup_context=_layer_setup
    )
