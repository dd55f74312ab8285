"""What a sweep worker does: one config in, one plain result dict out.

Workers are pure functions of their task: they never open the results store (only the
coordinator writes it), so a worker killed at any moment cannot leave a half-written row, and
the same function serves the local process pool and Ray. Prepared datasets are cached per
process, because every trial of a dataset reuses the same split and a Fashion-MNIST preparation
costs about a second.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import traceback
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["Task", "run_task", "clear_data_cache", "checkpoint_path"]

#: Prepared datasets kept per worker process; runs are ordered so that consecutive runs share one.
DATA_CACHE_SIZE = 2
_DATA_CACHE: OrderedDict[tuple[Any, ...], Any] = OrderedDict()


@dataclass(frozen=True)
class Task:
    """Everything a worker needs; plain data, so it pickles for any backend.

    ``config`` is ``TrainConfig.to_dict()``; ``task_id`` is the store's run id (the coordinator
    started the run before dispatching it). ``threads`` None leaves torch's default.
    ``parent_cache``: the sweep's folder for lottery runs' dense parents (``train``'s).
    """

    task_id: int
    config: Mapping[str, Any]
    data_dir: str | None = None
    device: str = "cpu"
    threads: int | None = None
    checkpoint: str | None = None
    parent_cache: str | None = None


def checkpoint_path(folder: str | os.PathLike[str], config: Mapping[str, Any], key: str) -> str:
    """A readable, unique checkpoint name: model, D, S, seed, then the store key."""
    name = f"{config['model']}-D{config['dendrites']}-S{config['somata']}-seed{config['seed']}-{key}"
    return str(Path(folder) / name)


def clear_data_cache() -> None:
    _DATA_CACHE.clear()


def _prepared(config: Any, data_dir: str | None) -> Any:
    from dendritic.training.loop import data_for

    key = (
        config.dataset,
        config.seed,
        config.sigma,
        config.sequential,
        config.val_fraction,
        config.limit,
        config.limit_scope,
        config.batch_size if config.sequential else None,  # only the sequential split uses it
        data_dir,
    )
    if key in _DATA_CACHE:
        _DATA_CACHE.move_to_end(key)
        return _DATA_CACHE[key]
    while len(_DATA_CACHE) >= DATA_CACHE_SIZE:
        _DATA_CACHE.popitem(last=False)
    data = data_for(config, data_dir)
    _DATA_CACHE[key] = data
    return data


def run_task(task: Task, on_epoch: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Train ``task.config`` and return its outcome as a dict (never raises for a bad run).

    ``{"ok": True, test metrics, "history": [per-epoch dicts], ...}`` or
    ``{"ok": False, "error": traceback text}``; both carry the worker's host and pid.
    ``on_epoch`` receives ``{"task_id", "kind": "epoch", "epoch", metrics...}`` after every epoch
    (the local pool streams these to the coordinator, so long runs show progress in the store).
    """
    started = time.perf_counter()
    base: dict[str, Any] = {"task_id": task.task_id, "host": socket.gethostname(), "pid": os.getpid()}
    try:
        import torch

        from dendritic.training import TrainConfig, train
        from dendritic.training.loop import set_threads

        set_threads(task.threads)
        config = TrainConfig.from_dict(dict(task.config))
        data = _prepared(config, task.data_dir)
        report = None
        if on_epoch is not None:

            def report(m: Any) -> None:
                on_epoch({"task_id": task.task_id, "kind": "epoch", "epoch": m.epoch, **m.as_dict()})

        result = train(
            config,
            data=data,
            device=task.device,
            data_dir=task.data_dir,
            checkpoint=task.checkpoint,
            on_epoch=report,
            parent_cache=task.parent_cache,
        )
    except Exception as exc:  # the coordinator records it; the worker lives on
        text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)).strip()
        return {**base, "ok": False, "error": text, "seconds": time.perf_counter() - started}
    return {
        **base,
        "ok": True,
        "test_accuracy": result.test_accuracy,
        "test_loss": result.test_loss,
        "trainable_params": result.trainable_params,
        "paper_params": result.paper_params,
        "best_epoch": result.best_epoch,
        "epochs_run": result.epochs_run,
        "seconds": result.seconds,
        "checkpoint": result.checkpoint,
        "device": str(task.device),
        "threads": torch.get_num_threads(),
        "data": data.provenance,
        "meta": result.meta,
        "extra": result.extra,
        "history": [{"epoch": m.epoch, **m.as_dict()} for m in result.history],
    }


# ---------------------------------------------------------------------------- local process worker
def _watch_parent(coordinator: int) -> None:
    """Exit when the coordinator is gone, so a SIGKILLed sweep leaves no orphans training on.

    Gone means: the coordinator pid no longer exists, or our own parent changed (we were
    reparented because the coordinator, or the fork server that forked us, died).
    """
    parent = os.getppid()
    while True:
        time.sleep(1.0)
        try:
            os.kill(coordinator, 0)
        except ProcessLookupError:
            os._exit(3)
        except OSError:
            pass  # exists but is not ours to signal: still alive
        if os.getppid() != parent:
            os._exit(3)


def _die_of_signal(signum: int, frame: Any) -> None:
    import signal

    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def worker_main(conn: Any, parent: int) -> None:
    """Loop of a local pool process: receive a Task, send back ``run_task``'s dict, until None.

    SIGINT is ignored and SIGTERM ends the process at once: the coordinator decides what
    happens to the runs in flight.
    """
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Terminated (by the coordinator on Ctrl-C or errors): die of the signal at once, not by
    # unwinding the run as fit() would; the coordinator records what happened to it.
    signal.signal(signal.SIGTERM, _die_of_signal)
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()
    hook = os.environ.get("DENDRITIC_SWEEP_WORKER_PIDS")  # tests find workers to kill here
    while True:
        try:
            task = conn.recv()
        except (EOFError, OSError):
            return
        if task is None:
            return
        if hook:
            with open(hook, "a") as fh:
                fh.write(f"{os.getpid()} {task.task_id}\n")
        try:
            conn.send(run_task(task, on_epoch=conn.send))
        except (BrokenPipeError, OSError):  # the coordinator is gone
            return
