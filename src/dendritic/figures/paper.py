"""The paper's figures (SPEC §8), each a function from plain data to a matplotlib Figure.

Inputs are configuration groups (:func:`dendritic.analysis.group_runs`), per-run analysis
dicts (:func:`dendritic.report.analyze_run`) or epoch rows, never a store, so
each figure can be drawn from hand-made data. Selection (best configuration, vANN's best,
matches) uses the split ``on`` (validation by default, "test" = the paper's rule); plotted
values are test metrics, as in the paper. Every function raises ValueError when its data
cannot make the figure.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from dendritic.analysis.efficiency import group_efficiency
from dendritic.analysis.selection import Group, best_configuration, cheapest_matching, summarise
from dendritic.figures.panels import (
    METRIC_LABELS,
    draw_bars,
    draw_distribution,
    draw_entropy,
    draw_heatmap,
    draw_metric_vs,
    draw_reference,
    draw_selectivity,
    draw_tsne,
    metric_value,
)
from dendritic.figures.style import (
    PAPER_MODELS,
    colour,
    dataset_label,
    label_panels,
    layer_label,
    new_figure,
    order_datasets,
    order_models,
    panel_axes,
    paper_style,
)
from dendritic.figures.tables import selectable

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "PAIRS_SPARSE",
    "PAIRS_VANN",
    "fig2",
    "fig3",
    "fig4",
    "fig5",
    "fig6",
    "fig7",
    "supp_dataset_examples",
    "supp_depth",
    "supp_dropout",
    "supp_early_stop",
    "supp_epochs_to_minimum",
    "supp_learning_curves",
    "supp_lr",
    "supp_sann_differences",
    "supp_vann_x_curves",
]

REFERENCE = "vANN"
#: dANN-X and its counterpart with dense dendrite → soma connections (same input sampling).
PAIRS_VANN: tuple[tuple[str, str], ...] = (
    ("dANN-R", "vANN-R"),
    ("dANN-LRF", "vANN-LRF"),
    ("dANN-GRF", "vANN-GRF"),
    ("pdANN", "vANN"),
)
#: dANN-X and its counterpart with random sparse dendrite → soma connections.
PAIRS_SPARSE: tuple[tuple[str, str], ...] = (
    ("dANN-R", "sANN"),
    ("dANN-LRF", "sANN-LRF"),
    ("dANN-GRF", "sANN-GRF"),
    ("pdANN", "psANN"),
)
METRICS = ("accuracy", "loss")
FIRST_LAYERS = ("dendrites_1", "somata_1")


# ---------------------------------------------------------------- helpers


def _models(groups: Sequence[Group]) -> set[str]:
    return {g.model for g in groups}


def _best(groups: Sequence[Group], metric: str, on: str) -> dict[str, Group]:
    usable = selectable(groups, on)
    return best_configuration(usable, metric, on) if usable else {}  # type: ignore[arg-type]


def _finish(fig: Figure, title: str) -> Figure:
    fig.suptitle(title)
    label_panels(panel_axes(fig))
    return fig


def _drop_unused(axes: np.ndarray, used: int) -> None:
    for ax in axes.ravel()[used:]:
        ax.remove()


def _pick_somata(groups: Sequence[Group], wanted: Sequence[int] = (256, 512)) -> list[int]:
    """The paper's S ∈ {256, 512} when present, else the two largest S in the data."""
    present = sorted({g.somata for g in groups})
    chosen = [s for s in wanted if s in present]
    return chosen or present[-2:]


def _efficiency(best: Mapping[str, Group], metric: str) -> dict[str, float]:
    """Accuracy or loss efficiency of each model's best group; the pool is exactly these groups."""
    members = [g for g in best.values() if g.trainable_params and g.best_epoch is not None]
    if not members:
        return {}
    eff = group_efficiency(members, on="test")
    values = eff.accuracy if metric == "accuracy" else eff.loss
    assert values is not None
    scale = 100.0 if metric == "accuracy" else 1.0
    return {g.model: scale * float(v) for g, v in zip(members, values, strict=True)}


# ---------------------------------------------------------------- Fig 2


