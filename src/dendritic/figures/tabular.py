"""The tabular study's figure: test accuracy (R² for regression) vs the fraction of uninformative
features, one panel per dataset, one line per model (rows of :mod:`dendritic.analysis.tabular`)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from dendritic.analysis.tabular import TABULAR_MODELS
from dendritic.figures.style import label_panels, new_figure, paper_style

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["MODEL_LABELS", "accuracy_vs_noise"]

MODEL_LABELS = {
    "dendritic-local": "dANN, local (learned order)",
    "dendritic-random": "dANN, random",
    "mlp": "MLP (matched parameters)",
    "hgb": "hist. gradient boosting",
}
_STYLE = {
    "dendritic-local": ("#1b9e77", "o-"),
    "dendritic-random": ("#7570b3", "s-"),
    "mlp": ("#d95f02", "^--"),
    "hgb": ("#444444", "D:"),
}
_DATASET_LABELS = {
    "breast-cancer": "Breast cancer",
    "wine": "Wine",
    "digits": "Digits (flat)",
    "iris": "Iris",
    "diabetes": "Diabetes (regression)",
}


def accuracy_vs_noise(rows: Sequence[Mapping[str, Any]]) -> Figure:
    """Mean score ± s.d. across seeds vs the uninformative fraction of the columns."""
    if not rows:
        raise ValueError("no tabular rows")
    datasets = list(dict.fromkeys(r["dataset"] for r in rows))
    models = [m for m in TABULAR_MODELS if any(r["model"] == m for r in rows)]
    models += sorted({r["model"] for r in rows} - set(models))
    cols = min(3, len(datasets))
    nrows = math.ceil(len(datasets) / cols)
    with paper_style():
        fig, axes = new_figure(nrows, cols, panel=(2.7, 2.3))
        flat = axes.ravel()
        for ax, dataset in zip(flat, datasets, strict=False):
            mine = [r for r in rows if r["dataset"] == dataset]
            r2 = any(r["metric"] == "r2" for r in mine)
            scale = 1.0 if r2 else 100.0
            for model in models:
                pts = sorted(
                    (r["noise"], r["score_mean"], r["score_sd"]) for r in mine if r["model"] == model
                )
                if not pts:
                    continue
                colour, fmt = _STYLE.get(model, ("#999999", "o-"))
                ax.errorbar(
                    [100.0 * p[0] for p in pts],
                    [scale * p[1] for p in pts],
                    yerr=[scale * p[2] if math.isfinite(p[2]) else 0.0 for p in pts],
                    fmt=fmt,
                    ms=3,
                    capsize=1.5,
                    color=colour,
                    label=MODEL_LABELS.get(model, model),
                )
            seeds = min(r["seeds"] for r in mine)
            ax.set_title(
                f"{_DATASET_LABELS.get(dataset, dataset)} (n = {seeds} seed{'s' if seeds != 1 else ''})"
            )
            ax.set_xlabel("uninformative features (% of columns)")
            ax.set_ylabel("test R²" if r2 else "test accuracy (%)")
        for ax in flat[len(datasets) :]:
            ax.set_visible(False)
        flat[0].legend(loc="best", fontsize="x-small")
        label_panels(flat[: len(datasets)])
    return fig
