"""Training-epoch benchmark: compact sparse models ("ours") vs the masked-dense oracle ("masked").

Fashion-MNIST with the paper's protocol (54,000 training / 6,000 validation / 10,000 test
samples, batch 128, Adam lr 1e-3 ε 1e-7) for dANN-LRF, dANN-GRF, dANN-R, pdANN and vANN at
(D, S) = (1, 32), (16, 256), (64, 512). For every configuration it reports seconds per training
epoch, evaluation time (validation + test forward passes), peak memory of the process, FLOPs per
sample of a training step, the achieved GFLOP/s and the speed-up of ours over the oracle.

Every (model, D, S, implementation) runs in a fresh subprocess so each peak-memory figure is
that configuration's own. Epoch time is ``ceil(n_train / 128)`` × the median time of a training
step (the library's own ``dendritic.training.loop.train_epoch``, what ``dendritic train`` runs); ``--full-epochs`` also times whole
epochs of the "ours" rows.

Usage::

    python benchmarks/bench_epoch.py [--models dANN-LRF,dANN-GRF,dANN-R,pdANN,vANN]
        [--sizes 1x32,16x256,64x512] [--impl ours,masked] [--threads 1] [--repeats 3]
        [--steps N] [--full-epochs [--full-epochs-max S]] [--limit N] [--data-dir DIR]
        [--out docs/benchmarks.md] [--json results.json]

    # smoke test: python benchmarks/bench_epoch.py --limit 2000 --repeats 1 --sizes 1x32

The Markdown table goes to stdout, one progress line per configuration to stderr.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dendritic import build_model, count_parameters
from dendritic.layers.sparse import MaskedLinear, SparseLinear
from dendritic.training.loop import batch_order, evaluate, make_optimizer, train_epoch

MODELS = ("dANN-LRF", "dANN-GRF", "dANN-R", "pdANN", "vANN")
SIZES = ((1, 32), (16, 256), (64, 512))
IMPLS = ("ours", "masked")
DATASET = "fmnist"
SEED = 1
BATCH = 128
LR = 1e-3
WARMUP_STEPS = 3
TARGET_REPEAT_S = 0.5  # each timed block of steps lasts at least this long (noise of a shared machine)
MIN_STEPS = 3
SLOW_EVAL_S = 5.0  # an evaluation this slow is timed once, not `repeats` times
# Reference Keras implementation on this 2-core machine (project issue), dANN-LRF.
KERAS_REFERENCE = {(16, 256): (19.0, 2.4), (64, 512): (150.0, 7.2)}  # (s/epoch, peak GB)


# --------------------------------------------------------------------------- FLOPs


def layer_macs(layer: nn.Module) -> int:
    """Multiply-adds per sample that ``layer`` actually computes.

    Ours computes only real connections; the masked oracle multiplies the full dense matrix.
    """
    if isinstance(layer, MaskedLinear):
        return layer.in_features * layer.out_features
    if isinstance(layer, SparseLinear):
        return layer.n_connections
    weight = getattr(layer, "weight", None)
    if isinstance(weight, torch.Tensor):
        return weight.numel()
    raise TypeError(f"cannot count the multiply-adds of {type(layer).__name__}")


def weight_layers(model: nn.Module) -> list[nn.Module]:
    """Every weight layer of a DendriticNet in forward order: dendrites, somata, …, output."""
    layers: list[nn.Module] = [module for _, module in model.hidden_layers()]
    layers.append(model.output)
    return layers


def flops_per_sample(model: nn.Module) -> dict[str, int]:
    """FLOPs of one sample's forward pass and of a whole training step (forward + backward).

    Forward: 2 FLOPs per multiply-add. Backward: weight gradient + input gradient, 2× forward,
    except the first layer, whose input needs no gradient (1× forward). Biases, activations,
    the loss and the optimizer update are left out: they are O(units), not O(connections).
    """
    macs = [layer_macs(layer) for layer in weight_layers(model)]
    forward = 2 * sum(macs)
    backward = 2 * macs[0] + 4 * sum(macs[1:])
    return {"macs": sum(macs), "forward": forward, "backward": backward, "train_step": forward + backward}


# --------------------------------------------------------------------------- timing


def _blocks(n: int, batch: int, steps: int, generator: torch.Generator) -> Iterator[torch.Tensor]:
    """Endless runs of ``steps`` full batches of sample indices, reshuffled every pass over the
    data as the trainer's epochs are (the partial last batch of a pass is left out)."""
    span = min(steps, max(1, n // batch)) * batch  # at most the full batches there are
    while True:
        order = batch_order(n, False, generator)
        for start in range(0, max(1, n - span + 1), span):
            yield order[start : start + span]


def _train(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    data: Any,
    order: torch.Tensor,
    loss_sum: torch.Tensor,
    correct: torch.Tensor,
    batch: int = BATCH,
) -> None:
    """What ``dendritic train`` runs: ``dendritic.training.loop.train_epoch`` over ``order``."""
    train_epoch(model, optimizer, data.x_train, data.y_train, order, batch, loss_sum, correct)


def time_steps(
    model: nn.Module,
    data: Any,
    steps: int | None,
    repeats: int = 3,
    *,
    batch: int = BATCH,
    lr: float = LR,
    seed: int = SEED,
) -> dict[str, Any]:
    """Median seconds of one training step over ``repeats`` blocks of ``steps`` steps.

    ``steps=None`` picks the block length from one timed step so a block lasts about
    ``TARGET_REPEAT_S`` (a slow configuration gets few steps, never fewer than ``MIN_STEPS``,
    and never more than an epoch's worth).
    """
    model.train()
    optimizer = make_optimizer(model, lr)
    n = len(data.x_train)
    generator = torch.Generator().manual_seed(seed)
    loss_sum = torch.zeros(())
    correct = torch.zeros((), dtype=torch.long)
    _train(model, optimizer, data, next(_blocks(n, batch, WARMUP_STEPS, generator)), loss_sum, correct, batch)
    n_batches = max(1, n // batch)
    if steps is None:
        one_batch = next(_blocks(n, batch, 1, generator))
        start = time.perf_counter()
        _train(model, optimizer, data, one_batch, loss_sum, correct, batch)
        one = time.perf_counter() - start
        steps = min(n_batches, max(MIN_STEPS, math.ceil(TARGET_REPEAT_S / max(one, 1e-9))))
    steps = min(steps, n_batches)
    blocks = _blocks(n, batch, steps, generator)
    per_step = []
    for _ in range(repeats):
        block = next(blocks)
        start = time.perf_counter()
        _train(model, optimizer, data, block, loss_sum, correct, batch)
        loss_sum.item()  # results are ready (no-op on the CPU, a sync elsewhere)
        per_step.append((time.perf_counter() - start) / steps)
    return {"step_s": statistics.median(per_step), "steps": steps, "repeats": repeats, "per_step_s": per_step}


def time_epochs(
    model: nn.Module, data: Any, repeats: int, *, batch: int = BATCH, lr: float = LR, seed: int = SEED
) -> dict[str, Any]:
    """Median seconds of whole training epochs (all batches, last one partial; no validation)."""
    model.train()
    optimizer = make_optimizer(model, lr)
    generator = torch.Generator().manual_seed(seed)
    n = len(data.x_train)
    zero_f, zero_l = torch.zeros(()), torch.zeros((), dtype=torch.long)
    _train(model, optimizer, data, next(_blocks(n, batch, WARMUP_STEPS, generator)), zero_f, zero_l, batch)
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        order = batch_order(n, False, generator)
        loss_sum = torch.zeros(())
        correct = torch.zeros((), dtype=torch.long)
        _train(model, optimizer, data, order, loss_sum, correct, batch)
        loss_sum.item(), correct.item()
        seconds.append(time.perf_counter() - start)
    return {"epoch_s": statistics.median(seconds), "repeats": repeats, "per_epoch_s": seconds}


def time_evaluation(model: nn.Module, data: Any, repeats: int) -> dict[str, Any]:
    """Median seconds of ``evaluate`` on the validation plus the test set (what a run evaluates)."""
    seconds: list[float] = []
    for _ in range(repeats):
        start = time.perf_counter()
        evaluate(model, data.x_val, data.y_val)
        evaluate(model, data.x_test, data.y_test)
        seconds.append(time.perf_counter() - start)
        if seconds[0] > SLOW_EVAL_S:
            break
    return {"eval_s": statistics.median(seconds), "repeats": len(seconds)}


def peak_rss_mb() -> float:
    """High-water mark of this process's resident memory, in MB (ru_maxrss: KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


def measure(spec: dict[str, Any]) -> dict[str, Any]:
    """Benchmark one (model, D, S, implementation) in this process: the subprocess's whole job."""
    from dendritic.data import prepare
    from dendritic.layers.kernels import kernel_backend

    torch.set_num_threads(int(spec.get("threads", 1)))
    repeats = int(spec.get("repeats", 3))
    data = prepare(DATASET, seed=SEED, data_dir=spec.get("data_dir"), limit=spec.get("limit"))
    baseline_mb = peak_rss_mb()
    oracle = spec["impl"] == "masked"
    model = build_model(
        spec["model"],
        data.input_shape,
        data.n_classes,
        spec["dendrites"],
        spec["somata"],
        seed=SEED,
        oracle=oracle,
    )
    n_train = len(data.x_train)
    steps_per_epoch = math.ceil(n_train / BATCH)
    result: dict[str, Any] = {
        **spec,
        "n_train": n_train,
        "n_val": len(data.x_val),
        "n_test": len(data.x_test),
        "steps_per_epoch": steps_per_epoch,
        "params": count_parameters(model),
        "stored_weights": sum(p.numel() for p in model.parameters()),
        "flops": flops_per_sample(model),
        "threads": torch.get_num_threads(),
        "kernel_backend": kernel_backend(),
        "baseline_peak_mb": baseline_mb,
    }
    steps = time_steps(model, data, spec.get("steps"), repeats)
    result["step"] = steps
    result["epoch_s_from_steps"] = steps_per_epoch * steps["step_s"]
    result["epoch_s"] = result["epoch_s_from_steps"]
    result["epoch_source"] = f"from {steps['steps'] * repeats} steps"
    if (
        spec.get("full_epochs")
        and not oracle
        and result["epoch_s_from_steps"] <= float(spec.get("full_epochs_max") or math.inf)
    ):
        epochs = time_epochs(model, data, repeats)
        result["epochs"] = epochs
        result["epoch_s"] = epochs["epoch_s"]
        result["epoch_source"] = "measured"
    if spec.get("eval", not oracle):
        result["evaluation"] = time_evaluation(model, data, repeats)
    result["gflops"] = result["flops"]["train_step"] * n_train / result["epoch_s"] / 1e9
    result["peak_mb"] = peak_rss_mb()
    return result


# --------------------------------------------------------------------------- driver


def run_child(spec: dict[str, Any], timeout: float | None) -> dict[str, Any]:
    """Run :func:`measure` in a fresh interpreter; a failure comes back as ``{"error": ...}``."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--one", json.dumps(spec)]
    start = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return {**spec, "error": f"timed out after {timeout:.0f} s"}
    wall = time.perf_counter() - start
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if lines:
        try:
            result = json.loads(lines[-1])
        except json.JSONDecodeError:
            result = None
        if isinstance(result, dict):
            result["wall_s"] = wall
            return result
    tail = (proc.stderr.strip().splitlines() or proc.stdout.strip().splitlines() or ["no output"])[-1]
    return {**spec, "error": f"exit status {proc.returncode}: {tail}", "wall_s": wall}


def _child_main(payload: str) -> int:
    """``--one JSON``: measure one configuration and print the result as one JSON line."""
    spec = json.loads(payload)
    try:
        result = measure(spec)
    except Exception as exc:  # one bad configuration must not hide the others
        print(json.dumps({**spec, "error": f"{type(exc).__name__}: {exc}"}), flush=True)
        return 1
    print(json.dumps(result), flush=True)
    return 0


def _read_proc(path: str, key: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                if line.startswith(key):
                    return line.split(":", 1)[1].strip()
    except OSError:
        return None
    return None


def machine_info(threads: int) -> dict[str, Any]:
    """What the numbers depend on: CPU, memory, load, torch and its thread count."""
    mem_kb = _read_proc("/proc/meminfo", "MemTotal")
    return {
        "cpu": _read_proc("/proc/cpuinfo", "model name") or platform.processor() or platform.machine(),
        "logical_cpus": os.cpu_count(),
        "mem_total_gb": round(int(mem_kb.split()[0]) / 2**20, 1) if mem_kb else None,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "threads": threads,
        "load_start": os.getloadavg(),
    }


# --------------------------------------------------------------------------- formatting


def fmt_seconds(value: float | None) -> str:
    """Three significant digits, never scientific: 0.0123, 1.23, 12.3, 123."""
    if value is None or not math.isfinite(value):
        return "–"
    if value >= 100:
        return f"{value:.0f}"
    if value >= 10:
        return f"{value:.1f}"
    if value >= 1:
        return f"{value:.2f}"
    return f"{value:.3g}"


def fmt_si(value: float | None) -> str:
    """1234567 → '1.23 M'."""
    if value is None:
        return "–"
    for factor, suffix in ((1e9, " G"), (1e6, " M"), (1e3, " k")):
        if abs(value) >= factor:
            return f"{value / factor:.3g}{suffix}"
    return f"{value:.3g}"


def _ok(result: dict[str, Any] | None) -> bool:
    return result is not None and "error" not in result


HEADER = (
    "| model | D | S | params | ours s/epoch | ours epoch from | masked s/epoch | speed-up "
    "| ours eval s (val+test) | eval % of epoch | ours peak MB | masked peak MB "
    "| FLOPs/sample (ours) | GFLOP/s (ours) |"
)
ALIGN = "|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|"


def table_rows(results: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Group per-implementation results into one row per (model, D, S), in run order."""
    rows: dict[tuple[str, int, int], dict[str, Any]] = {}
    for result in results:
        key = (result["model"], result["dendrites"], result["somata"])
        rows.setdefault(key, {"model": key[0], "dendrites": key[1], "somata": key[2]})[result["impl"]] = (
            result
        )
    return list(rows.values())


def _mark(result: dict[str, Any]) -> str:
    """'†' on numbers carried over from an earlier run (``--reuse``) rather than measured now."""
    return " †" if result.get("reused_from") else ""


def _order_key(result: dict[str, Any]) -> tuple[Any, ...]:
    model, impl = result["model"], result["impl"]
    return (
        MODELS.index(model) if model in MODELS else len(MODELS),
        model,
        result["dendrites"],
        result["somata"],
        IMPLS.index(impl) if impl in IMPLS else len(IMPLS),
    )


def carried_results(path: Path, threads: int, fresh: set[tuple[Any, ...]]) -> list[dict[str, Any]]:
    """The results of an earlier ``--json`` file with this thread count that this run does not
    measure again, each marked with where it came from."""
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
        previous = payload["results"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise SystemExit(f"bench_epoch: cannot reuse {path}: {error}") from None
    carried = []
    for result in previous:
        key = (result.get("model"), result.get("dendrites"), result.get("somata"), result.get("impl"))
        if key not in fresh and result.get("threads") == threads and _ok(result):
            carried.append(
                {**result, "reused_from": {"file": str(path), "command": payload.get("command", "?")}}
            )
    return carried


def markdown_table(results: Sequence[dict[str, Any]]) -> str:
    """The main table: one row per model × size, ours and masked side by side."""
    lines = [HEADER, ALIGN]
    for row in table_rows(results):
        ours, masked = row.get("ours"), row.get("masked")
        any_ok = ours if _ok(ours) else masked if _ok(masked) else None
        params = f"{any_ok['params']:,}" if any_ok else "–"

        def epoch(result: dict[str, Any] | None) -> str:
            if result is None:
                return "–"
            return (fmt_seconds(result["epoch_s"]) + _mark(result)) if _ok(result) else "failed"

        speedup = "–"
        if _ok(ours) and _ok(masked):
            speedup = f"{masked['epoch_s'] / ours['epoch_s']:.1f}×"
        eval_s = eval_pct = peak_ours = flops = gflops = source = "–"
        if _ok(ours):
            source = ours["epoch_source"]
            peak_ours = f"{ours['peak_mb']:.0f}"
            flops = fmt_si(ours["flops"]["train_step"])
            gflops = f"{ours['gflops']:.3g}"
            if "evaluation" in ours:
                eval_s = fmt_seconds(ours["evaluation"]["eval_s"])
                eval_pct = f"{100 * ours['evaluation']['eval_s'] / ours['epoch_s']:.0f} %"
        peak_masked = f"{masked['peak_mb']:.0f}" if _ok(masked) else ("failed" if masked else "–")
        lines.append(
            f"| {row['model']} | {row['dendrites']} | {row['somata']} | {params} | {epoch(ours)} | {source} "
            f"| {epoch(masked)} | {speedup} | {eval_s} | {eval_pct} | {peak_ours} | {peak_masked} "
            f"| {flops} | {gflops} |"
        )
    return "\n".join(lines)


def masked_table(results: Sequence[dict[str, Any]]) -> str | None:
    """The oracle's own arithmetic: the dense FLOPs it computes and how few of them are useful."""
    lines = [
        "| model | D | S | masked epoch from | dense FLOPs/sample | useful FLOPs/sample "
        "| dense GFLOP/s | useful GFLOP/s |",
        "|---|---:|---:|---|---:|---:|---:|---:|",
    ]
    for row in table_rows(results):
        masked, ours = row.get("masked"), row.get("ours")
        if not _ok(masked):
            continue
        useful = ours["flops"]["train_step"] if _ok(ours) else None
        useful_rate = (
            f"{useful * masked['n_train'] / masked['epoch_s'] / 1e9:.3g}" if useful is not None else "–"
        )
        lines.append(
            f"| {row['model']} | {row['dendrites']} | {row['somata']} | {masked['epoch_source']}{_mark(masked)} "
            f"| {fmt_si(masked['flops']['train_step'])} | {fmt_si(useful)} "
            f"| {masked['gflops']:.3g} | {useful_rate} |"
        )
    return "\n".join(lines) if len(lines) > 2 else None


def notes(results: Sequence[dict[str, Any]], args: argparse.Namespace) -> list[str]:
    """How every column was obtained, so the numbers can be judged without reading the code."""
    ok = [r for r in results if _ok(r)]
    n_train = ok[0]["n_train"] if ok else None
    steps_per_epoch = ok[0]["steps_per_epoch"] if ok else math.ceil(54000 / BATCH)
    baseline = statistics.median(r["baseline_peak_mb"] for r in ok) if ok else None
    limit_note = (
        f" With `--limit {args.limit}` the training set has {n_train:,} samples, so an epoch is "
        f"{steps_per_epoch} steps; the numbers are a smoke test, not the paper's protocol."
        if args.limit
        else ""
    )
    reused = sorted(
        {(r["reused_from"]["file"], r["reused_from"]["command"]) for r in results if r.get("reused_from")}
    )
    out = [
        f"- **† Carried over**: not measured by this run but taken from `{Path(file).name}` (`{command}`), "
        "an earlier run on the same machine; compare ratios within one run, since this machine's speed drifts."
        for file, command in reused
    ]
    out += [
        f"- **Epoch time** (training only, no validation pass): {steps_per_epoch} steps "
        f"(ceil(n_train / {BATCH})) × the median time of one step. A step is "
        "what `dendritic train` runs, `dendritic.training.loop.train_epoch` over a block of shuffled batches: "
        "index a batch of the in-memory training tensor, forward, cross-entropy, backward, Adam step from "
        "`make_optimizer` (lr 1e-3, ε 1e-7), running loss/accuracy sums; one-layer dANNs on the CPU run "
        "20 steps per C++ call, the other models step by step (autograd, `zero_grad(set_to_none=True)`). After "
        f"{WARMUP_STEPS} warm-up steps, {args.repeats} repeat(s) time a block of steps each "
        f"(block length chosen from one timed step so that a block lasts ≥ {TARGET_REPEAT_S} s, "
        f"{MIN_STEPS} steps at least, an epoch at most, unless `--steps` is given); "
        "'from N steps' counts all timed steps. 'measured' (`--full-epochs`, ours only, where the "
        "step estimate is at most `--full-epochs-max` s) is the median of whole epochs. The masked oracle is always estimated from steps."
        + limit_note,
        "- **Speed-up** = masked s/epoch ÷ ours s/epoch, as shown in the table.",
        "- **Evaluation**: `dendritic.training.loop.evaluate` (eval mode, `torch.no_grad`, batches of "
        "256 on the CPU) on the validation set plus the test set, median of the repeats (timed once when it "
        f"takes over {SLOW_EVAL_S:.0f} s). A run evaluates the validation set every epoch and the "
        "test set once, so 'eval % of epoch' is an upper bound on the per-epoch overhead.",
        "- **Peak memory**: `ru_maxrss` of a fresh process per configuration, so each row's peak is "
        "its own. It includes the Python/torch runtime and the dataset: float32 train/validation/test "
        "tensors (~220 MB at full size) plus the cached uint8 raw arrays"
        + (f"; that baseline, measured after loading the data, was ~{baseline:.0f} MB." if baseline else "."),
        "- **FLOPs/sample** of one training step: 2 FLOPs per multiply-add of every connection "
        "(input → dendrite, dendrite → soma, soma → output) in the forward pass; the backward pass "
        "counts 2× forward (weight and input gradients) except the first layer, whose input needs no "
        "gradient (1× its forward). Biases, activations, loss, the optimizer update and the oracle's "
        "per-step weight × mask product are ignored. Ours counts real connections only; the masked "
        "oracle counts the dense products it computes (n_in × n_out per layer). "
        "**GFLOP/s** = FLOPs/sample × n_train / epoch seconds / 1e9.",
        "- **Params**: trainable parameters (real connections + biases, `dendritic.count_parameters`; "
        "the same for both implementations).",
        "- **Reference**: the reference Keras implementation (dense weights × fixed masks) measured "
        f"~{KERAS_REFERENCE[(16, 256)][0]:.0f} s/epoch for dANN-LRF (16, 256) and "
        f"~{KERAS_REFERENCE[(64, 512)][0]:.0f} s/epoch for (64, 512), with "
        f"{KERAS_REFERENCE[(16, 256)][1]} / {KERAS_REFERENCE[(64, 512)][1]} GB peak memory, on this "
        "2-core machine (project issue).",
        "- The machine may be shared: compare the load averages above with the number of cores "
        "before trusting small differences.",
    ]
    failed = [r for r in results if not _ok(r)]
    for r in failed:
        out.append(f"- **failed**: {r['model']} ({r['dendrites']}, {r['somata']}) {r['impl']}: {r['error']}")
    return out


def markdown_report(
    results: Sequence[dict[str, Any]], machine: dict[str, Any], command: str, args: argparse.Namespace
) -> str:
    """The whole ``--out`` document: machine, command, tables, notes."""
    ok = [r for r in results if _ok(r)]
    counts = (ok[0]["n_train"], ok[0]["n_val"], ok[0]["n_test"]) if ok else (54000, 6000, 10000)
    sizes = " / ".join(f"{n:,}" for n in counts) + (f" (`--limit {args.limit}`)" if args.limit else "")
    load_start = ", ".join(f"{v:.2f}" for v in machine["load_start"])
    load_end = ", ".join(f"{v:.2f}" for v in machine.get("load_end", ()))
    parts = [
        "# Benchmark: one training epoch, compact sparse models vs the masked-dense oracle",
        "",
        "Fashion-MNIST, the paper's protocol (batch 128, Adam lr 1e-3 ε 1e-7; "
        f"{sizes} train / validation / test samples), seed 1, CPU.",
        "",
        "## Machine",
        "",
        f"- CPU: {machine['cpu']}, {machine['logical_cpus']} logical CPUs, {machine['mem_total_gb']} GB RAM",
        f"- Load average (1, 5, 15 min): {load_start} at start; {load_end} at end",
        f"- Python {machine['python']}, torch {machine['torch']}, "
        f"{machine['threads']} thread(s) (`torch.get_num_threads()` in each benchmark process)",
        f"- Sparse kernel backend: `{machine.get('kernel_backend', 'unknown')}` "
        "(`dendritic.layers.kernels.kernel_backend()`)",
        "",
        "## Reproduce",
        "",
        "```",
        command,
        "```",
        "",
        "## Results",
        "",
        markdown_table(results),
        "",
    ]
    oracle = masked_table(results)
    if oracle:
        parts += ["### The masked oracle's arithmetic", "", oracle, ""]
    parts += ["## Notes", "", *notes(results, args), ""]
    return "\n".join(parts)


def progress_line(index: int, total: int, result: dict[str, Any]) -> str:
    name = (
        f"[{index}/{total}] {result['model']} D={result['dendrites']} S={result['somata']} {result['impl']}"
    )
    if not _ok(result):
        return f"{name}: FAILED: {result['error']}"
    text = (
        f"{name}: {fmt_seconds(result['epoch_s'])} s/epoch ({result['epoch_source']}, "
        f"{fmt_seconds(1e3 * result['step']['step_s'])} ms/step)"
    )
    if "evaluation" in result:
        text += f", eval {fmt_seconds(result['evaluation']['eval_s'])} s"
    return text + f", peak {result['peak_mb']:.0f} MB, {result.get('wall_s', 0):.1f} s wall"


# --------------------------------------------------------------------------- CLI


def _sizes(text: str) -> list[tuple[int, int]]:
    try:
        sizes = [tuple(int(v) for v in item.lower().split("x")) for item in text.split(",") if item]
    except ValueError:
        raise argparse.ArgumentTypeError(f"sizes are DxS pairs like 16x256, got {text!r}") from None
    if not sizes or any(len(s) != 2 or min(s) <= 0 for s in sizes):
        raise argparse.ArgumentTypeError(f"sizes are DxS pairs like 16x256, got {text!r}")
    return sizes  # type: ignore[return-value]


def _names(allowed: Sequence[str] | None) -> Any:
    def parse(text: str) -> list[str]:
        names = [item.strip() for item in text.split(",") if item.strip()]
        if not names:
            raise argparse.ArgumentTypeError("give at least one name")
        if allowed is not None:
            bad = [n for n in names if n not in allowed]
            if bad:
                raise argparse.ArgumentTypeError(
                    f"unknown {', '.join(bad)}; choose from {', '.join(allowed)}"
                )
        return names

    return parse


def _positive(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--models", type=_names(None), default=list(MODELS), help="comma-separated model labels"
    )
    parser.add_argument("--sizes", type=_sizes, default=list(SIZES), help="comma-separated DxS, e.g. 16x256")
    parser.add_argument("--impl", type=_names(IMPLS), default=list(IMPLS), help="ours, masked or both")
    parser.add_argument("--threads", type=_positive, default=1, help="torch threads per benchmark process")
    parser.add_argument("--repeats", type=_positive, default=3, help="timed repeats; the median is reported")
    parser.add_argument("--steps", type=_positive, default=None, help="steps per repeat (default: adaptive)")
    parser.add_argument("--full-epochs", action="store_true", help="also time whole epochs of the ours rows")
    parser.add_argument(
        "--full-epochs-max",
        type=float,
        default=120.0,
        metavar="SECONDS",
        help="with --full-epochs, only where the step estimate is at most this long (default 120)",
    )
    parser.add_argument("--limit", type=_positive, default=None, help="fewer samples (smoke tests only)")
    parser.add_argument("--data-dir", default=None, help="where the Fashion-MNIST files are")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds per configuration")
    parser.add_argument("--out", type=Path, default=None, help="write the Markdown report here")
    parser.add_argument("--json", type=Path, default=None, help="write raw results as JSON here")
    parser.add_argument(
        "--reuse",
        type=Path,
        default=None,
        metavar="JSON",
        help="carry the rows this run does not measure over from an earlier --json file (marked †)",
    )
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)  # internal: child process
    args = parser.parse_args(argv)
    if args.one is None:
        from dendritic.models.variants import resolve_name

        for name in args.models:
            try:
                resolve_name(name)
            except ValueError as exc:
                parser.error(str(exc))
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.one is not None:
        return _child_main(args.one)
    torch.set_num_threads(args.threads)
    machine = machine_info(torch.get_num_threads())
    shown = list(sys.argv[1:] if argv is None else argv)
    command = shlex.join(["python", "benchmarks/bench_epoch.py", *shown])
    specs = [
        {
            "model": model,
            "dendrites": d,
            "somata": s,
            "impl": impl,
            "threads": args.threads,
            "repeats": args.repeats,
            "steps": args.steps,
            "full_epochs": args.full_epochs,
            "full_epochs_max": args.full_epochs_max,
            "limit": args.limit,
            "data_dir": args.data_dir,
        }
        for model in args.models
        for d, s in args.sizes
        for impl in args.impl
    ]
    carried = []  # read before measuring, so a bad file fails at once
    if args.reuse is not None:
        fresh = {(spec["model"], spec["dendrites"], spec["somata"], spec["impl"]) for spec in specs}
        carried = carried_results(args.reuse, args.threads, fresh)
    results = []
    for index, spec in enumerate(specs, start=1):
        result = run_child(spec, args.timeout)
        results.append(result)
        print(progress_line(index, len(specs), result), file=sys.stderr, flush=True)
    machine["load_end"] = os.getloadavg()
    if carried:
        results = sorted(results + carried, key=_order_key)
    backends = {r["kernel_backend"] for r in results if _ok(r)}
    machine["kernel_backend"] = ", ".join(sorted(backends)) if backends else "unknown"
    print(markdown_table(results))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(markdown_report(results, machine, command, args), encoding="utf-8")
        print(f"wrote {args.out}", file=sys.stderr)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        payload = {"command": command, "machine": machine, "results": results}
        args.json.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.json}", file=sys.stderr)
    return 0 if all(_ok(r) for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
