"""``dendritic continual run|compare``: the continual-learning experiments from the shell.

Errors in the arguments (unknown benchmark or scenario, task-IL on permuted tasks, more tasks
than classes) are ValueErrors, which ``dendritic.cli.main`` prints as one line with exit 1.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

__all__ = ["add_continual_parser", "cmd_continual"]


def _config(args: argparse.Namespace, **overrides: Any) -> Any:
    from dendritic.continual.benchmarks import parse_benchmark
    from dendritic.continual.runner import ContinualConfig

    benchmark, dataset = parse_benchmark(args.benchmark, args.dataset)
    values = {
        "benchmark": benchmark,
        "dataset": dataset or "fmnist",
        "scenario": args.scenario,
        "tasks": args.tasks,
        "model": args.model,
        "dendrites": args.dendrites,
        "somata": args.somata,
        "synapses": args.synapses,
        "epochs_per_task": args.epochs_per_task,
        "passes": args.passes,
        "seed": args.seed,
        "identity_first": not args.permute_first,
        "limit": args.limit,
        "lr": args.lr,
        "optimizer": args.optimizer,
    }
    values.update(overrides)
    if args.permute_first and benchmark != "permuted":
        raise ValueError("--permute-first applies to the permuted benchmark only")
    return ContinualConfig(**values)


def _store(args: argparse.Namespace) -> Any:
    """The store these runs are recorded in (None with --no-store), opened after every check."""
    from dendritic.cli.args import check_data_dir, no_store_conflicts, store_path, writing_store

    no_store_conflicts(args)
    check_data_dir(args)
    return writing_store(None if args.no_store else store_path(args))


def _run(args: argparse.Namespace) -> int:
    from dendritic.continual.runner import run_continual

    config = _config(args)
    with _store(args) as store:
        result = run_continual(
            config,
            store=store,
            data_dir=args.data_dir,
            progress=not args.quiet,
            replace=args.replace,
            device=args.device,
            threads=args.threads,
        )
    if args.json:
        print(json.dumps({"config": config.to_dict(), **result.store_extra(), "run_id": result.run_id}))
        return 0
    print(result.summary())
    print(result.format_matrix())
    if result.run_id is not None:
        how = "reused finished run" if result.reused else "run"
        print(f"{how} {result.run_id} in {store.path}")
    return 0


def _compare(args: argparse.Namespace) -> int:
    from pathlib import Path

    from dendritic.cli.args import store_files
    from dendritic.continual.compare import compare, parse_seeds
    from dendritic.files import check_output_dir

    scenarios = [s.strip() for s in args.scenario.split(",")] if args.scenario else None
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    base = _config(args, scenario=scenarios[0] if scenarios else None, seed=1)
    seeds = parse_seeds(args.seeds)
    if args.out is not None:
        protected = [] if args.no_store else store_files(args.store or "runs.db")
        check_output_dir(args.out, option="--out", protected=protected)
    with _store(args) as store:
        comparison = compare(
            base,
            models=models,
            scenarios=scenarios,
            seeds=seeds,
            target_params=args.target_params,
            reference=args.reference,
            store=store,
            data_dir=args.data_dir,
            progress=not args.quiet,
            threads=args.threads,
        )
    print(f"matched to {comparison.target_params:,} trainable parameters")
    print(comparison.format_table())
    if args.out is not None:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        print(f"wrote {comparison.write_csv(out / 'continual-summary.csv')}")
        from dendritic.continual.figures import write_comparison_figures

        for path in write_comparison_figures(comparison, out):
            print(f"wrote {path}")
    return 0


def cmd_continual(args: argparse.Namespace) -> int:
    return _compare(args) if args.continual_command == "compare" else _run(args)


def add_continual_parser(sub: Any) -> None:
    """Register ``continual run`` and ``continual compare`` on the main parser's subcommands."""
    from dendritic.cli.args import (
        add_data_dir,
        add_optimizer,
        epochs_int,
        int_in,
        lr_float,
        positive_int,
        seed_int,
        threads_int,
    )

    count_int = int_in(1, 1000)

    p = sub.add_parser(
        "continual",
        help="continual learning: split / permuted / class-sorted tasks, accuracy matrix, forgetting",
        description="Train through a stream of tasks and report the accuracy matrix R[i, j] (test "
        "accuracy on task j after training task i), ACC, BWT, forgetting and FWT. See docs/continual.md.",
    )
    actions = p.add_subparsers(dest="continual_command", metavar="ACTION")
    actions.required = True
    run = actions.add_parser("run", help="one model, one seed", description="One continual run.")
    cmp = actions.add_parser(
        "compare",
        help="several models at matched parameters over seeds",
        description="dANN-LRF / GRF / R, sANN and vANN at matched trainable parameters over seeds: "
        "mean ± s.d. of ACC and forgetting per model and scenario; resumes from the store.",
    )
    for q in (run, cmp):
        q.add_argument(
            "--benchmark",
            default="split",
            help="split, permuted or sorted; 'split-fmnist' style also names the dataset (default split)",
        )
        q.add_argument("--dataset", default=None, help="any dataset of the registry (default fmnist)")
        q.add_argument(
            "--tasks",
            type=count_int,
            default=None,
            help="number of tasks (split/permuted default 5; sorted: one per class)",
        )
        q.add_argument("--epochs-per-task", type=epochs_int, default=5, help="default 5")
        q.add_argument(
            "--passes",
            type=count_int,
            default=1,
            help="repeat the whole stream (matrix from the last pass; default 1)",
        )
        q.add_argument(
            "--permute-first",
            action="store_true",
            help="permuted: permute task 0 too (default: task 0 is the original images)",
        )
        q.add_argument("--dendrites", type=positive_int, default=16, help="D (default 16)")
        q.add_argument("--somata", type=positive_int, default=256, help="S (default 256)")
        q.add_argument("--synapses", type=positive_int, default=16, help="inputs per dendrite (default 16)")
        q.add_argument("--lr", type=lr_float, default=1e-3, help="Adam learning rate, in (0, 1000]")
        q.add_argument("--limit", type=positive_int, default=None, help="use at most this many images")
        add_optimizer(q)
        q.add_argument("--store", default=None, help="SQLite results store (default runs.db)")
        q.add_argument("--no-store", action="store_true", help="do not record the runs")
        q.add_argument("--threads", type=threads_int, default=None, help="CPU threads for PyTorch (1-1024)")
        q.add_argument("--quiet", action="store_true", help="no progress lines")
        add_data_dir(q)
        q.set_defaults(func=cmd_continual)
    run.add_argument(
        "--scenario",
        default=None,
        help="class-il or task-il (split); domain-il (permuted); class-il (sorted)",
    )
    run.add_argument("--model", default="dANN-LRF", help="paper label (default dANN-LRF)")
    run.add_argument("--seed", type=seed_int, default=1, help="wiring, weights, class order, permutations")
    run.add_argument("--replace", action="store_true", help="train again even if the store has the run")
    run.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
    run.add_argument("--json", action="store_true", help="print the matrix and metrics as JSON")
    cmp.add_argument(
        "--scenario", default=None, help="comma list, e.g. class-il,task-il (default: the benchmark's)"
    )
    cmp.add_argument(
        "--models", default="dANN-LRF,dANN-GRF,dANN-R,sANN,vANN", help="comma list of paper labels"
    )
    cmp.add_argument("--seeds", default="1-5", help="e.g. 1-5 or 1,2,3 (default 1-5)")
    cmp.add_argument(
        "--reference",
        default="dANN-LRF",
        help="the target is this model's parameter count at --dendrites/--somata",
    )
    cmp.add_argument("--target-params", type=positive_int, default=None, help="match this count instead")
    cmp.add_argument("--out", default=None, help="folder for continual-summary.csv and the PNG figures")
    cmp.set_defaults(model="dANN-LRF", seed=1)
