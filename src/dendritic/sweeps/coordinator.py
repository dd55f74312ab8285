"""The sweep coordinator: the only process that writes the results store.

Protocol, chosen so that killing the coordinator (even SIGKILL) at any moment loses nothing
already recorded and never duplicates a run:

1. Read the store's finished keys once; those runs are skipped.
2. Dispatch a run: ``start_run`` first (the row says 'running', with the coordinator's pid),
   then hand the task to a worker. ``start_run`` is atomic and refuses a run that is finished
   or still running under another live coordinator, so two coordinators on one store never
   train the same run twice.
3. Epochs are logged as the worker reports them (the local pool streams them; Ray sends them
   with the result), then ``finish_run`` when the result comes back. A crash before that leaves
   the row 'running'; once the coordinator's pid is gone the store reports it
   'interrupted', and the next invocation's ``start_run`` reuses the row and clears its epochs.
   Per key there is therefore one row, finished at most once, with exactly its epochs.
4. A worker that raises marks its run 'failed' with the traceback; a worker that dies marks
   only its own run 'failed'; the sweep goes on. Failed and interrupted runs are retried by the
   next invocation (not within the same one: a run that killed its worker, e.g. by running out
   of memory, would likely kill the next one too).
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dendritic.models.spec import options_label
from dendritic.store import RunStore, StoreError, config_key
from dendritic.training.config import TrainConfig

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
    return (c.dataset, c.sigma, c.sequential, c.seed, c.limit, c.val_fraction)


def _cost(c: TrainConfig) -> float:
    return DEFAULT_COST.epoch_seconds(c) * c.resolved_epochs()


def _log_epoch(store: RunStore, run_id: int, row: dict[str, Any]) -> None:
    metrics = {k: v for k, v in row.items() if k not in ("epoch", "kind", "task_id")}
    store.log_epoch(run_id, row["epoch"], **metrics)


def _record(store: RunStore, run_id: int, outcome: dict[str, Any], logged: set[int]) -> None:
    """Write a worker's outcome: the epochs not streamed yet, then finish; or the failure."""
    if not outcome.get("ok"):
        store.fail_run(run_id, str(outcome.get("error") or "unknown error"))
        return
    for row in outcome["history"]:
        if row["epoch"] not in logged:
            _log_epoch(store, run_id, row)
    store.finish_run(
        run_id,
        test_accuracy=outcome["test_accuracy"],
        test_loss=outcome["test_loss"],
        best_epoch=outcome["best_epoch"],
        epochs_run=outcome["epochs_run"],
        wall_seconds=outcome["seconds"],
        trainable_params=outcome["trainable_params"],
        paper_params=outcome["paper_params"],
        checkpoint=outcome.get("checkpoint"),
        data=outcome.get("data"),
        extra={
            "worker_host": outcome.get("host"),
            "worker_pid": outcome.get("pid"),
            "threads": outcome.get("threads"),
        },
    )


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
    by default with the experiment its config follows (:func:`~dendritic.sweeps.experiment_of`).

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
    owned = backend is None
    if backend is None:
        backend = LocalBackend(workers)
    if threads is None:
        threads = (
            max(1, available_cpus() // max(1, backend.slots))
            if backend.name == "local"
            else getattr(backend, "threads", 1)
        )
    data_dir_text = None if data_dir is None else os.fspath(Path(data_dir).expanduser().resolve())
    folder = None
    if checkpoints is not None:
        folder = Path(checkpoints).expanduser().resolve()
        folder.mkdir(parents=True, exist_ok=True)

    ended = already

    def advance() -> None:
        nonlocal ended
        ended += 1
        if progress is not None:
            progress(ended, report.total)

    if progress is not None:
        progress(ended, report.total)

    queue = deque(todo)
    in_flight: dict[int, TrainConfig] = {}
    streamed: dict[int, set[int]] = {}  # epochs already logged per run
    last_beat = time.monotonic()
    try:
        while queue or in_flight:
            while queue and len(in_flight) < backend.slots:
                config = queue.popleft()
                cfg = config.to_dict()
                run_id = _start(store, cfg, device, experiment or experiment_of(cfg))
                if run_id is None:
                    report.busy += 1
                    advance()
                    continue
                key = config_key(cfg)
                task = Task(
                    task_id=run_id,
                    config=cfg,
                    data_dir=data_dir_text,
                    device=device,
                    threads=threads,
                    checkpoint=None if folder is None else checkpoint_path(folder, cfg, key),
                )
                try:
                    backend.submit(task)
                except BaseException as exc:
                    store.fail_run(run_id, f"could not dispatch the run: {exc}", status="interrupted")
                    raise
                in_flight[run_id] = config
            if time.monotonic() - last_beat > HEARTBEAT:
                for run_id in in_flight:
                    store.heartbeat(run_id)
                last_beat = time.monotonic()
            for outcome in backend.wait(timeout=poll):
                run_id = int(outcome["task_id"])
                if run_id not in in_flight:  # defensive: a stale outcome of an abandoned sweep
                    continue
                if outcome.get("kind") == "epoch":  # live progress (and a heartbeat) of a long run
                    _log_epoch(store, run_id, outcome)
                    streamed.setdefault(run_id, set()).add(int(outcome["epoch"]))
                    continue
                config = in_flight.pop(run_id)
                _record(store, run_id, outcome, streamed.pop(run_id, set()))
                if outcome.get("ok"):
                    report.done += 1
                    report.results.append({"run_id": run_id, **outcome})
                else:
                    lines = str(outcome.get("error", "")).strip().splitlines() or ["unknown error"]
                    report.failed.append((run_id, lines[0] if outcome.get("lost") else lines[-1]))
                log.info("%s", summary_line(config, outcome, run_id))
                if on_result is not None:
                    on_result(config, outcome)
                advance()
    except BaseException as exc:
        report.interrupted = True
        owned = True
        for run_id in list(in_flight):
            with contextlib.suppress(StoreError):
                store.fail_run(
                    run_id,
                    exc
                    if not isinstance(exc, KeyboardInterrupt)
                    else f"sweep interrupted ({exc or 'Ctrl-C'})",
                    status="interrupted",
                )
        raise
    finally:
        try:
            if owned:
                backend.close()
        finally:
            report.seconds = time.perf_counter() - t0
            log.info("%s", report.line())
    return report


def _start(store: RunStore, cfg: dict[str, Any], device: str, experiment: str | None) -> int | None:
    """``start_run``, or None when another live sweep is running (or has just finished) the run."""
    try:
        return store.start_run(cfg, meta={"device": device, "experiment": experiment})
    except StoreError:
        row = store.find(cfg)
        if row is not None and row["status"] in ("running", "finished"):
            return None
        raise
