"""`make_figures`: every figure and table of SPEC §8 whose runs exist in a results store.

Runs are sorted into the sweeps that made them (:mod:`dendritic.figures.experiments`); a
figure whose sweep has no runs is skipped with a note naming the sweep to run. Figures 5 and 6
need checkpoints: each model's best configuration among those with a checkpoint is analysed
(:func:`dendritic.analysis.run_analysis.analyze_run`) on its own test split.
"""

from __future__ import annotations

import json
import math
import os
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from dendritic.analysis.selection import Group, group_runs
from dendritic.figures import paper
from dendritic.figures.experiments import StoreRuns, load_runs, skip_note
from dendritic.figures.style import (
    PAPER_MODELS,
    dataset_label,
    order_models,
    panel_axes,
    save_figure,
    use_headless_backend,
)
from dendritic.figures.tables import Table, selectable, table1, table2
from dendritic.files import atomic_path, atomic_write_text, check_output_dir

__all__ = ["FIGURES", "FigureInfo", "FiguresResult", "make_figures", "primary_dataset"]


@dataclass(frozen=True)
class FigureInfo:
    label: str  #: "Fig 2", "Supplementary: dropout", …
    caption: str  #: what the figure shows
    sweeps: tuple[str, ...]  #: the `dendritic sweep NAME` runs it needs (any of them)
    checkpoints: bool = False


FIGURES: dict[str, FigureInfo] = {
    "fig2": FigureInfo(
        "Fig 2",
        "Test loss and accuracy vs trainable parameters (log scale) for dANN-R, dANN-LRF, dANN-GRF, pdANN "
        "and vANN (mean ± 95 % CI over trials; dashed: vANN's best configuration), and vs dendrites per "
        "soma D at S = 256 and 512 (or the largest S swept).",
        ("main",),
    ),
    "fig3": FigureInfo(
        "Fig 3",
        "Per dataset: trainable parameters of the cheapest configuration of each model that beats vANN's "
        "best accuracy / loss (black bar: vANN's best; ×: none does), and the accuracy / loss efficiency "
        "of each model's best configuration (pool: the best configurations of one dataset).",
        ("main",),
    ),
    "fig4": FigureInfo(
        "Fig 4",
        "Dendritic structure with the same input sampling: best test accuracy and loss, parameters of "
        "the best-accuracy configuration and accuracy efficiency of dANN-X vs vANN-X (X = R, LRF, GRF; "
        "pdANN vs vANN for all-to-all inputs).",
        ("main",),
    ),
    "fig5": FigureInfo(
        "Fig 5",
        "Distributions of real dendritic, somatic and output weights (KDE), node entropy and "
        "selectivity of the first dendritic and somatic layers, and the fraction of dead nodes, for "
        "each model's best configuration that has a checkpoint.",
        ("main",),
        checkpoints=True,
    ),
    "fig6": FigureInfo(
        "Fig 6",
        "t-SNE maps (perplexity 50) of dendritic and somatic activations for the first test images, "
        "coloured by class, and silhouette, neighbourhood hit (k = 11) and trustworthiness "
        "(k = 11), mean ± sd over trials × t-SNE repeats.",
        ("main",),
        checkpoints=True,
    ),
    "fig7": FigureInfo(
        "Fig 7",
        "Accuracy and loss efficiency of each model's best configuration vs input noise σ (σ = 0 from "
        "the main sweep), and under class-sequential training (hatched) next to shuffled training.",
        ("noise", "sequential"),
    ),
    "supp-learning-curves": FigureInfo(
        "Supplementary: learning curves",
        "Train and validation loss / accuracy per epoch of each model's best configuration "
        "(mean ± sd over trials).",
        ("main",),
    ),
    "supp-dropout": FigureInfo(
        "Supplementary: dropout",
        "vANN with dropout 0.2 / 0.5 / 0.8 next to vANN and the dANNs: test accuracy and loss vs "
        "trainable parameters.",
        ("dropout",),
    ),
    "supp-lr": FigureInfo(
        "Supplementary: learning rate",
        "Test accuracy and loss vs trainable parameters at each learning rate (0.001 = main sweep).",
        ("lr",),
    ),
    "supp-early-stop": FigureInfo(
        "Supplementary: early stopping",
        "With early stopping (patience 10, best weights restored): test accuracy, test loss and the "
        "epoch of minimum validation loss vs trainable parameters.",
        ("early-stop",),
    ),
    "supp-depth": FigureInfo(
        "Supplementary: depth",
        "Best test accuracy and loss, and the parameters of the best-accuracy configuration, vs the "
        "number of dendro-somatic layers (L = 1 from the main sweep at the depth sweep's D and S).",
        ("depth",),
    ),
    "supp-epochs-to-minimum": FigureInfo(
        "Supplementary: epochs to minimum",
        "Epoch of minimum validation loss (1-based) vs trainable parameters, and its distribution "
        "over all configurations of each model: early minima mean early overfitting.",
        ("main",),
    ),
    "supp-vann-x-curves": FigureInfo(
        "Supplementary: dANN-X vs vANN-X",
        "Test accuracy and loss vs trainable parameters of each dANN-X and its vANN-X.",
        ("main",),
    ),
    "supp-sann-differences": FigureInfo(
        "Supplementary: dANN-X − sANN-X",
        "Difference in mean test accuracy (points) and loss between each dANN-X and its sANN-X "
        "(random sparse dendrite → soma) per (D, S): what structured dendrites add over sparsity alone.",
        ("main",),
    ),
    "supp-dataset-examples": FigureInfo(
        "Supplementary: dataset examples",
        "Example test images of each class of the figures' dataset.",
        ("main",),
    ),
}


