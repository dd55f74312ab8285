"""The sparse-controls figure (``dendritic sweep sparse-controls``), drawn from the rows of
:mod:`dendritic.analysis.controls`: accuracy and loss vs trainable parameters, every control a
line, and each control's difference from dANN-LRF in points."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from dendritic.figures.style import label_panels, new_figure, paper_style
from dendritic.sweeps.sparse_controls import CONTROLS

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["sparse_controls"]

Row = Mapping[str, Any]
#: One colour and marker per control (the reference black).
_STYLE: dict[str, tuple[str, str]] = {
    "dANN-LRF": ("#000000", "o-"),
    "dANN-LRF, linear dendrites": ("#e7298a", "o--"),
    "sANN": ("#1b9e77", "s-"),
    "sANN-LRF": ("#66a61e", "s--"),
    "ER-MLP": ("#7570b3", "^-"),
    "pdANN (dense fan-in)": ("#e6ab02", "D-"),
    "lottery ticket (rewind)": ("#d95f02", "v-"),
    "lottery ticket (fine-tune)": ("#a6761d", "v--"),
}


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v)


def sparse_controls(rows: Sequence[Row], *, dataset: str = "") -> Figure:
    """Test accuracy and test loss vs trainable parameters (log axis; mean ± s.d. over trials),
    every control a line; and each control's accuracy difference from dANN-LRF of the same size
    (points; ``*`` where the Bonferroni-corrected Welch p < 0.05)."""
    from matplotlib.ticker import NullFormatter

    if not rows:
        raise ValueError("no sparse-control rows")
    controls = [c for c in CONTROLS if any(r["control"] == c for r in rows)]
    sizes = sorted({(r["dendrites"], r["size"]) for r in rows})
    with paper_style():
        fig, axes = new_figure(1, 3, panel=(3.3, 3.3))
        for ax, key, scale, label in (
            (axes[0, 0], "acc", 100.0, "test accuracy (%)"),
            (axes[0, 1], "loss", 1.0, "test loss"),
        ):
            for control in controls:
                pts = sorted(
                    (float(r["params"]), scale * r[f"{key}_mean"], scale * r[f"{key}_sd"] if _finite(r[f"{key}_sd"]) else 0.0)
                    for r in rows
                    if r["control"] == control and _finite(r.get("params")) and _finite(r[f"{key}_mean"])
                )  # fmt: skip
                if not pts:
                    continue
                xs, ys, es = zip(*pts, strict=True)
                colour, fmt = _STYLE.get(control, ("#999999", "o-"))
                ax.errorbar(xs, ys, yerr=es, fmt=fmt, ms=3, lw=1, capsize=1.5, color=colour, label=control)
            ax.set_xscale("log")
            ax.xaxis.set_minor_formatter(NullFormatter())  # a few sizes: no crowded minor labels
            ax.set_xlabel("trainable parameters")
            ax.set_ylabel(label)
        axes[0, 0].set_title(f"sparse controls{' — ' + dataset if dataset else ''}")
        axes[0, 1].set_title("test loss")
        # below the panels: inside, eight entries cover the lines they name
        handles, labels = axes[0, 0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="outside lower center", ncol=4, fontsize="x-small")
        ax = axes[0, 2]
        others = [c for c in controls if c != "dANN-LRF"]
        width = 0.8 / max(1, len(sizes))
        positions = np.arange(len(others))
        for i, (_, size) in enumerate(sizes):
            values: list[float] = []
            stars: list[bool] = []
            for control in others:
                row = next((r for r in rows if r["control"] == control and r["size"] == size), None)
                values.append(row["acc_diff"] if row is not None and _finite(row["acc_diff"]) else math.nan)
                p = math.nan if row is None else row.get("p_acc_bonferroni", math.nan)
                stars.append(_finite(p) and float(p) < 0.05)
            shade = 0.25 + 0.6 * i / max(1, len(sizes) - 1)
            bars = ax.bar(
                positions + (i - (len(sizes) - 1) / 2) * width,
                values,
                width,
                color=str(1 - shade),
                label=size,
            )
            for bar, star in zip(bars, stars, strict=True):
                if star and math.isfinite(bar.get_height()):
                    top = bar.get_height()
                    ax.text(
                        bar.get_x() + bar.get_width() / 2,
                        top,
                        "*",
                        ha="center",
                        va="bottom" if top >= 0 else "top",
                    )
        ax.axhline(0.0, color="black", lw=0.6)
        ax.set_xticks(positions, others, rotation=60, ha="right")
        ax.set_ylabel("acc. − dANN-LRF (points)")
        ax.set_title("vs dANN-LRF (*: Bonferroni p < 0.05)")
        ax.legend(loc="best", fontsize="x-small")
        label_panels(axes.ravel())
    return fig
