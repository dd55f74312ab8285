"""Engines: how :func:`~dendritic.training.fit` runs the training steps and evaluations of a run.

``fit`` asks :func:`select_engine` once per run. The choice rests on what the model and the
optimizer *declare* — never on probing their insides:

* a model that offers a plan for the whole-step C++ kernels (:class:`FusedPlanModel`: a
  ``fused_plan()`` method, as the paper's one-layer ``DendriticNet`` has), trained by the
  library's :class:`~dendritic.training.optim.Adam` (which lends its moments through
  ``fused_state``) on CPU data the kernels read, runs on :class:`WholeStepEngine`: many training
  steps per C++ call, the same kernels in the same order as step by step;
* everything else runs on :class:`StepEngine`: ``model(x)`` (or the model's own
  ``loss_and_correct``, :class:`BatchLossModel`), cross-entropy, ``optimizer.step()`` — any
  ``nn.Module``, any optimizer, any device.

The model never sees the optimizer, and the engine never reads the model's layers.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Protocol, runtime_checkable

import torch
import torch.nn.functional as F

from dendritic.layers.kernels import evaluate_dann_t, fused_layers_enabled, train_steps_t
from dendritic.models.network import FusedDANN
from dendritic.training.optim import Adam, make_optimizer

__all__ = [
    "EVAL_BATCH",
    "LOSSES",
    "STEPS_PER_CALL",
    "BatchLossModel",
    "FusedPlanModel",
    "StepEngine",
    "WholeStepEngine",
    "batch_order",
    "eval_batch_size",
    "evaluate",
    "mse",
    "resolve_loss",
    "make_optimizer",
    "select_engine",
    "train_epoch",
    "train_step",
    "train_steps",
]

EVAL_BATCH = 2048

#: A training objective: (model output, targets) → the batch's mean loss, differentiable.
Loss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def mse(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error; a ``(B, 1)`` output against ``(B,)`` targets compares the one column."""
    if output.dim() == target.dim() + 1 and output.shape[-1] == 1:
        output = output.squeeze(-1)
    return F.mse_loss(output, target.to(output.dtype))


#: The objectives ``fit`` knows by name (any ``Loss`` function may be given instead).
LOSSES: dict[str, Loss] = {"cross_entropy": F.cross_entropy, "mse": mse}


def resolve_loss(loss: str | Loss) -> Loss:
    """The loss function ``loss`` names (:data:`LOSSES`), or ``loss`` itself if it is callable."""
    if isinstance(loss, str):
        if loss not in LOSSES:
            raise ValueError(f"unknown loss {loss!r}; choose one of {', '.join(LOSSES)} or pass a function")
        return LOSSES[loss]
    if not callable(loss):
        raise TypeError(
            f"loss must be a name or a function (output, target) -> loss, got {type(loss).__name__}"
        )
    return loss