@dataclass
class FiguresResult:
    """What :func:`make_figures` wrote, and why the rest was not drawn."""

    written: list[Path] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    figures: dict[str, list[Path]] = field(default_factory=dict)  #: figure name → its files
    panels: dict[str, int] = field(
        default_factory=dict
    )  #: figure name → panels (axes, colorbars not counted)
    tables: dict[str, Table] = field(default_factory=dict)
    analyses: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  #: Figs 5-6: model → analyses
    notes: list[str] = field(default_factory=list)
    dataset: str | None = None
    manifest: Path | None = None
    optimizer: str | None = None  #: the optimizer of every run the figures and tables show


def primary_dataset(runs: StoreRuns, wanted: str | None = None) -> str | None:
    """The dataset of the per-dataset figures: ``wanted``, else Fashion-MNIST (the paper's), else
    the dataset with the most main-sweep runs."""
    counts = Counter(r.get("dataset") for r in runs.of("main"))
    if wanted is not None:
        from dendritic.data import canonical_name

        return canonical_name(wanted)
    if not counts:
        return None
    if "fmnist" in counts:
        return "fmnist"
    return max(counts, key=lambda d: (counts[d], str(d)))


def _groups(runs: Sequence[Mapping[str, Any]], extra: Sequence[str] = ()) -> list[Group]:
    return group_runs(runs, extra) if runs else []


def _log_default(message: str) -> None:
    pass


