"""Drawing primitives shared by the paper's figures and the per-run analysis plots.

Each function draws into one matplotlib ``Axes`` and returns nothing; figures compose them.
Plotted values are test metrics (as in the paper) with t-based 95 % CIs over trials.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from dendritic.analysis.selection import Group, Summary
from dendritic.figures.style import colour, order_models

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = [
    "METRIC_LABELS",
    "draw_bars",
    "draw_distribution",
    "draw_entropy",
    "draw_heatmap",
    "draw_metric_vs",
    "draw_reference",
    "draw_selectivity",
    "draw_tsne",
    "metric_value",
]

METRIC_LABELS = {"accuracy": "test accuracy (%)", "loss": "test loss"}


def metric_value(summary: Summary | None, metric: str) -> tuple[float, float]:
    """(mean, CI half-width) on the plotting scale: accuracy in %, loss as is; NaN CI → 0."""
    if summary is None:
        return math.nan, 0.0
    scale = 100.0 if metric == "accuracy" else 1.0
    ci = 0.0 if math.isnan(summary.ci95) else summary.ci95
    return scale * summary.mean, scale * ci


def _test(g: Group, metric: str) -> Summary | None:
    return g.test_accuracy if metric == "accuracy" else g.test_loss


def draw_metric_vs(
    ax: Axes,
    groups: Sequence[Group],
    metric: str,
    *,
    x: str = "params",
    models: Sequence[str] | None = None,
    label_suffix: str = "",
    linestyle: str = "-",
    legend: bool = True,
) -> None:
    """Mean test ``metric`` ± t-based 95 % CI per configuration against params (log x) or another
    key; each panel says how many trials stand behind its points, fewer than the most hollow.

    ``x="params"`` plots trainable parameters; any other name is a group key (e.g. "dendrites",
    drawn on a log2 axis).
    """
    by_model: dict[str, list[Group]] = {}
    for g in groups:
        by_model.setdefault(g.model, []).append(g)
    drawn = order_models(by_model if models is None else [m for m in models if m in by_model])
    counts = [g.n for m in drawn for g in by_model[m]]
    most = max(counts, default=0)
    for model in drawn:
        members = by_model[model]
        xs = [g.trainable_params if x == "params" else g[x] for g in members]
        pts = sorted(
            (float(xv), *metric_value(_test(g, metric), metric), g.n)
            for xv, g in zip(xs, members, strict=True)
            if xv is not None
        )
        if not pts:
            continue
        xv, mean, ci, n = (np.array(v) for v in zip(*pts, strict=True))
        c = colour(model)
        ax.plot(xv, mean, linestyle, color=c, lw=1.0, alpha=0.8, zorder=2)
        ax.errorbar(xv, mean, yerr=ci, fmt="none", color=c, elinewidth=0.8, capsize=1.5, zorder=3)
        full = n == most
        label = model + label_suffix
        ax.plot(
            xv[full],
            mean[full],
            "o",
            ms=3,
            color=c,
            mec="black",
            mew=0.3,
            label=label if full.any() else None,
            zorder=4,
        )
        # Fewer trials than the rest: hollow, so a wide or missing interval is not read as spread.
        ax.plot(
            xv[~full],
            mean[~full],
            "o",
            ms=3,
            mfc="white",
            mec=c,
            mew=0.8,
            label=None if full.any() else label,
            zorder=4,
        )
    _note_trials(ax, counts)
    if x == "params":
        ax.set_xscale("log")
        ax.set_xlabel("trainable parameters")
    else:
        ax.set_xscale("log", base=2)
        ticks = sorted({float(g[x]) for g in groups if g[x] is not None})
        ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
        ax.minorticks_off()
        ax.set_xlabel({"dendrites": "dendrites per soma, D", "somata": "somata, S"}.get(x, x))
    ax.set_ylabel(METRIC_LABELS[metric])
    if legend and ax.get_legend_handles_labels()[0]:
        ax.legend(loc="best")


def _note_trials(ax: Axes, counts: Sequence[int]) -> None:
    """Writes how many trials are behind each point (hollow markers: fewer than the most)."""
    if not counts:
        return
    low, high = min(counts), max(counts)
    text = f"n = {high} trials per point" if low == high else f"n = {low}–{high} trials (hollow: < {high})"
    ax.text(0.99, 0.01, text, transform=ax.transAxes, ha="right", va="bottom", fontsize=5, color="0.35")


def draw_reference(ax: Axes, group: Group | None, metric: str, *, label: str | None = None) -> None:
    """Horizontal dashed line at a reference configuration's mean test metric (e.g. vANN's best)."""
    if group is None:
        return
    mean, _ = metric_value(_test(group, metric), metric)
    if math.isnan(mean):
        return
    ax.axhline(mean, ls="--", lw=0.8, color=colour(group.model), label=label, zorder=1)


def draw_bars(
    ax: Axes,
    categories: Sequence[str],
    series: Mapping[str, Sequence[float]],
    *,
    errors: Mapping[str, Sequence[float]] | None = None,
    colours: Mapping[str, str] | None = None,
    hatches: Mapping[str, str] | None = None,
    log: bool = False,
    missing_mark: str = "×",
) -> None:
    """Grouped bars: one group per category, one bar per series; NaN values get a small mark."""
    n = max(len(series), 1)
    width = 0.8 / n
    xs = np.arange(len(categories))
    for i, (name, values) in enumerate(series.items()):
        vals = np.asarray(values, dtype=float)
        pos = xs - 0.4 + width * (i + 0.5)
        err = None
        if errors is not None and name in errors:
            err = np.nan_to_num(np.asarray(errors[name], dtype=float))
        ok = ~np.isnan(vals)
        if not ok.any():  # one empty (NaN) bar: the legend still shows the series' colour
            ok[:1] = True
        face = (colours or {}).get(name, colour(name))
        ax.bar(
            pos[ok],
            vals[ok],
            width,
            yerr=None if err is None else err[ok],
            color=face,
            edgecolor="black",
            linewidth=0.4,
            hatch=(hatches or {}).get(name),
            label=name,
            error_kw={"elinewidth": 0.7, "capsize": 1.5},
        )
        for p in pos[np.isnan(vals)]:
            ax.annotate(
                missing_mark,
                (p, 0),
                xycoords=("data", "axes fraction"),
                xytext=(0, 2),
                textcoords="offset points",
                ha="center",
                va="bottom",
                fontsize=7,
                color=(colours or {}).get(name, colour(name)),
            )
    ax.set_xticks(xs, list(categories))
    ax.set_xlim(-0.5, len(categories) - 0.5)  # every group whole, its missing marks included
    if log:
        ax.set_yscale("log")


def draw_distribution(ax: Axes, summary: Mapping[str, Any], *, colour_: str, label: str) -> None:
    """A weight distribution from an analysis summary: its KDE as a line (histogram if no KDE)."""
    kde = summary.get("kde")
    if kde:
        ax.plot(kde["x"], kde["density"], color=colour_, lw=1.2, label=label)
    else:
        hist = summary["hist"]
        ax.stairs(hist["density"], hist["edges"], color=colour_, label=label)
    ax.set_xlabel("weight")
    ax.set_ylabel("density")


def draw_entropy(
    ax: Axes, activity: Mapping[str, Any], *, colour_: str, label: str, fill: bool = False
) -> None:
    """Distribution of node entropy (live nodes) as a normalised step histogram."""
    hist = activity["entropy_hist"]
    counts = np.asarray(hist["counts"], dtype=float)
    edges = np.asarray(hist["edges"], dtype=float)
    total = counts.sum()
    frac = counts / total if total else counts
    ax.stairs(frac, edges, color=colour_, fill=fill, alpha=0.6 if fill else 1.0, lw=1.2, label=label)
    ax.set_xlabel("node entropy (bits)")
    ax.set_ylabel("fraction of live nodes")
    ax.set_xlim(0, edges[-1])


def draw_selectivity(
    ax: Axes,
    activity: Mapping[str, Any],
    *,
    colour_: str,
    label: str,
    offset: float = 0.0,
    width: float = 0.8,
) -> None:
    """Fraction of live nodes firing for > 40 % of the samples of exactly c classes, per c."""
    counts = np.asarray(activity["selectivity"]["counts"], dtype=float)
    total = counts.sum()
    frac = counts / total if total else counts
    c = np.arange(counts.size)
    ax.bar(c + offset, frac, width, color=colour_, edgecolor="black", linewidth=0.3, label=label)
    ax.set_xlabel("classes a node is selective for")
    ax.set_ylabel("fraction of live nodes")


def draw_tsne(ax: Axes, embedding: np.ndarray, labels: np.ndarray, *, title: str = "") -> None:
    """2-D embedding coloured by class, no ticks (t-SNE axes have no meaning)."""
    k = int(labels.max()) + 1 if labels.size else 1
    cmap = "tab10" if k <= 10 else ("tab20" if k <= 20 else "nipy_spectral")
    ax.scatter(embedding[:, 0], embedding[:, 1], c=labels, cmap=cmap, s=3, lw=0, vmin=0, vmax=max(k - 1, 1))
    ax.set_xticks([])
    ax.set_yticks([])
    for side in ("left", "bottom"):
        ax.spines[side].set_visible(False)
    if title:
        ax.set_title(title)


def draw_heatmap(
    ax: Axes,
    values: np.ndarray,
    rows: Sequence[Any],
    cols: Sequence[Any],
    *,
    title: str,
    cbar_label: str,
    fmt: str = "{:+.2f}",
) -> None:
    """Diverging heatmap centred on 0 (rows × cols), cells annotated, with a colorbar."""
    finite = values[np.isfinite(values)]
    lim = float(np.max(np.abs(finite))) if finite.size else 1.0
    lim = lim or 1.0
    im = ax.imshow(values, cmap="RdBu_r", vmin=-lim, vmax=lim, origin="lower", aspect="auto")
    ax.set_xticks(range(len(cols)), [str(c) for c in cols])
    ax.set_yticks(range(len(rows)), [str(r) for r in rows])
    ax.set_xlabel("somata, S")
    ax.set_ylabel("dendrites per soma, D")
    ax.set_title(title)
    if values.size <= 64:
        for (i, j), v in np.ndenumerate(values):
            if np.isfinite(v):
                ax.text(j, i, fmt.format(v), ha="center", va="center", fontsize=5.5)
    ax.figure.colorbar(im, ax=ax, label=cbar_label, shrink=0.85)
