"""Figures of a continual comparison: accuracy-matrix heat maps and forgetting vs parameters.

Matplotlib with the Agg backend (files only, no window); colours are the paper's model colours.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dendritic.figures.style import colour, use_headless_backend
from dendritic.files import atomic_path

__all__ = ["plot_accuracy_matrices", "plot_forgetting_vs_parameters", "write_comparison_figures"]


def _pyplot() -> Any:
    use_headless_backend()
    import matplotlib.pyplot as plt

    return plt


def plot_accuracy_matrices(
    matrices: Mapping[str, Any],
    path: str | os.PathLike[str],
    *,
    title: str | None = None,
) -> Path:
    """One heat map per model (row = after training task i, column = task j), values in %."""
    plt = _pyplot()
    if not matrices:
        raise ValueError("no accuracy matrices to plot")
    names = list(matrices)
    n = len(names)
    cols = min(n, 5)
    rows = math.ceil(n / cols)
    t = max(np.asarray(m).shape[0] for m in matrices.values())
    size = 0.35 * t + 1.6
    fig, axes = plt.subplots(rows, cols, figsize=(size * cols, size * rows + 0.6), squeeze=False)
    image = None
    for ax, name in zip(axes.flat, names, strict=False):
        r = 100 * np.asarray(matrices[name], dtype=float)
        image = ax.imshow(r, vmin=0, vmax=100, cmap="viridis")
        ax.set_title(name, fontsize=9, color="black")
        ax.set_xlabel("task j", fontsize=8)
        ax.set_ylabel("after task i", fontsize=8)
        ax.set_xticks(range(len(r)))
        ax.set_yticks(range(len(r)))
        ax.tick_params(labelsize=7)
        if len(r) <= 10:
            for i in range(len(r)):
                for j in range(len(r)):
                    ax.text(
                        j,
                        i,
                        f"{r[i, j]:.0f}",
                        ha="center",
                        va="center",
                        fontsize=6,
                        color="white" if r[i, j] < 60 else "black",
                    )
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    if image is not None:
        fig.colorbar(image, ax=axes.ravel().tolist(), shrink=0.8, label="test accuracy (%)")
    if title:
        fig.suptitle(title, fontsize=10)
    out = Path(path)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=150, bbox_inches="tight")
    plt.close(fig)
    return out


def plot_forgetting_vs_parameters(rows: Sequence[Any], path: str | os.PathLike[str]) -> Path:
    """Forgetting (mean ± s.d. over seeds) against trainable parameters, one point per model and
    setting (models with equal counts dodged by ±0.4 %); ``rows`` are
    :class:`dendritic.continual.compare.ComparisonRow`."""
    plt = _pyplot()
    if not rows:
        raise ValueError("no comparison rows to plot")
    settings = sorted({f"{r.benchmark}/{r.scenario}" for r in rows})
    markers = dict(zip(settings, "osD^v<>", strict=False))
    fig, ax = plt.subplots(figsize=(5.5, 4))
    # Matched models often share one count exactly: dodge them sideways so none hides another.
    at_count: dict[int, list[str]] = {}
    for r in rows:
        names = at_count.setdefault(r.params, [])
        if r.model not in names:
            names.append(r.model)
    seen: set[str] = set()
    for r in rows:
        names = at_count[r.params]
        x = r.params * (1 + 0.004 * (names.index(r.model) - (len(names) - 1) / 2))
        mean, sd = r.stats["forgetting"]
        if not math.isfinite(mean):
            continue
        setting = f"{r.benchmark}/{r.scenario}"
        label = r.model if r.model not in seen else None
        seen.add(r.model)
        ax.errorbar(
            x,
            100 * mean,
            yerr=100 * sd if math.isfinite(sd) else None,
            fmt=markers.get(setting, "o"),
            color=colour(r.model),
            ecolor="0.3",
            markeredgecolor="black",
            markersize=7,
            capsize=3,
            label=label,
        )
    params = [r.params for r in rows]
    if max(params) > 10 * min(params):  # a log axis only pays off over a wide range
        ax.set_xscale("log")
    else:  # matched models sit within a few percent: plain, readable numbers
        from matplotlib.ticker import FuncFormatter, MaxNLocator

        pad = max(0.02 * max(params), 0.5 * (max(params) - min(params)))
        ax.set_xlim(min(params) - pad, max(params) + pad)
        ax.xaxis.set_major_locator(MaxNLocator(5))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))
    ax.set_xlabel("trainable parameters")
    ax.set_ylabel("forgetting (points, Chaudhry et al.)")
    handles, labels = ax.get_legend_handles_labels()
    for setting, marker in markers.items():
        (h,) = ax.plot([], [], marker, color="0.5", markeredgecolor="black")
        handles.append(h)
        labels.append(setting)
    ax.legend(handles, labels, fontsize=7, frameon=False)
    ax.grid(alpha=0.3)
    out = Path(path)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=150, bbox_inches="tight")
    plt.close(fig)
    return out


def write_comparison_figures(comparison: Any, folder: str | os.PathLike[str]) -> list[Path]:
    """Heat maps of the mean accuracy matrix per setting (one panel per model) and the forgetting
    scatter, as PNG files in ``folder`` (created)."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    by_setting: dict[tuple[str, str], dict[str, Any]] = {}
    for r in comparison.rows:
        by_setting.setdefault((r.benchmark, r.scenario), {})[f"{r.model} (D={r.dendrites}, S={r.somata})"] = (
            r.mean_matrix
        )
    for (benchmark, scenario), matrices in by_setting.items():
        path = out / f"continual-{benchmark}-{scenario}-matrices.png"
        title = f"{benchmark} / {scenario}: mean accuracy matrix over seeds"
        written.append(plot_accuracy_matrices(matrices, path, title=title))
    written.append(plot_forgetting_vs_parameters(comparison.rows, out / "continual-forgetting-vs-params.png"))
    return written
