"""Training one model through a stream of tasks and measuring the accuracy matrix.

One model and one Adam optimiser (lr 1e-3, eps 1e-7, the library's settings) are kept for the
whole stream: the optimiser's moment estimates are never reset between tasks, as a learner
that does not know task boundaries would do. Each task is trained for ``epochs_per_task``
epochs of batches of 128 shuffled within the task (seeded); after each task the model is
evaluated on every task's test set, giving one row of the accuracy matrix.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import os
import time
from dataclasses import asdict, dataclass, field, fields
from typing import Any, cast

import numpy as np
import torch

from dendritic.continual.benchmarks import (
    BENCHMARKS,
    Benchmark,
    Task,
    build_benchmark,
    resolve_scenario,
    resolve_tasks,
)
from dendritic.continual.metrics import summarize
from dendritic.models.spec import ModelSpec
from dendritic.store import RunRecorder
from dendritic.training.fit import Callback, TrainSet, fit
from dendritic.training.loop import eval_batch_size, make_optimizer, model_for

log = logging.getLogger("dendritic.continual")

__all__ = ["PROTOCOL", "ContinualConfig", "ContinualResult", "evaluate_task", "run_continual"]

#: Marks continual runs in the results store, so their keys never collide with ``train`` runs.
PROTOCOL = "continual"
METRIC_NAMES = ("acc", "bwt", "forgetting", "forgetting_last", "fwt", "la")


@dataclass(frozen=True)
class ContinualConfig(ModelSpec):
    """One continual run: a model (the :class:`~dendritic.models.spec.ModelSpec` fields, as in
    ``TrainConfig``), benchmark, scenario and training settings (science only).

    ``scenario=None`` and ``tasks=None`` resolve to the benchmark's defaults (split: class-il,
    5 tasks; permuted: domain-il, 5 tasks; sorted: class-il, one task per class).
    ``passes > 1`` repeats the whole stream (the paper's class-sorted protocol cycles through
    all classes every epoch: ``sorted``, ``epochs_per_task=1``, ``passes=50``); the matrix is
    recorded during the last pass. ``identity_first`` applies to ``permuted`` only.
    """

    benchmark: str = "split"
    scenario: str | None = None
    dataset: str = "fmnist"
    tasks: int | None = None
    lr: float = 1e-3
    batch_size: int = 128
    epochs_per_task: int = 5
    passes: int = 1
    seed: int = 1
    identity_first: bool = True
    limit: int | None = None
    #: Adam's form: "adam-keras" (the paper's code) or "adam-torch"; see training.optim.
    optimizer: str = "adam-keras"
    #: What ``limit`` shrinks (see ``TrainConfig.limit_scope``); stored runs without it: "train+test".
    limit_scope: str = "train"

    def __post_init__(self) -> None:
        from dendritic.data import canonical_name, get_info
        from dendritic.training.config import check_protocol

        super().__post_init__()  # the model's fields, checked as for `train`
        benchmark = str(self.benchmark).strip().lower()
        if benchmark not in BENCHMARKS:
            raise ValueError(f"unknown benchmark {self.benchmark!r}; choose one of {', '.join(BENCHMARKS)}")
        object.__setattr__(self, "benchmark", benchmark)
        object.__setattr__(self, "scenario", resolve_scenario(benchmark, self.scenario))
        object.__setattr__(self, "dataset", canonical_name(self.dataset))
        n_classes = get_info(self.dataset).n_classes
        object.__setattr__(self, "tasks", resolve_tasks(benchmark, self.tasks, n_classes))
        for name in ("epochs_per_task", "passes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not isinstance(self.identity_first, bool):
            raise ValueError(f"identity_first must be True or False, got {self.identity_first!r}")
        check_protocol(self)  # lr, batch size, seed, limit, optimizer: as for `train`

    def to_dict(self) -> dict[str, Any]:
        """Plain dict, defaults resolved, what the store keys the run by (``protocol`` included)."""
        from dendritic.training.config import limit_keyed

        data = limit_keyed(self.paper_dict(asdict(self)))
        if self.benchmark != "permuted":
            data.pop("identity_first")
        return {"protocol": PROTOCOL, **data}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ContinualConfig:
        data = {k: v for k, v in data.items() if k != "protocol"}
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown continual config field(s): {', '.join(unknown)}")
        from dendritic.training.config import limit_scope_of
        from dendritic.training.optim import optimizer_of

        # stored before the fields: torch's Adam, and a limit that shrank the test set too
        return cls(**{**data, "optimizer": optimizer_of(data), "limit_scope": limit_scope_of(data)})

    def label(self) -> str:
        return f"{self.benchmark}-{self.dataset} {self.scenario}"


@dataclass
class ContinualResult:
    """The accuracy matrix of a run, its metrics, and what the tasks were.

    ``matrix[i][j]``: test accuracy on task j after training task i; ``baseline[j]``: the
    untrained model's accuracy on task j. ``reused`` is True when the store already held it.
    """

    config: ContinualConfig
    matrix: list[list[float]]
    baseline: list[float]
    metrics: dict[str, float]
    tasks: list[dict[str, Any]]
    trainable_params: int
    seconds: float
    run_id: int | None = None
    reused: bool = False
    model: torch.nn.Module | None = field(default=None, repr=False)

    @property
    def accuracy_matrix(self) -> np.ndarray:
        return np.asarray(self.matrix, dtype=np.float64)

    def format_matrix(self) -> str:
        """The matrix in percent, one row per training stage, plus the untrained baseline."""
        t = len(self.matrix)
        width = 7
        head = "after task".ljust(12) + "".join(f"T{j}".rjust(width) for j in range(t))
        lines = [head]
        lines.append("untrained".ljust(12) + "".join(f"{100 * b:.1f}".rjust(width) for b in self.baseline))
        for i, row in enumerate(self.matrix):
            lines.append(f"T{i}".ljust(12) + "".join(f"{100 * v:.1f}".rjust(width) for v in row))
        lines.append("tasks: " + "; ".join(f"T{j} {d['name']}" for j, d in enumerate(self.tasks)))
        return "\n".join(lines)

    def format_metrics(self) -> str:
        def pct(name: str) -> str:
            value = self.metrics.get(name)
            return "-" if value is None or not math.isfinite(value) else f"{100 * value:+.2f}"

        acc = self.metrics["acc"]
        return (
            f"ACC {100 * acc:.2f} %  BWT {pct('bwt')}  forgetting {pct('forgetting')} "
            f"(first-minus-last {pct('forgetting_last')})  FWT {pct('fwt')}  (points)"
        )

    def summary(self) -> str:
        c = self.config
        return (
            f"{c.model} D={c.dendrites} S={c.somata} seed={c.seed} on {c.label()} "
            f"({c.tasks} tasks, {c.epochs_per_task} epochs each): {self.format_metrics()}, "
            f"{self.trainable_params:,} trainable parameters, {self.seconds:.1f} s"
        )

    def store_extra(self) -> dict[str, Any]:
        """What the store keeps in the run's ``extra``: matrix, baseline, tasks, metric columns."""
        metrics = {k: (v if v is not None and math.isfinite(v) else None) for k, v in self.metrics.items()}
        return {
            "protocol": PROTOCOL,
            "benchmark": self.config.benchmark,
            "scenario": self.config.scenario,
            "accuracy_matrix": self.matrix,
            "baseline": self.baseline,
            "tasks": self.tasks,
            **metrics,
        }

    @classmethod
    def from_run(cls, run: dict[str, Any]) -> ContinualResult:
        """Rebuild a finished run's result from its store row (``RunStore.find`` / ``get_run``)."""
        extra = run.get("extra") or {}
        if "accuracy_matrix" not in extra:
            raise ValueError(f"run {run.get('id')} holds no accuracy matrix: not a continual run")
        metrics = {k: (math.nan if extra.get(k) is None else float(extra[k])) for k in METRIC_NAMES}
        return cls(
            config=ContinualConfig.from_dict(run["config"]),
            matrix=[[float(v) for v in row] for row in extra["accuracy_matrix"]],
            baseline=[float(v) for v in extra["baseline"]],
            metrics=metrics,
            tasks=list(extra.get("tasks", [])),
            trainable_params=int(run.get("trainable_params") or 0),
            seconds=float(run.get("wall_seconds") or 0.0),
            run_id=run.get("id"),
            reused=True,
        )


