"""Small-batch training steps: a ``DendriticLayer`` (or ``SparseLinear``) network vs an
``nn.Linear`` MLP of the same width, with the library's old and new autograd paths in one run.

A training step is what an RL or online learner runs thousands of times: zero the gradients,
forward, cross-entropy, backward, ``torch.optim.Adam.step()``. The models, for ``n → S``:

* ``dendritic``: ``DendriticLayer(n, S, D, synapses, receptive_field="random") → Linear(S, C)``
* ``sparse``: ``SparseLinear.random(n, S, D·synapses) → LeakyReLU → Linear(S, C)``
* ``mlp``: ``Linear(n, S) → LeakyReLU → Linear(S, C)`` (the reference, same width)

``dendritic`` and ``sparse`` run twice: ``new`` (the default: autograd in C++, the module's
direct path) and ``old`` (``DENDRITIC_FAST_AUTOGRAD=0``'s path: the operators' Python autograd
formulas and the module's full Python forward), switched in this process between timings
(:func:`dendritic.layers.functional.set_fast_autograd`). Variants are interleaved round by
round, so background load hits them alike; each number is the median over ``--repeats`` rounds
of the mean of ``--steps`` steps. One thread (``torch.set_num_threads(1)``).

    python benchmarks/bench_small_batch.py --repeats 30 --steps 200 --out docs/benchmarks-small-batch.md

Two source trees: with ``--old-src`` (the ``src`` of an older checkout, e.g. a ``git worktree``
whose C++ operators are built) the script runs itself on the old tree and on this one in turn,
``--rounds`` times, the current path only, and reports the medians side by side: each step's
time over the MLP's measured in the same process, or with ``--ops`` the fused layer's C++
operators alone (``dendritic_layer`` forward, ``dendritic_layer_backward``, and ``spmm_t``, a
``SparseLinear``'s forward), in µs.

    python benchmarks/bench_small_batch.py --ops --old-src /tmp/old/src --batches 1,2,4,7,8,64
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

#: (n_in, S, synapses) per size; D is swept. 4 → 32 is an RL policy's first layer (CartPole).
SIZES = {"4x32": (4, 32, 2), "64x256": (64, 256, 8), "784x256": (784, 256, 16)}
CLASSES = 4


def build(kind: str, n_in: int, somata: int, dendrites: int, synapses: int, seed: int = 0) -> Any:
    import torch
    from torch import nn

    from dendritic.nn import DendriticLayer, SparseLinear

    torch.manual_seed(seed)
    if kind == "dendritic":
        layer: nn.Module = DendriticLayer(
            n_in, somata, dendrites, synapses, receptive_field="random", seed=seed
        )
        return nn.Sequential(layer, nn.Linear(somata, CLASSES))
    if kind == "sparse":
        fan_in = min(n_in, dendrites * synapses)
        return nn.Sequential(
            SparseLinear.random(n_in, somata, fan_in, seed=seed),
            nn.LeakyReLU(0.1),
            nn.Linear(somata, CLASSES),
        )
    return nn.Sequential(nn.Linear(n_in, somata), nn.LeakyReLU(0.1), nn.Linear(somata, CLASSES))


#: Distinct batches a stepper cycles through (the same seeded pool for every model).
POOL = 32


def stepper(model: Any, batch: int, n_in: int, adam: str = "default") -> Callable[[], None]:
    """One training step of ``model`` on the next of ``POOL`` random batches, as a closure.

    Not one fixed batch: a model that memorises it drives its gradients and Adam's moments into
    subnormal floats, whose arithmetic is many times slower on x86, so the timings would depend
    on how far each model had trained (measured: an MLP step 1.6x slower after a thousand steps
    on one batch). ``run`` also flushes subnormals to zero."""
    import torch
    import torch.nn.functional as F

    g = torch.Generator().manual_seed(batch * 1000 + n_in)
    xs = torch.randn(POOL, batch, n_in, generator=g)
    ys = torch.randint(0, CLASSES, (POOL, batch), generator=g)
    options = {"default": {}, "foreach": {"foreach": True}, "fused": {"fused": True}}[adam]
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, **options)
    i = 0

    def step() -> None:
        nonlocal i
        x, y = xs[i], ys[i]
        i = (i + 1) % POOL
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()

    return step


def time_steps(step: Callable[[], None], steps: int) -> float:
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - start) / steps


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    import torch

    from dendritic.layers import functional as DF

    torch.set_num_threads(1)
    torch.set_flush_denormal(True)  # see stepper
    rows = []
    for size in args.sizes.split(","):
        n_in, somata, synapses = SIZES[size]
        for dendrites in [int(d) for d in args.dendrites.split(",")]:
            for batch in [int(b) for b in args.batches.split(",")]:
                variants: dict[str, tuple[Callable[[], None], bool]] = {}
                for kind in args.kinds.split(","):
                    if kind == "mlp":
                        variants["mlp"] = (
                            stepper(build("mlp", n_in, somata, 1, 1), batch, n_in, args.adam),
                            True,
                        )
                        continue
                    for path in ("new",) if args.only_new else ("old", "new"):
                        model = build(kind, n_in, somata, dendrites, synapses)
                        variants[f"{kind}-{path}"] = (stepper(model, batch, n_in, args.adam), path == "new")
                times: dict[str, list[float]] = {name: [] for name in variants}
                for step, fast in variants.values():  # warm-up
                    DF.set_fast_autograd(fast)
                    time_steps(step, max(5, args.steps // 10))
                for _ in range(args.repeats):
                    for name, (step, fast) in variants.items():
                        DF.set_fast_autograd(fast)
                        times[name].append(time_steps(step, args.steps))
                DF.set_fast_autograd(True)
                row: dict[str, Any] = {"size": size, "dendrites": dendrites, "batch": batch}
                for kind in args.kinds.split(","):  # trainable parameters: what Adam updates
                    model = build(kind, n_in, somata, dendrites, synapses)
                    row[kind + "_params"] = sum(p.numel() for p in model.parameters() if p.requires_grad)
                for name, values in times.items():
                    row[name] = statistics.median(values) * 1e6
                    # Spread of the rounds: the interquartile range relative to the median.
                    q = statistics.quantiles(values, n=4) if len(values) > 1 else [values[0]] * 3
                    row[name + "_iqr"] = (q[2] - q[0]) / statistics.median(values)
                rows.append(row)
                print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}))
    return rows


def time_ops(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Median µs of the operators alone, per (size, D, batch)."""
    import functools

    import torch

    from dendritic.nn import DendriticLayer

    torch.set_num_threads(1)
    ops = torch.ops.dendritic
    rows = []
    for size in args.sizes.split(","):
        n_in, somata, synapses = SIZES[size]
        for dendrites in [int(d) for d in args.dendrites.split(",")]:
            layer = DendriticLayer(n_in, somata, dendrites, synapses, receptive_field="random", seed=0)
            dl, sl = layer.dendrite_linear, layer.soma_linear
            w, bd, v, bs = (t.detach() for t in (dl.weight, dl.bias, sl.weight, sl.bias))
            idx, off = dl.indices, dl.offsets
            for batch in [int(b) for b in args.batches.split(",")]:
                x = torch.randn(n_in, batch, generator=torch.Generator().manual_seed(batch))
                out, dend = ops.dendritic_layer(x, w, idx, off, bd, v, bs, dendrites, 0.1, True)
                grad = torch.randn_like(out)
                calls: dict[str, Callable[[], Any]] = {
                    "forward": functools.partial(
                        ops.dendritic_layer, x, w, idx, off, bd, v, bs, dendrites, 0.1, True
                    ),
                    "backward": functools.partial(
                        ops.dendritic_layer_backward,
                        grad,
                        out,
                        dend,
                        x,
                        w,
                        idx,
                        off,
                        v,
                        dendrites,
                        0.1,
                        False,
                        None,
                    ),
                    "spmm": functools.partial(ops.spmm_t, x, w, idx, off, off.numel()),
                }
                times: dict[str, list[float]] = {name: [] for name in calls}
                for _ in range(args.repeats):
                    for name, call in calls.items():
                        times[name].append(time_steps(call, args.steps))
                row = {"size": size, "dendrites": dendrites, "batch": batch}
                row.update({name: statistics.median(v) * 1e6 for name, v in times.items()})
                rows.append(row)
    return rows


