"""The selectivity figure (``dendritic sweep selectivity``): α → the entropy and selectivity the
network reached → test accuracy and noise robustness, dANN-LRF against a vANN of matched
parameters, drawn from the rows of :mod:`dendritic.analysis.mixed_selectivity`."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from dendritic.analysis.mixed_selectivity import CLASS_SPECIFIC
from dendritic.figures.style import colour, label_panels, new_figure, paper_style

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["selectivity"]

Row = Mapping[str, Any]
#: Line style per model size (the dANN's D x S; its matched vANN shares it).
_SIZE_STYLES = ("o-", "s--", "^:", "v-.")


def _conditions(rows: Sequence[Row]) -> list[str]:
    """The x axis: the α values in order, then the class-specific read-out."""
    alphas = sorted({float(r["alpha"]) for r in rows if not math.isnan(float(r["alpha"]))})
    labels = [f"{a:g}" for a in alphas]
    if any(r["condition"] == CLASS_SPECIFIC for r in rows):
        labels.append(CLASS_SPECIFIC)
    return labels


def _pairs(rows: Sequence[Row]) -> list[tuple[str, int, int]]:
    """(model, D, S) of the rows, dANNs first, then by size."""
    keys = {(str(r["model"]), int(r["dendrites"]), int(r["somata"])) for r in rows}
    return sorted(keys, key=lambda k: (k[0] != "dANN-LRF", k[0], k[1] * k[2]))


def _size_index(rows: Sequence[Row]) -> dict[tuple[str, int, int], int]:
    """Each (model, D, S) → its size rank within its model (the dANN and its matched vANN share one)."""
    index: dict[tuple[str, int, int], int] = {}
    for model in {k[0] for k in _pairs(rows)}:
        mine = sorted((k for k in _pairs(rows) if k[0] == model), key=lambda k: k[1] * k[2])
        index.update({k: i for i, k in enumerate(mine)})
    return index


def _label(key: tuple[str, int, int], rows: Sequence[Row]) -> str:
    model, dendrites, somata = key
    params = next((r.get("params") for r in rows if (r["model"], r["dendrites"], r["somata"]) == key), None)
    size = f"D{dendrites}×S{somata}" if model != "vANN" else f"S{somata}"
    return f"{model} {size}" + (f" ({params / 1e3:.0f} k)" if isinstance(params, (int, float)) else "")


def _line(ax: Axes, rows: Sequence[Row], key: str, scale: float, xs: list[str]) -> None:
    sizes = _size_index(rows)
    for pair in _pairs(rows):
        mine = {r["condition"]: r for r in rows if (r["model"], r["dendrites"], r["somata"]) == pair}
        points = [(i, mine[c]) for i, c in enumerate(xs) if c in mine]
        values = [(i, scale * float(r.get(f"{key}_mean", r.get(key, math.nan))), r) for i, r in points]
        values = [(i, v, r) for i, v, r in values if math.isfinite(v)]
        if not values:
            continue
        sd = [scale * float(r.get(f"{key}_sd", math.nan)) for _, _, r in values]
        fmt = _SIZE_STYLES[sizes[pair] % len(_SIZE_STYLES)]
        ax.errorbar(
            [i for i, _, _ in values],
            [v for _, v, _ in values],
            yerr=[s if math.isfinite(s) else 0.0 for s in sd],
            fmt=fmt,
            ms=3,
            capsize=1.5,
            color=colour(pair[0]),
            label=_label(pair, rows),
        )
    ax.set_xticks(range(len(xs)), [x if x != CLASS_SPECIFIC else "class-\nspecific" for x in xs])
    ax.set_xlabel("α  (< 0 lowers selectivity, > 0 raises it)")


def selectivity(rows: Sequence[Row], *, dataset: str = "") -> Figure:
    """Six panels: the somata's and dendrites' node entropy reached vs α (the class-specific
    read-out last), the somata's selectivity index, test accuracy vs α, test accuracy against
    the somata's entropy reached (every condition a point), and the α ends and class-specific
    read-out over α = 0 without and with input noise σ and class-sequential training. Means ±
    s.d. over trials."""
    clean = [r for r in rows if r["sigma"] == 0.0 and not r["sequential"]]
    if not clean:
        raise ValueError("no selectivity rows on the plain protocol (sigma 0, shuffled)")
    xs = _conditions(clean)
    with paper_style():
        fig, axes = new_figure(2, 3, panel=(3.6, 2.6))
        for ax, key, ylabel, title in (
            (axes[0, 0], "somata_entropy_mean", "node entropy (bits)", "somata: entropy reached"),
            (axes[0, 1], "dendrites_entropy_mean", "node entropy (bits)", "dendrites: entropy reached"),
            (axes[0, 2], "somata_index_mean", "selectivity index", "somata: selectivity reached"),
            (axes[1, 0], "acc", "test accuracy (%)", "test accuracy"),
        ):
            _line(ax, clean, key, 100.0 if key == "acc" else 1.0, xs)
            ax.set_ylabel(ylabel)
            ax.set_title(title + (f" — {dataset}" if dataset and key == "somata_entropy_mean" else ""))
        axes[0, 0].legend(loc="best", fontsize=6)
        _chain(axes[1, 1], clean)
        _robustness(axes[1, 2], rows)
        label_panels(axes.ravel())
    return fig


def _chain(ax: Axes, rows: Sequence[Row]) -> None:
    """Accuracy against the entropy reached: the middle of the causal chain."""
    for pair in _pairs(rows):
        mine = [r for r in rows if (r["model"], r["dendrites"], r["somata"]) == pair]
        pts = [
            (float(r["somata_entropy_mean"]), 100.0 * float(r["acc_mean"]), r["condition"] == CLASS_SPECIFIC)
            for r in mine
            if math.isfinite(float(r.get("somata_entropy_mean", math.nan)))
        ]
        if not pts:
            continue
        sizes = _size_index(rows)
        marker = _SIZE_STYLES[sizes[pair] % len(_SIZE_STYLES)][0]
        ordered = [  # joined in the order of α, so the line is the dose-response
            (float(r["somata_entropy_mean"]), 100.0 * float(r["acc_mean"]))
            for r in sorted(mine, key=lambda r: float(r["alpha"]))
            if r["condition"] != CLASS_SPECIFIC
            and math.isfinite(float(r.get("somata_entropy_mean", math.nan)))
        ]
        if ordered:
            ax.plot(
                [p[0] for p in ordered],
                [p[1] for p in ordered],
                marker + "-",
                ms=3,
                lw=0.6,
                color=colour(pair[0]),
            )
        for x, y, special in pts:
            if special:
                ax.plot([x], [y], "*", ms=7, color=colour(pair[0]), mec="black", mew=0.4)
    ax.set_xlabel("somata entropy reached (bits)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("accuracy vs entropy reached (★ class-specific)")


def _robustness(ax: Axes, rows: Sequence[Row]) -> None:
    """Per protocol (no noise, noise σ, class-sequential), each network's test accuracy at the
    α ends and the class-specific read-out, as points gained over its own α = 0: what pushing
    selectivity each way does to robustness."""
    protocols = sorted(  # noise levels, then class-sequential
        {(r["sigma"], r["sequential"]) for r in rows if r["sigma"] > 0 or r["sequential"]},
        key=lambda p: (p[1], p[0]),
    )
    if not protocols:
        ax.text(0.5, 0.5, "no noise or sequential runs yet", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return
    tested = sorted(
        {r["condition"] for r in rows if (r["sigma"], r["sequential"]) in protocols},
        key=lambda c: (c == CLASS_SPECIFIC, float(c) if c != CLASS_SPECIFIC else 0.0),
    )
    protocols = [(0.0, False), *protocols]
    sizes = _size_index(rows)
    ticks: list[float] = []
    for p_index, protocol in enumerate(protocols):
        base = p_index * (len(tested) + 1)
        ticks += [base + j for j in range(len(tested))]
        for pair in _pairs(rows):
            mine = {
                r["condition"]: r
                for r in rows
                if (r["model"], r["dendrites"], r["somata"]) == pair
                and (r["sigma"], r["sequential"]) == protocol
            }
            reference = mine.get("0")
            if reference is None:
                continue
            points = [
                (base + j, 100.0 * (float(mine[c]["acc_mean"]) - float(reference["acc_mean"])), mine[c])
                for j, c in enumerate(tested)
                if c in mine and math.isfinite(float(mine[c]["acc_mean"]))
            ]
            if not points:
                continue
            sd = [100.0 * float(r["acc_sd"]) for _, _, r in points]
            ax.errorbar(
                [x for x, _, _ in points],
                [y for _, y, _ in points],
                yerr=[v if math.isfinite(v) else 0.0 for v in sd],
                fmt=_SIZE_STYLES[sizes[pair] % len(_SIZE_STYLES)],
                ms=3,
                lw=0.8,
                capsize=1.5,
                color=colour(pair[0]),
            )
    ax.axhline(0.0, color="black", lw=0.5)
    names = [c if c != CLASS_SPECIFIC else "cs" for c in tested]
    ax.set_xticks(ticks, names * len(protocols), fontsize=6)
    for p_index, (sigma, sequential) in enumerate(protocols):
        centre = p_index * (len(tested) + 1) + (len(tested) - 1) / 2
        name = "sequential" if sequential else f"σ = {sigma:g}"
        ax.text(centre, -0.16, name, ha="center", va="top", transform=ax.get_xaxis_transform(), fontsize=7)
    ax.set_ylabel("test accuracy − its α = 0 (points)")
    ax.set_title("robustness: α ends and class-specific (cs)")
