"""`dendritic` command line: a thin shell over the library (every command is also a Python call)."""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from dendritic.errors import DendriticError, one_line
from dendritic.files import (
    check_input_dir,
    check_output_dir,
    check_output_file,
    nonempty_path,
    sqlite_files,
)

__all__ = [
    "MAX_COUNT",
    "build_parser",
    "float_in",
    "int_in",
    "lr_float",
    "main",
    "non_negative_int",
    "positive_int",
    "run_id_int",
    "seed_int",
    "sigma_float",
    "threads_int",
]

PROG = "dendritic"

#: Upper bound of plain counts (epochs, sizes, images...): far above any real use, and every
#: number the CLI takes has a range, so no value can overflow SQLite or numpy further down.
MAX_COUNT = 2**31 - 1


# ---------------------------------------------------------------------------- argument types
# Shared by the sub-command modules (sweeps, figures, continual): one wording for every bad number.
def int_in(low: int, high: int, *, kind: str | None = None):
    """An argparse type for integers in [low, high]."""
    kind = kind or {0: "a non-negative integer", 1: "a positive integer"}.get(low, "an integer")

    def parse(text: str) -> int:
        try:
            value = int(text.strip())
        except ValueError:
            value = None
        if value is None or not low <= value <= high:
            raise argparse.ArgumentTypeError(f"expected {kind} in [{low}, {high}], got {text!r}")
        return value

    parse.__name__ = "integer"  # argparse names the type in some messages
    parse.bounds = (low, high)  # type: ignore[attr-defined]  # read by the fuzz tests
    return parse


positive_int = int_in(1, MAX_COUNT)
non_negative_int = int_in(0, MAX_COUNT)


#: Trial seeds (numpy's and torch's generators take 32-bit seeds; models.network.MAX_SEED).
seed_int = int_in(0, 2**32 - 1, kind="a seed")
#: Run ids are SQLite integers.
run_id_int = int_in(1, 2**63 - 1, kind="a run id")
#: Torch CPU threads (OpenMP crashes the process when asked for tens of thousands;
#: training.loop.MAX_THREADS).
threads_int = int_in(1, 1024)
#: Epochs of one run (training.config.MAX_EPOCHS).
epochs_int = int_in(1, 100_000)
#: Dendro-somatic layers of one network (models.network.MAX_LAYERS).
layers_int = int_in(1, 1000)


def float_in(low: float, high: float | None, *, low_open: bool = False, high_open: bool = False):
    """An argparse type for finite numbers in a range (``high`` None: no upper bound)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        ok = math.isfinite(value) and (value > low if low_open else value >= low)
        if high is not None:
            ok = ok and (value < high if high_open else value <= high)
        if not ok:
            left = "(" if low_open else "["
            right = "inf)" if high is None else f"{high:g}" + (")" if high_open else "]")
            raise argparse.ArgumentTypeError(
                f"expected a finite number in {left}{low:g}, {right}, got {text!r}"
            )
        return value

    parse.__name__ = "number"
    parse.bounds = (low, high, low_open, high_open)  # type: ignore[attr-defined]
    return parse


#: A learning rate or a noise level beyond these is a typo, not an experiment (pixels are in [0, 1]).
lr_float = float_in(0, 1000, low_open=True)
sigma_float = float_in(0, 100)


class ArgumentParser(argparse.ArgumentParser):
    """argparse whose usage errors are one line too: what is wrong, and where help is."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {one_line(message)} (see {self.prog} --help)\n")


# ---------------------------------------------------------------------------- paths
def store_path(args: argparse.Namespace, *, default: str = "runs.db") -> Path:
    """``--store``: not empty (an empty path would silently mean ./runs.db)."""
    return nonempty_path(default if args.store is None else args.store, "--store")


def open_store(path: str | os.PathLike[str] | None, *, readonly: bool = False):
    """The results store; read commands open it read-only (read-only media included)."""
    from dendritic.store import RunStore

    return RunStore(nonempty_path(path, "--store"), readonly=readonly)