def compare_trees(args: argparse.Namespace) -> str:
    """This benchmark on the old tree and on this one, alternated ``--rounds`` times (the current
    path only, ``new``): medians side by side, of the operators (``--ops``) or of whole steps over
    the MLP's (measured in the same process as each)."""
    import subprocess
    import sys
    import tempfile

    here = Path(__file__).resolve()
    trees = {"old": Path(args.old_src).resolve(), "new": here.parents[1] / "src"}
    passed = ["--sizes", args.sizes, "--dendrites", args.dendrites, "--batches", args.batches]
    passed += [
        "--repeats",
        str(args.repeats),
        "--steps",
        str(args.steps),
        "--kinds",
        args.kinds,
        "--adam",
        args.adam,
    ]
    passed += ["--ops"] if args.ops else ["--only-new"]
    runs: dict[str, list[list[dict[str, Any]]]] = {"old": [], "new": []}
    with tempfile.TemporaryDirectory() as tmp:
        for round_ in range(args.rounds):
            for name, src in trees.items():
                out = Path(tmp) / f"{name}{round_}.json"
                env = dict(os.environ, PYTHONPATH=str(src))
                subprocess.run(
                    [sys.executable, str(here), *passed, "--json", str(out)],
                    env=env,
                    check=True,
                    stdout=subprocess.DEVNULL,
                )
                runs[name].append(json.loads(out.read_text()))

    def median(name: str, i: int, value: Callable[[dict[str, Any]], float]) -> str:
        return f"{statistics.median(value(r[i]) for r in runs[name]):.{1 if args.ops else 2}f}"

    if args.ops:
        what, columns = "Operators alone, µs", ["forward", "backward", "spmm"]
        values = {c: op_time(c) for c in columns}
    else:
        what = "Training step over the MLP's"
        columns = [k for k in args.kinds.split(",") if k != "mlp"]
        values = {c: step_ratio(c) for c in columns}
    lines = [
        f"{what} (median of {args.rounds} alternated runs of {args.repeats} × {args.steps}; "
        f"old = `{trees['old']}`):",
        "",
        "| n → S | D | batch | " + " | ".join(f"{c} old | {c} new" for c in columns) + " |",
        "|---|---|---|" + "---|---|" * len(columns),
    ]
    for i, row in enumerate(runs["new"][0]):
        cells = [median(name, i, values[c]) for c in columns for name in ("old", "new")]
        lines.append(
            f"| {row['size'].replace('x', ' → ')} | {row['dendrites']} | {row['batch']} | "
            + " | ".join(cells)
            + " |"
        )
    return "\n".join(lines) + "\n"