def fig2(groups: Sequence[Group], *, on: str = "validation", dataset: str = "") -> Figure:
    """Test loss / accuracy vs trainable parameters and vs D (at S = 256, 512) per model.

    ``groups``: the main sweep's configurations of one dataset. vANN's best configuration
    (selected on ``on``) is the dashed reference line. Panels: 2 + 2 × (number of S values).
    """
    models = [m for m in PAPER_MODELS if m in _models(groups)]
    if not models:
        raise ValueError(f"Fig 2 needs runs of {', '.join(PAPER_MODELS)}")
    groups = [g for g in groups if g.model in models]
    somata = _pick_somata(groups)
    with paper_style():
        fig, axes = new_figure(1 + len(somata), 2, panel=(3.2, 2.5))
        for col, metric in enumerate(("loss", "accuracy")):
            ref = _best([g for g in groups if g.model == REFERENCE], metric, on).get(REFERENCE)
            draw_metric_vs(axes[0, col], groups, metric, models=models, legend=col == 0)
            draw_reference(axes[0, col], ref, metric, label=f"{REFERENCE} best")
            axes[0, col].set_title(f"{metric} vs trainable parameters")
            for row, s in enumerate(somata, start=1):
                ax = axes[row, col]
                draw_metric_vs(
                    ax,
                    [g for g in groups if g.somata == s],
                    metric,
                    x="dendrites",
                    models=models,
                    legend=False,
                )
                draw_reference(ax, ref, metric)
                ax.set_title(f"{metric} vs D, S = {s}")
        return _finish(fig, f"Fig 2 — {dataset_label(dataset)}" if dataset else "Fig 2")


# ---------------------------------------------------------------- Fig 3


def fig3(groups_by_dataset: Mapping[str, Sequence[Group]], *, on: str = "validation") -> Figure:
    """Per dataset: params needed to match vANN's best accuracy / loss, and the efficiency of
    each model's best configuration (4 panels). Datasets without vANN runs are left out."""
    datasets = [d for d in order_datasets(groups_by_dataset) if REFERENCE in _models(groups_by_dataset[d])]
    if not datasets:
        raise ValueError(f"Fig 3 needs {REFERENCE} runs of the main sweep")
    challengers = [
        m
        for m in PAPER_MODELS
        if m != REFERENCE and any(m in _models(groups_by_dataset[d]) for d in datasets)
    ]
    everyone = [*challengers, REFERENCE]
    labels = [dataset_label(d) for d in datasets]
    with paper_style():
        fig, axes = new_figure(2, 2, panel=(max(3.0, 0.9 * len(datasets) + 1.5), 2.5))
        for col, metric in enumerate(METRICS):
            ax = axes[0, col]
            series: dict[str, list[float]] = {m: [] for m in challengers}
            ref_params = []
            for d in datasets:
                groups = selectable(groups_by_dataset[d], on)
                matches = cheapest_matching(groups, REFERENCE, metric, on) if groups else {}  # type: ignore[arg-type]
                ref = _best(groups, metric, on).get(REFERENCE)
                ref_params.append(
                    math.nan if ref is None or ref.trainable_params is None else ref.trainable_params
                )
                for m in challengers:
                    g = matches.get(m)
                    series[m].append(
                        math.nan if g is None or g.trainable_params is None else g.trainable_params
                    )
            draw_bars(ax, labels, series, log=True)
            ax.scatter(
                range(len(datasets)),
                ref_params,
                marker="_",
                s=300,
                color="black",
                label=f"{REFERENCE} best",
                zorder=4,
            )
            ax.set_ylabel("trainable parameters")
            ax.set_title(f"params to beat {REFERENCE}'s best {metric}")
            if col == 0:
                ax.legend(loc="best")
            ax = axes[1, col]
            eff_series: dict[str, list[float]] = {m: [] for m in everyone}
            for d in datasets:
                eff = _efficiency(_best(groups_by_dataset[d], metric, on), metric)
                for m in everyone:
                    eff_series[m].append(eff.get(m, math.nan))
            draw_bars(ax, labels, eff_series)
            ax.set_ylabel(f"{metric} efficiency" + (" (%)" if metric == "accuracy" else ""))
            better = "higher" if metric == "accuracy" else "lower"
            ax.set_title(f"{metric} efficiency ({better} = better)")
            if metric == "loss":
                ax.set_ylim(bottom=0)
            else:
                ax.legend(loc="lower left", fontsize=6)
        return _finish(fig, "Fig 3 — parameter efficiency across datasets")


# ---------------------------------------------------------------- Fig 4


