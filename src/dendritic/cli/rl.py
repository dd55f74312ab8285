"""``dendritic rl run|networks|summary``: the reinforcement-learning study from the shell (needs
the ``[rl]`` extra: stable-baselines3, gymnasium[box2d]).

Errors in the arguments (unknown task, algorithm or network, a task the Zoo has no setting for)
are ValueErrors, which ``dendritic.cli.main`` prints as one line with exit 1.
"""

from __future__ import annotations

import argparse
import json
import math
from typing import Any

__all__ = ["add_rl_parser", "cmd_rl", "parse_seeds"]


def parse_seeds(text: str) -> list[int]:
    """``1-5`` or ``1,2,7`` → seeds (one-line ValueError otherwise)."""
    from dendritic.rl.run import MAX_SEED

    seeds: list[int] = []
    try:
        for part in text.split(","):
            part = part.strip()
            if "-" in part:
                low, high = (int(x) for x in part.split("-", 1))
                if high < low:
                    raise ValueError
                if high > MAX_SEED:  # before the range is built: 1-99999999999999 is no list
                    raise ValueError(f"--seeds takes seeds in [0, {MAX_SEED}], got {text!r}")
                seeds.extend(range(low, high + 1))
            elif part:
                seeds.append(int(part))
    except ValueError as exc:
        if str(exc).startswith("--seeds"):
            raise
        raise ValueError(
            f"--seeds takes a range or a comma list such as 1-5 or 1,2,3, got {text!r}"
        ) from None
    if not seeds or min(seeds) < 0 or max(seeds) > MAX_SEED:
        raise ValueError(f"--seeds takes seeds in [0, {MAX_SEED}], got {text!r}")
    return list(dict.fromkeys(seeds))