def _hits(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor | None:
    """Correct predictions of a classifier's batch (integer class targets), else None."""
    if output.dim() != 2 or target.dim() != 1 or target.dtype.is_floating_point or target.dtype == torch.bool:
        return None
    return (output.detach().argmax(dim=1) == target).sum()


# Batches per engine call. The whole-step C++ path returns to Python between calls, so this
# bounds how late a progress bar refreshes and Ctrl-C or SIGTERM is acted on (about 0.1 s at
# D=16, S=256 on one core); a call costs tens of microseconds.
STEPS_PER_CALL = 20


@runtime_checkable
class FusedPlanModel(Protocol):
    """A model that can hand itself to the whole-step C++ kernels (see ``DendriticNet.fused_plan``)."""

    def fused_plan(self) -> FusedDANN | None: ...


@runtime_checkable
class BatchLossModel(Protocol):
    """A model with its own (faster) mean cross-entropy and correct count of a batch."""

    def loss_and_correct(
        self, x: torch.Tensor, target: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]: ...


def eval_batch_size(device: torch.device | str) -> int:
    """Samples per evaluation forward pass: 256 on the CPU, where the sparse kernels keep a
    (units, 256) slice of the input in cache (a 2,048 batch is 1.6-2× slower there), and
    ``EVAL_BATCH`` on GPUs, which want big batches."""
    return 256 if torch.device(device).type == "cpu" else EVAL_BATCH


def batch_order(n: int, sequential: bool, generator: torch.Generator) -> torch.Tensor:
    """Sample order of one epoch: reshuffled every epoch, or kept (class-sorted) when sequential."""
    return torch.arange(n) if sequential else torch.randperm(n, generator=generator)


def _kernel_data(plan: FusedDANN, x: torch.Tensor, y: torch.Tensor) -> bool:
    """Whether the whole-set C++ kernels read ``x``, ``y`` as they are: contiguous CPU inputs of
    the parameters' float dtype, one row of the model's inputs per sample, int64 labels."""
    return (
        fused_layers_enabled(x)
        and x.dtype == plan.params[0].dtype
        and x.is_contiguous()
        and x.numel() == len(x) * plan.n_inputs
        and y.dtype == torch.int64
        and y.is_cpu
        and y.is_contiguous()
    )


@torch.no_grad()
def evaluate(
    model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, loss: Loss = F.cross_entropy
) -> tuple[float, float]:
    """Mean loss and accuracy (NaN for targets that are not class labels), in eval mode, without
    autograd: in one C++ call for a model with a whole-step plan (:class:`FusedPlanModel`) and
    the cross-entropy, else in batches."""
    n = max(len(x), 1)
    plan = model.fused_plan() if loss is F.cross_entropy and isinstance(model, FusedPlanModel) else None
    if plan is not None and _kernel_data(plan, x, y):
        total, hits = evaluate_dann_t(
            x.reshape(len(x), -1), y, eval_batch_size(x.device), plan.params, *plan.wiring
        )
        return total / n, hits / n
    step = eval_batch_size(x.device)
    was_training = model.training
    model.eval()
    loss_sum, correct, classified = 0.0, 0, True
    for start in range(0, len(x), step):
        output = model(x[start : start + step])
        target = y[start : start + step]
        if loss is F.cross_entropy:
            loss_sum += F.cross_entropy(output, target, reduction="sum").item()
        else:
            loss_sum += float(loss(output, target)) * len(target)
        batch_hits = _hits(output, target)
        classified = classified and batch_hits is not None
        correct += int(batch_hits) if batch_hits is not None else 0
    model.train(was_training)
    return loss_sum / n, (correct / n if classified else math.nan)


class StepEngine:
    """Plain PyTorch training steps for any model and optimizer: ``model(x)`` (or the model's
    own ``loss_and_correct`` when ``model_loss``), cross-entropy, backward, ``optimizer.step()``.

    ``transform`` maps each input batch (a continual task's permutation), ``logit_mask`` (a
    boolean (classes,) tensor) sets the other classes' logits to -inf (task-incremental), ``loss``
    is the objective (:data:`LOSSES`). With any of them, or without ``model_loss``, the running
    sums are kept in float64 (as exact as Python floats)."""

    name = "steps"

    def __init__(
        self,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        *,
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
        logit_mask: torch.Tensor | None = None,
        model_loss: bool = True,
        loss: Loss = F.cross_entropy,
    ) -> None:
        self.model, self.optimizer = model, optimizer
        self.transform, self.logit_mask, self.loss = transform, logit_mask, loss
        plain = transform is None and logit_mask is None and loss is F.cross_entropy
        self.batch_loss = (
            model.loss_and_correct if plain and model_loss and isinstance(model, BatchLossModel) else None
        )
        self.exact_sums = not (plain and model_loss)
        self.classified = True  # every batch so far had class targets (else accuracy is NaN)

    def accumulators(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """Zeroed running (Σ loss, correct count) of an epoch, as :meth:`train` adds to them."""
        dtype = torch.float64 if self.exact_sums else torch.get_default_dtype()
        return torch.zeros((), dtype=dtype, device=device), torch.zeros((), dtype=torch.long, device=device)

    def step(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        idx: torch.Tensor,
        loss_sum: torch.Tensor,
        correct: torch.Tensor,
    ) -> None:
        """One optimisation step on the samples ``idx``; adds the batch's summed loss and correct
        count to the running tensors in place (no ``.item()``: the step never waits on a sync)."""
        # index_select: about 3× faster than x[idx] for a batch of images
        xb, yb = torch.index_select(x, 0, idx), torch.index_select(y, 0, idx)
        if self.transform is not None:
            xb = self.transform(xb).to(x.device)
        hits: torch.Tensor | None
        if self.batch_loss is not None:
            loss, hits = self.batch_loss(xb, yb)
        else:
            logits = self.model(xb)
            if self.logit_mask is not None:
                logits = logits.masked_fill(~self.logit_mask.to(logits.device), float("-inf"))
            loss = self.loss(logits, yb)
            hits = _hits(logits, yb)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        with torch.no_grad():
            if self.exact_sums:
                loss_sum.add_(loss.detach().to(torch.float64) * len(yb))
            else:
                loss_sum.add_(loss.detach(), alpha=len(yb))
            if hits is None:
                self.classified = False
            else:
                correct.add_(hits)

    def train(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        order: torch.Tensor,
        batch: int,
        loss_sum: torch.Tensor,
        correct: torch.Tensor,
    ) -> None:
        """``ceil(len(order) / batch)`` steps, batch by batch over the samples ``order``."""
        for start in range(0, len(order), batch):
            self.step(x, y, order[start : start + batch], loss_sum, correct)

    def train_epoch(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        order: torch.Tensor,
        batch: int,
        loss_sum: torch.Tensor,
        correct: torch.Tensor,
        progress: Callable[[int, int], None] | None = None,
    ) -> None:
        """Every batch of ``order``, :data:`STEPS_PER_CALL` batches per :meth:`train` call;
        ``progress(batches done, batches just run)`` after each call."""
        n_batches = math.ceil(len(order) / batch)
        for first in range(0, n_batches, STEPS_PER_CALL):
            last = min(first + STEPS_PER_CALL, n_batches)
            self.train(x, y, order[first * batch : last * batch], batch, loss_sum, correct)
            if progress is not None:
                progress(last, last - first)

    def evaluate(self, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
        """Mean loss and accuracy of ``x``, ``y`` (see :func:`evaluate`)."""
        return evaluate(self.model, x, y, self.loss)


class WholeStepEngine(StepEngine):
    """Whole training steps of a one-layer dANN in one C++ call per :meth:`train` (the library's
    Adam on the CPU): the same kernels in the same order as :class:`StepEngine`'s steps, so the
    same parameters, without the per-step Python. Falls back to plain steps for a call the
    kernels cannot take (the model in eval mode, the optimizer off its fast path)."""

    name = "whole-steps"

    def __init__(self, model: torch.nn.Module, optimizer: Adam, plan: FusedDANN) -> None:
        super().__init__(model, optimizer)
        self.adam, self.plan = optimizer, plan

    def train(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        order: torch.Tensor,
        batch: int,
        loss_sum: torch.Tensor,
        correct: torch.Tensor,
    ) -> None:
        state = self.adam.fused_state(self.plan.params) if self.model.training else None
        if state is None:
            super().train(x, y, order, batch, loss_sum, correct)
            return
        exp_avgs, exp_avg_sqs, step, group = state
        sums = loss_sum if loss_sum.dtype == x.dtype and loss_sum.is_cpu else torch.zeros((), dtype=x.dtype)
        count = (
            correct if correct.dtype == torch.int64 and correct.is_cpu else torch.zeros((), dtype=torch.int64)
        )
        train_steps_t(
            x.reshape(len(x), -1), y, order, batch, self.plan.params, *self.plan.wiring, exp_avgs, exp_avg_sqs,
            step, float(group["lr"]), tuple(group["betas"]), float(group["eps"]), sums, count,
            keras=group.get("form") == "keras",
        )  # fmt: skip
        self.adam.advance(math.ceil(len(order) / batch))
        for p in self.plan.params:
            p.grad = None  # the per-step path leaves the last gradients; these were never materialised
        if sums is not loss_sum:
            loss_sum.add_(sums.to(loss_sum))
        if count is not correct:
            correct.add_(count.to(correct))


def select_engine(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    fused: bool = True,
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    logit_mask: torch.Tensor | None = None,
    loss: Loss = F.cross_entropy,
) -> StepEngine:
    """The engine for training ``model`` with ``optimizer`` on ``x``, ``y``: whole C++ steps
    where the model and the optimizer declare they can take them and the data suits the kernels,
    else plain steps. ``fused`` False always takes plain steps with ``model(x)`` and PyTorch's
    loss (to reproduce numbers of code that had no fast path). The whole C++ steps compute the
    plain cross-entropy only: any other ``loss`` (e.g. a regularised one,
    :class:`~dendritic.training.selectivity.SelectivityRegularizer`) takes plain steps, or the
    run would silently train something else."""
    plain = transform is None and logit_mask is None and loss is F.cross_entropy
    if fused and plain and isinstance(model, FusedPlanModel):
        plan = model.fused_plan()
        if (
            plan is not None
            and isinstance(optimizer, Adam)
            and all(p.requires_grad for p in plan.params)
            and _kernel_data(plan, x, y)
            and optimizer.fused_state(plan.params) is not None
        ):
            return WholeStepEngine(model, optimizer, plan)
    return StepEngine(
        model, optimizer, transform=transform, logit_mask=logit_mask, model_loss=fused, loss=loss
    )


# ---------------------------------------------------------------------------- the functions of before


def train_step(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    idx: torch.Tensor,
    loss_sum: torch.Tensor,
    correct: torch.Tensor,
) -> None:
    """One plain step on the samples ``idx`` (:meth:`StepEngine.step`)."""
    StepEngine(model, optimizer).step(x_train, y_train, idx, loss_sum, correct)


def train_steps(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    order: torch.Tensor,
    batch: int,
    loss_sum: torch.Tensor,
    correct: torch.Tensor,
) -> None:
    """``ceil(len(order) / batch)`` steps over ``order`` on the engine :func:`select_engine` picks."""
    select_engine(model, optimizer, x_train, y_train).train(x_train, y_train, order, batch, loss_sum, correct)


def train_epoch(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    order: torch.Tensor,
    batch: int,
    loss_sum: torch.Tensor,
    correct: torch.Tensor,
    progress: Callable[[int, int], None] | None = None,
) -> None:
    """Every batch of ``order`` (what ``dendritic train`` runs per epoch; see
    :meth:`StepEngine.train_epoch`)."""
    engine = select_engine(model, optimizer, x_train, y_train)
    engine.train_epoch(x_train, y_train, order, batch, loss_sum, correct, progress)
