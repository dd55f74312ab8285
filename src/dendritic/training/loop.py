"""The paper's training protocol (SPEC §4) as one function: config in, metrics (and a store row) out.

Everything lives in memory as tensors: a Fashion-MNIST epoch is 422 index-slices of a
(54,000 × 784) tensor, no DataLoader, no per-sample Python. Shuffling and dropout draw from
generators seeded by the run's seed, so the same config gives the same metrics on the CPU.
"""

from __future__ import annotations

import math
import os
import platform
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from dendritic.models import count_parameters, paper_parameter_count
from dendritic.models.network import DendriticNet
from dendritic.models.spec import ModelSpec
from dendritic.training.config import TrainConfig
from dendritic.training.fit import (
    Callback,
    EpochMetrics,
    GradientNorms,
    LogEpochs,
    RecordRun,
    SaveCheckpoint,
    fit,
)

__all__ = [
    "EpochMetrics",
    "RunResult",
    "batch_order",
    "train_step",
    "train_steps",
    "train_epoch",
    "evaluate",
    "make_optimizer",
    "resolve_device",
    "train",
]

EVAL_BATCH = 2048
#: Most torch threads a run may ask for (far above any machine; OpenMP dies at ~20,000).
MAX_THREADS = 1024
#: Training samples of the fixed batch whose per-layer gradient norms every run records.
PROBE_SAMPLES = 512
# Batches per train_steps call. The whole-step C++ path returns to Python between calls, so this
# bounds how late a progress bar refreshes and Ctrl-C or SIGTERM is acted on (about 0.1 s at
# D=16, S=256 on one core); a call costs tens of microseconds.
STEPS_PER_CALL = 20


def eval_batch_size(device: torch.device | str) -> int:
    """Samples per evaluation forward pass: 256 on the CPU, where the sparse kernels keep a
    (units, 256) slice of the input in cache (a 2,048 batch is 1.6-2× slower there), and
    ``EVAL_BATCH`` on GPUs, which want big batches."""
    return 256 if torch.device(device).type == "cpu" else EVAL_BATCH


@dataclass
class RunResult:
    """What a finished run produced. ``model`` holds the final (or best, with early stopping) weights."""

    config: TrainConfig
    test_accuracy: float
    test_loss: float
    trainable_params: int
    paper_params: int | None
    best_epoch: int
    epochs_run: int
    seconds: float
    history: list[EpochMetrics] = field(default_factory=list)
    run_id: int | None = None
    checkpoint: str | None = None
    model: DendriticNet | None = field(default=None, repr=False)

    def summary(self) -> str:
        return (
            f"{self.config.model} D={self.config.dendrites} S={self.config.somata} seed={self.config.seed}: "
            f"test accuracy {100 * self.test_accuracy:.2f} %, test loss {self.test_loss:.4f}, "
            f"{self.trainable_params:,} trainable parameters, {self.seconds:.1f} s"
        )


