"""Compact sparse layers vs the masked-dense oracle: one training step, and wiring build time.

One step = forward + backward + Adam step on a batch of 128 random 28×28 inputs, for dANN-LRF.
Reports the median over repeats (the machine is shared and noisy) on one thread by default.

    python benchmarks/bench_layers.py [--repeats 7] [--threads 1] [--out docs/benchmarks-layers.md]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from dendritic import build_model
from dendritic.models.network import build_wiring
from dendritic.models.spec import ModelSpec


def step_seconds(model: torch.nn.Module, repeats: int, steps: int = 5, batch: int = 128) -> float:
    """Median seconds of one forward + backward + Adam step."""
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(batch, 784, generator=gen)
    y = torch.randint(0, 10, (batch,), generator=gen)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-7)

    def one() -> None:
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()

    for _ in range(2):
        one()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(steps):
            one()
        times.append((time.perf_counter() - start) / steps)
    return statistics.median(times)


def wiring_seconds(dendrites: int, somata: int, repeats: int) -> float:
    times = []
    for seed in range(repeats):
        start = time.perf_counter()
        build_wiring(ModelSpec("dANN-LRF", dendrites, somata), (28, 28, 1), np.random.default_rng(seed))
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None, help="also write the table as Markdown here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    rows = []
    for dendrites, somata in [(16, 256), (64, 512)]:
        compact = build_model("dANN-LRF", (28, 28, 1), 10, dendrites, somata, seed=1)
        oracle = build_model("dANN-LRF", (28, 28, 1), 10, dendrites, somata, seed=1, oracle=True)
        t_compact = step_seconds(compact, args.repeats)
        t_oracle = step_seconds(oracle, args.repeats)
        t_wiring = wiring_seconds(dendrites, somata, args.repeats)
        rows.append((dendrites, somata, t_compact, t_oracle, t_oracle / t_compact, t_wiring))
        print(
            f"dANN-LRF D={dendrites:>2} S={somata:>3}: compact {t_compact * 1e3:7.2f} ms/step, "
            f"masked-dense {t_oracle * 1e3:8.2f} ms/step, speed-up {t_oracle / t_compact:5.1f}x, "
            f"wiring {t_wiring * 1e3:6.1f} ms",
            flush=True,
        )

    if args.out:
        lines = [
            "# Benchmark: compact sparse layers vs masked-dense oracle",
            "",
            "One training step (forward + backward + Adam, batch 128, 28×28 inputs) of dANN-LRF; "
            f"median of {args.repeats} repeats of 5 steps, {args.threads} thread(s). "
            "Wiring = building the input→dendrite and dendrite→soma index tables from a seeded generator.",
            "",
            f"Machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} thread(s), "
            f"torch {torch.__version__}, Python {platform.python_version()}. "
            "Reproduce with `python benchmarks/bench_layers.py`.",
            "",
            "| D | S | compact (ms/step) | masked-dense (ms/step) | speed-up | wiring (ms) |",
            "|---:|---:|---:|---:|---:|---:|",
        ]
        for d, s, tc, to, ratio, tw in rows:
            lines.append(f"| {d} | {s} | {tc * 1e3:.2f} | {to * 1e3:.1f} | {ratio:.1f}× | {tw * 1e3:.0f} |")
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text("\n".join(lines) + "\n", encoding="utf-8")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
