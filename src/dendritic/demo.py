"""`dendritic demo`: the paper's headline effect on real Fashion-MNIST in about five minutes (one CPU thread).

Trains dANN-LRF, dANN-GRF, dANN-R and vANN at three sizes each on the full Fashion-MNIST
training split (fewer epochs than the paper's 25 so it fits the time budget), prints test
accuracy against trainable parameters, writes a plot, and says plainly whether a dANN came
within one point of the best vANN with at least ten times fewer parameters.
Finished runs are kept in the demo's results store, so an interrupted demo resumes.
"""

from __future__ import annotations

import csv
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dendritic.files import atomic_path
from dendritic.training import TrainConfig, train

__all__ = ["DEMO_GRID", "DemoResult", "DemoRow", "run_demo", "verdict"]

log = logging.getLogger("dendritic.demo")

#: (model, dendrites, somata): dANNs from ~5 k to ~77 k parameters, vANNs from ~55 k to ~1.1 M.
DEMO_GRID: list[tuple[str, int, int]] = [
    (model, d, s) for model in ("dANN-LRF", "dANN-GRF", "dANN-R") for d, s in ((4, 64), (16, 128), (16, 256))
] + [("vANN", d, s) for d, s in ((1, 64), (2, 128), (4, 256))]
QUICK_GRID: list[tuple[str, int, int]] = [
    ("dANN-LRF", 4, 32),
    ("dANN-GRF", 4, 32),
    ("dANN-R", 4, 32),
    ("vANN", 1, 32),
    ("vANN", 2, 64),
]
DEMO_EPOCHS = 10


@dataclass
class DemoRow:
    model: str
    dendrites: int
    somata: int
    params: int
    test_accuracy: float
    test_loss: float
    seconds: float


def verdict(rows: list[DemoRow], *, margin: float = 0.01, factor: float = 10.0) -> tuple[bool, str]:
    """Did some dANN come within ``margin`` of the best vANN with >= ``factor``× fewer parameters?"""
    vanns = [r for r in rows if r.model == "vANN"]
    danns = [r for r in rows if r.model.startswith("dANN")]
    if not vanns or not danns:
        return False, "cannot judge: the demo needs both dANN and vANN runs"
    best = max(vanns, key=lambda r: r.test_accuracy)
    hits = [
        r
        for r in danns
        if r.test_accuracy >= best.test_accuracy - margin and r.params * factor <= best.params
    ]
    if hits:
        top = max(hits, key=lambda r: r.test_accuracy)
        return True, (
            f"YES: {top.model} (D={top.dendrites}, S={top.somata}) reached {100 * top.test_accuracy:.2f} % "
            f"with {top.params:,} parameters, within {100 * margin:.0f} point of the best vANN "
            f"({100 * best.test_accuracy:.2f} % with {best.params:,}), {best.params / top.params:.0f}x fewer."
        )
    closest = max(danns, key=lambda r: r.test_accuracy)
    return False, (
        f"NO: the best vANN reached {100 * best.test_accuracy:.2f} % with {best.params:,} parameters; "
        f"no dANN with {factor:.0f}x fewer parameters came within {100 * margin:.0f} point "
        f"(best dANN: {closest.model} D={closest.dendrites} S={closest.somata}, "
        f"{100 * closest.test_accuracy:.2f} % with {closest.params:,})."
    )


def _plot(rows: list[DemoRow], path: Path, epochs: int) -> Path | None:
    try:
        from dendritic.figures.style import colour, use_headless_backend

        use_headless_backend()
        import matplotlib.pyplot as plt
    except ImportError:
        log.warning("note: matplotlib is not installed, so no plot (pip install 'dendritic[analysis]')")
        return None
    fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=150)
    for model in dict.fromkeys(r.model for r in rows):
        points = sorted((r.params, 100 * r.test_accuracy) for r in rows if r.model == model)
        xs, ys = zip(*points, strict=True)
        ax.plot(xs, ys, "o-", color=colour(model), label=model, lw=2, ms=6, mec="black", mew=0.5)
    vann = [r for r in rows if r.model == "vANN"]
    if vann:
        best = max(r.test_accuracy for r in vann)
        ax.axhline(100 * best, color=colour("vANN"), ls="--", lw=1, label="best vANN")
    ax.set_xscale("log")
    ax.set_xlabel("trainable parameters")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"Fashion-MNIST, {epochs} epochs, 1 trial")
    ax.grid(alpha=0.3)
    ax.legend(frameon=False)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp)
    plt.close(fig)
    return path