def resolve_device(device: str | torch.device | None) -> torch.device:
    """'cpu', 'cuda', 'cuda:1', 'auto' (CUDA when present) → a usable device, or ValueError."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"unknown device {device!r}; use cpu, cuda, cuda:N or auto") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for, but this machine has no CUDA device")
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"unsupported device {device!r}; use cpu, cuda, cuda:N or auto")
    return dev


@torch.no_grad()
def evaluate(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """Mean cross-entropy and accuracy, in eval mode, without autograd."""
    step = eval_batch_size(x.device)
    n = max(len(x), 1)
    fused = getattr(model, "fused_evaluate", None)  # e.g. a one-layer dANN: the whole set in one C++ call
    whole = fused(x, y, step) if fused is not None else None
    if whole is not None:
        total, hits = whole
        return total / n, hits / n
    was_training = model.training
    model.eval()
    loss_sum, correct = 0.0, 0
    for start in range(0, len(x), step):
        logits = model(x[start : start + step])
        target = y[start : start + step]
        loss_sum += F.cross_entropy(logits, target, reduction="sum").item()
        correct += int((logits.argmax(dim=1) == target).sum().item())
    model.train(was_training)
    return loss_sum / n, correct / n


def data_for(
    config: TrainConfig, data_dir: str | os.PathLike[str] | None = None, download: bool = True
) -> Any:
    """The prepared data (split, noise, order) a training config asks for."""
    from dendritic.data import prepare

    return prepare(
        config.dataset,
        seed=config.seed,
        sigma=config.sigma,
        sequential=config.sequential,
        val_fraction=config.val_fraction,
        data_dir=data_dir,
        download=download,
        limit=config.limit,
        batch_size=config.batch_size,
    )


def model_for(config: ModelSpec, data: Any) -> DendriticNet:
    """The model a run config names (its :class:`ModelSpec` fields and ``seed``), shaped for its
    prepared data: training and continual runs build it the same way."""
    return config.build(data.input_shape, data.n_classes, seed=getattr(config, "seed", None))


def make_optimizer(model: torch.nn.Module, lr: float, optimizer: str = "adam-keras") -> torch.optim.Optimizer:
    """The paper's Adam (β 0.9/0.999, ε 1e-7) in the form ``optimizer`` names: ``"adam-keras"``
    (the paper's code: ε on the uncorrected √v) or ``"adam-torch"`` (see
    :mod:`dendritic.training.optim`).

    :class:`dendritic.training.optim.Adam` on the CPU (one C++ call per step where the kernels
    are built) and for Keras's form everywhere; torch's fused implementation for torch's form
    off the CPU, where it has one.
    """
    from dendritic.layers.kernels import kernel_backend
    from dendritic.training.optim import Adam, form_of

    form = form_of(optimizer)
    kwargs: dict[str, Any] = {"lr": lr, "betas": (0.9, 0.999), "eps": 1e-7}
    on_cpu = all(p.is_cpu for p in model.parameters())
    if form == "keras" or (on_cpu and kernel_backend() == "cpp"):
        return Adam(model.parameters(), form=form, **kwargs)
    try:
        return torch.optim.Adam(model.parameters(), fused=True, **kwargs)
    except (TypeError, RuntimeError):  # torch < 2.4, or an unsupported device
        return torch.optim.Adam(model.parameters(), **kwargs)


def train_step(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    idx: torch.Tensor,
    loss_sum: torch.Tensor,
    correct: torch.Tensor,
) -> None:
    """One optimisation step on the samples ``idx``; adds the batch's summed loss and correct
    count to the running tensors in place (no ``.item()``: the step never waits on a sync)."""
    # index_select: about 3× faster than x_train[idx] for a batch of images
    xb, yb = torch.index_select(x_train, 0, idx), torch.index_select(y_train, 0, idx)
    loss_and_correct = getattr(model, "loss_and_correct", None)  # a model's own fast loss, if any
    if loss_and_correct is not None:
        loss, hits = loss_and_correct(xb, yb)
    else:
        logits = model(xb)
        loss = F.cross_entropy(logits, yb)
        hits = (logits.detach().argmax(dim=1) == yb).sum()
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    with torch.no_grad():
        loss_sum.add_(loss.detach(), alpha=len(yb))
        correct.add_(hits)


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
    """``ceil(len(order) / batch)`` optimisation steps, batch by batch over the samples ``order``.

    A model may run them all at once: if it has ``fused_train_steps(optimizer, x, y, order,
    batch, loss_sum, correct)`` returning True (a one-layer dANN with the library's Adam on the
    CPU does, in one C++ call; ``DENDRITIC_FUSED=0`` turns it off), that is all; otherwise
    :func:`train_step` per batch. Adds each batch's summed loss and correct count to
    ``loss_sum`` and ``correct``.
    """
    fused = getattr(model, "fused_train_steps", None)
    if fused is not None and fused(optimizer, x_train, y_train, order, batch, loss_sum, correct):
        return
    for start in range(0, len(order), batch):
        train_step(model, optimizer, x_train, y_train, order[start : start + batch], loss_sum, correct)


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
    """Every batch of ``order``, :data:`STEPS_PER_CALL` batches per :func:`train_steps` call
    (what ``dendritic train`` runs per epoch); ``progress(batches done, batches just run)``
    after each call."""
    n_batches = math.ceil(len(order) / batch)
    for first in range(0, n_batches, STEPS_PER_CALL):
        last = min(first + STEPS_PER_CALL, n_batches)
        train_steps(
            model, optimizer, x_train, y_train, order[first * batch : last * batch], batch, loss_sum, correct
        )
        if progress is not None:
            progress(last, last - first)


def batch_order(n: int, sequential: bool, generator: torch.Generator) -> torch.Tensor:
    """Sample order of one epoch: reshuffled every epoch, or kept (class-sorted) when sequential."""
    return torch.arange(n) if sequential else torch.randperm(n, generator=generator)


def _paper_count(config: TrainConfig) -> int | None:
    """The reference's closed form (28×28 inputs, 10 classes), whatever the dataset; one layer only."""
    if config.layers != 1:
        return None
    return paper_parameter_count(config.model, config.dendrites, config.somata, config.synapses)


