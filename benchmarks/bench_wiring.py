"""Building receptive-field layers on large inputs: wall time and peak memory (issue 22, #7).

Each case builds ``DendriticLayer(shape, somata, dendrites, synapses, receptive_field=rule)`` in
its own fresh process (so the peak resident memory is that case's alone) and reports:

* ``build s``  — median wall seconds of a whole layer build (wiring, weights, kernels' tables)
  over ``--repeats`` builds, seeds 0, 1, …;
* ``wiring s`` — median seconds of the receptive-field wiring alone (``make_receptive_fields``);
* ``numpy peak`` — the most the wiring allocates at once (``tracemalloc``, numpy's arrays);
* ``peak RSS`` — the process's peak resident memory (``getrusage``), Python, torch and all,
  and ``over import``: how much of it came after ``import torch, dendritic``.

    python benchmarks/bench_wiring.py                       # the issue's cases
    python benchmarks/bench_wiring.py --json benchmarks/results/wiring.json
    python benchmarks/bench_wiring.py --src /tmp/old/src --cases 28x28-local,100x100-local \\
        --memory-limit 8   # another tree's code (e.g. an older commit), refused above 8 GB
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

#: name → (input shape (C, H, W), rule, somata, dendrites, synapses)
CASES: dict[str, tuple[tuple[int, ...], str, int, int, int]] = {
    "224x224x3-local": ((3, 224, 224), "local", 512, 16, 16),
    "224x224x3-global": ((3, 224, 224), "global", 512, 16, 16),
    "28x28-local": ((1, 28, 28), "local", 256, 16, 16),
    "28x28-global": ((1, 28, 28), "global", 256, 16, 16),
    "32x32x3-local": ((3, 32, 32), "local", 256, 16, 16),
    "100x100-local": ((1, 100, 100), "local", 4, 2, 4),
    "100x100-global": ((1, 100, 100), "global", 4, 2, 4),
    "200x200-local": ((1, 200, 200), "local", 4, 2, 4),
    "1000x1000-local": ((1, 1000, 1000), "local", 512, 16, 16),
}
DEFAULT = (
    "224x224x3-local,224x224x3-global,28x28-local,28x28-global,100x100-local,100x100-global,200x200-local"
)


def one(name: str, repeats: int) -> dict:
    """Measure one case in this (fresh) process."""
    import resource
    import tracemalloc

    import numpy as np
    import torch

    import dendritic
    from dendritic.nn import DendriticLayer
    from dendritic.wiring.geometry import InputGeometry
    from dendritic.wiring.rules import make_receptive_fields

    torch.set_num_threads(1)
    shape, rule, somata, dendrites, synapses = CASES[name]
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    builds = []
    for seed in range(repeats):
        start = time.perf_counter()
        layer = DendriticLayer(shape, somata, dendrites, synapses, receptive_field=rule, seed=seed)
        builds.append(time.perf_counter() - start)
        del layer
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    geometry = InputGeometry.from_shape(shape)
    wirings = []
    for seed in range(repeats):
        start = time.perf_counter()
        make_receptive_fields(rule, np.random.default_rng(seed), geometry, somata, dendrites, synapses)
        wirings.append(time.perf_counter() - start)
    tracemalloc.start()
    make_receptive_fields(rule, np.random.default_rng(0), geometry, somata, dendrites, synapses)
    numpy_peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return {
        "case": name,
        "shape": list(shape),
        "rule": rule,
        "somata": somata,
        "dendrites": dendrites,
        "synapses": synapses,
        "connections": somata * dendrites * synapses * geometry.channels,
        "sites": geometry.sites,
        "build_s": builds,
        "wiring_s": wirings,
        "numpy_peak_bytes": numpy_peak,
        "peak_rss_bytes": peak_rss,
        "import_rss_bytes": base_rss,
        "dendritic": dendritic.__file__,
    }


def run_case(name: str, repeats: int, src: str | None, memory_limit_gb: float | None, timeout: float) -> dict:
    """One case in a fresh interpreter (optionally on another source tree, under a memory cap)."""
    env = dict(os.environ)
    if src:
        env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    cmd = [sys.executable, __file__, "--one", name, "--repeats", str(repeats)]
    if memory_limit_gb:
        cmd += ["--memory-limit", str(memory_limit_gb)]
    try:
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return {"case": name, "error": f"over {timeout:g} s"}
    if done.returncode != 0:
        lines = (done.stderr or done.stdout).strip().splitlines()
        kind, _, message = (lines[-1] if lines else f"exit {done.returncode}").partition(": ")
        return {"case": name, "error": f"{kind.rsplit('.', 1)[-1]}: {message}" if message else kind}
    result: dict = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _mb(n: int) -> str:
    if n < 1e6:
        return f"{n / 1e3:.0f} kB"
    return f"{n / 1e6:,.0f} MB" if n >= 1e7 else f"{n / 1e6:.1f} MB"


def table(results: list[dict]) -> str:
    rows = [
        "| case | sites | connections | build s | wiring s | numpy peak | peak RSS | over import |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        if "error" in r:
            rows.append(f"| {r['case']} | | | {r['error']} | | | | |")
            continue
        rows.append(
            f"| {r['case']} (S={r['somata']}, D={r['dendrites']}, {r['synapses']} syn.) | {r['sites']:,} | "
            f"{r['connections']:,} | {statistics.median(r['build_s']):.3f} | "
            f"{statistics.median(r['wiring_s']):.3f} | {_mb(r['numpy_peak_bytes'])} | "
            f"{_mb(r['peak_rss_bytes'])} | {_mb(r['peak_rss_bytes'] - r['import_rss_bytes'])} |"
        )
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", default=DEFAULT, help=f"comma-separated, of: {', '.join(CASES)}")
    parser.add_argument("--repeats", type=int, default=5, help="builds per case (median reported)")
    parser.add_argument("--src", help="put this source tree first on the path (e.g. an older commit's src)")
    parser.add_argument("--memory-limit", type=float, help="cap each case's address space at this many GB")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per case")
    parser.add_argument("--json", help="also write every measurement here")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_limit and args.one:
        import resource

        cap = int(args.memory_limit * 1e9)
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    if args.one:
        print(json.dumps(one(args.one, args.repeats)))
        return
    names = [n.strip() for n in args.cases.split(",") if n.strip()]
    unknown = [n for n in names if n not in CASES]
    if unknown:
        parser.error(f"unknown case(s) {', '.join(unknown)}; choose from {', '.join(CASES)}")
    results = []
    for name in names:
        results.append(run_case(name, args.repeats, args.src, args.memory_limit, args.timeout))
        print(f"{name}: done", file=sys.stderr, flush=True)
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
    print(f"{machine}; median of {args.repeats} builds per case, each case in a fresh process\n")
    print(table(results))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump({"command": sys.argv, "machine": machine, "results": results}, handle, indent=1)


if __name__ == "__main__":
    main()
