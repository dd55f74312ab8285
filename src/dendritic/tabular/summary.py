"""The tabular study's results from a store: the table (Markdown, CSV) and the figure
(``dendritic tabular summary``)."""

from __future__ import annotations

import csv
import io
import logging
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from dendritic.analysis.tabular import tabular_rows
from dendritic.tabular.study import EXPERIMENT

__all__ = ["format_table", "study_rows", "write_summary"]

log = logging.getLogger("dendritic.tabular")

_COLUMNS = (
    "dataset", "features", "noise", "model", "metric", "score_mean", "score_sd", "params", "fit_seconds",
    "seeds", "folds", "runs", "vs_mlp", "p_vs_mlp",
)  # fmt: skip


def study_rows(store: Any) -> list[dict[str, Any]]:
    """The summary rows of the store's finished tabular runs."""
    return tabular_rows(store.list_runs(status="finished", experiment=EXPERIMENT))


def _score(row: Mapping[str, Any]) -> str:
    scale, unit = (1.0, "") if row["metric"] == "r2" else (100.0, " %")
    sd = row["score_sd"]
    spread = f" ± {scale * sd:.1f}" if row["metric"] != "r2" and math.isfinite(sd) else ""
    if row["metric"] == "r2":
        spread = f" ± {sd:.3f}" if math.isfinite(sd) else ""
        return f"R² {row['score_mean']:.3f}{spread}"
    return f"{scale * row['score_mean']:.1f}{spread}{unit}"


def _versus(row: Mapping[str, Any]) -> str:
    diff, p = row.get("vs_mlp", math.nan), row.get("p_vs_mlp", math.nan)
    if not math.isfinite(diff):
        return "—"
    text = f"{diff:+.3f}" if row["metric"] == "r2" else f"{100 * diff:+.1f}"
    return f"{text} ({p:.2g})" if math.isfinite(p) else text


def format_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """A Markdown table: per dataset and uninformative fraction, each model's score (accuracy %
    or R², mean ± s.d. across seeds), its difference from the matched MLP (points, or R²) with the
    Welch p-value over seeds, trainable parameters and mean fit seconds."""
    lines = [
        "| dataset | features | uninformative | model | test accuracy / R² (± s.d.) | vs MLP (Welch p) | parameters | fit s | seeds × folds |",
        "|---|---:|---:|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        params = f"{r['params']:,.0f}" if math.isfinite(r["params"]) else "—"
        lines.append(
            f"| {r['dataset']} | {r['features'] if r['features'] is not None else '—'} | "
            f"{100 * r['noise']:.0f} % | {r['model']} | {_score(r)} | {_versus(r)} | {params} | "
            f"{r['fit_seconds']:.2f} | {r['seeds']} × {r['folds']} |"
        )
    return "\n".join(lines)


def _csv(rows: Sequence[Mapping[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(_COLUMNS), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: r.get(k) for k in _COLUMNS})
    return out.getvalue()


def write_summary(
    rows: Sequence[Mapping[str, Any]],
    out: str | os.PathLike[str],
    *,
    formats: Sequence[str] = ("png", "pdf"),
    protected: Sequence[Any] = (),
) -> list[Path]:
    """Write ``tabular-summary.md`` / ``.csv`` and the figure ``beyond-tabular`` (in ``formats``;
    none: no figure) into the folder ``out``; returns the files written."""
    from dendritic.files import atomic_write_text, check_output_dir

    folder = check_output_dir(out, option="--out", protected=protected)
    folder.mkdir(parents=True, exist_ok=True)
    written = [
        atomic_write_text(folder / "tabular-summary.md", format_table(rows) + "\n"),
        atomic_write_text(folder / "tabular-summary.csv", _csv(rows)),
    ]
    if formats and rows:
        from dendritic.figures.style import save_figure, use_headless_backend
        from dendritic.figures.tabular import accuracy_vs_noise

        use_headless_backend()
        written += save_figure(accuracy_vs_noise(rows), folder / "beyond-tabular", formats)
    for path in written:
        log.info("wrote %s", path)
    return [Path(p) for p in written]
