"""Figures of the studies beyond the paper (``dendritic sweep depth-deep`` and ``morphology``),
drawn from the rows of :mod:`dendritic.analysis.beyond`."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from dendritic.analysis.beyond import DEPTH_MODELS, FAMILIES
from dendritic.figures.style import colour, label_panels, new_figure, paper_style

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["best_of_families", "depth_deep", "morphology"]

Row = Mapping[str, Any]
#: (residual, init) → marker and line, legend name.
_STYLE: dict[tuple[bool, str], tuple[str, str]] = {
    (False, "glorot-dense"): ("o-", "plain"),
    (True, "glorot-dense"): ("s--", "residual"),
    (False, "he-fan-in"): ("^:", "plain, He init"),
    (True, "he-fan-in"): ("v-.", "residual, He init"),
}
_FAMILY_COLOURS = {
    "reference": "#444444",
    "branching": "#1b9e77",
    "dendrites x synapses": "#7570b3",
    "cable weights": "#d95f02",
}


def _stack(row: Row) -> tuple[bool, str]:
    return bool(row["residual"]), str(row.get("init", "glorot-dense"))


def _series(
    rows: Sequence[Row], model: str, stack: tuple[bool, str], key: str
) -> tuple[list[int], list[float], list[float]]:
    picked = sorted(
        (r for r in rows if r["model"] == model and _stack(r) == stack), key=lambda r: r["layers"]
    )
    xs, ys, es = [], [], []
    for r in picked:
        value = r.get(f"{key}_mean", r.get(key))
        if value is None or not math.isfinite(value):
            continue
        scale = 100.0 if key in ("acc", "gap") else 1.0
        sd = r.get(f"{key}_sd", math.nan)
        xs.append(r["layers"])
        ys.append(scale * value)
        es.append(0.0 if sd is None or not math.isfinite(sd) else scale * sd)
    return xs, ys, es


def depth_deep(rows: Sequence[Row], *, dataset: str = "") -> Figure:
    """Accuracy, loss, train–test gap, parameters and gradient norms vs depth L for each model,
    plain (solid) and residual (dashed), and with He's initialisation where there are such runs
    (dotted, dash-dotted), mean ± s.d. over trials; the last panel is the gradient-norm profile
    across the layers of the deepest stack after epoch 1."""
    if not rows:
        raise ValueError("no depth rows")
    styles = {k: v for k, v in _STYLE.items() if any(_stack(r) == k for r in rows)}
    models = [m for m in DEPTH_MODELS if any(r["model"] == m for r in rows)]
    models += sorted({r["model"] for r in rows} - set(models))
    depths = sorted({r["layers"] for r in rows})
    with paper_style():
        fig, axes = new_figure(2, 3, panel=(2.9, 2.4))
        panels = [
            (axes[0, 0], "acc", "test accuracy (%)"),
            (axes[0, 1], "loss", "test loss"),
            (axes[0, 2], "gap", "train − test accuracy (points)"),
        ]
        for ax, key, label in panels:
            for m in models:
                for stack, (fmt, _) in styles.items():
                    xs, ys, es = _series(rows, m, stack, key)
                    if xs:
                        ax.errorbar(xs, ys, yerr=es, fmt=fmt, ms=3, lw=1, capsize=1.5, color=colour(m))
            ax.set_xticks(depths)
            ax.set_xlabel("dendro-somatic layers, L")
            ax.set_ylabel(label)
        axes[0, 0].set_title(f"accuracy vs depth{' — ' + dataset if dataset else ''}")
        axes[0, 1].set_title("loss vs depth")
        axes[0, 2].set_title("overfitting vs depth")
        for ax, key, label, title in (
            (axes[1, 0], "params", "trainable parameters", "parameters (vANN matched to dANN-LRF)"),
            (
                axes[1, 1],
                "grad_init_first",
                "‖∂loss/∂θ‖ of layer 1",
                "first layer's gradient at initialisation",
            ),
        ):
            for m in models:
                for stack, (fmt, _) in styles.items():
                    xs, ys, _es = _series(rows, m, stack, key)
                    keep = [(x, y) for x, y in zip(xs, ys, strict=True) if y > 0]  # a log axis
                    if keep:
                        ax.plot(*zip(*keep, strict=True), fmt, ms=3, lw=1, color=colour(m))
            ax.set_yscale("log")
            ax.set_xticks(depths)
            ax.set_xlabel("dendro-somatic layers, L")
            ax.set_ylabel(label)
            ax.set_title(title)
        ax = axes[1, 2]
        deepest = max(depths)
        for m in models:
            for stack, (fmt, _) in styles.items():
                row = next(
                    (r for r in rows if r["model"] == m and _stack(r) == stack and r["layers"] == deepest),
                    None,
                )
                profile = [] if row is None else [v for v in row.get("grad_layers_epoch1", []) if v > 0]
                if profile:
                    ax.plot(range(1, len(profile) + 1), profile, fmt, ms=2, lw=1, color=colour(m))
        ax.set_yscale("log")
        ax.set_xlabel("layer")
        ax.set_ylabel("gradient norm after epoch 1")
        ax.set_title(f"gradient through the L = {deepest} stack")
        from matplotlib.lines import Line2D

        handles = [Line2D([], [], color=colour(m), lw=1.5, label=m) for m in models]
        handles += [Line2D([], [], color="black", ls=ls, marker=mk, ms=3, label=name)
                    for fmt_, name in styles.values() for mk, ls in [(fmt_[0], fmt_[1:])]]  # fmt: skip
        axes[1, 0].legend(handles=handles, loc="upper left")
        label_panels(axes.ravel())
    return fig


def best_of_families(rows: Sequence[Row]) -> dict[str, str]:
    """Family → label of its best morphology at σ = 0 (highest mean validation accuracy)."""
    out: dict[str, str] = {}
    for family in FAMILIES:
        members = [
            r
            for r in rows
            if r["family"] == family and r["sigma"] == 0.0 and r["val_acc_mean"] == r["val_acc_mean"]
        ]
        if members:
            out[family] = max(members, key=lambda r: r["val_acc_mean"])["label"]
    return out


def morphology(rows: Sequence[Row], *, dataset: str = "") -> Figure:
    """Test accuracy, loss and accuracy efficiency of every morphology at σ = 0 (bars, mean ±
    s.d., coloured by family; the dotted line is the reference dANN-LRF), and the test accuracy
    of each family's best morphology (chosen on validation) under input noise σ."""
    clean = [r for r in rows if r["sigma"] == 0.0]
    if not clean:
        raise ValueError("no morphology rows at sigma 0")
    labels = [r["label"] for r in clean]
    xs = np.arange(len(clean))
    colours = [_FAMILY_COLOURS.get(r["family"], "#999999") for r in clean]
    reference = next((r for r in clean if r["family"] == "reference"), None)
    with paper_style():
        fig, axes = new_figure(2, 2, panel=(4.0, 2.6))
        for ax, key, label, scale in (
            (axes[0, 0], "acc", "test accuracy (%)", 100.0),
            (axes[0, 1], "loss", "test loss", 1.0),
            (axes[1, 0], "acc_efficiency", "accuracy efficiency", 1.0),
        ):
            values = [scale * r.get(f"{key}_mean", r.get(key, math.nan)) for r in clean]
            errors = [scale * r[f"{key}_sd"] if r.get(f"{key}_sd", math.nan) == r.get(f"{key}_sd", math.nan) else 0.0
                      for r in clean]  # fmt: skip
            ax.bar(xs, values, yerr=errors, color=colours, edgecolor="black", linewidth=0.4, capsize=1.5)
            finite = [v for v in values if math.isfinite(v)]
            if finite:
                low, high = min(finite), max(finite)
                pad = 0.15 * (high - low or abs(high) or 1.0)
                ax.set_ylim(low - pad - max(errors, default=0), high + pad + max(errors, default=0))
            if reference is not None:
                ref = scale * reference.get(f"{key}_mean", reference.get(key, math.nan))
                if math.isfinite(ref):
                    ax.axhline(ref, color="black", ls=":", lw=0.8)
            ax.set_xticks(xs, labels, rotation=60, ha="right")
            ax.set_ylabel(label)
        axes[0, 0].set_title(f"morphologies at matched parameters{' — ' + dataset if dataset else ''}")
        axes[0, 1].set_title("test loss")
        axes[1, 0].set_title("accuracy efficiency (pool: these morphologies)")
        ax = axes[1, 1]
        for family, label in best_of_families(rows).items():
            pts = sorted((r["sigma"], 100.0 * r["acc_mean"], 100.0 * (r["acc_sd"] if r["acc_sd"] == r["acc_sd"] else 0.0))
                         for r in rows if r["label"] == label)  # fmt: skip
            if pts:
                s, m, e = zip(*pts, strict=True)
                ax.errorbar(
                    s,
                    m,
                    yerr=e,
                    fmt="o-",
                    ms=3,
                    capsize=1.5,
                    color=_FAMILY_COLOURS.get(family),
                    label=f"{family}: {label}",
                )
        ax.set_xlabel("input noise σ")
        ax.set_ylabel("test accuracy (%)")
        ax.set_title("best of each family under noise")
        ax.legend(loc="best")
        label_panels(axes.ravel())
    return fig
