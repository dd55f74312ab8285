"""The paper's training protocol (SPEC §4) as one function: config in, metrics (and a store row) out.

Everything lives in memory as tensors: a Fashion-MNIST epoch is 422 index-slices of a
(54,000 × 784) tensor, no DataLoader, no per-sample Python. Shuffling and dropout draw from
generators seeded by the run's seed, so the same config gives the same metrics on the CPU.
"""

from __future__ import annotations

import contextlib
import os
import platform
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from dendritic.models import count_parameters, paper_parameter_count
from dendritic.models.network import DendriticNet
from dendritic.models.spec import ModelSpec
from dendritic.training.config import TrainConfig, test_limit
from dendritic.training.engine import (
    batch_order,
    eval_batch_size,
    evaluate,
    train_epoch,
    train_step,
    train_steps,
)
from dendritic.training.fit import (
    Callback,
    EpochMetrics,
    FitResult,
    GradientNorms,
    LogEpochs,
    RecordRun,
    SaveCheckpoint,
    fit,
)
from dendritic.training.optim import make_optimizer
from dendritic.training.selectivity import MeasureActivity, SelectivityRegularizer
from dendritic.training.threads import AdaptiveThreads

__all__ = [
    "EpochMetrics",
    "RunResult",
    "batch_order",
    "eval_batch_size",
    "train_step",
    "train_steps",
    "train_epoch",
    "evaluate",
    "make_optimizer",
    "resolve_device",
    "run_metadata",
    "train",
]

#: Most torch threads a run may ask for (far above any machine; OpenMP dies at ~20,000).
MAX_THREADS = 1024
#: Whether a config's run flushes denormals while it trains (``fit``'s ``flush_denormals``), as
#: its record says (``run_metadata``).
FLUSH_DENORMALS = True
#: Training samples of the fixed batch whose per-layer gradient norms every run records.
PROBE_SAMPLES = 512


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
    #: :func:`run_metadata` of the run (what its store row records beside the config).
    meta: dict[str, Any] = field(default_factory=dict, repr=False)
    #: What the run measured beyond its metrics (its store row's ``extra``): ``activity``, the
    #: hidden layers' entropy and selectivity, for the selectivity study's runs.
    extra: dict[str, Any] = field(default_factory=dict, repr=False)

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
        test_limit=test_limit(config),
    )


def model_for(config: ModelSpec, data: Any) -> DendriticNet:
    """The model a run config names (its :class:`ModelSpec` fields and ``seed``), shaped for its
    prepared data: training and continual runs build it the same way."""
    return DendriticNet(
        config.model_spec(), data.input_shape, data.n_classes, seed=getattr(config, "seed", None)
    )


def _paper_count(config: TrainConfig) -> int | None:
    """The reference's closed form (28×28 inputs, 10 classes), whatever the dataset; one layer only."""
    if config.layers != 1 or config.lottery != "none":  # a pruned vANN is not the paper's count
        return None
    return paper_parameter_count(config.model, config.dendrites, config.somata, config.synapses)


def check_threads(threads: int | None) -> None:
    """A one-line error unless ``threads`` is None or an integer in [1, :data:`MAX_THREADS`]."""
    if threads is None:
        return
    if isinstance(threads, bool) or not isinstance(threads, int) or not 1 <= threads <= MAX_THREADS:
        raise ValueError(f"threads must be an integer in [1, {MAX_THREADS}], got {threads!r}")


def set_threads(threads: int | None) -> None:
    """Torch's CPU threads, bounded: OpenMP crashes the process when asked for 100,000."""
    check_threads(threads)
    if threads is not None:
        torch.set_num_threads(threads)


def run_metadata(
    config: TrainConfig, device: torch.device, model: torch.nn.Module, data: Any
) -> dict[str, Any]:
    """What a run records beside its config: where and with what it ran (host, pid, device,
    versions), its model's parameters and its data's provenance. ``train`` records it through
    :class:`RecordRun`; a sweep's worker returns it and its coordinator records it the same way."""
    from dendritic._version import __version__

    return {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "device": str(device),
        "dendritic_version": __version__,
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
        "trainable_params": count_parameters(model),
        "paper_params": _paper_count(config),
        "data": getattr(data, "provenance", None),
        "denormals": "flushed" if FLUSH_DENORMALS else "kept",  # runs stored before 2026-12-07 kept them
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
    parent_cache: str | os.PathLike[str] | None = None,
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
    ``parent_cache``: a folder where lottery runs share their dense parent
    (:func:`dendritic.training.lottery.train_ticket`; sweeps pass one).
    """
    dev = resolve_device(device)
    if parent_cache is not None:  # a bad folder fails here, not after the data and the parent
        from dendritic.files import check_input_dir

        check_input_dir(parent_cache, option="parent_cache")
    set_threads(threads)
    hooks: list[Callback] = []
    if threads is None and dev.type == "cpu":  # all cores, fewer while other jobs need them
        hooks.append(AdaptiveThreads())
    if checkpoint is not None:
        protected = [] if store is None else store.own_files()
        hooks.append(
            SaveCheckpoint(checkpoint, extra={"train_config": config.to_dict()}, protected=protected)
        )
    if data is None:
        data = data_for(config, data_dir, download)
    lottery = None
    if config.lottery != "none":  # the dense parent trained and pruned first (training.lottery)
        from dendritic.training.lottery import train_ticket

        ticket = train_ticket(config, data, dev, parent_cache=parent_cache)
        model, lottery = ticket.model, ticket.info
    else:
        model = model_for(config, data).to(dev)
    # Per-layer gradient norms on a fixed batch, before and after the first epochs (trainability).
    hooks.append(GradientNorms(data.x_train[:PROBE_SAMPLES], data.y_train[:PROBE_SAMPLES]))
    meta = run_metadata(config, dev, model, data)
    if lottery is not None:
        meta["lottery"] = lottery  # the store keeps it in the run's extra
    recorder = None
    if store is not None:
        recorder = RecordRun(store, config.to_dict(), experiment=experiment, meta=meta, replace=replace)
        hooks.append(recorder)  # after SaveCheckpoint: the run is finished with its checkpoint
    measure = None
    if config.selectivity_layers is not None or config.readout != "dense":
        # the selectivity study: what the hidden layers reached, into the run's extra
        measure = MeasureActivity(data.x_test, data.y_test)
        hooks.insert(len(hooks) - 1 if recorder is not None else len(hooks), measure)
    hooks.append(LogEpochs())
    if on_epoch is not None:
        hooks.append(_OnEpoch(on_epoch))
    with contextlib.ExitStack() as stack:
        loss: Any = "cross_entropy"
        if config.selectivity_layers is not None:
            loss = stack.enter_context(
                SelectivityRegularizer(model, config.selectivity_alpha, config.selectivity_layers)
            )
        result = _fit_config(config, model, data, dev, [*hooks, *callbacks], loss)
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
        meta=meta,
        extra={} if measure is None else {"activity": measure.result},
    )


def _fit_config(
    config: TrainConfig,
    model: DendriticNet,
    data: Any,
    dev: torch.device,
    callbacks: list[Callback],
    loss: Any,
) -> FitResult:
    """``fit`` with the protocol of ``config``."""
    return fit(
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
        callbacks=callbacks,
        device=dev,
        loss=loss,
        flush_denormals=FLUSH_DENORMALS,
    )


class _OnEpoch(Callback):
    def __init__(self, fn: Callable[[EpochMetrics], None]) -> None:
        self.fn = fn

    def on_epoch_end(self, state: Any, metrics: EpochMetrics) -> None:
        self.fn(metrics)