def make_figures(
    store: Any,
    out: str | os.PathLike[str],
    *,
    on: str = "validation",
    dataset: str | None = None,
    data_dir: str | os.PathLike[str] | None = None,
    tsne_samples: int = 500,
    tsne_repeats: int = 1,
    tsne_trials: int = 1,
    formats: Sequence[str] = ("png", "pdf"),
    only: Iterable[str] | None = None,
    download: bool = True,
    log: Callable[[str], None] | None = None,
    workers: int = 1,
    optimizer: str | None = None,
) -> FiguresResult:
    """Draw every figure of SPEC §8 that the store's runs allow; write tables and a manifest.

    ``on``: split for choosing configurations ("validation", or "test" for the paper's rule).
    ``dataset``: dataset of the per-dataset figures (default :func:`primary_dataset`).
    ``tsne_*``: images embedded, t-SNE repeats and trials per model for Fig 6 (the paper used
    2,000 × 10 × 5). ``only``: names from :data:`FIGURES` to draw (tables are always written).
    ``workers``: processes for the per-run analyses of Figs 5–6 (mostly t-SNE, single-threaded).
    """
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    if on not in ("validation", "test"):
        raise ValueError(f"on must be 'validation' or 'test', got {on!r}")
    wanted = set(FIGURES) if only is None else set(only)
    unknown = sorted(wanted - set(FIGURES))
    if unknown:
        raise ValueError(f"unknown figure(s) {', '.join(unknown)}; choose from {', '.join(FIGURES)}")
    formats = list(formats)
    bad = [f for f in formats if f not in ("png", "pdf", "svg")]
    if not formats or bad:
        raise ValueError(f"formats must name one or more of png, pdf, svg, got {formats!r}")
    say = log or _log_default
    use_headless_backend()
    out = check_output_dir(out, option="figures folder", protected=getattr(store, "own_files", list)())
    out.mkdir(parents=True, exist_ok=True)
    result = FiguresResult()
    runs = load_runs(store, optimizer=optimizer)
    result.optimizer = runs.optimizer
    if runs.left_out:
        result.notes.append(runs.optimizer_note())
    primary = primary_dataset(runs, dataset)
    result.dataset = primary
    main_all = runs.of("main")
    main = runs.of("main", primary) if primary else []
    main_groups = _groups(main)
    by_dataset = {d: _groups(runs.of("main", d)) for d in runs.datasets("main")}
    n_unselectable = sum(len(gs) - len(selectable(gs, on)) for gs in by_dataset.values())
    if n_unselectable:
        result.notes.append(
            f"{n_unselectable} configuration(s) lack {on} metrics and are left out of the selections"
        )
    if primary and not main:
        result.notes.append(f"no main-sweep runs of {dataset_label(primary)}")

    def emit(name: str, draw: Callable[[], Any]) -> None:
        if name not in wanted:
            return
        info = FIGURES[name]
        try:
            fig = draw()
        except _Skip as skip:
            result.skipped[name] = str(skip)
            say(str(skip))
            return
        except ValueError as exc:
            result.skipped[name] = f"{info.label} skipped: {exc}"
            say(result.skipped[name])
            return
        paths = save_figure(fig, out / name, formats)
        result.figures[name] = paths
        result.panels[name] = len(panel_axes(fig))
        result.written += paths
        say(f"wrote {info.label}: {', '.join(p.name for p in paths)}")

    def need(label: str, ok: bool, sweeps: Sequence[str], extra: str = "") -> None:
        if not ok:
            raise _Skip(skip_note(label, sweeps, extra))

    ds = f" of {dataset_label(primary)}" if primary else ""

    # ---- main-sweep figures
    def f2() -> Any:
        need("Fig 2", bool(main_groups), ["main"], ds)
        return paper.fig2(main_groups, on=on, dataset=primary or "")

    def f3() -> Any:
        need("Fig 3", bool(main_all), ["main"])
        return paper.fig3(by_dataset, on=on)

    def f4() -> Any:
        need("Fig 4", bool(main_groups), ["main"], ds)
        if not paper._present_pairs(main_groups, paper.PAIRS_VANN):
            raise _Skip(
                skip_note(
                    "Fig 4", ["main"], f"{ds} with a dANN-X and its vANN-X (e.g. --models dANN-LRF,vANN-LRF)"
                )
            )
        return paper.fig4(main_groups, on=on, dataset=primary or "")

    emit("fig2", f2)
    emit("fig3", f3)
    emit("fig4", f4)

    # ---- checkpoint figures
    if wanted & {"fig5", "fig6"}:
        analyses, why = _analyse_best(
            store,
            runs,
            main,
            main_groups,
            on=on,
            data_dir=data_dir,
            tsne_samples=tsne_samples if "fig6" in wanted else 0,
            tsne_repeats=tsne_repeats,
            tsne_trials=tsne_trials if "fig6" in wanted else 1,
            download=download,
            say=say,
            workers=workers,
        )
        result.analyses = analyses

        def f5() -> Any:
            need("Fig 5", bool(main_groups), ["main"], ds)
            if not analyses:
                raise _Skip(f"Fig 5 skipped: {why}")
            _write_activity_summary(out, analyses, result)
            return paper.fig5({m: rs[0] for m, rs in analyses.items()})

        def f6() -> Any:
            need("Fig 6", bool(main_groups), ["main"], ds)
            if not analyses:
                raise _Skip(f"Fig 6 skipped: {why}")
            if not any(r.get("embedding") for rs in analyses.values() for r in rs):
                notes = {n for rs in analyses.values() for r in rs for n in r.get("notes", [])}
                raise _Skip("Fig 6 skipped: " + ("; ".join(sorted(notes)) or "no t-SNE embeddings"))
            fig = paper.fig6(analyses)
            _write_scores(out, analyses, result)
            return fig

        emit("fig5", f5)
        emit("fig6", f6)

    # ---- robustness
    def f7() -> Any:
        noise_runs = runs.of("noise")
        seq_runs = runs.of("sequential")
        if not noise_runs and not seq_runs:
            raise _Skip(skip_note("Fig 7", ["noise", "sequential"]))
        d7 = _dataset_for(primary, noise_runs + seq_runs)
        noise: dict[float, list[Group]] = {}
        for sigma, gs in _split(_groups(runs.of("noise", d7), ["sigma"]), "sigma").items():
            noise[float(sigma)] = gs
        if noise:
            noisy_models = {r.get("model") for r in runs.of("noise", d7)}
            base = _groups([r for r in runs.of("main", d7) if r.get("model") in noisy_models])
            if base:
                noise[0.0] = base
        else:
            result.skipped["fig7 (noise)"] = (
                "Fig 7 noise panels skipped: needs runs of `dendritic sweep noise`"
            )
        seq = _groups(runs.of("sequential", d7))
        if not seq:
            result.skipped["fig7 (sequential)"] = (
                "Fig 7 sequential panels skipped: needs runs of `dendritic sweep sequential`"
            )
        seq_models = {r.get("model") for r in runs.of("sequential", d7)}
        shuffled = _groups([r for r in runs.of("main", d7) if r.get("model") in seq_models])
        return paper.fig7(noise or None, seq or None, shuffled, on=on, dataset=d7 or "")

    emit("fig7", f7)

    # ---- supplementary
    def s_curves() -> Any:
        need("Learning curves", bool(main_groups), ["main"], ds)
        best = _best_by_model(main_groups, on)
        by_id = {r["id"]: r for r in main}
        curves = {m: [runs.epochs_of(by_id[i]) for i in g.run_ids if i in by_id] for m, g in best.items()}
        return paper.supp_learning_curves(
            curves,
            title=f"Learning curves of each model's best configuration{' — ' + dataset_label(primary) if primary else ''}",
        )

    def s_dropout() -> Any:
        drop = runs.of("dropout", _dataset_for(primary, runs.of("dropout")))
        need("Dropout figure", bool(drop), ["dropout"])
        d = drop[0]["dataset"]
        controls = [r for r in runs.of("main", d) if r.get("model") in PAPER_MODELS]
        return paper.supp_dropout(_groups(drop + controls), dataset=d)

    def s_lr() -> Any:
        lr_runs = runs.of("lr", _dataset_for(primary, runs.of("lr")))
        need("Learning-rate figure", bool(lr_runs), ["lr"])
        d = lr_runs[0]["dataset"]
        models = {r.get("model") for r in lr_runs}
        by_lr = _split(_groups(lr_runs, ["lr"]), "lr")
        base = [r for r in runs.of("main", d) if r.get("model") in models]
        if base:
            by_lr[1e-3] = _groups(base)
        return paper.supp_lr({float(k): v for k, v in by_lr.items()}, dataset=d)

    def s_early() -> Any:
        es = runs.of("early-stop", _dataset_for(primary, runs.of("early-stop")))
        need("Early-stopping figure", bool(es), ["early-stop"])
        return paper.supp_early_stop(_groups(es), dataset=es[0]["dataset"])

    def s_depth() -> Any:
        deep = runs.of("depth", _dataset_for(primary, runs.of("depth")))
        need("Depth figure", bool(deep), ["depth"])
        d = deep[0]["dataset"]
        shapes = {(r.get("model"), r.get("dendrites"), r.get("somata")) for r in deep}
        shallow = [
            r for r in runs.of("main", d) if (r.get("model"), r.get("dendrites"), r.get("somata")) in shapes
        ]
        return paper.supp_depth(_groups(deep + shallow, ["layers"]), on=on, dataset=d)

    def s_epochs() -> Any:
        need("Epochs-to-minimum figure", bool(main_groups), ["main"], ds)
        return paper.supp_epochs_to_minimum(main_groups, dataset=primary or "")

    def s_vann_x() -> Any:
        need("dANN-X vs vANN-X curves", bool(main_groups), ["main"], ds)
        if not paper._present_pairs(main_groups, paper.PAIRS_VANN):
            raise _Skip(skip_note("dANN-X vs vANN-X curves", ["main"], f"{ds} with a dANN-X and its vANN-X"))
        return paper.supp_vann_x_curves(main_groups, on=on, dataset=primary or "")

    def s_sann() -> Any:
        need("dANN-X − sANN-X figure", bool(main_groups), ["main"], ds)
        if not paper._present_pairs(main_groups, paper.PAIRS_SPARSE):
            raise _Skip(
                skip_note(
                    "dANN-X − sANN-X figure", ["main"], f"{ds} with a dANN-X and its sANN-X (e.g. sANN)"
                )
            )
        return paper.supp_sann_differences(main_groups, dataset=primary or "")

    def s_examples() -> Any:
        if primary is None:
            raise _Skip("Dataset examples skipped: no dataset to show (no main-sweep runs)")
        from dendritic.data import load

        try:
            raw = load(primary, data_dir=data_dir, download=download)
        except (OSError, ValueError) as exc:
            raise _Skip(f"Dataset examples skipped: {dataset_label(primary)} not available ({exc})") from None
        return paper.supp_dataset_examples(
            raw.x_test,
            raw.y_test,
            class_names=raw.info.class_names,
            title=f"{dataset_label(primary)} — test examples",
        )

    for name, fn in (
        ("supp-learning-curves", s_curves),
        ("supp-dropout", s_dropout),
        ("supp-lr", s_lr),
        ("supp-early-stop", s_early),
        ("supp-depth", s_depth),
        ("supp-epochs-to-minimum", s_epochs),
        ("supp-vann-x-curves", s_vann_x),
        ("supp-sann-differences", s_sann),
        ("supp-dataset-examples", s_examples),
    ):
        emit(name, fn)

    # ---- tables
    for table in (table1(by_dataset, on), table2(by_dataset, on)):
        table.note = f"{table.note} {runs.optimizer_note()}".strip()
        result.tables[table.name] = table
        for path in (
            table.write_csv(out / f"{table.name}.csv"),
            table.write_markdown(out / f"{table.name}.md"),
        ):
            result.written.append(path)
        say(f"wrote {table.title}: {table.name}.csv, {table.name}.md ({len(table.rows)} rows)")
    result.manifest = _write_manifest(out, result, on=on, runs=runs)
    result.written.append(result.manifest)
    return result


