"""``fit``: the one training loop, for any ``nn.Module``.

It trains a classifier with cross-entropy in mini-batches, evaluates on a validation set after
every epoch, optionally stops early and restores the best weights, and evaluates on a test set at
the end. Everything around it plugs in as :class:`Callback`\\ s: recording the run in a results
store (:class:`RecordRun`), saving a checkpoint (:class:`SaveCheckpoint`), logging epoch lines
(:class:`LogEpochs`), a progress bar (the CLI's). ``dendritic.training.train`` (a paper model from
a config) and the continual-learning runner are thin wrappers over it::

    from dendritic.training import fit, RecordRun
    from dendritic.store import RunStore

    with RunStore("runs.db") as store:
        result = fit(my_model, (x_train, y_train), val=(x_val, y_val), test=(x_test, y_test),
                     epochs=10, seed=1, callbacks=[RecordRun(store, {"model": "my-cnn", "seed": 1})])

How the steps run is an engine's job (:mod:`dendritic.training.engine`), chosen once per run
from what the model and the optimizer declare: whole C++ steps for the paper's one-layer dANNs
with the library's Adam, plain PyTorch steps for everything else.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from dendritic.training.engine import Loss, StepEngine, resolve_loss, select_engine
from dendritic.training.optim import make_optimizer

__all__ = [
    "Callback",
    "EpochMetrics",
    "FitResult",
    "FitState",
    "GradientNorms",
    "LogEpochs",
    "RecordRun",
    "SaveCheckpoint",
    "TrainSet",
    "fit",
]

log = logging.getLogger("dendritic.training")

#: Seconds between heartbeats of a recorded run within an epoch (the store's lease is minutes).
HEARTBEAT_SECONDS = 60.0


@dataclass
class EpochMetrics:
    """One epoch's numbers; ``extra`` holds what callbacks measured (e.g. gradient norms), and
    everything but ``epoch`` goes into the epoch's store row."""

    epoch: int
    train_loss: float
    train_accuracy: float
    val_loss: float
    val_accuracy: float
    seconds: float
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        values: dict[str, Any] = {k: v for k, v in self.__dict__.items() if k not in ("epoch", "extra")}
        return {**values, **self.extra}


@dataclass
class TrainSet:
    """What an epoch trains on: ``x[indices]`` and ``y[indices]`` (all samples when ``indices`` is
    None), ``transform`` applied to each input batch (e.g. a task's pixel permutation), and
    ``logit_mask`` (a boolean (classes,) tensor: logits outside it are -inf, task-incremental)."""

    x: torch.Tensor
    y: torch.Tensor
    indices: torch.Tensor | None = None
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None
    logit_mask: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.y) if self.indices is None else len(self.indices)


@dataclass
class FitState:
    """What callbacks see: the model, the optimizer, the epochs so far, and a shared scratch
    (``checkpoint`` is set by :class:`SaveCheckpoint` for :class:`RecordRun`)."""

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    epochs: int
    batches_per_epoch: int
    history: list[EpochMetrics] = field(default_factory=list)
    #: The objective being minimised: (output, target) → mean loss.
    loss: Loss = F.cross_entropy
    stop: bool = False
    checkpoint: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class FitResult:
    """What a fit produced. ``test_*`` are NaN without a test set."""

    history: list[EpochMetrics]
    best_epoch: int
    epochs_run: int
    seconds: float
    test_loss: float = math.nan
    test_accuracy: float = math.nan
    stopped_early: bool = False
    checkpoint: str | None = None


class Callback:
    """Hooks of :func:`fit`; every method is optional."""

    def on_fit_start(self, state: FitState) -> None: ...

    def on_batches(self, state: FitState, epoch: int, done: int, loss: float, accuracy: float) -> None:
        """``done`` batches of ``epoch`` are through; running loss and accuracy of the epoch."""

    def on_epoch_end(self, state: FitState, metrics: EpochMetrics) -> None: ...

    def on_fit_end(self, state: FitState, result: FitResult) -> None: ...

    def on_fit_error(self, state: FitState | None, error: BaseException) -> None:
        """``fit`` raised (Ctrl-C and SIGTERM included); the error propagates afterwards."""


