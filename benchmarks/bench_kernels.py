"""``sparse_matmul_t`` backends on dANN-LRF input layers: forward, and forward + backward.

For (D, S) = (16, 256) and (64, 512) (n_out = D·S dendrites, 16 synapses each on 28×28 inputs),
batch 128: median ms of the forward, forward + backward for the weights only (the input layer),
and forward + backward with the input's gradient too (deeper layers), per backend and thread
count. The backends run round-robin inside each repeat, so machine noise hits them alike;
compare ratios within one run. ``--step`` also times a whole dANN-LRF training step (forward,
backward, Adam) with its input layer on each backend.

    python benchmarks/bench_kernels.py [--repeats 15] [--threads 1 2] [--extra] [--step]
                                       [--clock cpu] [--stat min] [--out FILE.md]

On a shared machine, ``--clock cpu`` makes 1-thread numbers immune to other jobs; at 2 threads
only wall time means anything, and ``--stat min`` approximates an idle machine.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from dendritic.layers.kernels import available_kernels, kernel_backend, sparse_matmul_t
from dendritic.wiring import local_rf_inputs

BATCH = 128
FAN_IN = 16
STEPS_PER_EPOCH = 422


CLOCK = time.perf_counter
STAT = statistics.median


def round_robin(fns: dict[str, Callable[[], object]], repeats: int, inner: int) -> dict[str, float]:
    """Median ms per call of each function, timing them in turn within every repeat."""
    clock = CLOCK if torch.get_num_threads() == 1 else time.perf_counter
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = clock()
            for _ in range(inner):
                fn()
            times[name].append((clock() - start) / inner * 1e3)
    return {name: STAT(values) for name, values in times.items()}


def extra_backends(indices: torch.Tensor, offsets: torch.Tensor, n_in: int, n_out: int):
    """Pure-PyTorch alternatives (slow; for the record): sparse CSR matmul, gather + bmm."""
    crow = torch.cat([offsets, torch.tensor([indices.numel()])])

    def csr(h: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return torch.sparse_csr_tensor(crow, indices, w, (n_out, n_in)) @ h

    def gather_bmm(h: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        rows = h.index_select(0, indices).view(n_out, FAN_IN, -1)
        return torch.bmm(w.view(n_out, 1, FAN_IN), rows).view(n_out, -1)

    return {"torch-csr": csr, "gather-bmm": gather_bmm}


def layer_rows(dendrites: int, somata: int, threads: list[int], repeats: int, extra: bool) -> list[tuple]:
    n_out = dendrites * somata
    conn = local_rf_inputs(np.random.default_rng(0), (28, 28, 1), n_out, FAN_IN)
    indices = torch.from_numpy(conn.indices.astype(np.int64))
    offsets = torch.from_numpy(conn.indptr[:-1].astype(np.int64))
    n_in = conn.n_in
    gen = torch.Generator().manual_seed(0)
    h = torch.randn(n_in, BATCH, generator=gen)
    weight = torch.randn(indices.numel(), generator=gen) * 0.1
    grad_out = torch.randn(n_out, BATCH, generator=gen)

    products: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {}
    for backend in available_kernels():
        products[backend] = lambda x, w, b=backend: sparse_matmul_t(
            x, w, indices, offsets, n_out, FAN_IN, backend=b
        )
    if extra:
        products.update(extra_backends(indices, offsets, n_in, n_out))

    def forward(product) -> Callable[[], object]:
        return lambda: product(h, weight)

    def training(product, input_grad: bool) -> Callable[[], object]:
        x = h.clone().requires_grad_(input_grad)
        w = weight.clone().requires_grad_(True)

        def step() -> None:
            x.grad = w.grad = None
            product(x, w).backward(grad_out)

        return step

    rows = []
    inner = max(1, round(8 * 4096 / n_out))
    for n in threads:
        torch.set_num_threads(n)
        fwd = round_robin({k: forward(p) for k, p in products.items()}, repeats, inner)
        bwd_w = round_robin({k: training(p, False) for k, p in products.items()}, repeats, inner)
        bwd_wh = round_robin({k: training(p, True) for k, p in products.items()}, repeats, inner)
        for name in products:
            rows.append(
                (
                    f"({dendrites}, {somata})",
                    n_out,
                    indices.numel(),
                    n,
                    name,
                    fwd[name],
                    bwd_w[name],
                    bwd_wh[name],
                )
            )
            print(
                f"D,S=({dendrites:>2},{somata:>3}) threads {n} {name:>10}: fwd {fwd[name]:8.3f}  "
                f"fwd+bwd(w) {bwd_w[name]:8.3f}  fwd+bwd(w,h) {bwd_wh[name]:8.3f} ms",
                flush=True,
            )
    return rows


def step_rows(dendrites: int, somata: int, threads: list[int], repeats: int) -> list[tuple]:
    """Whole dANN-LRF training steps with the input layer's ``forward_t`` routed to each backend."""
    from dendritic import build_model
    from dendritic.layers.sparse import SparseLinear

    gen = torch.Generator().manual_seed(0)
    x = torch.rand(BATCH, 784, generator=gen)
    y = torch.randint(0, 10, (BATCH,), generator=gen)
    steps = {}
    for backend in available_kernels():
        model = build_model("dANN-LRF", (28, 28, 1), 10, dendrites, somata, seed=1)
        for module in model.modules():
            if isinstance(module, SparseLinear) and module.kernel == "bag":
                counts = torch.diff(module.offsets, append=torch.tensor([module.indices.numel()]))
                fan = int(counts[0]) if bool((counts == counts[0]).all()) else None

                def forward_t(h, m=module, fan=fan, b=backend):
                    return (
                        sparse_matmul_t(h, m.weight, m.indices, m.offsets, m.out_features, fan, backend=b)
                        + m.bias[:, None]
                    )

                module.forward_t = forward_t
        opt = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-7)

        def one(model=model, opt=opt) -> None:
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(model(x), y).backward()
            opt.step()

        steps[backend] = one
    rows = []
    for n in threads:
        torch.set_num_threads(n)
        result = round_robin(steps, repeats, 3)
        for name, ms in result.items():
            rows.append((f"({dendrites}, {somata})", n, name, ms, ms * STEPS_PER_EPOCH / 1e3))
            print(
                f"D,S=({dendrites:>2},{somata:>3}) threads {n} {name:>10}: training step {ms:8.3f} ms "
                f"(~{ms * STEPS_PER_EPOCH / 1e3:.2f} s per {STEPS_PER_EPOCH}-step epoch)",
                flush=True,
            )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--extra", action="store_true", help="also time pure-PyTorch alternatives (slow)")
    parser.add_argument("--step", action="store_true", help="also time whole dANN-LRF training steps")
    parser.add_argument(
        "--clock",
        choices=["wall", "cpu"],
        default="wall",
        help="cpu: time 1-thread runs by this thread's CPU time, immune to other jobs taking the core",
    )
    parser.add_argument(
        "--stat",
        choices=["median", "min"],
        default="median",
        help="min: best case, when other jobs add noise",
    )
    parser.add_argument("--out", type=Path, default=None, help="also write the tables as Markdown here")
    args = parser.parse_args()
    global CLOCK, STAT
    CLOCK = time.thread_time if args.clock == "cpu" else time.perf_counter
    STAT = min if args.stat == "min" else statistics.median

    start = time.perf_counter()
    kernels = available_kernels()
    load_s = time.perf_counter() - start
    print(f"backends {kernels}, active {kernel_backend()!r}; build/load took {load_s:.1f} s", flush=True)

    rows, steps = [], []
    for dendrites, somata in [(16, 256), (64, 512)]:
        rows += layer_rows(dendrites, somata, args.threads, args.repeats, args.extra)
        if args.step:
            steps += step_rows(dendrites, somata, args.threads, args.repeats)

    lines = [
        f"# sparse_matmul_t backends ({platform.processor() or platform.machine()}, torch {torch.__version__})",
        "",
        f"dANN-LRF input layer, k = {FAN_IN}, batch {BATCH}; {args.stat} ms over {args.repeats} repeats; "
        f"clock: {'CPU time at 1 thread, wall time otherwise' if args.clock == 'cpu' else 'wall'}.",
        "",
        "| (D, S) | n_out | nnz | threads | backend | fwd | fwd+bwd(w) | fwd+bwd(w, h) |",
        "|---|---:|---:|---:|---|---:|---:|---:|",
    ]
    for size, n_out, nnz, n, name, fwd, bw, bwh in rows:
        lines.append(f"| {size} | {n_out} | {nnz} | {n} | {name} | {fwd:.3f} | {bw:.3f} | {bwh:.3f} |")
    if steps:
        lines += ["", "| (D, S) | threads | backend | ms / step | s / epoch |", "|---|---:|---|---:|---:|"]
        for size, n, name, ms, epoch in steps:
            lines.append(f"| {size} | {n} | {name} | {ms:.2f} | {epoch:.2f} |")
    table = "\n".join(lines) + "\n"
    print()
    print(table)
    if args.out is not None:
        args.out.write_text(table)


if __name__ == "__main__":
    main()
