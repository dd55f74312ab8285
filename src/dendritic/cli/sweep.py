"""``dendritic sweep EXPERIMENT``: run (or preview) one of the paper's grids, resumably."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from pathlib import Path
from typing import Any

from dendritic.cli.args import (
    PROG,
    add_optimizer,
    check_data_dir,
    epochs_int,
    float_in,
    positive_int,
    store_files,
    store_path,
    threads_int,
    workers_int,
    writing_store,
)
from dendritic.cli.progress import RunsBar
from dendritic.errors import DendriticError
from dendritic.files import check_output_dir
from dendritic.models.spec import options_label
from dendritic.sweeps.grids import AXES, EXPERIMENTS, FLAGS, expand, get_experiment, parse_list

__all__ = ["add_sweep_parser", "cmd_sweep"]

_TABLE_COLUMNS = ("model", "dataset", "dendrites", "somata", "layers", "seed", "sigma", "lr", "epochs")
#: A dry run prints the whole table up to this many rows, else the first and last HEAD rows.
_FULL_TABLE = 40
_HEAD = 10
#: --reclaim: a run on another host silent for this long belongs to a dead coordinator.
RECLAIM_AFTER = 300.0


def add_sweep_parser(sub: Any) -> argparse.ArgumentParser:
    """Register ``sweep`` on the main parser's subparsers."""
    lines = "\n".join(f"  {e.name:<11} {e.size():>5} runs  {e.description}" for e in EXPERIMENTS.values())
    p = sub.add_parser(
        "sweep",
        help="run one of the paper's experiment grids (resumable, parallel, local or Ray)",
        description="Run a named experiment grid of the paper (SPEC §5) into the results store. "
        "Re-running skips finished runs and retries failed or interrupted ones. Filters take "
        "comma-separated lists and may only shrink the grid.",
        epilog=f"experiments (default sizes, per dataset):\n{lines}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("experiment", metavar="EXPERIMENT", help=", ".join(EXPERIMENTS))
    g = p.add_argument_group("filters (comma-separated lists)")
    g.add_argument(
        "--dataset", "--datasets", dest="dataset", default=None, help="default fmnist; main takes several"
    )
    g.add_argument("--models", default=None, help="e.g. dANN-LRF,vANN")
    g.add_argument("--dendrites", default=None, help="D values, e.g. 1,4,16")
    g.add_argument("--somata", default=None, help="S values, e.g. 32,128")
    g.add_argument("--trials", default=None, help="trial seeds, e.g. 1 or 1,2")
    g.add_argument("--sigma", default=None, help="noise levels (noise experiment)")
    g.add_argument("--layers", default=None, help="depths (depth experiment)")
    g.add_argument("--lr", default=None, help="learning rates (lr experiment)")
    o = p.add_argument_group("overrides")
    o.add_argument("--epochs", type=epochs_int, default=None, help="epochs per run (default: the paper's)")
    o.add_argument("--limit", type=positive_int, default=None, help="at most this many training images")
    add_optimizer(o)
    o.add_argument(
        "--workers", type=workers_int, default=1, help="parallel runs (local backend; default 1, at most 256)"
    )
    o.add_argument(
        "--threads",
        type=threads_int,
        default=None,
        help="torch threads per run (local: CPUs // workers; ray: 1)",
    )
    o.add_argument("--store", default="runs.db", help="SQLite results store (default runs.db)")
    o.add_argument("--data-dir", default=None, help="dataset folder (must be readable on every Ray node)")
    o.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto (default cpu)")
    o.add_argument("--checkpoints", metavar="DIR", default=None, help="save every trained model in DIR")
    x = p.add_argument_group("execution")
    x.add_argument("--backend", choices=("local", "ray"), default="local")
    x.add_argument(
        "--address",
        default=None,
        help="Ray cluster address (auto, host:6379, ray://host:10001); default: start Ray locally",
    )
    x.add_argument(
        "--connect-timeout",
        metavar="SECONDS",
        type=float_in(0, 3600, low_open=True),
        default=None,
        help="seconds the Ray cluster at --address has to answer before the sweep stops with an "
        "error (default $DENDRITIC_RAY_CONNECT_TIMEOUT, else 30)",
    )
    x.add_argument(
        "--dry-run",
        action="store_true",
        help="print the runs with their estimated minutes, how many are finished, and the total",
    )
    x.add_argument(
        "--calibrate",
        action="store_true",
        help="estimate with the cost model re-fitted on this machine (times 12 models, about a minute)",
    )
    x.add_argument(
        "--max-minutes",
        type=float_in(0, 10_000, low_open=True),
        default=None,
        help="leave out runs estimated to take longer than this (on this machine; see --calibrate)",
    )
    x.add_argument(
        "--reclaim",
        action="store_true",
        help="retry runs left 'running' by a coordinator on another host that has not "
        "heartbeat for 5 minutes (e.g. a re-queued Slurm job on a different node)",
    )
    x.add_argument(
        "--quiet",
        dest="no_bar",
        action="store_true",
        help="no progress bar (the lines per run and the summary still print)",
    )
    p.set_defaults(func=cmd_sweep)
    return p


def _filters(args: argparse.Namespace) -> dict[str, Any]:
    names = {"dataset": "dataset", "model": "models", "dendrites": "dendrites", "somata": "somata",
             "seed": "trials", "sigma": "sigma", "layers": "layers", "lr": "lr"}  # fmt: skip
    out: dict[str, Any] = {}
    for axis in AXES:
        value = getattr(args, names[axis])
        if value is not None:
            items = parse_list(value)
            if not items:
                raise ValueError(f"{FLAGS[axis]} names no value")
            out[axis] = items
    return out


def _cell(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _options(row: dict[str, Any]) -> str:
    """The options beyond the paper a run uses, e.g. ``B=2 cables=ones residual``, and the
    settings that tell a grid's points apart beyond the columns (``sequential``, the
    selectivity regulariser's ``alpha=-0.3 on somata``, a lottery ticket's pruning:
    ``lottery rewind to epoch 1, 5 rounds, parent 25 epochs``)."""
    from dendritic.training.lottery import lottery_info

    words = [options_label(row)]
    if row.get("sequential"):
        words.append("sequential")
    if row.get("selectivity_layers") is not None:
        words.append(f"alpha={float(row.get('selectivity_alpha', 0.0)):g} on {row['selectivity_layers']}")
    lottery = lottery_info(row)
    if lottery:
        words.append(f"lottery {lottery}")
    return " ".join(w for w in words if w) or "-"


def _table(rows: list[dict[str, Any]], done: set[int], minutes: list[float]) -> list[str]:
    columns = list(_TABLE_COLUMNS)
    if any(r.get("synapses", 16) != 16 for r in rows):
        columns.insert(columns.index("layers"), "synapses")
    extra = any(_options(r) != "-" for r in rows)
    cols = ["#", *columns, *(["options"] if extra else []), "est. min", "status"]
    body = [
        [
            str(i + 1),
            *(_cell(r[c]) for c in columns),
            *([_options(r)] if extra else []),
            f"{m:.1f}",
            "finished" if i in done else "to run",
        ]
        for i, (r, m) in enumerate(zip(rows, minutes, strict=True))
    ]
    if len(body) > _FULL_TABLE:
        body = [*body[:_HEAD], ["..."] + [""] * (len(cols) - 1), *body[-_HEAD:]]
    widths = [max(len(row[i]) for row in [cols, *body]) for i in range(len(cols))]
    return ["  ".join(v.rjust(w) for v, w in zip(row, widths, strict=True)) for row in [cols, *body]]


def _hours(seconds: float) -> str:
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    if seconds < 72 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def _estimates(args: argparse.Namespace, configs: list[Any]) -> tuple[list[float], dict[str, Any]]:
    """Minutes per run on this machine, and what they rest on: finished runs of this host in the
    store, else the cost model (re-fitted here with ``--calibrate``)."""
    import socket

    from dendritic.store import RunStore, config_key
    from dendritic.sweeps.backends import available_cpus
    from dendritic.sweeps.estimate import DEFAULT_COST, calibrate, measured_epoch_seconds, run_seconds
    from dendritic.training.lottery import parent_identity

    measured: dict[Any, float] = {}
    finished: set[str] = set()
    if Path(args.store).exists():  # an estimate never creates a store
        with RunStore(args.store, readonly=True) as store:
            finished = store.finished_keys()
            # Host names do not tell machines apart everywhere (virtual machines share one): with
            # --calibrate only the timings taken here and now count.
            if not args.calibrate:
                measured = measured_epoch_seconds(
                    store.list_runs(status="finished"), host=socket.gethostname()
                )
    threads = args.threads or (max(1, available_cpus() // args.workers) if args.backend == "local" else 1)
    cost = DEFAULT_COST
    if args.calibrate:
        print(
            f"{PROG}: timing a few training steps of 12 models here ({threads} thread(s))...", file=sys.stderr
        )
        cost = calibrate(threads=threads)
    # Lottery runs still to do share their dense parent on the local backend (the sweep's cache).
    parents: set[str] = set()
    estimates = []
    for c in configs:
        parent = (
            parent_identity(c)
            if args.backend == "local" and config_key(c.to_dict()) not in finished
            else None
        )
        estimates.append(
            run_seconds(c, threads=threads, cost=cost, measured=measured, shared_parent=parent in parents)
        )
        if parent is not None:
            parents.add(parent)
    info = {"threads": threads, "timed": sum(t for _, t in estimates), "calibrated": args.calibrate}
    return [seconds / 60 for seconds, _ in estimates], info


def _cap(args: argparse.Namespace, configs: list[Any], minutes: list[float]) -> tuple[list[Any], list[float]]:
    """``--max-minutes``: leave out runs estimated to take longer, and say how many."""
    if args.max_minutes is None:
        return configs, minutes
    kept = [(c, m) for c, m in zip(configs, minutes, strict=True) if m <= args.max_minutes]
    dropped = len(configs) - len(kept)
    if dropped:
        print(
            f"{PROG}: --max-minutes {args.max_minutes:g}: {dropped} of {len(configs)} runs are estimated "
            "to take longer and are left out",
            file=sys.stderr,
        )
    return [c for c, _ in kept], [m for _, m in kept]


def dry_run(args: argparse.Namespace, configs: list[Any], minutes: list[float], info: dict[str, Any]) -> int:
    from dendritic.store import RunStore, config_key

    finished: set[str] = set()
    if Path(args.store).exists():  # a dry run never creates a store
        with RunStore(args.store, readonly=True) as store:
            finished = store.finished_keys()
    dicts = [c.to_dict() for c in configs]
    done = {i for i, d in enumerate(dicts) if config_key(d) in finished}
    for line in _table(dicts, done, minutes):
        print(line)
    workers = args.workers if args.backend == "local" else None
    threads = info["threads"]
    cpu = 60 * sum(m for i, m in enumerate(minutes) if i not in done)
    wall = cpu / max(1, workers or 1)
    timed = info["timed"]
    print(
        f"{len(configs)} runs in {args.experiment}, {len(done)} already finished in {args.store}, "
        f"{len(configs) - len(done)} to run"
    )
    model = (
        "the cost model re-fitted here (--calibrate)"
        if info["calibrated"]
        else "the cost model in docs/sweeps.md"
    )
    source = (
        f"{timed} timed from finished runs of this machine in the store, the rest" if timed else "all"
    ) + (f" from {model}")
    if workers:
        print(
            f"estimated time: {_hours(wall)} with {workers} worker(s) x {threads} thread(s) "
            f"({_hours(cpu)} of run time in total; {source})"
        )
    else:
        print(
            f"estimated run time: {_hours(cpu)} in total, divided by the Ray cluster's parallel runs ({source})"
        )
    return 0


def _warn_oversubscription(workers: int, threads: int | None) -> None:
    """Multi-threaded runs on a busy machine can be many times slower (docs/sweeps.md); say so."""
    from dendritic.sweeps.backends import available_cpus

    cpus = available_cpus()
    threads = threads or max(1, cpus // workers)
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):
        return
    if threads > 1 and load > 0.5:
        print(
            f"{PROG}: note: {threads} torch threads per run while the machine is already loaded "
            f"({load:.1f} on {cpus} CPUs); on a shared machine --workers {cpus} --threads 1 is "
            "usually much faster (see docs/sweeps.md)",
            file=sys.stderr,
        )


def _check_store_folder(path: str) -> None:
    """A store that does not exist yet must have a folder to be created in: a dry run (or an
    estimate) never creates the store, and said 'to run' for a sweep that could not start."""
    target = Path(path).expanduser()
    if target.exists():
        return
    parent = target.parent
    if parent.exists() and not parent.is_dir():
        raise ValueError(f"cannot open run store {target}: {parent} is not a directory")
    if not parent.exists():
        raise ValueError(f"cannot open run store {target}: directory {parent} does not exist")


def cmd_sweep(args: argparse.Namespace) -> int:
    experiment = get_experiment(args.experiment)
    args.experiment = experiment.name
    args.store = str(store_path(args))
    _check_store_folder(args.store)
    # contradictory options, before the dry run too (it previews the sweep these options ask for)
    if args.backend == "local" and args.address is not None:
        raise ValueError("--address is for --backend ray")
    if args.connect_timeout is not None and args.address is None:
        raise ValueError("--connect-timeout is for joining a Ray cluster: give --backend ray --address")
    configs = expand(
        experiment, _filters(args), epochs=args.epochs, limit=args.limit, optimizer=args.optimizer
    )
    if args.dry_run or args.max_minutes is not None:
        minutes, info = _estimates(args, configs)
        configs, minutes = _cap(args, configs, minutes)
        if args.dry_run:
            return dry_run(args, configs, minutes, info)
    check_data_dir(args)
    if args.data_dir is not None and args.backend == "local":
        # every dataset of the grid in --data-dir before the store is opened: a folder without
        # them recorded every run of the sweep as failed (Ray nodes read their own copies)
        from dendritic.data.sources import locate

        for dataset in sorted({c.dataset for c in configs}):
            locate(dataset, args.data_dir)
    if args.checkpoints is not None:
        check_output_dir(args.checkpoints, option="--checkpoints", protected=store_files(args.store))
    from dendritic.sweeps.backends import LocalBackend, RayBackend
    from dendritic.sweeps.coordinator import run_sweep

    if args.device != "cpu":
        from dendritic.training.loop import resolve_device

        resolve_device(args.device)  # fail here, not in every worker
    bar = None if args.no_bar or not sys.stderr.isatty() else RunsBar()
    with writing_store(args.store) as store, bar if bar is not None else contextlib.nullcontext():
        if args.backend == "ray":
            try:
                backend: Any = RayBackend(
                    args.address, threads=args.threads or 1, connect_timeout=args.connect_timeout
                )
            except ImportError as exc:  # raised, so that a store this command created goes again
                raise DendriticError(str(exc)) from exc
        else:
            backend = LocalBackend(args.workers)
            _warn_oversubscription(args.workers, args.threads)
        with contextlib.closing(backend):
            report = run_sweep(
                configs,
                store,
                backend=backend,
                threads=args.threads,
                data_dir=args.data_dir,
                device=args.device,
                checkpoints=args.checkpoints,
                progress=bar,
                reclaim=RECLAIM_AFTER if args.reclaim else None,
                experiment=experiment.name,
            )
    return 1 if report.failed else 0