def _names(text: str, choices: tuple[str, ...], what: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise ValueError(f"--{what} needs at least one name; choose from {', '.join(choices)}")
    for name in names:
        if name not in choices:
            raise ValueError(f"unknown {what[:-1]} {name!r}; choose from {', '.join(choices)}")
    return list(dict.fromkeys(names))  # a name twice runs once


def _run(args: argparse.Namespace) -> int:
    from dendritic.cli.args import no_store_conflicts, store_path, writing_store
    from dendritic.rl.networks import NETWORKS
    from dendritic.rl.run import RLConfig, require_rl, run_many

    networks = _names(args.network, NETWORKS, "networks")
    seeds = parse_seeds(args.seeds)
    configs = [
        RLConfig(task=args.task, algo=args.algo, network=n, seed=s, steps=args.steps,
                 eval_episodes=args.eval_episodes, eval_points=args.eval_points, budget=args.budget)
        for n in networks
        for s in seeds
    ]  # fmt: skip
    require_rl()
    no_store_conflicts(args)
    with writing_store(None if args.no_store else store_path(args)) as store:
        for result in run_many(
            configs, store=store, workers=args.workers, replace=args.replace, threads=args.threads
        ):
            config = result.config
            line = result.summary()
            if args.json:
                line = json.dumps(
                    {
                        "config": config.to_dict(),
                        "run_id": result.run_id,
                        "reused": result.reused,
                        "steps": result.steps,
                        "returns": result.returns,
                        "params": result.params,
                        **result.store_extra(),
                    }  # fmt: skip
                )
            elif result.run_id is not None:
                line += f" ({'reused finished run' if result.reused else 'run'} {result.run_id})"
            print(line, flush=True)
    return 0


def _networks(args: argparse.Namespace) -> int:
    from dendritic.rl.networks import NETWORKS, plan_network
    from dendritic.rl.zoo import SETTINGS

    pairs = [(a, t) for a, t in SETTINGS if args.task in (None, t) and args.algo in (None, a)]
    if not pairs:
        raise ValueError(f"no Zoo setting for {args.algo or 'any algorithm'} on {args.task or 'any task'}")
    print("| algo | task | network | parameters | % of default | sizes |")
    print("|---|---|---|---:|---:|---|")
    for algo, task in pairs:
        default = plan_network("mlp", algo, task, budget=args.budget).params
        for kind in NETWORKS:
            plan = plan_network(kind, algo, task, budget=args.budget)
            sizes = (
                f"S={plan.somata}, D={plan.dendrites}, k={plan.synapses}"
                if plan.is_dendritic
                else "hidden " + "×".join(str(h) for h in plan.hidden)
            )
            print(
                f"| {algo} | {task} | {kind} | {plan.params:,} | {100 * plan.params / default:.1f} | {sizes} |"
            )
    return 0


def _fmt(value: Any, spec: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return format(value, spec)


def _versus(row: dict[str, Any], prefix: str) -> str:
    """'+12.3 (0.04)': the row's difference from the dendritic network and its Welch p."""
    diff, p = row[f"{prefix}vs_dendritic"], row[f"p_{prefix}vs_dendritic"]
    if isinstance(diff, float) and math.isnan(diff):
        return "–"
    return f"{diff:+.1f} ({_fmt(p, '.2g')})"


def _summary_table(rows: list[dict[str, Any]]) -> list[str]:
    lines = [
        "| algo | task | network | seeds | parameters | final return (mean ± s.d.) | vs dendritic (p) | "
        "final IQM | mean return over the curve | vs dendritic (p) | "
        "IQM curve reaches threshold at | seeds reaching | training s / run (wall) | training CPU s / run |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['algo']} | {r['task']} | {r['network']} | {r['seeds']} | {r['params']:,} | "
            f"{_fmt(r['final_mean'], '.1f')} ± {_fmt(r['final_sd'], '.1f')} | {_versus(r, '')} | "
            f"{_fmt(r['final_iqm'], '.1f')} | {_fmt(r['curve_mean'], '.1f')} ± {_fmt(r['curve_sd'], '.1f')} | "
            f"{_versus(r, 'curve_')} | {_fmt(r['iqm_steps_to_threshold'], ',.0f')} (≥ {r['threshold']:g}) | "
            f"{r['seeds_reaching']}/{r['seeds']} | {_fmt(r['train_seconds'], '.0f')} | "
            f"{_fmt(r['train_cpu_seconds'], '.0f')} |"
        )
    return lines


def _summary(args: argparse.Namespace) -> int:
    from pathlib import Path

    from dendritic.cli.args import open_store, store_files, store_path
    from dendritic.files import atomic_write_text, check_output_dir
    from dendritic.rl.summary import group_rl_runs, load_rl_runs, summary_rows

    if args.out is not None:
        check_output_dir(args.out, option="--out", protected=store_files(args.store or "runs.db"))
    store = open_store(store_path(args), readonly=True)
    try:
        groups = group_rl_runs(load_rl_runs(store))
    finally:
        store.close()
    if not groups:
        raise ValueError(f"no finished RL runs in {store.path}; run `dendritic rl run` first")
    rows = summary_rows(groups)
    lines = _summary_table(rows)
    print("\n".join(lines))
    if args.out is not None:
        import csv
        import io

        from dendritic.figures.rl import rl_learning_curves
        from dendritic.figures.style import save_figure, use_headless_backend

        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / "rl-summary.md", "\n".join(lines) + "\n")
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        atomic_write_text(out / "rl-summary.csv", buffer.getvalue())
        use_headless_backend()
        written = save_figure(rl_learning_curves(groups), out / "rl-learning-curves", formats=("png",))
        for path in [out / "rl-summary.md", out / "rl-summary.csv", *written]:
            print(f"wrote {path}")
    return 0


def cmd_rl(args: argparse.Namespace) -> int:
    return {"run": _run, "networks": _networks, "summary": _summary}[args.rl_command](args)


def add_rl_parser(sub: Any) -> None:
    """Register ``rl run``, ``rl networks`` and ``rl summary``."""
    from dendritic.cli.args import float_in, int_in, positive_int, threads_int, workers_int
    from dendritic.rl.networks import NETWORKS
    from dendritic.rl.zoo import ALGOS, TASKS

    budget = float_in(0.0, 1.0, low_open=True)
    p = sub.add_parser(
        "rl",
        help="reinforcement learning: dendritic policies for Stable-Baselines3 (needs the [rl] extra)",
        description="PPO / DQN with the RL Zoo's hyperparameters on CartPole-v1, Acrobot-v1 and "
        "LunarLander-v3: SB3's default MLP, a dendritic network (<= 10 % of its parameters), and a "
        "dense and a random-sparse MLP at the dendritic network's parameters. See docs/rl.md.",
    )
    actions = p.add_subparsers(dest="rl_command", metavar="ACTION")
    actions.required = True
    run = actions.add_parser(
        "run", help="train and evaluate networks × seeds", description="Runs of the study."
    )
    nets = actions.add_parser(
        "networks", help="the parameter table", description="Each network's parameters."
    )
    summ = actions.add_parser(
        "summary",
        help="IQM learning curves, steps to threshold, final return",
        description="The study's table (and with --out its CSV and learning-curve figure) from a store.",
    )
    for q in (run, nets):
        q.add_argument("--budget", type=budget, default=0.10, help="dendritic parameters / default's (0.10)")
    run.add_argument("--task", default="CartPole-v1", help=f"one of {', '.join(TASKS)} (default CartPole-v1)")
    run.add_argument("--algo", default="ppo", help=f"one of {', '.join(ALGOS)} (default ppo)")
    run.add_argument(
        "--network",
        default="mlp,dendritic",
        help=f"comma list of {', '.join(NETWORKS)} (default mlp,dendritic)",
    )
    run.add_argument("--seeds", default="1", help="e.g. 1-10 or 1,2,3, each in [0, 2147483647] (default 1)")
    run.add_argument(
        "--steps", type=positive_int, default=None, help="environment steps (default: the Zoo's)"
    )
    run.add_argument("--eval-episodes", type=int_in(1, 1000), default=5, help="episodes per evaluation (5)")
    run.add_argument(
        "--eval-points", type=int_in(1, 1000), default=20, help="points on the learning curve (20)"
    )
    run.add_argument("--threads", type=threads_int, default=1, help="CPU threads for PyTorch (default 1)")
    run.add_argument(
        "--workers",
        type=workers_int,
        default=1,
        help="runs in parallel, in processes of --threads threads each (default 1: one after another)",
    )
    run.add_argument("--store", default=None, help="SQLite results store (default runs.db)")
    run.add_argument("--no-store", action="store_true", help="do not record the runs")
    run.add_argument("--replace", action="store_true", help="train again even if the store has the run")
    run.add_argument("--json", action="store_true", help="one JSON line per run")
    nets.add_argument("--task", default=None, help="only this task")
    nets.add_argument("--algo", default=None, help="only this algorithm")
    summ.add_argument("--store", default=None, help="SQLite results store (default runs.db)")
    summ.add_argument("--out", default=None, help="folder for rl-summary.md/.csv and rl-learning-curves.png")
    for q in (run, nets, summ):
        q.add_argument("--quiet", action="store_true", help="no progress lines")
        q.set_defaults(func=cmd_rl)
