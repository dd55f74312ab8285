"""Old code against new code in one run: ``bench_epoch.py`` on two source trees, alternated.

Timing on a shared machine drifts by 10-15 % within an hour, so "no slowdown" claims compare two
versions measured side by side: a git worktree of ``--old`` (any revision) against this checkout,
each benchmark run in turn (old, new, old, new, ...), the median of each version's whole-epoch
times per configuration reported with the ratio new / old. Both versions run the *same*
``bench_epoch.py`` (this checkout's) with ``PYTHONPATH`` pointing at their ``src``; the old tree
compiles its own C++ kernels on first use.

    python benchmarks/compare_commits.py --old b7f853c --rounds 3 -- \\
        --models dANN-LRF --sizes 16x256,64x512 --threads 2 --impl ours --full-epochs --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run(src: Path, bench_args: list[str], out: Path) -> dict[tuple[str, int, int], float]:
    env = dict(os.environ, PYTHONPATH=str(src))
    cmd = [sys.executable, str(ROOT / "benchmarks" / "bench_epoch.py"), *bench_args, "--json", str(out)]
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
    results = json.loads(out.read_text())["results"]
    return {(r["model"], r["dendrites"], r["somata"]): r["epoch_s"] for r in results if r.get("epoch_s")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old", required=True, help="git revision of the old code")
    parser.add_argument("--rounds", type=int, default=3, help="old/new pairs of runs (default 3)")
    parser.add_argument("--json", default=None, help="write every measurement here")
    parser.add_argument("bench", nargs=argparse.REMAINDER, help="arguments for bench_epoch.py, after --")
    args = parser.parse_args(argv)
    bench = [a for a in args.bench if a != "--"]
    with tempfile.TemporaryDirectory(prefix="dendritic-old-") as tmp:
        old_tree = Path(tmp) / "old"
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "add", "-q", "--detach", str(old_tree), args.old], check=True
        )
        try:
            times: dict[str, dict[tuple[str, int, int], list[float]]] = {"old": {}, "new": {}}
            for round_ in range(args.rounds):
                for name, src in (("old", old_tree / "src"), ("new", ROOT / "src")):
                    got = run(src, bench, Path(tmp) / f"{name}-{round_}.json")
                    for key, seconds in got.items():
                        times[name].setdefault(key, []).append(seconds)
                    print(f"round {round_ + 1} {name}: " + ", ".join(f"{k[0]} {k[1]}x{k[2]} {v:.3f} s" for k, v in got.items()),
                          file=sys.stderr, flush=True)  # fmt: skip
        finally:
            subprocess.run(
                ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(old_tree)], check=False
            )
    print(f"| model | (D, S) | old s/epoch ({args.old}) | new s/epoch | new / old |")
    print("|---|---|---|---|---|")
    for key in sorted(times["new"]):
        old, new = (
            statistics.median(times["old"].get(key, [float("nan")])),
            statistics.median(times["new"][key]),
        )
        print(f"| {key[0]} | ({key[1]}, {key[2]}) | {old:.3f} | {new:.3f} | {new / old:.3f} |")
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {n: {f"{k[0]} {k[1]}x{k[2]}": v for k, v in t.items()} for n, t in times.items()}, indent=1
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
