"""``dendritic runs list|show|export``: what the results store holds."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from dendritic.cli.args import PROG, open_store, positive_int, run_id_int, store_files
from dendritic.files import check_output_file

__all__ = ["RUN_COLUMNS", "add_runs_parser", "cmd_runs"]


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
    "experiment",
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


def _warn(problems: list[str | None]) -> None:
    """Damaged values the command read past: one warning line each, on stderr."""
    for problem in problems:
        if problem:
            print(f"{PROG}: warning: {problem}", file=sys.stderr)


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
                status=args.status,
                model=args.model,
                dataset=args.dataset,
                experiment=args.experiment,
                limit=args.limit,
            )
            if not rows:
                print(f"no runs in {args.store}")
                return 0
            print(_format_table(rows, RUN_COLUMNS))
            _warn([row.get("problem") for row in rows])
        elif args.runs_command == "show":
            run = store.get_run(args.run_id)
            run["epochs"] = store.epochs(args.run_id)
            print(json.dumps(run, indent=2, default=str))
            _warn([run.get("problem"), *(e.get("problem") for e in run["epochs"])])
        elif args.runs_command == "export":
            # Both tables from one snapshot, written together: never the runs file alone.
            result = store.export(outputs[0], args.format, epochs_path=outputs[1] if args.epochs else None)
            for path in result.paths:
                print(f"wrote {path}")
            _warn([f"{problem} (exported empty)" for problem in result.problems])
    finally:
        store.close()
    return 0


def add_runs_parser(sub: Any) -> None:
    # runs
    p = sub.add_parser("runs", help="list, show or export recorded runs")
    runs_sub = p.add_subparsers(dest="runs_command", metavar="ACTION")
    runs_sub.required = True
    q = runs_sub.add_parser("list", help="one line per run")
    q.add_argument("--status", choices=("running", "finished", "failed", "interrupted"))
    q.add_argument("--model")
    q.add_argument("--dataset")
    q.add_argument(
        "--experiment",
        help="runs tagged with this experiment: a sweep's name (main, noise, ...), continual, demo",
    )
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