def set_threads(threads: int | None) -> None:
    """Torch's CPU threads, bounded: OpenMP crashes the process when asked for 100,000."""
    if threads is None:
        return
    if isinstance(threads, bool) or not isinstance(threads, int) or not 1 <= threads <= MAX_THREADS:
        raise ValueError(f"threads must be an integer in [1, {MAX_THREADS}], got {threads!r}")
    torch.set_num_threads(threads)


def _meta(config: TrainConfig, device: torch.device, model: torch.nn.Module, data: Any) -> dict[str, Any]:
    import dendritic

    return {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "device": str(device),
        "dendritic_version": dendritic.__version__,
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
        "trainable_params": count_parameters(model),
        "paper_params": _paper_count(config),
        "data": getattr(data, "provenance", None),
    }


def train(
    config: TrainConfig,
    *,
    store: Any | None = None,
    data: Any | None = None,
    device: str | torch.device | None = "cpu",
    data_dir: str | os.PathLike[str] | None = None,
    download: bool = True,
    checkpoint: str | os.PathLike[str] | None = None,
    callbacks: Sequence[Callback] = (),
    on_epoch: Callable[[EpochMetrics], None] | None = None,
    replace: bool = False,
    threads: int | None = None,
    experiment: str | None = None,
) -> RunResult:
    """Train the paper's model ``config`` names with the paper's protocol, through :func:`fit`.

    ``store`` (a :class:`dendritic.store.RunStore`) records the run and every epoch; a run that
    raises or is interrupted is marked failed / interrupted, never finished. ``data`` may be a
    ready :class:`dendritic.data.PreparedData` (sweeps reuse one); otherwise it is prepared from
    ``config``. ``checkpoint`` saves the final model there (safetensors + JSON); its path is
    checked before training starts, so a bad path never costs a run. The store records where
    the data came from (files and SHA-256, see :mod:`dendritic.data.loading`). ``callbacks`` are
    :func:`fit`'s (a progress bar, say); ``on_epoch`` is called with every epoch's metrics. Epoch
    lines are logged (``dendritic.training``, INFO). ``experiment`` tags the stored run with the
    sweep it belongs to (``dendritic train`` passes ``dendritic.sweeps.experiment_of(config)``).
    """
    dev = resolve_device(device)
    set_threads(threads)
    hooks: list[Callback] = []
    if checkpoint is not None:
        protected = [] if store is None else store.own_files()
        hooks.append(
            SaveCheckpoint(checkpoint, extra={"train_config": config.to_dict()}, protected=protected)
        )
    if data is None:
        data = data_for(config, data_dir, download)
    model = model_for(config, data).to(dev)
    # Per-layer gradient norms on a fixed batch, before and after the first epochs (trainability).
    hooks.append(GradientNorms(data.x_train[:PROBE_SAMPLES], data.y_train[:PROBE_SAMPLES]))
    recorder = None
    if store is not None:
        recorder = RecordRun(
            store,
            config.to_dict(),
            experiment=experiment,
            meta=_meta(config, dev, model, data),
            replace=replace,
        )
        hooks.append(recorder)  # after SaveCheckpoint: the run is finished with its checkpoint
    hooks.append(LogEpochs())
    if on_epoch is not None:
        hooks.append(_OnEpoch(on_epoch))
    result = fit(
        model,
        (data.x_train, data.y_train),
        val=(data.x_val, data.y_val),
        test=(data.x_test, data.y_test),
        epochs=config.resolved_epochs(),
        optimizer=make_optimizer(model, config.lr, config.optimizer),
        batch_size=config.batch_size,
        seed=config.seed,
        shuffle=not config.sequential,
        patience=config.patience if config.early_stop else None,
        callbacks=[*hooks, *callbacks],
        device=dev,
    )
    return RunResult(
        config=config,
        test_accuracy=result.test_accuracy,
        test_loss=result.test_loss,
        trainable_params=count_parameters(model),
        paper_params=_paper_count(config),
        best_epoch=result.best_epoch,
        epochs_run=result.epochs_run,
        seconds=result.seconds,
        history=result.history,
        run_id=None if recorder is None else recorder.id,
        checkpoint=result.checkpoint,
        model=model,
    )


class _OnEpoch(Callback):
    def __init__(self, fn: Callable[[EpochMetrics], None]) -> None:
        self.fn = fn

    def on_epoch_end(self, state: Any, metrics: EpochMetrics) -> None:
        self.fn(metrics)
