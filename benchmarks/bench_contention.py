"""A default ``dendritic train`` alone and beside a competing 2-thread PyTorch job.

A shared machine is rarely quiet: a colleague's job, a sweep's other worker, a notebook. OpenMP
threads that spin while they wait for each other lose their time slices to the other job, and a
training epoch that takes 0.4 s alone can take several seconds beside it. This benchmark runs
the real command line — ``dendritic train --model dANN-LRF`` on Fashion-MNIST, the paper's
protocol, ``--epochs 4`` (``--epochs``) — in a fresh process per measurement, reads each epoch's
seconds from the run's store (training and validation, as a user sees them), and reports the
median of epochs 2.. quiet and beside a competitor (a process multiplying 1024 × 1024 matrices on 2 torch
threads), quiet and contended alternated within one run, for several settings:

* ``default`` — what ``dendritic train`` does when given no setting (since issue 22: all cores,
  fewer while other processes use them, :class:`dendritic.training.threads.AdaptiveThreads`);
* ``fixed`` — ``--threads 2``: the behaviour before (torch's count, whatever else runs);
* ``passive`` — ``--threads 2`` with ``OMP_WAIT_POLICY=PASSIVE`` (waiting threads sleep at once);
* ``threads=1`` — ``--threads 1`` (no team to wait for).

    python benchmarks/bench_contention.py [--rounds 3] [--sizes 16x256,64x512] [--out docs/...md]
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: name → (extra environment, extra CLI arguments). ``None`` removes a variable.
SETTINGS: dict[str, tuple[dict[str, str | None], list[str]]] = {
    "default": ({}, []),
    "fixed": ({}, ["--threads", str(min(2, os.cpu_count() or 1))]),
    "passive": ({"OMP_WAIT_POLICY": "PASSIVE"}, ["--threads", str(min(2, os.cpu_count() or 1))]),
    "threads=1": ({}, ["--threads", "1"]),
}

COMPETITOR = """
import torch
torch.set_num_threads(2)
a = torch.randn(1024, 1024)
while True:
    a = torch.tanh(a @ a)
"""


def _environment(changes: dict[str, str | None]) -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    for key in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "GOMP_SPINCOUNT", "OMP_WAIT_POLICY"):
        env.pop(key, None)
    for key, value in changes.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


def epoch_seconds(
    setting: str, dendrites: int, somata: int, seed: int, folder: Path, epochs: int = 4
) -> float:
    """Median seconds of epochs 2.. of one ``dendritic train`` run (epoch 1 warms up)."""
    changes, args = SETTINGS[setting]
    store = folder / f"{setting}-{dendrites}x{somata}-{seed}-{time.monotonic_ns()}.db"
    cmd = [
        sys.executable, "-m", "dendritic.cli", "train", "--model", "dANN-LRF", "--dendrites", str(dendrites),
        "--somata", str(somata), "--epochs", str(epochs), "--seed", str(seed), "--store", str(store), "--quiet", *args,
    ]  # fmt: skip
    subprocess.run(cmd, env=_environment(changes), check=True, capture_output=True, timeout=3600)
    with sqlite3.connect(store) as conn:
        seconds = [row[0] for row in conn.execute("SELECT seconds FROM epochs ORDER BY epoch")]
    return statistics.median(seconds[1:])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="quiet/contended pairs per setting (default 3)")
    parser.add_argument("--sizes", default="16x256", help="comma-separated DxS (default 16x256)")
    parser.add_argument(
        "--settings", default=",".join(SETTINGS), help="comma-separated, of: " + ", ".join(SETTINGS)
    )
    parser.add_argument("--epochs", type=int, default=4, help="epochs per run; the median of 2.. is taken")
    parser.add_argument("--json", type=Path, default=None, help="write every measurement here")
    parser.add_argument("--out", type=Path, default=None, help="also write the Markdown table here")
    args = parser.parse_args(argv)
    sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",")]
    settings = args.settings.split(",")
    times: dict[str, dict[str, list[float]]] = {}
    with tempfile.TemporaryDirectory(prefix="dendritic-contention-") as tmp:
        for round_ in range(args.rounds):
            for dendrites, somata in sizes:
                # every other round in reverse order, so no setting always runs first (or right
                # after a competitor was stopped)
                for setting in settings if round_ % 2 == 0 else settings[::-1]:
                    key = f"{setting} {dendrites}x{somata}"
                    for contended in (False, True):
                        competitor = None
                        if contended:
                            competitor = subprocess.Popen(
                                [sys.executable, "-c", COMPETITOR], env=_environment({}),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            )  # fmt: skip
                            time.sleep(2.0)  # the competitor is up and computing
                        try:
                            seconds = epoch_seconds(
                                setting, dendrites, somata, round_ + 1, Path(tmp), args.epochs
                            )
                        finally:
                            if competitor is not None:
                                competitor.kill()
                                competitor.wait()
                                time.sleep(2.0)  # the machine settles before the next quiet run
                        times.setdefault(key, {}).setdefault(
                            "contended" if contended else "quiet", []
                        ).append(seconds)
                        print(f"round {round_ + 1} {key} {'contended' if contended else 'quiet'}: {seconds:.3f} s",
                              file=sys.stderr, flush=True)  # fmt: skip
    lines = [
        "| setting | (D, S) | quiet s/epoch | beside a 2-thread job | slowdown | quiet vs default |",
        "|---|---|---|---|---|---|",
    ]
    for dendrites, somata in sizes:
        base = (
            statistics.median(times[f"default {dendrites}x{somata}"]["quiet"])
            if "default" in settings
            else None
        )
        for setting in settings:
            got = times[f"{setting} {dendrites}x{somata}"]
            quiet, busy = statistics.median(got["quiet"]), statistics.median(got["contended"])
            relative = f"{quiet / base:.3f}" if base else "-"
            lines.append(
                f"| {setting} | ({dendrites}, {somata}) | {quiet:.3f} | {busy:.3f} | {busy / quiet:.2f}× | {relative} |"
            )
    table = "\n".join(lines)
    print(table)
    if args.out is not None:
        args.out.write_text(table + "\n")
    if args.json is not None:
        args.json.write_text(json.dumps(times, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