def run_demo(
    out: str | os.PathLike[str] = "demo-output",
    *,
    store_path: str | os.PathLike[str] | None = None,
    data_dir: str | os.PathLike[str] | None = None,
    epochs: int | None = None,
    quick: bool = False,
    threads: int | None = 1,
    seed: int = 1,
    callbacks: Sequence[Any] = (),
) -> DemoResult:
    """Run (or resume) the demo: logs a line per model (``dendritic.demo``), writes the table and
    the plot, and returns the rows and the verdict. ``callbacks`` go to every training run."""
    import torch

    from dendritic.store import RunStore

    if threads is not None:
        torch.set_num_threads(threads)
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    grid = QUICK_GRID if quick else DEMO_GRID
    epochs = epochs or (2 if quick else DEMO_EPOCHS)
    limit = 6000 if quick else None
    start = time.perf_counter()
    rows: list[DemoRow] = []
    with RunStore(store_path or out_dir / "runs.db") as store:
        for i, (model, d, s) in enumerate(grid, start=1):
            config = TrainConfig(
                model=model, dataset="fmnist", dendrites=d, somata=s, epochs=epochs, seed=seed, limit=limit
            )
            done = store.find(config.to_dict())
            label = f"[{i:>2}/{len(grid)}] {model:<8} D={d:<2} S={s:<3}"
            if done is not None and done["status"] == "finished":
                row = DemoRow(
                    model,
                    d,
                    s,
                    done["trainable_params"],
                    done["test_accuracy"],
                    done["test_loss"],
                    done["wall_seconds"] or 0.0,
                )
                log.info("%s already in the store: %.2f %%", label, 100 * row.test_accuracy)
            else:
                result = train(config, store=store, data_dir=data_dir, callbacks=callbacks, experiment="demo")
                row = DemoRow(
                    model,
                    d,
                    s,
                    result.trainable_params,
                    result.test_accuracy,
                    result.test_loss,
                    result.seconds,
                )
                log.info(
                    "%s %6.2f %% with %9s parameters (%.0f s)",
                    label,
                    100 * row.test_accuracy,
                    f"{row.params:,}",
                    row.seconds,
                )
            rows.append(row)
    elapsed = time.perf_counter() - start
    table = out_dir / "demo-results.csv"
    with atomic_path(table) as tmp, tmp.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            ["model", "dendrites", "somata", "trainable_params", "test_accuracy", "test_loss", "seconds"]
        )
        for r in rows:
            writer.writerow(
                [r.model, r.dendrites, r.somata, r.params, r.test_accuracy, r.test_loss, round(r.seconds, 2)]
            )
    plot = _plot(rows, out_dir / "demo-accuracy-vs-parameters.png", epochs)
    ok, message = verdict(rows)
    return DemoResult(rows, ok, message, table, plot, elapsed)


@dataclass
class DemoResult:
    rows: list[DemoRow]
    ok: bool
    message: str
    table: Path
    plot: Path | None
    seconds: float

    def format_table(self) -> str:
        lines = [f"{'model':<9} {'D':>3} {'S':>4} {'parameters':>11} {'test acc (%)':>13} {'test loss':>10}"]
        for r in sorted(self.rows, key=lambda r: (r.model, r.params)):
            lines.append(
                f"{r.model:<9} {r.dendrites:>3} {r.somata:>4} {r.params:>11,} {100 * r.test_accuracy:>13.2f} "
                f"{r.test_loss:>10.4f}"
            )
        return "\n".join(lines)
