"""Plots of one run's analysis (``dendritic analyze``): entropy, selectivity, weights, t-SNE maps."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from dendritic.figures.panels import draw_distribution, draw_entropy, draw_selectivity, draw_tsne
from dendritic.figures.style import colour, layer_label, new_figure, paper_style

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["run_figures"]


def _title(result: Mapping[str, Any]) -> str:
    run = result.get("run") or {}
    if not run:
        return ""
    return f"run {run['id']}: {run['model']} D={run['dendrites']} S={run['somata']} ({run['dataset']})"


def run_figures(result: Mapping[str, Any]) -> dict[str, Figure]:
    """``{"entropy", "selectivity", "weights"[, "tsne"]}`` figures, one panel per layer."""
    run = result.get("run") or {}
    c = colour(run.get("model", ""))
    title = _title(result)
    figs: dict[str, Figure] = {}
    with paper_style():
        layers = list(result["activity"])
        if layers:
            fig, axes = new_figure(1, len(layers))
            for ax, name in zip(axes[0], layers, strict=True):
                a = result["activity"][name]
                draw_entropy(ax, a, colour_=c, label=name, fill=True)
                e = a["entropy"]
                if e["median"] is not None:
                    ax.axvline(e["median"], color="black", lw=0.8, ls="--")
                ax.set_title(f"{layer_label(name)} layer: {a['dead']}/{a['n_nodes']} dead")
            fig.suptitle(f"Node entropy — {title}")
            figs["entropy"] = fig

            fig, axes = new_figure(1, len(layers))
            for ax, name in zip(axes[0], layers, strict=True):
                draw_selectivity(ax, result["activity"][name], colour_=c, label=name)
                ax.set_title(f"{layer_label(name)} layer")
            fig.suptitle(f"Selectivity — {title}")
            figs["selectivity"] = fig

        weights = list(result["weights"])
        if weights:
            fig, axes = new_figure(1, len(weights))
            for ax, name in zip(axes[0], weights, strict=True):
                w = result["weights"][name]
                hist = w["hist"]
                ax.stairs(hist["density"], hist["edges"], color=c, fill=True, alpha=0.5)
                draw_distribution(ax, w, colour_="black", label="KDE")
                ax.set_title(f"{layer_label(name)} weights (n={w['n']:,})")
                kurt = "n/a" if w["excess_kurtosis"] is None else f"{w['excess_kurtosis']:.2f}"
                skew = "n/a" if w["skewness"] is None else f"{w['skewness']:.2f}"
                ax.text(
                    0.98,
                    0.95,
                    f"kurtosis {kurt}\nskew {skew}\nrange {w['range']:.2f}",
                    transform=ax.transAxes,
                    ha="right",
                    va="top",
                    fontsize=6,
                )
            fig.suptitle(f"Weight distributions — {title}")
            figs["weights"] = fig

        embedded = list(result["embedding"])
        arrays = result.get("arrays") or {}
        if embedded and "tsne_labels" in arrays:
            fig, axes = new_figure(1, len(embedded), panel=(2.6, 2.6))
            for ax, name in zip(axes[0], embedded, strict=True):
                m = result["embedding"][name]
                draw_tsne(
                    ax,
                    arrays[f"tsne/{name}/0"],
                    arrays["tsne_labels"],
                    title=f"{layer_label(name)}: sil {m['silhouette']:.2f}, NH {m['neighbourhood_hit']:.2f}, "
                    f"T {m['trustworthiness']:.2f}",
                )
            fig.suptitle(f"t-SNE of hidden activations — {title}")
            figs["tsne"] = fig
    return figs