@torch.no_grad()
def evaluate_task(model: torch.nn.Module, bench: Benchmark, task: Task) -> float:
    """Test accuracy on ``task`` as its scenario scores it (task-IL: masked head)."""
    was_training = model.training
    model.eval()
    x, y = bench.test_set(task)
    device = next(model.parameters()).device
    correct = 0
    step = eval_batch_size(device)
    for start in range(0, len(x), step):
        logits = bench.logits(task, model(x[start : start + step].to(device)).cpu())
        correct += int((logits.argmax(dim=1) == y[start : start + step]).sum())
    model.train(was_training)
    return correct / max(len(x), 1)


class _TaskEpochs(Callback):
    """Every epoch of a task into the run's store row: numbered across tasks, with the task."""

    def __init__(self, recorder: RunRecorder, offset: int, extra: dict[str, Any]) -> None:
        self.recorder, self.offset, self.extra = recorder, offset, extra

    def on_epoch_end(self, state: Any, metrics: Any) -> None:
        self.recorder.log_epoch(
            self.offset + metrics.epoch,
            train_loss=metrics.train_loss,
            train_accuracy=metrics.train_accuracy,
            seconds=metrics.seconds,
            task_epoch=metrics.epoch,
            **self.extra,
        )


def run_continual(
    config: ContinualConfig,
    store: Any | None = None,
    data_dir: str | os.PathLike[str] | None = None,
    progress: bool = False,
    *,
    data: Any | None = None,
    download: bool = True,
    replace: bool = False,
    device: str | torch.device | None = "cpu",
    threads: int | None = None,
    keep_model: bool = False,
) -> ContinualResult:
    """Train ``config.model`` through the benchmark's tasks and return the accuracy matrix.

    With a ``store`` (:class:`dendritic.store.RunStore`), a run already finished there is
    returned from the store without training (``reused=True``) unless ``replace``; otherwise
    the run, its per-epoch training metrics (epochs numbered across tasks, with the task index)
    and at the end the matrix and metrics (in ``extra``; ACC in ``test_accuracy``) are
    recorded. ``data`` may be a ready :class:`dendritic.data.PreparedData` of the same dataset
    and seed (comparisons reuse one).
    """
    from dendritic.data import prepare
    from dendritic.models import count_parameters
    from dendritic.training.loop import resolve_device

    key = config.to_dict()
    if store is not None and not replace:
        row = store.find(key)
        if row is not None and row["status"] == "finished":
            return ContinualResult.from_run(row)
    from dendritic.training.loop import set_threads

    dev = resolve_device(device)
    set_threads(threads)
    if data is None:
        from dendritic.training.config import test_limit

        data = prepare(
            config.dataset,
            seed=config.seed,
            data_dir=data_dir,
            download=download,
            limit=config.limit,
            test_limit=test_limit(config),
        )
    elif data.name != config.dataset or data.seed != config.seed:
        raise ValueError(
            f"prepared data is {data.name} seed {data.seed}, the config wants {config.dataset} seed {config.seed}"
        )
    bench = build_benchmark(
        data,
        config.benchmark,
        scenario=config.scenario,
        tasks=config.tasks,
        seed=config.seed,
        identity_first=config.identity_first,
    )
    model = model_for(config, data).to(dev)
    params = count_parameters(model)
    recorder = None
    if store is not None:
        meta = {
            "device": str(dev),
            "trainable_params": params,
            "data": data.provenance,
            "experiment": PROTOCOL,
            "extra": {"protocol": PROTOCOL},
        }
        recorder = RunRecorder(store, key, meta=meta, replace=replace)
    # The recorder marks the run failed or interrupted if anything below raises.
    with recorder if recorder is not None else contextlib.nullcontext():
        result = _stream(config, model, bench, dev, recorder, progress)
        result.trainable_params = params
        if recorder is not None:
            recorder.finish(
                test_accuracy=result.metrics["acc"],
                epochs_run=config.passes * cast(int, config.tasks) * config.epochs_per_task,
                wall_seconds=result.seconds,
                trainable_params=params,
                extra=result.store_extra(),
            )
            result.run_id = recorder.id
        if keep_model:
            result.model = model
        return result