class _Skip(Exception):
    """A figure cannot be drawn from the store; the message is the user-facing note."""


def _split(groups: Sequence[Group], key: str) -> dict[Any, list[Group]]:
    out: dict[Any, list[Group]] = {}
    for g in groups:
        out.setdefault(g[key], []).append(g)
    return out


def _dataset_for(primary: str | None, runs: Sequence[Mapping[str, Any]]) -> str | None:
    """The primary dataset when these runs have it, else their most common dataset."""
    counts = Counter(r.get("dataset") for r in runs)
    if not counts:
        return primary
    if primary in counts:
        return primary
    return max(counts, key=lambda d: (counts[d], str(d)))


def _best_by_model(groups: Sequence[Group], on: str) -> dict[str, Group]:
    from dendritic.analysis.selection import best_configuration

    usable = selectable(groups, on)
    return best_configuration(usable, "accuracy", on) if usable else {}  # type: ignore[arg-type]


def _analyse_best(
    store: Any,
    runs: StoreRuns,
    main: Sequence[Mapping[str, Any]],
    groups: Sequence[Group],
    *,
    on: str,
    data_dir: Any,
    tsne_samples: int,
    tsne_repeats: int,
    tsne_trials: int,
    download: bool,
    say: Callable[[str], None],
    workers: int = 1,
) -> tuple[dict[str, list[dict[str, Any]]], str]:
    """Per paper model, analyses of up to ``tsne_trials`` checkpointed runs of its best
    configuration among those with a checkpoint; or ({}, why not). ``workers`` > 1 analyses
    the runs in that many processes."""
    from dendritic.analysis.run_analysis import resolve_checkpoint

    store_path = getattr(store, "path", None)
    by_id = {r["id"]: r for r in main}

    def has_checkpoint(run: Mapping[str, Any]) -> bool:
        try:
            resolve_checkpoint(run, store_path)
        except (ValueError, OSError):
            return False
        return True

    with_ckpt = {i for i, r in by_id.items() if r.get("checkpoint") and has_checkpoint(r)}
    if not with_ckpt:
        return {}, "needs checkpoints of the main sweep's runs (`dendritic sweep main --checkpoints DIR`)"
    jobs: list[tuple[str, int, str]] = []  # (model, run id, what the progress line says)
    usable = selectable(groups, on)
    for model in PAPER_MODELS:
        candidates = [g for g in usable if g.model == model and any(i in with_ckpt for i in g.run_ids)]
        if not candidates:
            continue
        best = _best_by_model(candidates, on)[model]
        ids = sorted(
            (i for i in best.run_ids if i in with_ckpt), key=lambda i: (by_id[i].get("seed") or 0, i)
        )
        for run_id in ids[: max(1, tsne_trials)]:
            jobs.append((model, run_id, f"run {run_id} ({model} D={best.dendrites} S={best.somata})"))
    options = {
        "data_dir": None if data_dir is None else str(data_dir),
        "tsne_samples": tsne_samples,
        "tsne_repeats": tsne_repeats,
        "download": download,
    }
    analyses: dict[str, list[dict[str, Any]]] = {}
    problems = []
    parallel = workers > 1 and len(jobs) > 1 and store_path is not None
    for (model, run_id, _), outcome in zip(
        jobs,
        _analyse_parallel(store_path, jobs, options, workers, say)
        if parallel
        else _analyse_serial(store, jobs, options, say),
        strict=True,
    ):
        if isinstance(outcome, (OSError, ValueError)):
            problems.append(f"run {run_id}: {outcome}")
            continue
        analyses.setdefault(model, []).append(outcome)
    if not analyses:
        return {}, "no checkpoint could be analysed (" + "; ".join(problems[:3]) + ")"
    return analyses, ""


