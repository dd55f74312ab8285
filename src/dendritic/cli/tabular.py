"""``dendritic tabular run|summary``: the tabular study (dendritic estimators vs a matched MLP vs
gradient boosting on scikit-learn's bundled datasets, clean and with uninformative features)."""

from __future__ import annotations

import argparse
from typing import Any

from dendritic.cli.args import int_in, lr_float, positive_int, threads_int, workers_int

__all__ = ["add_tabular_parser"]


def _names(text: str, known: Any, what: str) -> tuple[str, ...]:
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    unknown = [n for n in names if n not in known]
    if not names or unknown:
        raise ValueError(
            f"unknown {what} {unknown[0] if unknown else text!r}; choose from {', '.join(known)}"
        )
    return names


def _fractions(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise ValueError(f"--noise takes fractions such as 0,0.5,0.9, got {text!r}") from None
    if not values:
        raise ValueError("--noise needs at least one fraction")
    return values


def _seeds(text: str) -> tuple[int, ...]:
    """``10`` (seeds 1–10) or a list ``1,2,7``, each seed at most the study's ``MAX_SEED``."""
    from dendritic.tabular.study import MAX_SEED

    parts = [p.strip() for p in text.split(",") if p.strip()]
    try:
        values = [int(p) for p in parts]
    except ValueError:
        raise ValueError(f"--seeds takes a count (10) or a list (1,2,7), got {text!r}") from None
    if len(values) == 1:
        if not 1 <= values[0] <= MAX_SEED:
            raise ValueError(f"--seeds must be at least 1 and at most {MAX_SEED}, got {values[0]}")
        return tuple(range(1, values[0] + 1))
    if not values or min(values) < 0 or max(values) > MAX_SEED:
        raise ValueError(f"--seeds: seeds must be integers in [0, {MAX_SEED}], got {text!r}")
    return tuple(dict.fromkeys(values))


def _study(args: argparse.Namespace) -> Any:
    from dendritic.tabular import DATASETS, MODELS, TabularStudy

    return TabularStudy(
        datasets=_names(args.datasets, DATASETS, "dataset") if args.datasets else tuple(DATASETS),
        models=_names(args.models, MODELS, "model") if args.models else MODELS,
        noise=_fractions(args.noise),
        seeds=_seeds(args.seeds),
        folds=args.folds,
        somata=args.somata,
        dendrites=args.dendrites,
        synapses=args.synapses,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        optimizer=args.optimizer,
    )


def _run(args: argparse.Namespace) -> int:
    import sys

    from dendritic.cli.args import store_path, writing_store
    from dendritic.cli.progress import RunsBar
    from dendritic.tabular import run_study

    study = _study(args)
    path = store_path(args)
    with writing_store(path) as store, RunsBar() as bar:
        show = None if args.quiet or not sys.stderr.isatty() else bar
        result = run_study(store, study, progress=show, threads=args.threads, workers=args.workers)
    print(f"{result.ran} runs fitted, {result.skipped} already in {path} ({result.seconds:.0f} s)")
    return 0


def _summary(args: argparse.Namespace) -> int:
    from dendritic.cli.args import open_store, store_files, store_path
    from dendritic.files import check_output_dir
    from dendritic.tabular.summary import format_table, study_rows, write_summary

    path = store_path(args)
    if args.out is not None:  # before any output: a bad --out refuses the command, table and all
        check_output_dir(args.out, option="--out", protected=store_files(path))
    with open_store(path, readonly=True) as store:
        rows = study_rows(store)
    if not rows:
        raise ValueError(f"no finished tabular runs in {path}; run `dendritic tabular run` first")
    print(format_table(rows))
    if args.out is not None:
        formats = () if args.no_figure else ("png", "pdf")
        write_summary(rows, args.out, formats=formats, protected=store_files(path))  # logs each file
    return 0


def add_tabular_parser(sub: Any) -> argparse.ArgumentParser:
    """Register ``tabular`` on the main parser's subparsers."""
    p = sub.add_parser(
        "tabular",
        help="the tabular study: dendritic estimators vs a matched MLP vs gradient boosting",
        description="Dendritic estimators (random and local receptive fields) vs an MLP at matched "
        "trainable parameters vs HistGradientBoosting on scikit-learn's bundled datasets, clean and "
        "with uninformative Gaussian features; shuffled (stratified) k-fold × seeds, every fit a run "
        "of the store (experiment 'tabular'). Re-running skips finished fits.",
    )
    p.set_defaults(func=lambda a: p.error("choose run or summary"))
    cmds = p.add_subparsers(dest="tabular_command", metavar="{run,summary}")
    run = cmds.add_parser("run", help="fit the study's grid into the store")
    run.add_argument("--store", default=None, help="results store (default runs.db)")
    run.add_argument("--datasets", default=None, help="breast-cancer,wine,digits,iris,diabetes (default all)")
    run.add_argument("--models", default=None, help="dendritic-random,dendritic-local,mlp,hgb (default all)")
    run.add_argument(
        "--noise", default="0,0.5,0.9", help="uninformative fractions of the columns, each in [0, 0.99]"
    )
    run.add_argument("--seeds", default="10", help="a count (seeds 1..N) or a list; default 10")
    run.add_argument("--folds", type=int_in(2, 100), default=5, help="cross-validation folds (default 5)")
    run.add_argument("--somata", type=positive_int, default=32)
    run.add_argument("--dendrites", type=positive_int, default=8)
    run.add_argument("--synapses", type=positive_int, default=8, help="per dendrite (at most the features)")
    run.add_argument("--epochs", type=positive_int, default=50)
    run.add_argument("--batch-size", type=positive_int, default=32)
    run.add_argument("--lr", type=lr_float, default=1e-2)
    run.add_argument("--optimizer", choices=("adam-keras", "adam-torch"), default="adam-keras")
    run.add_argument(
        "--threads",
        type=threads_int,
        default=1,
        help="threads per fit, torch's and gradient boosting's (default 1)",
    )
    run.add_argument(
        "--workers",
        type=workers_int,
        default=1,
        help="processes fitting (dataset, seed) parts of the grid at once, --threads each (default 1)",
    )
    run.add_argument("--quiet", action="store_true", help="no progress bar or log lines")
    run.set_defaults(func=_run)
    summary = cmds.add_parser("summary", help="the study's table (and figure with --out)")
    summary.add_argument("--store", default=None, help="results store (default runs.db)")
    summary.add_argument(
        "--out", default=None, help="folder for tabular-summary.md/.csv and beyond-tabular.png/.pdf"
    )
    summary.add_argument("--no-figure", action="store_true", help="tables only")
    summary.add_argument("--quiet", action="store_true", help="no log lines")
    summary.set_defaults(func=_summary)
    return p