def store_files(path: str | os.PathLike[str] | None) -> list[Path]:
    """The store and SQLite's companion files: no output of a command may replace them."""
    return [] if path is None or not str(path).strip() else sqlite_files(Path(path).expanduser())


def check_data_dir(args: argparse.Namespace) -> None:
    """``--data-dir`` must be an existing folder (never silently replaced by another copy)."""
    if getattr(args, "data_dir", None) is not None:
        check_input_dir(args.data_dir, option="--data-dir")


def no_store_conflicts(args: argparse.Namespace) -> None:
    if args.no_store:
        given = (("--store", args.store is not None), ("--replace", getattr(args, "replace", False)))
        clash = [flag for flag, used in given if used]
        if clash:
            raise ValueError(f"--no-store does not record the run, so {' and '.join(clash)} cannot apply")


# ---------------------------------------------------------------------------- commands
def cmd_train(args: argparse.Namespace) -> int:
    from dendritic.models.checkpoint import check_target
    from dendritic.training import TrainConfig, train

    config = TrainConfig(
        model=args.model,
        dataset=args.dataset,
        dendrites=args.dendrites,
        somata=args.somata,
        synapses=args.synapses,
        layers=args.layers,
        dropout=args.dropout,
        lr=args.lr,
        batch_size=args.batch_size,
        epochs=args.epochs,
        seed=args.seed,
        sigma=args.sigma,
        sequential=args.sequential,
        early_stop=args.early_stop,
        limit=args.limit,
        random_mode=args.random_mode,
        optimizer=args.optimizer,
    )
    no_store_conflicts(args)
    check_data_dir(args)
    path = None if args.no_store else store_path(args)
    if args.checkpoint is not None:  # before any training: a bad path must not cost a run
        check_target(args.checkpoint, protected=tuple(store_files(path)))
    store = None if path is None else open_store(path)
    try:
        result = train(
            config,
            store=store,
            device=args.device,
            data_dir=args.data_dir,
            checkpoint=args.checkpoint,
            progress=not args.quiet,
            replace=args.replace,
            threads=args.threads,
        )
    finally:
        if store is not None:
            store.close()
    where = f", run {result.run_id} in {path}" if result.run_id is not None else ""
    print(
        f"{config.model} on {config.dataset}: test accuracy {100 * result.test_accuracy:.2f} %, "
        f"test loss {result.test_loss:.4f}, {result.trainable_params:,} trainable parameters, "
        f"{result.seconds:.1f} s{where}"
    )
    return 0