def _stream(
    config: ContinualConfig,
    model: torch.nn.Module,
    bench: Benchmark,
    dev: torch.device,
    recorder: RunRecorder | None,
    progress: bool,
) -> ContinualResult:
    """Every task in turn, each trained by :func:`dendritic.training.fit` (one optimizer and one
    shuffling generator for the whole stream), the accuracy matrix filled in the last pass."""
    t_start = time.perf_counter()
    torch.manual_seed(config.seed)  # dropout masks
    shuffle = torch.Generator().manual_seed(config.seed)
    optimizer = make_optimizer(model, config.lr, config.optimizer)
    baseline = [evaluate_task(model, bench, task) for task in bench.tasks]
    n_tasks = len(bench)
    level = logging.INFO if progress else logging.DEBUG
    matrix: list[list[float]] = []
    epoch_no = 0
    for p in range(config.passes):
        last_pass = p == config.passes - 1
        for task in bench.tasks:
            hooks = []
            if recorder is not None:
                extra = {"task": task.index, **({"pass": p + 1} if config.passes > 1 else {})}
                hooks.append(_TaskEpochs(recorder, epoch_no, extra))
            fitted = fit(
                model,
                TrainSet(
                    bench.x_train,
                    bench.y_train,
                    indices=task.train_idx,
                    transform=functools.partial(bench.inputs, task),
                    logit_mask=task.mask,
                ),
                epochs=config.epochs_per_task,
                optimizer=optimizer,
                batch_size=config.batch_size,
                generator=shuffle,
                callbacks=hooks,
                device=dev,
                fused=False,  # model(x) and PyTorch's loss every step, as this runner always did
            )
            epoch_no += fitted.epochs_run
            loss, acc = fitted.history[-1].train_loss, fitted.history[-1].train_accuracy
            if last_pass:
                row = [evaluate_task(model, bench, other) for other in bench.tasks]
                matrix.append(row)
                seen = row[: task.index + 1]
                log.log(
                    level,
                    "task %d/%d (%s): train loss %.4f acc %.4f | test acc on this task %.4f, "
                    "mean over tasks so far %.4f",
                    task.index + 1, n_tasks, task.name, loss, acc, row[task.index], sum(seen) / len(seen),
                )  # fmt: skip
            else:
                log.log(
                    level,
                    "pass %d/%d task %d/%d: loss %.4f",
                    p + 1,
                    config.passes,
                    task.index + 1,
                    n_tasks,
                    loss,
                )
    return ContinualResult(
        config=config,
        matrix=matrix,
        baseline=baseline,
        metrics=summarize(matrix, baseline),
        tasks=bench.describe(),
        trainable_params=0,
        seconds=time.perf_counter() - t_start,
    )