def _analyse_serial(
    store: Any, jobs: Sequence[tuple[str, int, str]], options: Mapping[str, Any], say: Callable[[str], None]
) -> Iterator[dict[str, Any] | Exception]:
    from dendritic.analysis.run_analysis import analyze_run

    for _, run_id, label in jobs:
        say(f"analysing {label}")
        try:
            yield analyze_run(store, run_id, **options)
        except (OSError, ValueError) as exc:
            yield exc


def _analyse_one(store_path: str, run_id: int, options: Mapping[str, Any], threads: int) -> dict[str, Any]:
    """One run's analyses in a worker process, with its own read-only store connection."""
    import torch

    from dendritic.analysis.run_analysis import analyze_run
    from dendritic.store import RunStore

    torch.set_num_threads(threads)
    with RunStore(store_path, readonly=True) as store:
        return analyze_run(store, run_id, **options)


def _analyse_parallel(
    store_path: Any,
    jobs: Sequence[tuple[str, int, str]],
    options: Mapping[str, Any],
    workers: int,
    say: Callable[[str], None],
) -> Iterator[dict[str, Any] | Exception]:
    """The runs' analyses in ``workers`` fresh processes (t-SNE is single-threaded, and most of
    the time); results come back in job order, so the figures do not depend on ``workers``."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    workers = min(workers, len(jobs))
    threads = max(1, (os.cpu_count() or 1) // workers)
    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [
            pool.submit(_analyse_one, str(store_path), run_id, options, threads) for _, run_id, _ in jobs
        ]
        say(f"analysing {len(jobs)} runs in {workers} processes")
        for (_, _, label), future in zip(jobs, futures, strict=True):
            try:
                yield future.result()
            except (OSError, ValueError) as exc:
                yield exc
            say(f"analysed {label}")


def _write_rows_csv(path: Path, rows: Sequence[Mapping[str, Any]], result: FiguresResult) -> None:
    """Tidy rows (same keys each) as a CSV file, recorded among the written files."""
    import csv

    with atomic_path(path) as tmp, tmp.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    result.written.append(path)


def _write_activity_summary(
    out: Path, analyses: Mapping[str, Sequence[Mapping[str, Any]]], result: FiguresResult
) -> None:
    """Fig 5's numbers per model and hidden layer (``fig5-summary.csv`` / ``.md``): the analysed
    runs, live and dead nodes, node-entropy median and IQR (bits), mean selectivity."""

    rows = []
    for model in order_models(analyses):
        for res in analyses[model]:
            run = res.get("run") or {}
            for layer, a in (res.get("activity") or {}).items():
                rows.append(
                    {
                        "model": model,
                        "run_id": run.get("id"),
                        "dendrites": run.get("dendrites"),
                        "somata": run.get("somata"),
                        "seed": run.get("seed"),
                        "layer": layer,
                        "nodes": a["n_nodes"],
                        "dead": a["dead"],
                        "sparsity": a["sparsity"],
                        "entropy_median": a["entropy"]["median"],
                        "entropy_iqr": a["entropy"]["iqr"],
                        "selectivity_mean": a["selectivity"]["mean"],
                    }
                )
    if not rows:
        return
    _write_rows_csv(out / "fig5-summary.csv", rows, result)

    def num(value: Any, digits: int = 3) -> str:
        return (
            "–"
            if value is None or (isinstance(value, float) and math.isnan(value))
            else f"{value:.{digits}g}"
        )

    lines = [
        "### Fig 5 — node activity of each model's analysed runs (test set)",
        "",
        "| model | run | D | S | layer | nodes | dead | entropy median (bits) | entropy IQR | selectivity (classes) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['run_id']} | {r['dendrites']} | {r['somata']} | {r['layer']} | {r['nodes']} "
            f"| {r['dead']} | {num(r['entropy_median'])} | {num(r['entropy_iqr'])} | {num(r['selectivity_mean'])} |"
        )
    path = out / "fig5-summary.md"
    atomic_write_text(path, "\n".join(lines) + "\n")
    result.written.append(path)


def _write_scores(
    out: Path, analyses: Mapping[str, Sequence[Mapping[str, Any]]], result: FiguresResult
) -> None:
    """Fig 6's scores as a tidy CSV, and per score the model × layer ANOVA and the Welch tests
    between models within each layer (Bonferroni over all of a score's tests), where defined."""

    from dendritic.analysis.stats import pairwise_by_level, two_way_anova

    rows = paper.score_table(analyses)
    if not rows:
        return
    _write_rows_csv(out / "fig6-scores.csv", rows, result)
    lines = ["### Fig 6 — separability scores, mean ± sd over trials × t-SNE repeats", ""]
    lines += ["| model | layer | n | " + " | ".join(label for _, label in paper.SCORES) + " |"]
    lines += ["|---|---|---|" + "---|" * len(paper.SCORES)]
    for model in order_models(analyses):
        for layer in sorted({r["layer"] for r in rows if r["model"] == model}):
            cells = [r for r in rows if r["model"] == model and r["layer"] == layer]
            stats = []
            for key, _ in paper.SCORES:
                vals = np.asarray([c[key] for c in cells], dtype=float)
                sd = f" ± {vals.std(ddof=1):.3f}" if len(vals) > 1 else ""
                stats.append(f"{vals.mean():.3f}{sd}")
            lines.append(f"| {model} | {layer} | {len(cells)} | " + " | ".join(stats) + " |")
    lines += ["", "### Fig 6 — two-way ANOVA (model × layer) of the separability scores", ""]
    any_ok = False
    for key, label in paper.SCORES:
        try:
            anova = two_way_anova([(r["model"], r["layer"], r[key]) for r in rows])
        except ValueError as exc:
            lines.append(f"- {label}: not computed ({exc})")
            continue
        any_ok = True
        lines += [f"**{label}**", "", "| source | SS | df | F | p |", "|---|---|---|---|---|"]
        for source, row in anova.rows.items():
            f = "" if math.isnan(row.f) else f"{row.f:.3g}"
            p = "" if math.isnan(row.p) else f"{row.p:.3g}"
            lines.append(f"| {source} | {row.ss:.4g} | {row.df} | {f} | {p} |")
        lines.append("")
        try:
            tests = pairwise_by_level([(r["model"], r["layer"], r[key]) for r in rows])
        except ValueError as exc:
            lines += [f"Pairwise tests not computed ({exc}).", ""]
            continue
        lines += [
            f"Pairwise Welch tests between models within each layer ({len(tests)} tests, Bonferroni):",
            "",
            "| layer | model a | model b | mean a | mean b | t | p | p (Bonferroni) |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for t in tests:
            lines.append(
                f"| {t.within} | {t.a} | {t.b} | {t.mean_a:.4g} | {t.mean_b:.4g} | {t.t:.3g} | {t.p:.3g} "
                f"| {t.p_adjusted:.3g} |"
            )
        lines.append("")
    if any_ok or rows:
        path = out / "fig6-anova.md"
        atomic_write_text(path, "\n".join(lines) + "\n")
        result.written.append(path)


def _write_manifest(out: Path, result: FiguresResult, *, on: str, runs: StoreRuns) -> Path:
    """``figures.json``: what was drawn (with captions), skipped and why — the report reads it."""
    doc = {
        "generated": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "select_on": on,
        "optimizer": runs.optimizer,
        "dataset": result.dataset,
        "finished_runs": len(runs.runs),
        "figures": [
            {
                "name": name,
                "label": FIGURES[name].label,
                "caption": FIGURES[name].caption,
                "files": [p.name for p in paths],
                "panels": result.panels.get(name),
            }
            for name, paths in result.figures.items()
        ],
        "tables": [{"name": t.name, "title": t.title, "rows": len(t.rows)} for t in result.tables.values()],
        "skipped": result.skipped,
        "notes": result.notes,
    }
    path = out / "figures.json"
    atomic_write_text(path, json.dumps(doc, indent=2))
    return path
