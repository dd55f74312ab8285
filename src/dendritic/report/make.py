"""`make_figures`: every figure and table of SPEC §8 whose runs exist in a results store.

Runs are sorted into the experiments that made them (:mod:`dendritic.report.runs`); every figure
of the table :data:`dendritic.figures.FIGURES` is drawn from them, or skipped with a note naming
the sweep to run. Figures 5 and 6 need checkpoints: each model's best configuration among those
with a checkpoint is analysed (:func:`dendritic.report.checkpoints.analyze_run`) on its own test
split. Files (PNG/PDF, tables, summaries, ``figures.json``) are written here, never by figures/.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from dendritic.analysis.selection import Group
from dendritic.figures import paper
from dendritic.figures.specs import (
    FIGURES,
    FigureInputs,
    Skip,
    best_by_model,
    depth_runs,
    grid_runs,
    rl_groups,
    tabular_runs,
)
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
from dendritic.report.runs import StoreRuns, load_runs

logger = logging.getLogger("dendritic.figures")

__all__ = ["FiguresResult", "make_figures", "primary_dataset"]


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
    #: figure name → the table written beside it: {"title", "header": [...], "rows": [[cell, ...]]}
    figure_tables: dict[str, dict[str, Any]] = field(default_factory=dict)
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
    wanted, formats = _check_figure_args(workers, on, only, formats)
    say = logger.info
    use_headless_backend()
    out = check_output_dir(out, option="figures folder", protected=getattr(store, "own_files", list)())
    out.mkdir(parents=True, exist_ok=True)
    result = FiguresResult()
    runs = load_runs(store, optimizer=optimizer)
    result.optimizer = runs.optimizer
    result.notes += runs.damaged_notes()
    if runs.left_out:
        result.notes.append(runs.optimizer_note())
    primary = primary_dataset(runs, dataset)
    result.dataset = primary

    def examples() -> tuple[Any, Any, Sequence[str]]:
        from dendritic.data import load

        try:
            raw = load(str(primary), data_dir=data_dir, download=download)
        except (OSError, ValueError) as exc:
            raise Skip(
                f"Dataset examples skipped: {dataset_label(str(primary))} not available ({exc})"
            ) from None
        return raw.x_test, raw.y_test, raw.info.class_names

    inputs = FigureInputs(runs, primary, on=on, examples=examples, grid=_grid_runs(runs))
    n_unselectable = sum(len(gs) - len(selectable(gs, on)) for gs in inputs.by_dataset.values())
    if n_unselectable:
        result.notes.append(
            f"{n_unselectable} configuration(s) lack {on} metrics and are left out of the selections"
        )
    if primary and not inputs.main:
        result.notes.append(f"no main-sweep runs of {dataset_label(primary)}")
    if any(FIGURES[name].checkpoints for name in wanted):
        inputs.analyses, inputs.no_analyses = _analyse_best(
            store,
            runs,
            inputs.main,
            inputs.main_groups,
            on=on,
            data_dir=data_dir,
            tsne_samples=tsne_samples if "fig6" in wanted else 0,
            tsne_repeats=tsne_repeats,
            tsne_trials=tsne_trials if "fig6" in wanted else 1,
            download=download,
            say=say,
            workers=workers,
        )
        result.analyses = inputs.analyses

    for name in FIGURES:
        if name in wanted:
            _draw(name, inputs, out, formats, result, say)
    for table in (table1(inputs.by_dataset, on), table2(inputs.by_dataset, on)):
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


def _check_figure_args(
    workers: int, on: str, only: Iterable[str] | None, formats: Sequence[str]
) -> tuple[set[str], list[str]]:
    """(the figures to draw, the formats), or a one-line ValueError."""
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    if on not in ("validation", "test"):
        raise ValueError(f"on must be 'validation' or 'test', got {on!r}")
    wanted = set(FIGURES) if only is None else set(only)
    unknown = sorted(wanted - set(FIGURES))
    if unknown:
        raise ValueError(f"unknown figure(s) {', '.join(unknown)}; choose from {', '.join(FIGURES)}")
    chosen = list(formats)
    bad = [f for f in chosen if f not in ("png", "pdf", "svg")]
    if not chosen or bad:
        raise ValueError(f"formats must name one or more of png, pdf, svg, got {chosen!r}")
    return wanted, chosen


def _draw(
    name: str,
    inputs: FigureInputs,
    out: Path,
    formats: Sequence[str],
    result: FiguresResult,
    say: Callable[[str], None],
) -> None:
    """One figure of :data:`FIGURES` (with its summary and table), or the reason it is skipped."""
    spec = FIGURES[name]
    try:
        fig = spec.draw(inputs)
    except Skip as skip:
        result.skipped[name] = str(skip)
        say(str(skip))
        return
    except ValueError as exc:
        result.skipped[name] = f"{spec.label} skipped: {exc}"
        say(result.skipped[name])
        return
    finally:
        result.skipped.update(inputs.skipped)
        inputs.skipped.clear()
    if name in _SUMMARIES and inputs.analyses:
        _SUMMARIES[name](out, inputs.analyses, result)
    if name in _TABLES:
        _TABLES[name](out, inputs, result)
    paths = save_figure(fig, out / name, formats)
    result.figures[name] = paths
    result.panels[name] = len(panel_axes(fig))
    result.written += paths
    say(f"wrote {spec.label}: {', '.join(p.name for p in paths)}")


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
    from dendritic.report.checkpoints import resolve_checkpoint

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
        best = best_by_model(candidates, on)[model]
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
        if isinstance(outcome, Exception):  # OSError or ValueError, kept to report
            problems.append(f"run {run_id}: {outcome}")
            continue
        analyses.setdefault(model, []).append(outcome)
    if not analyses:
        return {}, "no checkpoint could be analysed (" + "; ".join(problems[:3]) + ")"
    return analyses, ""


def _analyse_serial(
    store: Any, jobs: Sequence[tuple[str, int, str]], options: Mapping[str, Any], say: Callable[[str], None]
) -> Iterator[dict[str, Any] | Exception]:
    from dendritic.report.checkpoints import analyze_run

    for _, run_id, label in jobs:
        say(f"analysing {label}")
        try:
            yield analyze_run(store, run_id, **options)
        except (OSError, ValueError) as exc:
            yield exc


def _analyse_one(store_path: str, run_id: int, options: Mapping[str, Any], threads: int) -> dict[str, Any]:
    """One run's analyses in a worker process, with its own read-only store connection."""
    import torch

    from dendritic.report.checkpoints import analyze_run
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
    _write_table(out, "fig5-summary", "Fig 5 — node activity of each model's analysed runs (test set)", rows, (
        ("model", "model", ""), ("run_id", "run", ""), ("dendrites", "D", ""), ("somata", "S", ""),
        ("layer", "layer", ""), ("nodes", "nodes", ""), ("dead", "dead", ""),
        ("entropy_median", "entropy median (bits)", ".3g"), ("entropy_iqr", "entropy IQR", ".3g"),
        ("selectivity_mean", "selectivity (classes)", ".3g"),
    ), result)  # fmt: skip


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


