"""The paper's training protocol (SPEC §4) as one function: config in, metrics (and a store row) out.

Everything lives in memory as tensors: a Fashion-MNIST epoch is 422 index-slices of a
(54,000 × 784) tensor, no DataLoader, no per-sample Python. Shuffling and dropout draw from
generators seeded by the run's seed, so the same config gives the same metrics on the CPU.
"""

from __future__ import annotations

import contextlib
import copy
import math
import os
import platform
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from dendritic.models import build_model, count_parameters, paper_parameter_count
from dendritic.models.checkpoint import check_target as check_checkpoint_target
from dendritic.models.checkpoint import save as save_checkpoint
from dendritic.models.network import DendriticNet
from dendritic.store import RunRecorder
from dendritic.training.config import TrainConfig

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
class EpochMetrics:
    epoch: int
    train_loss: float
    train_accuracy: float
    val_loss: float
    val_accuracy: float
    seconds: float

    def as_dict(self) -> dict[str, float]:
        return {k: v for k, v in self.__dict__.items() if k != "epoch"}


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


def model_for(config: Any, data: Any) -> DendriticNet:
    """The model a run config names, shaped for its prepared data (training and continual runs)."""
    return build_model(
        config.model,
        data.input_shape,
        data.n_classes,
        config.dendrites,
        config.somata,
        synapses=config.synapses,
        layers=config.layers,
        dropout=config.dropout,
        seed=config.seed,
        random_mode=config.random_mode,
    )


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
    kwargs = {"lr": lr, "betas": (0.9, 0.999), "eps": 1e-7}
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
    progress: bool = False,
    on_epoch: Callable[[EpochMetrics], None] | None = None,
    replace: bool = False,
    threads: int | None = None,
) -> RunResult:
    """Train one model with the paper's protocol and return its metrics.

    ``store`` (a :class:`dendritic.store.RunStore`) records the run and every epoch; a run that
    raises or is interrupted is marked failed / interrupted, never finished. ``data`` may be a
    ready :class:`dendritic.data.PreparedData` (sweeps reuse one); otherwise it is prepared from
    ``config``. ``checkpoint`` saves the final model there (safetensors + JSON); its path is
    checked before training starts, so a bad path never costs a run. The store records where
    the data came from (files and SHA-256, see :mod:`dendritic.data.loading`).
    """
    dev = resolve_device(device)
    set_threads(threads)
    if checkpoint is not None:
        protected = [] if store is None else store.own_files()
        check_checkpoint_target(checkpoint, protected=tuple(protected))
    epochs = config.resolved_epochs()
    if data is None:
        data = data_for(config, data_dir, download)
    model = model_for(config, data).to(dev)
    recorder = (
        RunRecorder(store, config.to_dict(), meta=_meta(config, dev, model, data), replace=replace)
        if store is not None
        else None
    )
    # The recorder marks the run failed or interrupted if anything below raises.
    with recorder if recorder is not None else contextlib.nullcontext():
        run_id = recorder.id if recorder is not None else None
        result = _fit(config, model, data, dev, epochs, recorder, progress, on_epoch)
        if checkpoint is not None:
            path = save_checkpoint(
                model, checkpoint, extra={"run_id": run_id, "train_config": config.to_dict()}
            )
            result.checkpoint = str(Path(path).resolve())  # valid from any working folder
        if recorder is not None:
            recorder.finish(
                test_accuracy=result.test_accuracy,
                test_loss=result.test_loss,
                best_epoch=result.best_epoch,
                epochs_run=result.epochs_run,
                wall_seconds=result.seconds,
                checkpoint=result.checkpoint,
            )
        result.run_id = run_id
        return result


def _fit(
    config: TrainConfig,
    model: DendriticNet,
    data: Any,
    dev: torch.device,
    epochs: int,
    recorder: RunRecorder | None,
    progress: bool,
    on_epoch: Callable[[EpochMetrics], None] | None,
) -> RunResult:
    start_time = time.perf_counter()
    torch.manual_seed(config.seed)  # dropout masks
    shuffle = torch.Generator().manual_seed(config.seed)
    x_train, y_train = data.x_train.to(dev), data.y_train.to(dev)
    x_val, y_val = data.x_val.to(dev), data.y_val.to(dev)
    optimizer = make_optimizer(model, config.lr, config.optimizer)
    n = len(x_train)
    batch = config.batch_size
    n_batches = math.ceil(n / batch)
    history: list[EpochMetrics] = []
    best_loss, best_epoch, best_state, stale = math.inf, 0, None, 0

    bar = None
    if progress and sys.stderr.isatty():  # a live bar on a terminal; logs get one line per epoch
        from tqdm.auto import tqdm

        bar = tqdm(total=epochs * n_batches, unit="batch", file=sys.stderr, dynamic_ncols=True, leave=False)
    try:
        for epoch in range(1, epochs + 1):
            t0 = time.perf_counter()
            model.train()
            order = (
                torch.arange(n, device=dev)
                if config.sequential
                else torch.randperm(n, generator=shuffle).to(dev)
            )
            loss_sum = torch.zeros((), device=dev)
            correct = torch.zeros((), dtype=torch.long, device=dev)

            def show(done: int, steps: int, epoch: int = epoch, loss_sum=loss_sum, correct=correct) -> None:
                assert bar is not None
                seen = min(done * batch, n)
                bar.update(steps)
                bar.set_description(f"epoch {epoch}/{epochs}", refresh=False)
                bar.set_postfix(
                    loss=f"{loss_sum.item() / seen:.4f}", acc=f"{correct.item() / seen:.4f}", refresh=False
                )

            train_epoch(
                model,
                optimizer,
                x_train,
                y_train,
                order,
                batch,
                loss_sum,
                correct,
                show if bar is not None else None,
            )
            train_loss, train_acc = loss_sum.item() / n, correct.item() / n
            val_loss, val_acc = evaluate(model, x_val, y_val)
            metrics = EpochMetrics(epoch, train_loss, train_acc, val_loss, val_acc, time.perf_counter() - t0)
            if not math.isfinite(train_loss):
                raise FloatingPointError(f"training diverged at epoch {epoch} (loss {train_loss})")
            history.append(metrics)
            if recorder is not None:
                recorder.log_epoch(epoch, **metrics.as_dict())
            if on_epoch is not None:
                on_epoch(metrics)
            if progress:
                line = (
                    f"epoch {epoch:>3}/{epochs}: loss {train_loss:.4f} acc {train_acc:.4f} | "
                    f"val loss {val_loss:.4f} acc {val_acc:.4f} | {metrics.seconds:.1f} s"
                )
                if bar is not None:
                    bar.write(line, file=sys.stderr)
                else:
                    print(line, file=sys.stderr, flush=True)
            if val_loss < best_loss:
                best_loss, best_epoch, stale = val_loss, epoch, 0
                if config.early_stop:
                    best_state = copy.deepcopy(model.state_dict())
            else:
                stale += 1
                if config.early_stop and stale >= config.patience:
                    break
    finally:
        if bar is not None:
            bar.close()
    if config.early_stop and best_state is not None:
        model.load_state_dict(best_state)
    test_loss, test_acc = evaluate(model, data.x_test.to(dev), data.y_test.to(dev))
    return RunResult(
        config=config,
        test_accuracy=test_acc,
        test_loss=test_loss,
        trainable_params=count_parameters(model),
        paper_params=_paper_count(config),
        best_epoch=best_epoch,
        epochs_run=len(history),
        seconds=time.perf_counter() - start_time,
        history=history,
        model=model,
    )
