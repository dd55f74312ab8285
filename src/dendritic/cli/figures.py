"""`dendritic analyze`, `dendritic figures` and `dendritic report`: thin shells over the library.

Registered by :func:`add_figure_parsers` from :func:`dendritic.cli.build_parser`. Errors the
user can act on (missing store, unknown run, no checkpoint, missing matplotlib) end as one
line on stderr with exit status 1, through the main CLI's handler.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from dendritic.cli.args import (
    check_data_dir,
    int_in,
    open_store,
    run_id_int,
    seed_int,
    store_files,
    workers_int,
)
from dendritic.errors import MissingDependencyError
from dendritic.files import check_input_dir, check_output_dir, check_output_file

__all__ = ["add_figure_parsers", "cmd_analyze", "cmd_figures", "cmd_report"]

#: Image formats matplotlib writes for us.
FORMATS = ("png", "pdf", "svg")
#: Suffixes of the files ``figures`` and ``analyze`` write into their folder.
_WRITTEN = {".png", ".pdf", ".svg", ".csv", ".md", ".json", ".npz"}
#: t-SNE sizes: the paper embeds 2,000 images 10 times; these bounds keep a typo from running for days.
tsne_samples_int = int_in(1, 100_000)
tsne_samples_or_none = int_in(0, 100_000)
repeats_int = int_in(1, 1000)


def _names(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _formats(text: str) -> list[str]:
    formats = _names(text)
    if not formats:
        raise argparse.ArgumentTypeError(f"names no format; use one or more of {', '.join(FORMATS)}")
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown format {unknown[0]!r}; use one or more of {', '.join(FORMATS)}"
        )
    return formats


def _open_store(path: str) -> Any:
    return open_store(path, readonly=True)  # a missing file is a one-line error


def _output_dir(args: argparse.Namespace) -> Path:
    """``--out`` folder, checked before any work: never the store, nor a folder where one of
    our outputs would land on the store."""
    store = Path(args.store).expanduser()
    names = [store.name] if store.suffix.lower() in _WRITTEN else []
    return check_output_dir(args.out, option="--out", protected=store_files(args.store), names=names)


def _check_analysis_deps() -> None:
    for module, package in (("matplotlib", "matplotlib"), ("scipy", "scipy"), ("sklearn", "scikit-learn")):
        try:
            __import__(module)
        except ImportError:
            raise MissingDependencyError(
                f"this command needs {package}; install it with: pip install 'dendritic[analysis]'"
            ) from None


# ---------------------------------------------------------------- commands


def cmd_analyze(args: argparse.Namespace) -> int:
    check_data_dir(args)
    args.out = args.out if args.out is not None else str(Path("analysis") / f"run-{args.run_id}")
    _output_dir(args)
    store = _open_store(args.store)  # bad paths fail first, before the slow imports
    try:
        _check_analysis_deps()
        from dendritic.report.checkpoints import analyze_run, format_summary, write_analysis

        result = analyze_run(
            store,
            args.run_id,
            data_dir=args.data_dir,
            tsne_samples=args.tsne_samples,
            tsne_repeats=args.tsne_repeats,
            seed=args.seed,
        )
    finally:
        store.close()
    out = Path(args.out)
    written = write_analysis(result, out)
    print(format_summary(result))
    print(f"wrote {len(written)} files to {out}/: {', '.join(p.name for p in written)}")
    return 0


def cmd_figures(args: argparse.Namespace) -> int:
    check_data_dir(args)
    _output_dir(args)
    store = _open_store(args.store)
    try:
        _check_analysis_deps()
        from dendritic.report.make import make_figures

        result = make_figures(
            store,
            args.out,
            on=args.select_on,
            dataset=args.dataset,
            data_dir=args.data_dir,
            tsne_samples=args.tsne_samples,
            tsne_repeats=args.tsne_repeats,
            tsne_trials=args.tsne_trials,
            formats=args.format,
            only=args.only,
            workers=args.workers,
            optimizer=args.optimizer,
        )
    finally:
        store.close()
    print(f"{len(result.figures)} figures and {len(result.tables)} tables in {args.out}/")
    for reason in result.skipped.values():
        print(f"  {reason}")
    for note in result.notes:
        print(f"  note: {note}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    check_data_dir(args)
    protected = store_files(args.store)
    if args.figures is not None:  # the report reads these; it must not overwrite one
        folder = check_input_dir(args.figures, option="--figures")
        protected += [folder / "figures.json", *folder.glob("*.png")]
    check_output_file(args.out, option="--out", protected=protected)
    store = _open_store(args.store)
    try:
        _check_analysis_deps()
        from dendritic.report import build_report

        path = build_report(
            store,
            args.out,
            figures_dir=args.figures,
            on=args.select_on,
            dataset=args.dataset,
            data_dir=args.data_dir,
            tsne_samples=args.tsne_samples,
            workers=args.workers,
            optimizer=args.optimizer,
        )
    finally:
        store.close()
    print(f"wrote {path} ({path.stat().st_size / 1024:.0f} KiB)")
    return 0


# ---------------------------------------------------------------- parsers


def _common(p: argparse.ArgumentParser, *, data: bool = True) -> None:
    p.add_argument("--store", default="runs.db", help="SQLite results store (default runs.db)")
    if data:
        p.add_argument(
            "--data-dir",
            default=None,
            help="folder holding the dataset files (else $DENDRITIC_DATA, the user cache, Debian's folder)",
        )


def _workers(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--workers",
        type=workers_int,
        default=1,
        help="processes for the per-run analyses of Figs 5-6, mostly single-threaded t-SNE (default 1)",
    )


def _selection(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--select-on",
        choices=("validation", "test"),
        default="validation",
        help="split used to choose best configurations (default validation; test = the paper's rule)",
    )
    p.add_argument(
        "--dataset", default=None, help="dataset of the per-dataset figures (default fmnist if swept)"
    )
    p.add_argument(
        "--optimizer",
        choices=("adam-keras", "adam-torch"),
        default=None,
        help="show the runs trained with this Adam (default: adam-keras, the paper's, if the store has "
        "any; runs recorded before the option existed used adam-torch)",
    )


def add_figure_parsers(sub: Any) -> None:
    """Add the ``analyze``, ``figures`` and ``report`` subcommands to the main CLI's subparsers."""
    from dendritic.figures.specs import FIGURES

    p = sub.add_parser(
        "analyze",
        help="activity, weight and t-SNE analyses of one run's checkpoint",
        description="Load a run's checkpoint, rebuild its test split exactly as in training and compute "
        "node activity (hit matrix, dead nodes, entropy, selectivity), real-weight statistics and t-SNE "
        "separability per hidden layer. Prints a summary; writes JSON, NPZ and PNGs.",
    )
    p.add_argument("run_id", type=run_id_int, help="run id (see `dendritic runs list`)")
    p.add_argument("--out", default=None, help="output folder (default analysis/run-RUN_ID)")
    p.add_argument(
        "--tsne-samples",
        type=tsne_samples_or_none,
        default=2000,
        help="first N test images embedded by t-SNE (default 2000, the paper's; 0 skips t-SNE)",
    )
    p.add_argument(
        "--tsne-repeats", type=repeats_int, default=1, help="t-SNE repeats with seeds SEED.. (paper: 10)"
    )
    p.add_argument("--seed", type=seed_int, default=0, help="t-SNE seed (default 0)")
    _common(p)
    p.set_defaults(func=cmd_analyze)

    p = sub.add_parser(
        "figures",
        help="the paper's figures and tables from a results store",
        description="Draw Figs 2-7 and the supplementary figures whose runs exist in the store (PNG + PDF), "
        "Tables 1-2 (CSV + Markdown) and figures.json; figures whose sweep is missing are skipped with a "
        "note naming it.",
    )
    p.add_argument("--out", default="figures", help="output folder (default figures/)")
    _selection(p)
    p.add_argument(
        "--tsne-samples",
        type=tsne_samples_int,
        default=500,
        help="test images per t-SNE in Fig 6 (default 500; paper 2000)",
    )
    p.add_argument(
        "--tsne-repeats", type=repeats_int, default=1, help="t-SNE repeats per run in Fig 6 (paper 10)"
    )
    p.add_argument(
        "--tsne-trials",
        type=repeats_int,
        default=1,
        help="checkpointed trials per model in Fig 6 (paper 5)",
    )
    p.add_argument(
        "--only",
        type=_names,
        default=None,
        help=f"comma-separated figures to draw, from: {', '.join(FIGURES)}",
    )
    p.add_argument(
        "--format",
        type=_formats,
        default=["png", "pdf"],
        help=f"file formats from {', '.join(FORMATS)} (default png,pdf)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    _common(p)
    _workers(p)
    p.set_defaults(func=cmd_figures)

    p = sub.add_parser(
        "report",
        help="one self-contained HTML page: figures, tables, run counts, versions",
        description="Write one HTML file with the figures embedded (base64 PNG), Tables 1-2, run counts by "
        "experiment and status, the continual-learning comparisons stored by `dendritic continual` "
        "(tables, accuracy-matrix heat maps, forgetting vs parameters) and the library / torch / Python "
        "versions. No external resources.",
    )
    p.add_argument("--out", default="report.html", help="HTML file to write (default report.html)")
    p.add_argument(
        "--figures",
        default=None,
        help="folder written by `dendritic figures` to embed (default: draw the figures now)",
    )
    _selection(p)
    p.add_argument(
        "--tsne-samples", type=tsne_samples_int, default=500, help="test images per t-SNE when drawing Fig 6"
    )
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    _common(p)
    _workers(p)
    p.set_defaults(func=cmd_report)