# ---------------------------------------------------------------------------- the loop


def fit(
    model: torch.nn.Module,
    train: TrainSet | tuple[torch.Tensor, torch.Tensor],
    *,
    epochs: int,
    val: tuple[torch.Tensor, torch.Tensor] | None = None,
    test: tuple[torch.Tensor, torch.Tensor] | None = None,
    optimizer: torch.optim.Optimizer | str = "adam-keras",
    lr: float = 1e-3,
    batch_size: int = 128,
    seed: int | None = None,
    generator: torch.Generator | None = None,
    shuffle: bool = True,
    patience: int | None = None,
    callbacks: Sequence[Callback] = (),
    device: str | torch.device | None = None,
    fused: bool = True,
    loss: str | Loss = "cross_entropy",
    flush_denormals: bool = True,
) -> FitResult:
    """Train ``model`` for ``epochs`` epochs of mini-batch gradient descent on ``loss``.

    ``optimizer`` is a ready optimizer or a name (``"adam-keras"``, the paper's; ``"adam-torch"``)
    built with ``lr``. ``seed`` seeds torch's global generator (dropout masks) and the shuffling;
    ``generator`` shuffles instead (the continual runner shares one across tasks). ``shuffle``
    False keeps the samples' order (the paper's class-sequential protocol). With ``patience``,
    training stops after that many epochs without a lower validation loss and the best weights
    come back (needs ``val``). ``device`` moves the data (the model is the caller's to move).
    ``fused`` False never takes a model's own whole-step path (``model(x)`` and PyTorch's loss
    every step), e.g. to reproduce numbers of code that did not have it. ``loss`` is
    ``"cross_entropy"`` (classification: integer labels, accuracy reported), ``"mse"``
    (regression: float targets, accuracy NaN) or any function ``(output, target) -> mean loss``.
    ``flush_denormals`` flushes denormal floats to zero while it trains, on every torch thread
    (:func:`dendritic.layers.kernels.flush_denormals`; the previous setting comes back after):
    as TensorFlow, the paper's framework, does, and several times faster where training makes
    them (class-sequential runs). Ctrl-C, and SIGTERM in the main thread, end the fit with
    ``KeyboardInterrupt`` after every callback's ``on_fit_error`` (:class:`RecordRun` marks the
    run 'interrupted').
    """
    from dendritic.errors import sigterm_interrupts
    from dendritic.layers.kernels import denormals_flushed

    if not isinstance(flush_denormals, bool):
        raise TypeError(f"flush_denormals must be True or False, got {flush_denormals!r}")
    with sigterm_interrupts(), denormals_flushed(flush_denormals):
        return _fit(
            model, train, epochs=epochs, val=val, test=test, optimizer=optimizer, lr=lr,
            batch_size=batch_size, seed=seed, generator=generator, shuffle=shuffle, patience=patience,
            callbacks=callbacks, device=device, fused=fused, loss=resolve_loss(loss),
        )  # fmt: skip


@dataclass
class _Run:
    """What one fit works with, prepared once: the data on its device, the optimizer, the
    shuffling generator and the engine that runs the steps."""

    data: TrainSet
    x: torch.Tensor
    y: torch.Tensor
    val: tuple[torch.Tensor, torch.Tensor] | None
    device: torch.device
    optimizer: torch.optim.Optimizer
    loss: Loss
    shuffler: torch.Generator
    shuffle: bool
    batch_size: int
    engine: StepEngine