def _format_table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    def cell(value: Any) -> str:
        if value is None:
            return "-"
        if isinstance(value, float):
            return f"{value:.4f}"
        return str(value)

    table = [[c for c in columns]] + [[cell(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(columns))]
    return "\n".join("  ".join(v.rjust(w) for v, w in zip(row, widths, strict=True)) for row in table)


RUN_COLUMNS = [
    "id",
    "status",
    "model",
    "dataset",
    "dendrites",
    "somata",
    "seed",
    "epochs_run",
    "trainable_params",
    "test_accuracy",
    "test_loss",
    "wall_seconds",
]


def cmd_runs(args: argparse.Namespace) -> int:
    outputs: list[Path] = []
    if args.runs_command == "export":  # every output checked before anything is written
        protected = store_files(args.store)
        out = check_output_file(
            f"runs.{args.format or 'csv'}" if args.out is None else args.out,
            option="--out",
            protected=protected,
            create_parents=False,
        )
        outputs = [out]
        if args.epochs:
            epochs_out = out.with_name(out.stem + "-epochs" + out.suffix)
            outputs.append(check_output_file(epochs_out, option="--epochs file", protected=protected))
    store = open_store(args.store, readonly=True)
    try:
        if args.runs_command == "list":
            rows = store.list_runs(
                status=args.status, model=args.model, dataset=args.dataset, limit=args.limit
            )
            if not rows:
                print(f"no runs in {args.store}")
                return 0
            print(_format_table(rows, RUN_COLUMNS))
            for row in rows:
                if row.get("problem"):
                    print(f"{PROG}: warning: {row['problem']}", file=sys.stderr)
        elif args.runs_command == "show":
            run = store.get_run(args.run_id)
            run["epochs"] = store.epochs(args.run_id)
            print(json.dumps(run, indent=2, default=str))
        elif args.runs_command == "export":
            print(f"wrote {store.export_runs(outputs[0], args.format)}")
            if args.epochs:
                print(f"wrote {store.export_epochs(outputs[1], args.format)}")
    finally:
        store.close()
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from dendritic.demo import run_demo

    check_data_dir(args)
    store = None if args.store is None else store_path(args)
    check_output_dir(args.out, option="--out", protected=store_files(store))
    run_demo(
        out=args.out,
        store_path=args.store,
        data_dir=args.data_dir,
        epochs=args.epochs,
        quick=args.quick,
        threads=args.threads,
    )
    return 0


# ---------------------------------------------------------------------------- parser
def _add_common_data(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir",
        default=None,
        help="folder holding the dataset files (else $DENDRITIC_DATA, the user cache, Debian's folder)",
    )


def build_parser() -> argparse.ArgumentParser:
    from dendritic import __version__

    parser = ArgumentParser(
        prog=PROG,
        description="Dendritic ANNs (Chavlis & Poirazi 2025): train, sweep and analyse the paper's models.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    # train
    p = sub.add_parser(
        "train",
        help="train one model with the paper's protocol",
        description="Train one model with the paper's protocol (Adam 1e-3, batch 128, 10%% validation) "
        "and record it in the results store.",
    )
    p.add_argument(
        "--model", default="dANN-LRF", help="paper label, e.g. dANN-LRF, dANN-GRF, dANN-R, vANN, sANN"
    )
    p.add_argument("--dataset", default="fmnist", help="mnist, fmnist, kmnist, emnist or cifar10")
    p.add_argument("--dendrites", type=positive_int, default=16, help="dendrites per soma, D (default 16)")
    p.add_argument("--somata", type=positive_int, default=256, help="somata, S (default 256)")
    p.add_argument("--synapses", type=positive_int, default=16, help="inputs per dendrite (default 16)")
    p.add_argument(
        "--layers", type=layers_int, default=1, help="dendro-somatic layers (default 1, at most 1000)"
    )
    p.add_argument("--seed", type=seed_int, default=1, help="trial seed: wiring, weights, splits, noise")
    p.add_argument("--epochs", type=epochs_int, default=None, help="default: the paper's count per dataset")
    p.add_argument("--lr", type=lr_float, default=1e-3, help="Adam learning rate, in (0, 1000]")
    p.add_argument("--batch-size", type=positive_int, default=128)
    p.add_argument(
        "--optimizer",
        choices=("adam-keras", "adam-torch"),
        default="adam-keras",
        help="Adam's form: adam-keras (the paper's code: eps on the uncorrected sqrt(v); default) or "
        "adam-torch (torch's)",
    )
    p.add_argument(
        "--dropout", type=float_in(0, 1, high_open=True), default=0.0, help="after every hidden layer"
    )
    p.add_argument(
        "--sigma", type=sigma_float, default=0.0, help="Gaussian noise s.d. on all splits, in [0, 100]"
    )
    p.add_argument(
        "--sequential", action="store_true", help="class-sequential protocol (single-class batches)"
    )
    p.add_argument("--early-stop", action="store_true", help="patience 10 on validation loss, <= 100 epochs")
    p.add_argument("--limit", type=positive_int, default=None, help="use at most this many training images")
    p.add_argument(
        "--random-mode",
        choices=("exact", "scatter"),
        default="exact",
        help="random wiring: exactly n synapses per dendrite, or the reference's scatter",
    )
    p.add_argument("--store", default=None, help="SQLite results store (default runs.db)")
    p.add_argument("--no-store", action="store_true", help="do not record the run")
    p.add_argument("--replace", action="store_true", help="run again even if the store has this run finished")
    p.add_argument("--checkpoint", default=None, help="save the trained model here (safetensors + JSON)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
    p.add_argument("--threads", type=threads_int, default=None, help="CPU threads for PyTorch (1-1024)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_common_data(p)
    p.set_defaults(func=cmd_train)

    # runs
    p = sub.add_parser("runs", help="list, show or export recorded runs")
    runs_sub = p.add_subparsers(dest="runs_command", metavar="ACTION")
    runs_sub.required = True
    q = runs_sub.add_parser("list", help="one line per run")
    q.add_argument("--status", choices=("running", "finished", "failed", "interrupted"))
    q.add_argument("--model")
    q.add_argument("--dataset")
    q.add_argument("--limit", type=positive_int)
    q = runs_sub.add_parser("show", help="one run with its config and epochs, as JSON")
    q.add_argument("run_id", type=run_id_int)
    q = runs_sub.add_parser("export", help="one tidy row per run (and per epoch with --epochs)")
    q.add_argument(
        "--format",
        choices=("csv", "json", "parquet"),
        default=None,
        help="default: from the --out suffix (.csv, .json, .parquet), else csv",
    )
    q.add_argument("--out", default=None, help="output file (default runs.FORMAT)")
    q.add_argument("--epochs", action="store_true", help="also write the per-epoch table next to it")
    for action in runs_sub.choices.values():
        action.add_argument("--store", default="runs.db", help="SQLite results store (default runs.db)")
    p.set_defaults(func=cmd_runs)

    # demo
    p = sub.add_parser(
        "demo",
        help="the paper's effect on real Fashion-MNIST in a few minutes",
        description="Train dANN-LRF, dANN-GRF, dANN-R and vANN on Fashion-MNIST at a few sizes, print "
        "test accuracy vs trainable parameters, write a plot, and say whether a dANN came within one "
        "point of the best vANN with at least 10x fewer parameters.",
    )
    p.add_argument("--out", default="demo-output", help="folder for the plot, table and store")
    p.add_argument("--store", default=None, help="results store (default OUT/runs.db)")
    p.add_argument("--epochs", type=epochs_int, default=None, help="epochs per run (default: fits ~10 min)")
    p.add_argument("--quick", action="store_true", help="a one-minute smoke version on a data subset")
    p.add_argument(
        "--threads",
        type=threads_int,
        default=1,
        help="CPU threads (default 1: these small models gain little from more, and a busy "
        "machine makes extra threads wait on each other)",
    )
    _add_common_data(p)
    p.set_defaults(func=cmd_demo)

    # The commands of the later pipeline stages live beside their code.
    from dendritic.continual.cli import add_continual_parser
    from dendritic.figures.cli import add_figure_parsers
    from dendritic.sweeps.cli import add_sweep_parser

    for add_parsers in (add_sweep_parser, add_figure_parsers, add_continual_parser):
        add_parsers(sub)
    return parser


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    if isinstance(exc, KeyError) and text.startswith("'") and text.endswith("'"):
        text = text[1:-1]
    return one_line(text)


class Terminated(KeyboardInterrupt):
    """SIGTERM (``kill``, a cluster scheduler's time limit): unwinds like Ctrl-C, so the runs in
    flight are marked 'interrupted' and a sweep's worker processes are stopped."""


def _raise_terminated(signum: int, frame: Any) -> None:
    raise Terminated("SIGTERM")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        return int(args.func(args) or 0)
    except Terminated:
        print(f"{PROG}: terminated (SIGTERM)", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `dendritic runs show 1 | head`: the reader has all it wanted
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except (DendriticError, ValueError, OSError, LookupError, FloatingPointError) as exc:
        print(f"{PROG}: error: {_one_line(exc)}", file=sys.stderr)
        return 1
    except MemoryError:
        print(
            f"{PROG}: error: out of memory (try a smaller model, --limit or fewer --workers)", file=sys.stderr
        )
        return 1
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