def _grid_runs(runs: StoreRuns) -> Callable[[str], list[dict[str, Any]]]:
    """Finished runs of a named grid: tagged with it, or with the config of one of its points
    under another tag (a grid point two sweeps share is in the store once)."""
    from dendritic.store import config_key
    from dendritic.sweeps.grids import expand

    cache: dict[str, list[dict[str, Any]]] = {}

    def of(name: str) -> list[dict[str, Any]]:
        if name not in cache:
            keys = {config_key(c.to_dict()) for c in expand(name, optimizer=runs.optimizer)}
            cache[name] = [r for r in runs.runs if r.get("experiment") == name or r.get("key") in keys]
        return cache[name]

    return of


def _write_table(
    out: Path,
    stem: str,
    title: str,
    rows: Sequence[Mapping[str, Any]],
    columns: Sequence[tuple[str, str, str]],
    result: FiguresResult,
) -> None:
    """``stem.csv`` (every field; lists as JSON) and ``stem.md`` (``columns``: key, header,
    format; a missing value or NaN is "–") of ``rows``, recorded among the written files."""
    flat = [{k: (json.dumps(v) if isinstance(v, list) else v) for k, v in r.items()} for r in rows]
    _write_rows_csv(out / f"{stem}.csv", flat, result)

    def cell(value: Any, fmt: str) -> str:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return "–"
        return format(value, fmt) if fmt else str(value)

    header = [h for _, h, _ in columns]
    cells = [[cell(r.get(k), f) for k, _, f in columns] for r in rows]
    lines = [f"### {title}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(row) + " |" for row in cells]
    path = out / f"{stem}.md"
    atomic_write_text(path, "\n".join(lines) + "\n")
    result.written.append(path)
    result.figure_tables[stem] = {"title": title, "header": header, "rows": cells}


def _percent(rows: Sequence[Mapping[str, Any]], *keys: str) -> list[dict[str, Any]]:
    return [{**r, **{k: 100 * r[k] for k in keys if isinstance(r.get(k), float)}} for r in rows]


def _depth_table(out: Path, inputs: FigureInputs, result: FiguresResult) -> None:
    from dendritic.analysis.beyond import depth_rows

    rows = depth_rows(depth_runs(inputs), inputs.runs.epochs_of)
    shown = _percent(rows, "acc_mean", "acc_sd", "gap_mean", "gap_sd")
    _write_table(out, "beyond-depth", "Depth to 20 layers: test metrics (mean, s.d. over trials) and gradient norms", shown, (
        ("model", "model", ""), ("residual", "residual", ""), ("init", "init", ""), ("layers", "L", ""),
        ("somata", "S", ""),
        ("params", "parameters", ","), ("trials", "trials", ""), ("acc_mean", "test acc %", ".2f"),
        ("acc_sd", "s.d.", ".2f"), ("loss_mean", "test loss", ".4f"), ("loss_sd", "s.d.", ".4f"),
        ("gap_mean", "train−test (points)", ".2f"), ("grad_init_first", "‖g‖ layer 1, init", ".3g"),
        ("grad_init_last", "‖g‖ layer L, init", ".3g"), ("grad_epoch1_first", "‖g‖ layer 1, epoch 1", ".3g"),
    ), result)  # fmt: skip


def _morphology_table(out: Path, inputs: FigureInputs, result: FiguresResult) -> None:
    from dendritic.analysis.beyond import morphology_rows

    rows = morphology_rows(grid_runs(inputs, "morphology"))
    shown = _percent(rows, "acc_mean", "acc_sd", "val_acc_mean")
    _write_table(out, "beyond-morphology", "Morphologies at matched parameters (mean, s.d. over trials)", shown, (
        ("family", "family", ""), ("label", "morphology", ""), ("sigma", "σ", "g"), ("somata", "S", ""),
        ("params", "parameters", ","), ("trials", "trials", ""), ("acc_mean", "test acc %", ".2f"),
        ("acc_sd", "s.d.", ".2f"), ("loss_mean", "test loss", ".4f"), ("loss_sd", "s.d.", ".4f"),
        ("val_acc_mean", "val acc %", ".2f"), ("acc_efficiency", "acc. efficiency", ".4f"),
    ), result)  # fmt: skip


def _sparse_controls_table(out: Path, inputs: FigureInputs, result: FiguresResult) -> None:
    from dendritic.analysis.controls import control_rows

    rows = control_rows(grid_runs(inputs, "sparse-controls"))
    shown = _percent(rows, "acc_mean", "acc_sd")
    _write_table(out, "beyond-sparse-controls", "Sparse controls vs dANN-LRF at matched parameters (mean, s.d. over trials; Welch t-tests, Bonferroni)", shown, (
        ("size", "size", ""), ("control", "control", ""), ("somata", "S", ""), ("params", "parameters", ","),
        ("trials", "trials", ""), ("acc_mean", "test acc %", ".2f"), ("acc_sd", "s.d.", ".2f"),
        ("acc_diff", "Δ acc (points)", "+.2f"), ("p_acc", "p", ".3g"), ("p_acc_bonferroni", "p (Bonf.)", ".3g"),
        ("loss_mean", "test loss", ".4f"), ("loss_sd", "s.d.", ".4f"), ("loss_diff", "Δ loss", "+.4f"),
        ("p_loss", "p (loss)", ".3g"), ("p_loss_bonferroni", "p (loss, Bonf.)", ".3g"),
    ), result)  # fmt: skip


def _selectivity_table(out: Path, inputs: FigureInputs, result: FiguresResult) -> None:
    from dendritic.analysis.mixed_selectivity import selectivity_rows

    rows = selectivity_rows(grid_runs(inputs, "selectivity"))
    shown = _percent(rows, "acc_mean", "acc_sd")
    _write_table(out, "beyond-selectivity", "Selectivity: what was reached and what it cost (mean, s.d. over trials; Welch t-test vs alpha = 0)", shown, (
        ("model", "model", ""), ("dendrites", "D", ""), ("somata", "S", ""), ("params", "parameters", ","),
        ("sigma", "σ", "g"), ("sequential", "sequential", ""), ("condition", "α / read-out", ""),
        ("trials", "trials", ""), ("acc_mean", "test acc %", ".2f"), ("acc_sd", "s.d.", ".2f"),
        ("loss_mean", "test loss", ".4f"), ("somata_entropy_mean", "somata entropy (bits)", ".3f"),
        ("dendrites_entropy_mean", "dendrites entropy (bits)", ".3f"), ("somata_index_mean", "somata SI", ".3f"),
        ("dendrites_index_mean", "dendrites SI", ".3f"), ("effect_points", "Δ acc vs α=0 (points)", ".2f"),
        ("p_vs_alpha0", "p (Welch)", ".3g"),
    ), result)  # fmt: skip


def _tabular_table(out: Path, inputs: FigureInputs, result: FiguresResult) -> None:
    from dendritic.analysis.tabular import tabular_rows

    rows = tabular_rows(tabular_runs(inputs))
    shown = [
        {**r, **({k: 100 * r[k] for k in ("score_mean", "score_sd", "vs_mlp")} if r["metric"] == "accuracy" else {}),
         "metric": "accuracy %" if r["metric"] == "accuracy" else "R²", "noise": 100 * r["noise"]}
        for r in rows
    ]  # fmt: skip
    _write_table(out, "beyond-tabular", "Tabular data: test score per dataset, uninformative features and model (mean, s.d. across seeds of each seed's cross-validated mean; difference from the matched MLP, Welch p over seeds)", shown, (
        ("dataset", "dataset", ""), ("noise", "uninformative %", ".0f"), ("model", "model", ""),
        ("metric", "metric", ""), ("score_mean", "test score", ".2f"), ("score_sd", "s.d.", ".2f"),
        ("seeds", "seeds", ""), ("folds", "folds", ""), ("params", "parameters", ",.0f"),
        ("vs_mlp", "vs MLP", "+.2f"), ("p_vs_mlp", "p (Welch)", ".2g"), ("fit_seconds", "fit s", ".2f"),
    ), result)  # fmt: skip


def _rl_table(out: Path, inputs: FigureInputs, result: FiguresResult) -> None:
    from dendritic.rl.summary import summary_rows

    rows = summary_rows(rl_groups(inputs))
    _write_table(out, "rl-learning-curves", "Reinforcement learning: final evaluation return (mean, s.d. over seeds), steps to the threshold, parameters and time", rows, (
        ("algo", "algorithm", ""), ("task", "task", ""), ("network", "network", ""), ("params", "parameters", ","),
        ("seeds", "seeds", ""), ("final_mean", "final return", ".1f"), ("final_sd", "s.d.", ".1f"),
        ("vs_dendritic", "vs dendritic", "+.1f"), ("p_vs_dendritic", "p (Welch)", ".2g"),
        ("final_iqm", "IQM", ".1f"), ("curve_mean", "mean over curve", ".1f"), ("curve_sd", "s.d.", ".1f"),
        ("curve_vs_dendritic", "vs dendritic", "+.1f"), ("p_curve_vs_dendritic", "p (Welch)", ".2g"),
        ("threshold", "threshold", "g"),
        ("iqm_steps_to_threshold", "IQM steps to threshold", ",.0f"), ("seeds_reaching", "seeds reaching", ""),
        ("median_steps_to_threshold", "median steps (reaching)", ",.0f"), ("train_seconds", "train s", ".1f"),
    ), result)  # fmt: skip


#: Tables written next to a figure once it is drawn: figure name → writer.
_TABLES: dict[str, Callable[[Path, FigureInputs, FiguresResult], None]] = {
    "beyond-depth": _depth_table,
    "beyond-morphology": _morphology_table,
    "beyond-sparse-controls": _sparse_controls_table,
    "beyond-selectivity": _selectivity_table,
    "beyond-tabular": _tabular_table,
    "rl-learning-curves": _rl_table,
}


#: Numbers written next to a figure once it is drawn: figure name → writer.
_SUMMARIES: dict[str, Callable[[Path, Mapping[str, Sequence[Mapping[str, Any]]], FiguresResult], None]] = {
    "fig5": _write_activity_summary,
    "fig6": _write_scores,
}


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
                **({"table": result.figure_tables[name]} if name in result.figure_tables else {}),
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