def _prepare(
    model: torch.nn.Module,
    data: TrainSet,
    val: tuple[torch.Tensor, torch.Tensor] | None,
    optimizer: torch.optim.Optimizer | str,
    lr: float,
    seed: int | None,
    generator: torch.Generator | None,
    shuffle: bool,
    batch_size: int,
    device: str | torch.device | None,
    fused: bool,
    loss: Loss,
) -> _Run:
    """Move the data, build the optimizer, seed, and choose the engine (once per run)."""
    params = list(model.parameters())
    dev = torch.device(device) if device is not None else params[0].device if params else torch.device("cpu")
    if isinstance(optimizer, str):
        optimizer = make_optimizer(model, lr, optimizer)
    if seed is not None:
        torch.manual_seed(seed)  # dropout masks
    shuffler = generator if generator is not None else torch.Generator().manual_seed(seed or 0)
    x, y = data.x.to(dev), data.y.to(dev)
    engine = select_engine(
        model, optimizer, x, y, fused=fused, transform=data.transform, logit_mask=data.logit_mask, loss=loss
    )
    log.debug("fit: %s engine", engine.name)
    pair = None if val is None else (val[0].to(dev), val[1].to(dev))
    return _Run(data, x, y, pair, dev, optimizer, loss, shuffler, shuffle, batch_size, engine)


def _train_epoch(run: _Run, state: FitState, epoch: int, callbacks: Sequence[Callback]) -> EpochMetrics:
    """One epoch: the shuffled batches through the engine, then the validation set."""
    t0 = time.perf_counter()
    n = len(run.data)
    state.model.train()
    order = torch.randperm(n, generator=run.shuffler) if run.shuffle else torch.arange(n)
    if run.data.indices is not None:
        order = run.data.indices[order]
    loss_sum, correct = run.engine.accumulators(run.device)

    def report(done: int, steps: int) -> None:
        seen = max(1, min(done * run.batch_size, n))
        for cb in callbacks:
            cb.on_batches(state, epoch, done, loss_sum.item() / seen, correct.item() / seen)

    run.engine.train_epoch(
        run.x, run.y, order.to(run.device), run.batch_size, loss_sum, correct, report if callbacks else None
    )
    train_loss = loss_sum.item() / max(n, 1)
    train_acc = correct.item() / max(n, 1) if run.engine.classified else math.nan
    val_loss, val_acc = run.engine.evaluate(*run.val) if run.val is not None else (math.nan, math.nan)
    if not math.isfinite(train_loss):
        raise FloatingPointError(f"training diverged at epoch {epoch} (loss {train_loss})")
    return EpochMetrics(epoch, train_loss, train_acc, val_loss, val_acc, time.perf_counter() - t0)


class _EarlyStopping:
    """The best validation loss so far; with ``patience``, the weights of its epoch and when to stop."""

    def __init__(self, patience: int | None) -> None:
        self.patience = patience
        self.best_loss, self.best_epoch, self.stale = math.inf, 0, 0
        self.best_state: dict[str, Any] | None = None

    def update(self, model: torch.nn.Module, metrics: EpochMetrics) -> bool:
        """Record ``metrics``; True when training should stop."""
        if metrics.val_loss < self.best_loss:
            self.best_loss, self.best_epoch, self.stale = metrics.val_loss, metrics.epoch, 0
            if self.patience is not None:
                self.best_state = copy.deepcopy(model.state_dict())
            return False
        self.stale += 1
        return self.patience is not None and self.stale >= self.patience

    def restore(self, model: torch.nn.Module) -> None:
        if self.best_state is not None:
            model.load_state_dict(self.best_state)


