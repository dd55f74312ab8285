"""The sweep coordinator: the only process that writes the results store.

Protocol, chosen so that killing the coordinator (even SIGKILL) at any moment loses nothing
already recorded and never duplicates a run:

1. Read the store's finished keys once; those runs are skipped.
2. Dispatch a run: ``start_run`` first (the row says 'running', with the coordinator's pid),
   then hand the task to a worker. ``start_run`` is atomic and refuses a run that is finished
   or still running under another live coordinator, so two coordinators on one store never
   train the same run twice.
3. Epochs are logged as the worker reports them (the local pool streams them; Ray sends them
   with the result), then the run is finished when the result comes back — all through the
   run's :class:`~dendritic.training.RecordRun`, as ``train`` records a run. A crash before that leaves
   the row 'running'; once the coordinator's pid is gone the store reports it
   'interrupted', and the next invocation's ``start_run`` reuses the row and clears its epochs.
   Per key there is therefore one row, finished at most once, with exactly its epochs.
4. A worker that raises marks its run 'failed' with the traceback; a worker that dies marks
   only its own run 'failed'; the sweep goes on. Failed and interrupted runs are retried by the
   next invocation (not within the same one: a run that killed its worker, e.g. by running out
   of memory, would likely kill the next one too).

Lottery runs of one seed share their dense parent (a large part of their cost): on the local
backend the coordinator gives its workers a temporary parent cache for its lifetime, and holds
back a lottery run whose parent another run in flight is training until that run has ended, so
that it loads the parent instead of training it again (:mod:`dendritic.training.lottery`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from dendritic.models.spec import options_label
from dendritic.store import RunStore, RunTakenOver, StoreError, config_key
from dendritic.training.config import TrainConfig
from dendritic.training.fit import RecordRun
from dendritic.training.lottery import lottery_info, parent_identity

from .backends import Backend, LocalBackend, available_cpus
from .estimate import DEFAULT_COST
from .grids import experiment_of
from .worker import Task, checkpoint_path

log = logging.getLogger("dendritic.sweeps")

__all__ = ["HEARTBEAT", "SweepReport", "run_sweep", "plan", "summary_line"]

#: Seconds between heartbeats of the runs in flight (what ``reclaim`` on another host relies on).
HEARTBEAT = 60.0


@dataclass
class SweepReport:
    """What one invocation did. ``failed`` lists (run id, first line of the error)."""

    total: int
    skipped: int = 0
    done: int = 0
    failed: list[tuple[int, str]] = field(default_factory=list)
    busy: int = 0  # running under another live coordinator, left alone
    interrupted: bool = False
    seconds: float = 0.0
    results: list[dict[str, Any]] = field(default_factory=list)

    def line(self) -> str:
        """The final summary line."""
        text = (
            f"sweep: {self.done} done, {len(self.failed)} failed, {self.skipped} skipped "
            f"(already finished) of {self.total} runs in {_duration(self.seconds)}"
        )
        if self.busy:
            text += f"; {self.busy} left to another live sweep"
        if self.interrupted:
            text += "; interrupted (in-flight runs marked interrupted, re-run to resume)"
        return text


def _duration(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, sec = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{sec:02d}s" if hours else f"{minutes}m{sec:02d}s"


def summary_line(config: TrainConfig | dict[str, Any], outcome: dict[str, Any], run_id: int) -> str:
    """One line per finished run: model, D, S, seed (and what differs from the paper's protocol
    and model), accuracy, loss, parameters, seconds."""
    cfg = config if isinstance(config, dict) else config.to_dict()
    where = f"{cfg['model']} D={cfg['dendrites']} S={cfg['somata']} seed={cfg['seed']}"
    if cfg.get("synapses", 16) != 16:
        where += f" syn={cfg['synapses']}"
    if cfg.get("layers", 1) != 1:
        where += f" L={cfg['layers']}"
    if options := options_label(cfg):
        where += f" {options}"
    if cfg.get("lottery", "none") != "none":
        where += f" lottery {lottery_info(cfg)}"
    if cfg.get("sigma"):
        where += f" sigma={cfg['sigma']:g}"
    if cfg.get("lr", 1e-3) != 1e-3:
        where += f" lr={cfg['lr']:g}"
    if not outcome.get("ok"):
        error = str(outcome.get("error", "")).strip().splitlines() or ["unknown error"]
        return f"run {run_id} {where}: FAILED: {error[-1] if not outcome.get('lost') else error[0]}"
    return (
        f"run {run_id} {where}: acc {100 * outcome['test_accuracy']:.2f} % "
        f"loss {outcome['test_loss']:.4f} params {outcome['trainable_params']:,} "
        f"{outcome['seconds']:.1f} s"
    )


def plan(
    configs: Sequence[TrainConfig], store: RunStore | None, *, costliest_first: bool = True
) -> tuple[list[TrainConfig], int]:
    """(runs still to do, number already finished), without duplicates.

    Runs keep their order across data blocks (dataset, noise, protocol, trial: so a worker's
    prepared-data cache stays warm and trial 1 of everything comes first), but within a block
    the costliest go first (by the cost model), so one long run does not start last and leave
    the other workers idle at the end.
    """
    finished = store.finished_keys() if store is not None else set()
    todo: list[TrainConfig] = []
    seen: set[str] = set()
    done = 0
    for config in configs:
        key = config_key(config.to_dict())
        if key in seen:
            continue
        seen.add(key)
        if key in finished:
            done += 1
        else:
            todo.append(config)
    if costliest_first:
        blocks: dict[tuple[Any, ...], int] = {}
        for c in todo:
            blocks.setdefault(_data_key(c), len(blocks))
        todo.sort(key=lambda c: (blocks[_data_key(c)], -_cost(c)))  # stable within ties
    return todo, done


def _data_key(c: TrainConfig) -> tuple[Any, ...]:
    return (c.dataset, c.sigma, c.sequential, c.seed, c.limit, c.limit_scope, c.val_fraction)


def _cost(c: TrainConfig) -> float:
    return DEFAULT_COST.epoch_seconds(c) * c.resolved_epochs()


def _final(outcome: dict[str, Any]) -> dict[str, Any]:
    """A worker's successful outcome as the run's final metrics and metadata: what ``train``
    records through :class:`~dendritic.training.RecordRun` (its ``run_metadata``), plus where in
    the sweep it ran."""
    meta = outcome.get("meta") or {}
    return {
        "test_accuracy": outcome["test_accuracy"],
        "test_loss": outcome["test_loss"],
        "best_epoch": outcome["best_epoch"],
        "epochs_run": outcome["epochs_run"],
        "wall_seconds": outcome["seconds"],
        "trainable_params": meta.get("trainable_params", outcome.get("trainable_params")),
        "paper_params": meta.get("paper_params", outcome.get("paper_params")),
        "checkpoint": outcome.get("checkpoint"),
        "data": meta.get("data", outcome.get("data")),
        "extra": {
            **(outcome.get("extra") or {}),  # what the run measured (e.g. the selectivity study's activity)
            "worker_host": meta.get("host", outcome.get("host")),
            "worker_pid": meta.get("pid", outcome.get("pid")),
            "threads": outcome.get("threads"),
            **({"lottery": meta["lottery"]} if "lottery" in meta else {}),
            **({"denormals": meta["denormals"]} if "denormals" in meta else {}),
        },
    }


def _epoch_values(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k not in ("epoch", "kind", "task_id")}


def run_sweep(
    configs: Sequence[TrainConfig],
    store: RunStore,
    *,
    backend: Backend | None = None,
    workers: int = 1,
    threads: int | None = None,
    data_dir: str | os.PathLike[str] | None = None,
    device: str = "cpu",
    checkpoints: str | os.PathLike[str] | None = None,
    progress: Callable[[int, int], None] | None = None,
    on_result: Callable[[TrainConfig, dict[str, Any]], None] | None = None,
    poll: float = 0.5,
    reclaim: float | None = None,
    experiment: str | None = None,
) -> SweepReport:
    """Run every config not yet finished in ``store``; see the module docstring for the protocol.

    ``backend`` defaults to a :class:`LocalBackend` of ``workers`` processes, each with
    ``threads`` torch threads (default: available CPUs // workers), closed at the end. A backend
    passed in stays open for further sweeps unless the sweep raises (Ctrl-C, store errors): then
    it is closed, abandoning its in-flight runs, which are marked 'interrupted'. One summary line
    per run is logged (``dendritic.sweeps``, INFO); ``progress(done, total)`` is called as runs
    end (the CLI draws a bar with it). Each run is tagged with ``experiment`` (the sweep's name),
    by default with the experiment its config follows (:func:`~dendritic.sweeps.experiment_of`),
    and recorded through :class:`~dendritic.training.RecordRun`, as ``train`` records its run.

    Runs 'running' under a coordinator on *another host* cannot be checked by pid; with
    ``reclaim`` (seconds) those whose heartbeat is older are marked interrupted and retried. A
    live coordinator heartbeats its runs in flight every :data:`HEARTBEAT` seconds.
    """
    t0 = time.perf_counter()
    if reclaim is not None:
        reclaimed = store.reap_stale(older_than=reclaim)
        if reclaimed:
            log.info("sweep: reclaimed %d run(s) left running by a dead coordinator", len(reclaimed))
    todo, already = plan(configs, store)
    report = SweepReport(total=len(todo) + already, skipped=already)
    sweep = _Sweep(
        store, report, backend or LocalBackend(workers), owned=backend is None, device=device,
        experiment=experiment, progress=progress, on_result=on_result, data_dir=data_dir, checkpoints=checkpoints,
        threads=threads,
    )  # fmt: skip
    if sweep.backend.name == "local" and any(c.lottery != "none" for c in todo):
        sweep.parent_cache = tempfile.mkdtemp(prefix="dendritic-lottery-parents-")
    try:
        sweep.run(deque(todo), poll)
    except BaseException as exc:
        sweep.abort(exc)
        raise
    finally:
        try:
            if sweep.owned:
                sweep.backend.close()
        finally:
            if sweep.parent_cache is not None:
                shutil.rmtree(sweep.parent_cache, ignore_errors=True)
            report.seconds = time.perf_counter() - t0
            log.info("%s", report.line())
    return report


class _Sweep:
    """One invocation's runs in flight: dispatched, heard from, recorded."""

    def __init__(
        self,
        store: RunStore,
        report: SweepReport,
        backend: Backend,
        *,
        owned: bool,
        device: str,
        experiment: str | None,
        progress: Callable[[int, int], None] | None,
        on_result: Callable[[TrainConfig, dict[str, Any]], None] | None,
        data_dir: str | os.PathLike[str] | None,
        checkpoints: str | os.PathLike[str] | None,
        threads: int | None,
    ) -> None:
        self.store, self.report, self.backend, self.owned = store, report, backend, owned
        self.device, self.experiment = device, experiment
        self.progress, self.on_result = progress, on_result
        self.data_dir = None if data_dir is None else os.fspath(Path(data_dir).expanduser().resolve())
        self.folder = None if checkpoints is None else Path(checkpoints).expanduser().resolve()
        if self.folder is not None:
            self.folder.mkdir(parents=True, exist_ok=True)
        if threads is None:
            local = backend.name == "local"
            threads = (
                max(1, available_cpus() // max(1, backend.slots)) if local else getattr(backend, "threads", 1)
            )
        self.threads = threads
        self.in_flight: dict[int, tuple[TrainConfig, RecordRun]] = {}
        self.streamed: dict[int, set[int]] = {}  # epochs already recorded per run
        self.ended = report.skipped
        self.last_beat = time.monotonic()
        self.parent_cache: str | None = None  # lottery runs' shared dense parents (local backend)
        self.parents: dict[int, str | None] = {}  # parent_identity per queued config (by id)

    def advance(self) -> None:
        self.ended += 1
        if self.progress is not None:
            self.progress(self.ended, self.report.total)

    def run(self, queue: deque[TrainConfig], poll: float) -> None:
        if self.progress is not None:
            self.progress(self.ended, self.report.total)
        while queue or self.in_flight:
            while queue and len(self.in_flight) < self.backend.slots:
                config = self.take(queue)
                if config is None:  # what is left waits for a dense parent being trained
                    break
                self.dispatch(config)
            self.heartbeat()
            for outcome in self.backend.wait(timeout=poll):
                self.hear(outcome)

    def take(self, queue: deque[TrainConfig]) -> TrainConfig | None:
        """The next run to start: the first whose lottery parent no run in flight is training
        (it loads that parent from the cache once the other run has ended); None if there is none."""
        if self.parent_cache is None:
            return queue.popleft()
        busy = {self.parent_of(c) for c, _ in self.in_flight.values()} - {None}
        for i, config in enumerate(queue):
            if self.parent_of(config) not in busy:
                del queue[i]
                return config
        return None

    def parent_of(self, config: TrainConfig) -> str | None:
        if id(config) not in self.parents:
            self.parents[id(config)] = parent_identity(config)
        return self.parents[id(config)]

    def dispatch(self, config: TrainConfig) -> None:
        """Start the run in the store (its row says 'running'), then hand it to a worker."""
        cfg = config.to_dict()
        record = RecordRun(
            self.store, cfg, experiment=self.experiment or experiment_of(cfg), meta={"device": self.device}
        )
        if not _start(record, self.store, cfg):
            self.report.busy += 1
            self.advance()
            return
        run_id = cast(int, record.id)
        task = Task(
            task_id=run_id,
            config=cfg,
            data_dir=self.data_dir,
            device=self.device,
            threads=self.threads,
            checkpoint=None if self.folder is None else checkpoint_path(self.folder, cfg, config_key(cfg)),
            parent_cache=self.parent_cache,
        )
        try:
            self.backend.submit(task)
        except BaseException as exc:
            record.fail(f"could not dispatch the run: {exc}", status="interrupted")
            raise
        self.in_flight[run_id] = (config, record)

    def heartbeat(self) -> None:
        if time.monotonic() - self.last_beat > HEARTBEAT:
            for run_id in self.in_flight:
                self.store.heartbeat(run_id)
            self.last_beat = time.monotonic()

    def hear(self, outcome: dict[str, Any]) -> None:
        """An epoch of a run in flight (recorded at once: live progress and a heartbeat) or its end."""
        run_id = int(outcome["task_id"])
        if run_id not in self.in_flight:  # defensive: a stale outcome of an abandoned sweep
            return
        config, record = self.in_flight[run_id]
        try:
            if outcome.get("kind") == "epoch":
                record.log_epoch(int(outcome["epoch"]), **_epoch_values(outcome))
                self.streamed.setdefault(run_id, set()).add(int(outcome["epoch"]))
                return
            self._record(run_id, record, outcome)
        except RunTakenOver as lost:  # another process owns the run now: this sweep lets it go
            outcome = {**outcome, "ok": False, "lost": True, "error": str(lost)}
            self.report.failed.append((run_id, str(lost)))
        self.in_flight.pop(run_id, None)
        self.streamed.pop(run_id, None)
        log.info("%s", summary_line(config, outcome, run_id))
        if self.on_result is not None:
            self.on_result(config, outcome)
        self.advance()

    def _record(self, run_id: int, record: RecordRun, outcome: dict[str, Any]) -> None:
        """A run's end: its epochs not streamed yet and its result, or its failure."""
        if outcome.get("ok"):
            streamed = self.streamed.get(run_id, set())
            for row in outcome["history"]:
                if row["epoch"] not in streamed:
                    record.log_epoch(int(row["epoch"]), **_epoch_values(row))
            record.finish(**_final(outcome))
            self.report.done += 1
            self.report.results.append({"run_id": run_id, **outcome})
        else:
            record.fail(str(outcome.get("error") or "unknown error"))
            lines = str(outcome.get("error", "")).strip().splitlines() or ["unknown error"]
            self.report.failed.append((run_id, lines[0] if outcome.get("lost") else lines[-1]))

    def abort(self, exc: BaseException) -> None:
        """The sweep is ending by ``exc``: its runs in flight are marked interrupted, and the
        backend is closed (abandoning them)."""
        self.report.interrupted = True
        self.owned = True
        why = exc if not isinstance(exc, KeyboardInterrupt) else f"sweep interrupted ({exc or 'Ctrl-C'})"
        for _config, record in list(self.in_flight.values()):
            with contextlib.suppress(StoreError):
                record.fail(why, status="interrupted")


def _start(record: RecordRun, store: RunStore, cfg: dict[str, Any]) -> bool:
    """Start the run's record; False when another live sweep is running (or has just finished) it."""
    try:
        record.start()
    except StoreError:
        row = store.find(cfg)
        if row is not None and row["status"] in ("running", "finished"):
            return False
        raise
    return True