def op_time(op: str) -> Callable[[dict[str, Any]], float]:
    return lambda row: float(row[op])


def step_ratio(kind: str) -> Callable[[dict[str, Any]], float]:
    return lambda row: float(row[f"{kind}-new"]) / float(row["mlp"])


def table(rows: list[dict[str, Any]], kinds: list[str]) -> str:
    lines = []
    for kind in [k for k in kinds if k != "mlp"]:
        lines += [
            f"### `{kind}`",
            "",
            "| n → S | D | batch | params / MLP's | MLP µs | old µs | new µs | old / MLP | new / MLP | old / new "
            "| spread (IQR/median, new) |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in rows:
            mlp, old, new = r["mlp"], r[f"{kind}-old"], r[f"{kind}-new"]
            params = r[f"{kind}_params"] / r["mlp_params"]
            lines.append(
                f"| {r['size'].replace('x', ' → ')} | {r['dendrites']} | {r['batch']} | {params:.2f} | {mlp:.0f} | "
                f"{old:.0f} | {new:.0f} | {old / mlp:.2f} | {new / mlp:.2f} | {old / new:.2f} | "
                f"{r[f'{kind}-new_iqr']:.0%} |"
            )
        lines.append("")
    return "\n".join(lines)


def _cpu() -> str:
    """The CPU's model name (Linux), else the architecture."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.machine()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default=",".join(SIZES))
    parser.add_argument("--dendrites", default="4,8,16")
    parser.add_argument("--batches", default="1,8,64")
    parser.add_argument("--kinds", default="dendritic,sparse,mlp")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--json", type=Path, help="write the raw rows here")
    parser.add_argument("--out", type=Path, help="write the markdown table here")
    parser.add_argument("--ops", action="store_true", help="time the C++ operators alone")
    parser.add_argument("--old-src", help="the src folder of older code: compare it with this tree's")
    parser.add_argument("--rounds", type=int, default=3, help="with --old-src: alternated runs per tree")
    parser.add_argument("--only-new", action="store_true", help="time the current path only (not `old`)")
    parser.add_argument(
        "--adam",
        choices=("default", "foreach", "fused"),
        default="default",
        help="torch.optim.Adam's implementation for every model (default: torch's choice, a loop on CPU)",
    )
    args = parser.parse_args()
    if args.old_src:
        text = compare_trees(args)
        print(text)
        if args.out:
            args.out.write_text(text)
        return
    if args.ops or args.only_new:  # raw rows only (what --old-src collects)
        rows = time_ops(args) if args.ops else run(args)
        print(json.dumps(rows, indent=1))
        if args.json:
            args.json.write_text(json.dumps(rows, indent=1))
        return
    load_before = os.getloadavg()[0]
    rows = run(args)
    import torch

    header = (
        f"Measured {datetime.datetime.now(datetime.UTC).strftime('%Y-%m-%d %H:%M UTC')} on {_cpu()} "
        f"({os.cpu_count()} cores), torch {torch.__version__}, 1 thread, Adam: {args.adam}, {args.repeats} rounds × "
        f"{args.steps} steps each over {POOL} batches, subnormals flushed, median; load average {load_before:.1f} before and {os.getloadavg()[0]:.1f} after "
        "(other jobs on the machine).\n\n"
    )
    text = header + table(rows, args.kinds.split(","))
    print(text)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