def _fit(
    model: torch.nn.Module,
    train: TrainSet | tuple[torch.Tensor, torch.Tensor],
    *,
    epochs: int,
    val: tuple[torch.Tensor, torch.Tensor] | None,
    test: tuple[torch.Tensor, torch.Tensor] | None,
    optimizer: torch.optim.Optimizer | str,
    lr: float,
    batch_size: int,
    seed: int | None,
    generator: torch.Generator | None,
    shuffle: bool,
    patience: int | None,
    callbacks: Sequence[Callback],
    device: str | torch.device | None,
    fused: bool,
    loss: Loss,
) -> FitResult:
    state: FitState | None = None
    try:
        data = train if isinstance(train, TrainSet) else TrainSet(*train)
        _check_fit_args(model, data, val, test, epochs, batch_size, patience, labels=loss is F.cross_entropy)
        run = _prepare(
            model, data, val, optimizer, lr, seed, generator, shuffle, batch_size, device, fused, loss
        )
        state = FitState(model, run.optimizer, epochs, math.ceil(len(data) / batch_size), loss=loss)
        for cb in callbacks:
            cb.on_fit_start(state)
        start_time = time.perf_counter()
        stopping = _EarlyStopping(patience)
        for epoch in range(1, epochs + 1):
            metrics = _train_epoch(run, state, epoch, callbacks)
            state.history.append(metrics)
            for cb in callbacks:
                cb.on_epoch_end(state, metrics)
            state.stop = stopping.update(model, metrics) or state.stop
            if state.stop:
                break
        stopping.restore(model)
        result = FitResult(
            history=state.history,
            best_epoch=stopping.best_epoch,
            epochs_run=len(state.history),
            seconds=0.0,
            stopped_early=len(state.history) < epochs,
        )
        if test is not None:
            result.test_loss, result.test_accuracy = run.engine.evaluate(
                test[0].to(run.device), test[1].to(run.device)
            )
        result.seconds = time.perf_counter() - start_time
        for cb in callbacks:
            cb.on_fit_end(state, result)
        result.checkpoint = state.checkpoint
        return result
    except BaseException as error:
        for cb in callbacks:
            cb.on_fit_error(state, error)
        raise


def _check_pair(name: str, pair: Any, labels: bool = True) -> None:
    if not (isinstance(pair, (tuple, list)) and len(pair) == 2):
        raise ValueError(f"{name} must be a pair (inputs, labels)")
    x, y = pair
    if not (isinstance(x, torch.Tensor) and isinstance(y, torch.Tensor)):
        raise TypeError(
            f"{name}: inputs and labels must be tensors, got {type(x).__name__} and {type(y).__name__}"
        )
    if labels and (y.dim() != 1 or y.dtype.is_floating_point or y.dtype == torch.bool):
        raise ValueError(
            f"{name}: labels must be a 1-D tensor of class indices, got {y.dtype} of shape {tuple(y.shape)}"
        )
    if x.dim() < 1 or len(x) != len(y):
        raise ValueError(f"{name}: {len(x) if x.dim() else 0} inputs but {len(y)} labels")


def _check_fit_args(
    model: Any,
    data: TrainSet,
    val: Any,
    test: Any,
    epochs: Any,
    batch_size: Any,
    patience: Any,
    *,
    labels: bool = True,
) -> None:
    """One-line errors for what would otherwise fail mid-epoch (or never train at all); the
    targets must be class labels for the cross-entropy (``labels``)."""
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    _check_pair("train", (data.x, data.y), labels)
    if len(data) == 0:
        raise ValueError("train: no samples")
    for name, pair in (("val", val), ("test", test)):
        if pair is not None:
            _check_pair(name, pair, labels)
    for name, value, low in (("epochs", epochs, 1), ("batch_size", batch_size, 1), ("patience", patience, 1)):
        if name == "patience" and value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    if patience is not None and val is None:
        raise ValueError("early stopping (patience) needs a validation set")


# ---------------------------------------------------------------------------- callbacks


class LogEpochs(Callback):
    """One log line per epoch (``dendritic.training`` logger, INFO): loss, accuracy, seconds."""

    def on_epoch_end(self, state: FitState, metrics: EpochMetrics) -> None:
        log.info(
            "epoch %3d/%d: loss %.4f acc %.4f | val loss %.4f acc %.4f | %.1f s",
            metrics.epoch,
            state.epochs,
            metrics.train_loss,
            metrics.train_accuracy,
            metrics.val_loss,
            metrics.val_accuracy,
            metrics.seconds,
        )


