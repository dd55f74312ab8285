"""Training speed of ``dendritic.nn.DendriticLayer`` inside a user's model, and of ``torch.compile``.

A user model — ``nn.Sequential(DendriticLayer((1, 28, 28), S, D, 16), nn.Linear(S, 10))`` — trained
with a plain PyTorch loop (``torch.optim.Adam``, cross-entropy, batch 128) on Fashion-MNIST, in
these variants, each in its own process:

* ``fused``     — the default: the layer runs as the fused ``dendritic::dendritic_layer_t`` operator;
* ``unfused``   — ``DENDRITIC_FUSED=0``: the C++ sparse product per part, PyTorch activations;
* ``pytorch``   — ``DENDRITIC_KERNEL=bag``: no C++ at all (``embedding_bag``), what CUDA runs;
* ``masked``    — the reference's method: dense weights times a 0/1 mask (the test oracle);
* ``compiled``  — ``torch.compile`` of the fused model (the same loop);
* ``paper-eager`` / ``paper-compiled`` — the paper's dANN-LRF (``dendritic.get_model``) in the
  same plain loop, eager and compiled;
* ``paper-whole-step`` — what ``dendritic train`` runs for it: whole training steps in C++.

Reports the median milliseconds of a training step over ``--repeats`` runs of ``--steps`` steps
(after a warm-up that includes compilation) and the implied seconds per epoch (422 steps).

    python benchmarks/bench_layer_api.py --threads 2 --sizes 16x256,64x512 --out docs/benchmarks-layer-api.md
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

VARIANTS = (
    "fused",
    "unfused",
    "pytorch",
    "masked",
    "compiled",
    "paper-eager",
    "paper-compiled",
    "paper-whole-step",
)
ENV = {"unfused": {"DENDRITIC_FUSED": "0"}, "pytorch": {"DENDRITIC_KERNEL": "bag"}}
BATCH = 128
STEPS_PER_EPOCH = 422  # ceil(54,000 / 128)


def one(variant: str, dendrites: int, somata: int, steps: int, repeats: int, threads: int) -> dict:
    """Time one variant in this process (the subprocess's whole job)."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    import dendritic
    from dendritic.data import prepare
    from dendritic.nn import DendriticLayer
    from dendritic.training.loop import make_optimizer, train_epoch

    torch.set_num_threads(threads)
    data = prepare("fmnist", seed=1)
    x_all, y_all = data.x_train, data.y_train
    torch.manual_seed(1)
    if variant.startswith("paper"):
        model = dendritic.get_model("dANN-LRF", dendrites=dendrites, somata=somata, seed=1)
    else:
        model = nn.Sequential(
            DendriticLayer(
                (1, 28, 28),
                somata=somata,
                dendrites=dendrites,
                synapses=16,
                seed=1,
                oracle=variant == "masked",
            ),
            nn.Linear(somata, 10),
        )
    images = (lambda x: x) if variant.startswith("paper") else (lambda x: x.reshape(-1, 1, 28, 28))
    if variant == "paper-whole-step":
        optimizer = make_optimizer(model, 1e-3)
    else:
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-7)
    forward = torch.compile(model) if variant.endswith("compiled") else model
    shuffle = torch.Generator().manual_seed(0)

    def run(n: int) -> float:
        order = torch.randperm(len(x_all), generator=shuffle)[: n * BATCH]
        start = time.perf_counter()
        if variant == "paper-whole-step":
            train_epoch(
                model,
                optimizer,
                x_all,
                y_all,
                order,
                BATCH,
                torch.zeros(()),
                torch.zeros((), dtype=torch.long),
            )
        else:
            for idx in order.split(BATCH):
                loss = F.cross_entropy(forward(images(x_all[idx])), y_all[idx])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
        return (time.perf_counter() - start) / n

    warm_start = time.perf_counter()
    run(max(3, steps // 5))  # warm-up: allocations, caches, compilation
    warm = time.perf_counter() - warm_start
    per_step = [run(steps) for _ in range(repeats)]
    step = statistics.median(per_step)
    fused = getattr(model[0], "fusable", None) if isinstance(model, nn.Sequential) else None
    return {
        "variant": variant,
        "dendrites": dendrites,
        "somata": somata,
        "step_ms": 1e3 * step,
        "per_step_ms": [1e3 * s for s in per_step],
        "epoch_s": step * STEPS_PER_EPOCH,
        "warmup_s": warm,
        "layer_fused": fused,
        "threads": threads,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--sizes", default="16x256,64x512", help="comma-separated DxS")
    parser.add_argument("--steps", type=int, default=60, help="steps per timed repeat")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=None, help="also write the Markdown table here")
    parser.add_argument("--json", default=None)
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        spec = json.loads(args.one)
        print(json.dumps(one(**spec)))
        return 0
    rows = []
    for size in args.sizes.split(","):
        d, s = (int(v) for v in size.lower().split("x"))
        for variant in args.variants.split(","):
            spec = {"variant": variant, "dendrites": d, "somata": s, "steps": args.steps, "repeats": args.repeats,
                    "threads": args.threads}  # fmt: skip
            env = {**os.environ, **ENV.get(variant, {})}
            proc = subprocess.run(
                [sys.executable, __file__, "--one", json.dumps(spec)], capture_output=True, text=True, env=env
            )
            if proc.returncode:
                print(f"{variant} {size}: failed: {proc.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
                continue
            row = json.loads(proc.stdout.strip().splitlines()[-1])
            rows.append(row)
            print(f"{variant:>16} ({d}, {s}): {row['step_ms']:.2f} ms/step, {row['epoch_s']:.2f} s/epoch",
                  file=sys.stderr, flush=True)  # fmt: skip
    lines = [
        f"Fashion-MNIST, batch {BATCH}, {args.threads} thread(s), median of {args.repeats} × {args.steps} steps; "
        f"{platform.processor() or platform.machine()}, torch {__import__('torch').__version__}.",
        "",
        "| variant | (D, S) | ms / step | s / epoch (422 steps) | vs fused |",
        "|---|---|---|---|---|",
    ]
    for row in rows:
        base = next(
            (r["step_ms"] for r in rows if r["variant"] == "fused" and r["somata"] == row["somata"]),
            float("nan"),
        )
        lines.append(
            f"| {row['variant']} | ({row['dendrites']}, {row['somata']}) | {row['step_ms']:.2f} | "
            f"{row['epoch_s']:.2f} | {row['step_ms'] / base:.2f}× |"
        )
    table = "\n".join(lines) + "\n"
    print(table)
    if args.out:
        Path(args.out).write_text(table)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