def _present_pairs(groups: Sequence[Group], pairs: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    present = _models(groups)
    return [(a, b) for a, b in pairs if a in present and b in present]


def fig4(groups: Sequence[Group], *, on: str = "validation", dataset: str = "") -> Figure:
    """dANN-X vs vANN-X (same input sampling, structured vs dense dendrite → soma): best test
    accuracy, best test loss, params of the best-accuracy configuration, accuracy efficiency."""
    pairs = _present_pairs(groups, PAIRS_VANN)
    if not pairs:
        raise ValueError("Fig 4 needs runs of a dANN-X and its vANN-X (e.g. dANN-LRF and vANN-LRF)")
    cats = [a.replace("dANN-", "") if a != "pdANN" else "all-to-all" for a, _ in pairs]
    best = {m: _best(groups, m, on) for m in METRICS}
    eff = _efficiency(
        {m: best["accuracy"][m] for pair in pairs for m in pair if m in best["accuracy"]}, "accuracy"
    )
    dann_colours = {"dANN-X": "#a1c9f4", "vANN-X": "#8d8d8d"}

    def series(fn: Any) -> dict[str, list[float]]:
        return {"dANN-X": [fn(a) for a, _ in pairs], "vANN-X": [fn(b) for _, b in pairs]}

    def value(metric: str) -> Any:
        def get(model: str) -> float:
            g = best[metric].get(model)
            return metric_value(None if g is None else getattr(g, f"test_{metric}"), metric)[0]

        return get

    def spread(metric: str) -> Any:
        def get(model: str) -> float:
            g = best[metric].get(model)
            s = None if g is None else getattr(g, f"test_{metric}")
            return 0.0 if s is None or math.isnan(s.sd) else (100.0 if metric == "accuracy" else 1.0) * s.sd

        return get

    with paper_style():
        fig, axes = new_figure(1, 4, panel=(2.7, 2.5))
        for ax, metric in zip(axes[0, :2], METRICS, strict=True):
            draw_bars(ax, cats, series(value(metric)), errors=series(spread(metric)), colours=dann_colours)
            ax.set_ylabel(f"best {METRIC_LABELS[metric]}")
            ax.set_title(f"best {metric} (mean ± sd)")
            if metric == "accuracy":
                vals = [v for vs in series(value(metric)).values() for v in vs if not math.isnan(v)]
                if vals:
                    ax.set_ylim(max(0.0, min(vals) - 5), min(100.0, max(vals) + 3))
        ax = axes[0, 2]
        params = series(lambda m: best["accuracy"][m].trainable_params if m in best["accuracy"] else math.nan)
        draw_bars(ax, cats, params, colours=dann_colours, log=True)
        ax.set_ylabel("trainable parameters")
        ax.set_title("params of the best config.")
        ax = axes[0, 3]
        draw_bars(ax, cats, series(lambda m: eff.get(m, math.nan)), colours=dann_colours)
        ax.set_ylabel("accuracy efficiency (%)")
        ax.set_title("accuracy efficiency")
        axes[0, 0].legend(loc="lower left")
        for ax in axes[0]:
            ax.set_xlabel("input sampling")
        return _finish(fig, f"Fig 4 — dANN-X vs vANN-X{' — ' + dataset_label(dataset) if dataset else ''}")


def supp_vann_x_curves(groups: Sequence[Group], *, on: str = "validation", dataset: str = "") -> Figure:
    """Test accuracy and loss vs trainable parameters of each dANN-X and its vANN-X (2 × pairs)."""
    pairs = _present_pairs(groups, PAIRS_VANN)
    if not pairs:
        raise ValueError("needs runs of a dANN-X and its vANN-X")
    with paper_style():
        fig, axes = new_figure(2, len(pairs), panel=(2.8, 2.4))
        for col, (a, b) in enumerate(pairs):
            for row, metric in enumerate(("accuracy", "loss")):
                ax = axes[row, col]
                draw_metric_vs(
                    ax, [g for g in groups if g.model in (a, b)], metric, models=[a, b], legend=row == 0
                )
                ax.set_title(f"{a} vs {b}")
        return _finish(fig, f"dANN-X vs vANN-X — {dataset_label(dataset)}" if dataset else "dANN-X vs vANN-X")


def supp_sann_differences(groups: Sequence[Group], *, dataset: str = "") -> Figure:
    """dANN-X − sANN-X mean test accuracy (points) and loss per (D, S): 2 heatmaps per pair."""
    shapes = {m: {(g.dendrites, g.somata) for g in groups if g.model == m} for m in _models(groups)}
    pairs = [(a, b) for a, b in _present_pairs(groups, PAIRS_SPARSE) if shapes[a] & shapes[b]]
    if not pairs:
        raise ValueError("needs runs of a dANN-X and its sANN-X at the same (D, S) (e.g. dANN-R and sANN)")
    with paper_style():
        fig, axes = new_figure(2, len(pairs), panel=(3.0, 2.5))
        for col, (a, b) in enumerate(pairs):
            ga = {(g.dendrites, g.somata): g for g in groups if g.model == a}
            gb = {(g.dendrites, g.somata): g for g in groups if g.model == b}
            common = set(ga) & set(gb)
            ds = sorted({k[0] for k in common})
            ss = sorted({k[1] for k in common})
            for row, metric in enumerate(("accuracy", "loss")):
                values = np.full((len(ds), len(ss)), np.nan)
                for i, d in enumerate(ds):
                    for j, s in enumerate(ss):
                        if (d, s) in common:
                            va = metric_value(getattr(ga[d, s], f"test_{metric}"), metric)[0]
                            vb = metric_value(getattr(gb[d, s], f"test_{metric}"), metric)[0]
                            values[i, j] = va - vb
                unit = "points" if metric == "accuracy" else ""
                draw_heatmap(
                    axes[row, col],
                    values,
                    ds,
                    ss,
                    title=f"{a} − {b}: {metric}",
                    cbar_label=f"Δ test {metric} {unit}".strip(),
                    fmt="{:+.1f}" if metric == "accuracy" else "{:+.3f}",
                )
        title = "dANN-X − sANN-X differences"
        return _finish(fig, f"{title} — {dataset_label(dataset)}" if dataset else title)


# ---------------------------------------------------------------- Fig 5


def fig5(analyses: Mapping[str, Mapping[str, Any]]) -> Figure:
    """Weights (dendritic, somatic, output KDEs), node entropy and selectivity of the first
    dendro-somatic layer, and sparsity, for each model's analysed run (8 panels)."""
    if not analyses:
        raise ValueError("Fig 5 needs analysed checkpoints")
    models = order_models(analyses)
    with paper_style():
        fig, axes = new_figure(2, 4, panel=(2.7, 2.3))
        for ax, layer in zip(axes[0, :3], ("dendrites_1", "somata_1", "output"), strict=True):
            for m in models:
                w = analyses[m]["weights"].get(layer)
                if w:
                    draw_distribution(ax, w, colour_=colour(m), label=m)
            ax.set_title(f"{layer_label(layer)} weights")
        axes[0, 0].legend(loc="upper left")
        for ax, layer in zip((axes[0, 3], axes[1, 0]), FIRST_LAYERS, strict=True):
            for m in models:
                a = analyses[m]["activity"].get(layer)
                if a:
                    draw_entropy(ax, a, colour_=colour(m), label=m)
            ax.set_title(f"node entropy, {layer_label(layer)} layer")
        n = len(models)
        width = 0.8 / n
        for ax, layer in zip((axes[1, 1], axes[1, 2]), FIRST_LAYERS, strict=True):
            for i, m in enumerate(models):
                a = analyses[m]["activity"].get(layer)
                if a:
                    draw_selectivity(
                        ax, a, colour_=colour(m), label=m, offset=-0.4 + width * (i + 0.5), width=width
                    )
            ax.set_title(f"selectivity, {layer_label(layer)} layer")
        ax = axes[1, 3]
        sparsity = {
            layer_label(layer): [
                100 * analyses[m]["activity"][layer]["sparsity"]
                if layer in analyses[m]["activity"]
                else math.nan
                for m in models
            ]
            for layer in FIRST_LAYERS
        }
        draw_bars(ax, models, sparsity, colours={"dendritic": "#bbbbbb", "somatic": "#555555"})
        ax.set_ylabel("dead nodes (%)")
        ax.set_title("sparsity")
        ax.tick_params(axis="x", rotation=45)
        ax.legend(loc="best")
        return _finish(fig, "Fig 5 — weights and node activity of each model's best configuration")


# ---------------------------------------------------------------- Fig 6

SCORES = (
    ("silhouette", "silhouette"),
    ("neighbourhood_hit", "neighbourhood hit"),
    ("trustworthiness", "trustworthiness"),
)


def score_table(analyses: Mapping[str, Sequence[Mapping[str, Any]]]) -> list[dict[str, Any]]:
    """Tidy rows (model, layer, trial, repeat, three scores) of Fig 6's separability scores."""
    rows = []
    for model in order_models(analyses):
        for trial, result in enumerate(analyses[model]):
            run_id = (result.get("run") or {}).get("id")
            for layer, emb in result.get("embedding", {}).items():
                for r, rep in enumerate(emb["repeats"]):
                    rows.append(
                        {
                            "model": model,
                            "layer": layer,
                            "trial": trial,
                            "run_id": run_id,
                            "repeat": r,
                            **{key: rep[key] for key, _ in SCORES},
                        }
                    )
    return rows


def fig6(analyses: Mapping[str, Sequence[Mapping[str, Any]]]) -> Figure:
    """t-SNE maps of the dendritic and somatic layer per model, then silhouette, neighbourhood
    hit and trustworthiness (mean ± sd over trials × t-SNE repeats). Panels: 2 × models + 3."""
    analyses = {m: [r for r in rs if r.get("embedding")] for m, rs in analyses.items()}
    analyses = {m: rs for m, rs in analyses.items() if rs}
    if not analyses:
        raise ValueError("Fig 6 needs analysed checkpoints with t-SNE embeddings")
    models = order_models(analyses)
    maps = [(m, layer) for m in models for layer in FIRST_LAYERS if layer in analyses[m][0]["embedding"]]
    ncols = 4
    map_rows = math.ceil(len(maps) / ncols)
    rows = score_table(analyses)
    with paper_style():
        fig, axes = new_figure(map_rows + 1, ncols, panel=(2.3, 2.2))
        flat = list(axes[:map_rows].ravel())
        for ax, (m, layer) in zip(flat, maps, strict=False):
            first = analyses[m][0]
            arrays = first.get("arrays") or {}
            emb = arrays.get(f"tsne/{layer}/0")
            if emb is not None:
                draw_tsne(ax, emb, arrays["tsne_labels"], title=f"{m}, {layer_label(layer)}")
        for ax in flat[len(maps) :]:
            ax.remove()
        layers = [layer for layer in FIRST_LAYERS if any(r["layer"] == layer for r in rows)]
        for ax, (key, label) in zip(axes[map_rows, :3], SCORES, strict=True):
            means: dict[str, list[float]] = {}
            sds: dict[str, list[float]] = {}
            for m in models:
                for layer in layers:
                    vals = [r[key] for r in rows if r["model"] == m and r["layer"] == layer]
                    s = summarise(vals) if vals else None
                    means.setdefault(m, []).append(math.nan if s is None else s.mean)
                    sds.setdefault(m, []).append(0.0 if s is None or math.isnan(s.sd) else s.sd)
            draw_bars(ax, [layer_label(layer) for layer in layers], means, errors=sds)
            ax.set_title(label)
            ax.set_ylabel(label)
        axes[map_rows, 0].legend(loc="best")
        axes[map_rows, 3].remove()
        return _finish(fig, "Fig 6 — representations of the hidden layers (t-SNE)")


# ---------------------------------------------------------------- Fig 7


def fig7(
    noise: Mapping[float, Sequence[Group]] | None = None,
    sequential: Sequence[Group] | None = None,
    shuffled: Sequence[Group] | None = None,
    *,
    on: str = "validation",
    dataset: str = "",
) -> Figure:
    """Robustness: accuracy / loss efficiency of each model's best configuration vs noise σ
    (``noise`` maps σ → groups; σ = 0 is the main sweep), and under class-sequential training
    (``sequential`` groups, next to the usual shuffled training ``shuffled`` when given).

    Efficiency pools: all (model, σ) best configurations together; all sequential and shuffled
    best configurations together. Panels: 2 per part present.
    """
    has_noise = bool(noise) and any(noise.values())  # type: ignore[union-attr]
    has_seq = bool(sequential)
    if not has_noise and not has_seq:
        raise ValueError("Fig 7 needs noise or sequential runs")
    parts = (2 if has_noise else 0) + (2 if has_seq else 0)
    with paper_style():
        fig, axes = new_figure(1, parts, panel=(2.9, 2.5))
        col = 0
        if has_noise:
            assert noise is not None
            sigmas = sorted(s for s, gs in noise.items() if gs)
            for metric in METRICS:
                # one pool: every model's best configuration at every σ
                pool: dict[str, Group] = {}
                for s in sigmas:
                    for m, g in _best(noise[s], metric, on).items():
                        pool[f"{m}\x00{s}"] = g
                eff = _efficiency_keyed(pool, metric)
                ax = axes[0, col]
                for m in order_models({k.split("\x00")[0] for k in pool}):
                    xs = [s for s in sigmas if f"{m}\x00{s}" in eff]
                    ax.plot(xs, [eff[f"{m}\x00{s}"] for s in xs], "o-", color=colour(m), ms=3, label=m)
                ax.set_xlabel("noise σ")
                ax.set_ylabel(f"{metric} efficiency" + (" (%)" if metric == "accuracy" else ""))
                ax.set_title(f"{metric} efficiency vs noise")
                if metric == "accuracy":
                    ax.legend(loc="best")
                col += 1
        if has_seq:
            assert sequential is not None
            for metric in METRICS:
                seq_best = _best(sequential, metric, on)
                shuf_best = _best(shuffled or [], metric, on)
                pool = {f"{m}\x00seq": g for m, g in seq_best.items()}
                pool.update({f"{m}\x00shuf": g for m, g in shuf_best.items() if m in seq_best})
                eff = _efficiency_keyed(pool, metric)
                models = order_models(seq_best)
                series = {"sequential": [eff.get(f"{m}\x00seq", math.nan) for m in models]}
                if shuf_best:
                    series = {"shuffled": [eff.get(f"{m}\x00shuf", math.nan) for m in models], **series}
                ax = axes[0, col]
                slots = np.arange(len(models))
                n = len(series)
                width = 0.8 / n
                for i, (name, vals) in enumerate(series.items()):
                    ax.bar(
                        slots - 0.4 + width * (i + 0.5),
                        vals,
                        width,
                        color=[colour(m) for m in models],
                        edgecolor="black",
                        linewidth=0.4,
                        hatch="////" if name == "sequential" else None,
                        label=name,
                    )
                ax.set_xticks(slots, models, rotation=45)
                ax.set_ylabel(f"{metric} efficiency" + (" (%)" if metric == "accuracy" else ""))
                ax.set_title(f"{metric} efficiency, sequential")
                if metric == "accuracy":
                    ax.legend(loc="best")
                col += 1
        title = "Fig 7 — robustness to noise and class-sequential learning"
        return _finish(fig, f"{title} — {dataset_label(dataset)}" if dataset else title)


def _efficiency_keyed(pool: Mapping[str, Group], metric: str) -> dict[str, float]:
    keys = [k for k, g in pool.items() if g.trainable_params and g.best_epoch is not None]
    if not keys:
        return {}
    eff = group_efficiency([pool[k] for k in keys], on="test")
    values = eff.accuracy if metric == "accuracy" else eff.loss
    assert values is not None
    scale = 100.0 if metric == "accuracy" else 1.0
    return {k: scale * float(v) for k, v in zip(keys, values, strict=True)}


# ---------------------------------------------------------------- supplementary


def supp_learning_curves(
    curves: Mapping[str, Sequence[Sequence[Mapping[str, Any]]]], *, title: str = ""
) -> Figure:
    """Train (solid) and validation (dashed) loss and accuracy per epoch, mean over trials with a
    ±sd band, for each model's best configuration (``curves``: model → trials → epoch rows)."""
    curves = {m: [t for t in trials if t] for m, trials in curves.items()}
    curves = {m: t for m, t in curves.items() if t}
    if not curves:
        raise ValueError("learning curves need epoch rows")
    with paper_style():
        fig, axes = new_figure(1, 2, panel=(3.3, 2.6))
        for ax, metric in zip(axes[0], ("loss", "accuracy"), strict=True):
            for m in order_models(curves):
                for split, style in (("train", "-"), ("val", "--")):
                    key = f"{split}_{metric}"
                    n_ep = min(len(t) for t in curves[m])
                    table = np.array(
                        [
                            [np.nan if r.get(key) is None else float(r[key]) for r in t[:n_ep]]
                            for t in curves[m]
                        ],
                        dtype=float,
                    )
                    if np.all(np.isnan(table)):
                        continue
                    scale = 100.0 if metric == "accuracy" else 1.0
                    mean = scale * np.nanmean(table, axis=0)
                    sd = scale * (np.nanstd(table, axis=0) if table.shape[0] > 1 else np.zeros(n_ep))
                    ep = np.arange(1, n_ep + 1)
                    ax.plot(ep, mean, style, color=colour(m), lw=1.1, label=m if split == "train" else None)
                    ax.fill_between(ep, mean - sd, mean + sd, color=colour(m), alpha=0.2, lw=0)
            ax.set_xlabel("epoch")
            ax.xaxis.get_major_locator().set_params(integer=True)
            ax.set_ylabel(metric + (" (%)" if metric == "accuracy" else ""))
            ax.set_title(f"{metric}: train (solid), validation (dashed)")
        fig.legend(*axes[0, 0].get_legend_handles_labels(), loc="outside right upper")
        return _finish(fig, title or "Learning curves of each model's best configuration")


def supp_dropout(groups: Sequence[Group], *, dataset: str = "") -> Figure:
    """vANN with dropout (vANN-0.2/0.5/0.8) next to vANN and the dANNs: test accuracy and loss vs
    trainable parameters (2 panels)."""
    if not any(re.fullmatch(r"vANN-[0-9.]+", g.model) for g in groups):
        raise ValueError("needs vANN runs with dropout")
    with paper_style():
        fig, axes = new_figure(1, 2, panel=(3.3, 2.6))
        for ax, metric in zip(axes[0], ("accuracy", "loss"), strict=True):
            draw_metric_vs(ax, groups, metric, legend=metric == "accuracy")
            ax.set_title(f"{metric} vs trainable parameters")
        return _finish(fig, f"Dropout controls — {dataset_label(dataset)}" if dataset else "Dropout controls")


def supp_lr(groups_by_lr: Mapping[float, Sequence[Group]], *, dataset: str = "") -> Figure:
    """Test accuracy and loss vs trainable parameters at each learning rate (2 panels per rate)."""
    rates = sorted(lr for lr, gs in groups_by_lr.items() if gs)
    if not rates:
        raise ValueError("needs runs with other learning rates")
    with paper_style():
        fig, axes = new_figure(2, len(rates), panel=(3.0, 2.4))
        for col, lr in enumerate(rates):
            for row, metric in enumerate(("accuracy", "loss")):
                ax = axes[row, col]
                draw_metric_vs(ax, groups_by_lr[lr], metric, legend=row == 0 and col == 0)
                ax.set_title(f"learning rate {lr:g}: {metric}")
        title = "Learning rate"
        return _finish(fig, f"{title} — {dataset_label(dataset)}" if dataset else title)


def supp_early_stop(groups: Sequence[Group], *, dataset: str = "") -> Figure:
    """Early stopping (patience 10, best weights restored): test accuracy, test loss and the
    epoch of minimum validation loss vs trainable parameters (3 panels)."""
    if not groups:
        raise ValueError("needs early-stopping runs")
    with paper_style():
        fig, axes = new_figure(1, 3, panel=(3.0, 2.5))
        for ax, metric in zip(axes[0, :2], ("accuracy", "loss"), strict=True):
            draw_metric_vs(ax, groups, metric, legend=metric == "accuracy")
            ax.set_title(f"{metric} with early stopping")
        _draw_best_epoch(axes[0, 2], groups)
        axes[0, 2].set_title("epoch of minimum validation loss")
        title = "Early stopping"
        return _finish(fig, f"{title} — {dataset_label(dataset)}" if dataset else title)


def _draw_best_epoch(ax: Any, groups: Sequence[Group]) -> None:
    by_model: dict[str, list[Group]] = {}
    for g in groups:
        if g.best_epoch is not None and g.trainable_params:
            by_model.setdefault(g.model, []).append(g)
    for m in order_models(by_model):
        pts = sorted((g.trainable_params, g.best_epoch.mean, g.best_epoch.ci95) for g in by_model[m])  # type: ignore[union-attr]
        x, y, ci = (np.array(v, dtype=float) for v in zip(*pts, strict=True))
        ax.errorbar(
            x, y, yerr=np.nan_to_num(ci), fmt="o-", ms=3, lw=0.8, color=colour(m), capsize=1.5, label=m
        )
    ax.set_xscale("log")
    ax.set_xlabel("trainable parameters")
    ax.set_ylabel("best epoch")


def supp_epochs_to_minimum(groups: Sequence[Group], *, dataset: str = "") -> Figure:
    """Epoch of minimum validation loss (an overfitting marker): vs trainable parameters per
    model, and its distribution over all configurations of each model (2 panels)."""
    usable = [g for g in groups if g.best_epoch is not None]
    if not usable:
        raise ValueError("needs runs with a best epoch")
    with paper_style():
        fig, axes = new_figure(1, 2, panel=(3.3, 2.6))
        _draw_best_epoch(axes[0, 0], usable)
        if axes[0, 0].get_legend_handles_labels()[0]:  # runs without a parameter count draw no points
            axes[0, 0].legend(loc="best")
        axes[0, 0].set_title("epoch of minimum validation loss")
        ax = axes[0, 1]
        models = order_models(g.model for g in usable)
        data = [[g.best_epoch.mean for g in usable if g.model == m] for m in models]  # type: ignore[union-attr]
        box = ax.boxplot(data, patch_artist=True, widths=0.6)
        for patch, m in zip(box["boxes"], models, strict=True):
            patch.set_facecolor(colour(m))
        ax.set_xticks(range(1, len(models) + 1), models, rotation=45)
        ax.set_ylabel("best epoch (mean over trials)")
        ax.set_title("over all configurations")
        title = "Epochs to minimum validation loss"
        return _finish(fig, f"{title} — {dataset_label(dataset)}" if dataset else title)


def supp_depth(groups: Sequence[Group], *, on: str = "validation", dataset: str = "") -> Figure:
    """Depth L = 1..4: best test accuracy, best test loss and the params of the best-accuracy
    configuration vs L per model (``groups`` keyed with "layers"; 3 panels)."""
    if not groups or "layers" not in groups[0].names:
        raise ValueError("depth groups must be keyed by 'layers'")
    depths = sorted({g["layers"] for g in groups})
    models = order_models(g.model for g in groups)
    with paper_style():
        fig, axes = new_figure(1, 3, panel=(2.9, 2.5))
        for ax, metric in zip(axes[0, :2], METRICS, strict=True):
            for m in models:
                xs, ys, es = [], [], []
                for depth in depths:
                    best = _best(
                        [g for g in groups if g.model == m and g["layers"] == depth], metric, on
                    ).get(m)
                    if best is not None:
                        mean, ci = metric_value(getattr(best, f"test_{metric}"), metric)
                        xs.append(depth)
                        ys.append(mean)
                        es.append(ci)
                if xs:
                    ax.errorbar(xs, ys, yerr=es, fmt="o-", ms=3, color=colour(m), capsize=1.5, label=m)
            ax.set_xticks(depths)
            ax.set_xlabel("dendro-somatic layers, L")
            ax.set_ylabel(f"best {METRIC_LABELS[metric]}")
            ax.set_title(f"best {metric} vs depth")
        axes[0, 0].legend(loc="best")
        ax = axes[0, 2]
        for m in models:
            pts = []
            for depth in depths:
                best = _best(
                    [g for g in groups if g.model == m and g["layers"] == depth], "accuracy", on
                ).get(m)
                if best is not None and best.trainable_params:
                    pts.append((depth, best.trainable_params))
            if pts:
                ax.plot(*zip(*pts, strict=True), "o-", ms=3, color=colour(m), label=m)
        ax.set_yscale("log")
        ax.set_xticks(depths)
        ax.set_xlabel("dendro-somatic layers, L")
        ax.set_ylabel("trainable parameters")
        ax.set_title("params of the best config.")
        title = "Depth"
        return _finish(fig, f"{title} — {dataset_label(dataset)}" if dataset else title)


def supp_dataset_examples(
    images: np.ndarray,
    labels: np.ndarray,
    *,
    per_class: int = 8,
    class_names: Sequence[str] | None = None,
    title: str = "",
) -> Figure:
    """A mosaic of ``per_class`` example images of each class (rows = classes; 1 panel).

    ``images`` are (N, H, W) or (N, H, W, C) arrays in [0, 255] or [0, 1].
    """
    images = np.asarray(images)
    labels = np.asarray(labels)
    if images.ndim not in (3, 4) or len(images) != len(labels) or len(images) == 0:
        raise ValueError("images must be (N, H, W[, C]) with one label each")
    classes = sorted(int(c) for c in np.unique(labels))
    h, w = images.shape[1:3]
    channels = images.shape[3] if images.ndim == 4 else 1
    scale = 255.0 if images.max() > 1.0 else 1.0
    mosaic = np.ones((len(classes) * (h + 2), per_class * (w + 2), channels))
    for i, c in enumerate(classes):
        picks = np.flatnonzero(labels == c)[:per_class]
        for j, idx in enumerate(picks):
            img = images[idx].reshape(h, w, channels) / scale
            mosaic[i * (h + 2) : i * (h + 2) + h, j * (w + 2) : j * (w + 2) + w] = img
    with paper_style():
        fig, axes = new_figure(1, 1, panel=(0.5 * per_class + 1.0, 0.5 * len(classes) + 0.5))
        ax = axes[0, 0]
        ax.imshow(
            mosaic[..., 0] if channels == 1 else mosaic,
            cmap="gray_r" if channels == 1 else None,
            vmin=0,
            vmax=1,
        )
        names = [class_names[c] if class_names and c < len(class_names) else str(c) for c in classes]
        ax.set_yticks([i * (h + 2) + h / 2 for i in range(len(classes))], names)
        ax.set_xticks([])
        for side in ("left", "bottom"):
            ax.spines[side].set_visible(False)
        fig.suptitle(title or "Dataset examples")
        return fig