class GradientNorms(Callback):
    """Trainability: the L2 norm of the loss gradient of each parameter group (a model's
    ``parameter_groups()``, e.g. one per dendro-somatic layer and the output; else its children)
    on a fixed probe batch, before training and after each of the first ``epochs`` epochs.

    Measured with ``torch.autograd.grad`` in eval mode, so training is untouched (no ``.grad``
    written, no random numbers drawn). The norms go into the epoch's metrics (``grad_norms``, in
    group order; epoch 1 also has ``grad_norms_init`` and ``grad_norm_groups``), so into its store
    row when a :class:`RecordRun` comes after this callback, and into ``self.history`` (epoch 0 =
    before training).
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, *, epochs: int = 3) -> None:
        self.x, self.y, self.epochs = x, y, epochs
        self.names: list[str] = []
        self.history: dict[int, list[float]] = {}

    def _groups(self, model: torch.nn.Module) -> list[tuple[str, list[torch.nn.Parameter]]]:
        own = getattr(model, "parameter_groups", None)
        groups = own() if callable(own) else list(model.named_children())
        out = []
        for name, part in groups:
            params = [
                p
                for p in (part.parameters() if isinstance(part, torch.nn.Module) else part)
                if p.requires_grad
            ]
            if params:
                out.append((name, params))
        return out

    def _norms(self, model: torch.nn.Module, loss_fn: Loss = F.cross_entropy) -> list[float]:
        groups = self._groups(model)
        self.names = [name for name, _ in groups]
        params = [p for _, ps in groups for p in ps]
        was_training = model.training
        model.eval()
        try:
            device = params[0].device if params else self.x.device
            with torch.enable_grad():
                logits = model(self.x.to(device))
                loss = loss_fn(logits, self.y.to(device))
                grads = torch.autograd.grad(loss, params, allow_unused=True)
        finally:
            model.train(was_training)
        norms, i = [], 0
        for _, ps in groups:
            total = sum(
                float(g.detach().double().square().sum()) for g in grads[i : i + len(ps)] if g is not None
            )
            norms.append(math.sqrt(total))
            i += len(ps)
        return norms

    def on_fit_start(self, state: FitState) -> None:
        self.history[0] = self._norms(state.model, state.loss)

    def on_epoch_end(self, state: FitState, metrics: EpochMetrics) -> None:
        if metrics.epoch > self.epochs:
            return
        self.history[metrics.epoch] = norms = self._norms(state.model, state.loss)
        metrics.extra["grad_norms"] = norms
        if metrics.epoch == 1:
            metrics.extra["grad_norms_init"] = self.history[0]
            metrics.extra["grad_norm_groups"] = self.names


class SaveCheckpoint(Callback):
    """Save the trained model at the end (safetensors + JSON); checks the path before training.

    A paper network (``DendriticNet``) is saved with ``dendritic.save`` (loadable with
    ``dendritic.load``); any other module as its state dict with ``extra`` (rebuild it yourself,
    then ``load_state_dict``)."""

    def __init__(
        self, path: Any, *, extra: Mapping[str, Any] | None = None, protected: Sequence[Any] = ()
    ) -> None:
        from dendritic.models.checkpoint import check_target

        self.extra = dict(extra or {})
        # Before any training; never over another run's checkpoint (extra's train_config is this run's).
        self.path = check_target(path, protected=tuple(protected), config=self.extra.get("train_config"))

    def on_fit_end(self, state: FitState, result: FitResult) -> None:
        from pathlib import Path

        from dendritic.models.checkpoint import save, save_state

        extra = {**self.extra, **state.extra.get("checkpoint_extra", {})}
        if hasattr(state.model, "wiring") and hasattr(state.model, "config"):
            written = save(state.model, self.path, extra=extra)  # type: ignore[arg-type]
        else:
            written = save_state(state.model, self.path, extra=extra)
        state.checkpoint = str(Path(written).resolve())


class RecordRun(Callback):
    """Record the fit as a run of a results store: started when the fit starts, every epoch
    logged, finished with the test metrics (and the checkpoint :class:`SaveCheckpoint` wrote,
    if it comes before this callback), or marked failed / interrupted when the fit raises.

    ``config`` identifies the run (its key): put in it whatever makes the run what it is (model
    name and sizes, seed, data). ``experiment`` tags the run (``dendritic runs list --experiment``);
    the paper's figures use only runs tagged with their sweeps. ``meta`` adds columns
    (``device``, ``data`` ...; see ``RunStore.start_run``); the model's trainable parameters and
    device are recorded unless ``meta`` gives them. ``replace`` runs a finished config again.
    """

    def __init__(
        self,
        store: Any,
        config: Mapping[str, Any],
        *,
        experiment: str | None = None,
        meta: Mapping[str, Any] | None = None,
        replace: bool = False,
        epoch_extra: Callable[[EpochMetrics], Mapping[str, Any]] | None = None,
        epoch_offset: int = 0,
        finish_at_end: bool = True,
    ) -> None:
        from dendritic.store import RunRecorder, canonical_config

        canonical_config(config)  # not JSON: fail now, before any training
        self.meta = dict(meta or {})
        if experiment is not None:
            self.meta["experiment"] = experiment
        self.recorder = RunRecorder(store, config, meta=self.meta, replace=replace)
        self.epoch_extra = epoch_extra
        self.epoch_offset = epoch_offset
        self.finish_at_end = finish_at_end  # False: several fits make one run (continual tasks)
        self.final: dict[str, Any] = {}
        self._entered = False
        self._beat = time.monotonic()

    @property
    def id(self) -> int | None:
        return self.recorder.id

    def start(self, model: torch.nn.Module | None = None) -> None:
        if self._entered:
            return
        if model is not None:
            params = list(model.parameters())
            self.meta.setdefault("trainable_params", sum(p.numel() for p in params if p.requires_grad))
            if params:
                self.meta.setdefault("device", str(params[0].device))
        self.recorder.__enter__()
        self._entered = True

    def on_fit_start(self, state: FitState) -> None:
        self.start(state.model)
        state.extra.setdefault("checkpoint_extra", {})["run_id"] = self.recorder.id
        self._beat = time.monotonic()

    def on_batches(self, state: FitState, epoch: int, done: int, loss: float, accuracy: float) -> None:
        """Renew the run's lease within long epochs (every :data:`HEARTBEAT_SECONDS`), so a run
        that is alive is never taken for abandoned."""
        if self.recorder.id is not None and time.monotonic() - self._beat > HEARTBEAT_SECONDS:
            self.recorder.store.heartbeat(self.recorder.id)
            self._beat = time.monotonic()

    def on_epoch_end(self, state: FitState, metrics: EpochMetrics) -> None:
        values: dict[str, Any] = metrics.as_dict()
        if self.epoch_extra is not None:
            values.update(self.epoch_extra(metrics))
        self.log_epoch(metrics.epoch, **values)

    def log_epoch(self, epoch: int, **values: Any) -> None:
        """Record one epoch's metrics (numbered after ``epoch_offset``): what ``on_epoch_end``
        does, and what a sweep's coordinator does with the epochs its workers report."""
        self.recorder.log_epoch(self.epoch_offset + epoch, **values)

    def on_fit_end(self, state: FitState, result: FitResult) -> None:
        if not self.finish_at_end:
            return
        self.finish(
            test_accuracy=result.test_accuracy,
            test_loss=result.test_loss,
            best_epoch=result.best_epoch,
            epochs_run=result.epochs_run,
            wall_seconds=result.seconds,
            checkpoint=state.checkpoint,
            **state.extra.get("run_extra", {}),  # what callbacks before this one measured
            **self.final,
        )

    def finish(self, **final: Any) -> None:
        """Mark the run finished with its final metrics and metadata (``RunStore.finish_run``)."""
        final = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in final.items()}
        self.recorder.finish(**final)
        self.recorder.__exit__(None, None, None)

    def fail(self, error: str | BaseException, *, status: str = "failed") -> None:
        """Mark the run 'failed' (or 'interrupted') with ``error``: for a run that ended outside
        this process (a sweep's worker) or before its fit started."""
        if self._entered and not self.recorder.done and self.recorder.id is not None:
            self.recorder.done = True
            self.recorder.store.fail_run(self.recorder.id, error, status=status)

    def on_fit_error(self, state: FitState | None, error: BaseException) -> None:
        if self._entered and not self.recorder.done:
            self.recorder.__exit__(type(error), error, error.__traceback__)
