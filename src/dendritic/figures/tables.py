"""Tables 1 and 2 of the paper, computed from configuration groups, written as CSV and Markdown.

Table 1 — best configuration per model and dataset: for each criterion (highest mean accuracy,
lowest mean loss, chosen on the selection split), its D, S, trainable parameters, number of
trials and test accuracy / loss as mean ± sd over trials.

Table 2 — parameters needed to match vANN: for each dataset, model and metric, vANN's best
configuration (chosen on the selection split) and the *cheapest* configuration of the model
(fewest trainable parameters) whose mean selection-split accuracy is strictly above (loss
strictly below) that of vANN's best; ``fewer_params`` = vANN's best params / the match's params
(how many times fewer parameters the model needs). Empty when no configuration matches.
"""

from __future__ import annotations

import csv
import html
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dendritic.analysis.selection import Group, best_configuration, cheapest_matching
from dendritic.figures.style import dataset_label, order_datasets, order_models
from dendritic.files import atomic_path, atomic_write_text

__all__ = ["Table", "selectable", "table1", "table2"]

REFERENCE = "vANN"


@dataclass
class Table:
    """Rows of plain values plus how to show them; ``display`` maps a column to a formatter."""

    name: str
    title: str
    columns: list[str]
    rows: list[dict[str, Any]]
    note: str = ""
    display: dict[str, list[str]] = field(default_factory=dict)  #: shown column → raw columns

    # ---------------------------------------------------------------- plain values
    def write_csv(self, path: str | Path) -> Path:
        path = Path(path)
        with atomic_path(path) as tmp, tmp.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=self.columns, extrasaction="ignore")
            writer.writeheader()
            for row in self.rows:
                writer.writerow({c: _csv_value(row.get(c)) for c in self.columns})
        return path

    # ---------------------------------------------------------------- for people
    def shown(self) -> tuple[list[str], list[list[str]]]:
        """Header and formatted cells of the human-readable table."""
        header = list(self.display) if self.display else list(self.columns)
        cells = []
        for row in self.rows:
            if self.display:
                cells.append([_format_cell(name, row, raw) for name, raw in self.display.items()])
            else:
                cells.append([_plain(row.get(c)) for c in self.columns])
        return header, cells

    def to_markdown(self) -> str:
        header, cells = self.shown()
        lines = [f"### {self.title}", ""]
        if self.note:
            lines += [self.note, ""]
        lines.append("| " + " | ".join(header) + " |")
        lines.append("|" + "|".join("---" for _ in header) + "|")
        lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in cells]
        if not cells:
            lines.append("| " + " | ".join("" for _ in header) + " |")
        return "\n".join(lines) + "\n"

    def write_markdown(self, path: str | Path) -> Path:
        return atomic_write_text(path, self.to_markdown())

    def to_html(self) -> str:
        header, cells = self.shown()
        head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in cells)
        return f'<table class="data"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _csv_value(value: Any) -> Any:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return value


def _plain(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _format_cell(name: str, row: Mapping[str, Any], raw: list[str]) -> str:
    values: list[Any] = [row.get(c) for c in raw]
    if values[0] is None:
        return "—"
    if len(raw) == 2 and raw[0].endswith("_mean"):  # mean ± sd
        mean, sd = values
        pct = _is_accuracy(raw[0], row)
        scale, digits = (100.0, 2) if pct else (1.0, 4)
        text = f"{scale * mean:.{digits}f}"
        if sd is not None and not math.isnan(sd):
            text += f" ± {scale * sd:.{digits}f}"
        return text + (" %" if pct else "")
    value = values[0]
    if raw[0].endswith("factor") and isinstance(value, float):
        return f"{value:.1f}×"
    if "params" in raw[0] and isinstance(value, (int, float)):
        return f"{int(round(value)):,}"
    if raw[0] == "dataset":
        return dataset_label(str(value))
    if isinstance(value, float) and _is_accuracy(raw[0], row):
        return f"{100 * value:.2f} %"
    if isinstance(value, float) and ("loss" in raw[0] or row.get("metric") == "loss"):
        return f"{value:.4f}"
    return _plain(value)


def _is_accuracy(column: str, row: Mapping[str, Any]) -> bool:
    return "accuracy" in column or row.get("metric") == "accuracy"


def selectable(groups: Sequence[Group], on: str) -> list[Group]:
    """Groups that have both metrics on the selection split (hand-made runs may lack validation)."""
    out = []
    for g in groups:
        try:
            g.metric("accuracy", on)  # type: ignore[arg-type]
            g.metric("loss", on)  # type: ignore[arg-type]
        except ValueError:
            continue
        out.append(g)
    return out


def _summary_fields(prefix: str, summary: Any) -> dict[str, Any]:
    if summary is None:
        return {f"{prefix}_mean": None, f"{prefix}_sd": None}
    return {f"{prefix}_mean": summary.mean, f"{prefix}_sd": summary.sd}


def _by_model(groups: Sequence[Group]) -> dict[str, list[Group]]:
    out: dict[str, list[Group]] = {}
    for g in groups:
        out.setdefault(g.model, []).append(g)
    return out


def table1(groups_by_dataset: Mapping[str, Sequence[Group]], on: str = "validation") -> Table:
    """Best configuration per model per dataset, by accuracy and by loss (selected on ``on``)."""
    rows = []
    for dataset in order_datasets(groups_by_dataset):
        groups = selectable(groups_by_dataset[dataset], on)
        if not groups:
            continue
        configs = {model: len(gs) for model, gs in _by_model(groups).items()}
        for criterion in ("accuracy", "loss"):
            best = best_configuration(groups, criterion, on)  # type: ignore[arg-type]
            for model in order_models(best):
                g = best[model]
                rows.append(
                    {
                        "dataset": dataset,
                        "model": model,
                        "criterion": criterion,
                        "configs": configs[model],
                        "dendrites": g.dendrites,
                        "somata": g.somata,
                        "params": None if g.trainable_params is None else int(round(g.trainable_params)),
                        "trials": g.n,
                        **_summary_fields("test_accuracy", g.test_accuracy),
                        **_summary_fields("test_loss", g.test_loss),
                        **_summary_fields("val_accuracy", g.val_accuracy),
                        **_summary_fields("val_loss", g.val_loss),
                    }
                )
    rows.sort(key=lambda r: (r["criterion"] != "accuracy",))  # accuracy block first, order kept
    return Table(
        name="table1",
        title="Table 1 — best configuration per model and dataset",
        columns=[
            "dataset",
            "model",
            "criterion",
            "configs",
            "dendrites",
            "somata",
            "params",
            "trials",
            "test_accuracy_mean",
            "test_accuracy_sd",
            "test_loss_mean",
            "test_loss_sd",
            "val_accuracy_mean",
            "val_accuracy_sd",
            "val_loss_mean",
            "val_loss_sd",
        ],
        rows=rows,
        note=(
            f"Best = highest mean accuracy or lowest mean loss over trials, chosen on the {on} split, "
            "among the model's configurations in the store (configs: how many (D, S) it has; a model "
            "run at fewer was searched over fewer); test metrics are mean ± sd over trials."
        ),
        display={
            "dataset": ["dataset"],
            "model": ["model"],
            "best by": ["criterion"],
            "configs": ["configs"],
            "D": ["dendrites"],
            "S": ["somata"],
            "params": ["params"],
            "trials": ["trials"],
            "test accuracy": ["test_accuracy_mean", "test_accuracy_sd"],
            "test loss": ["test_loss_mean", "test_loss_sd"],
        },
    )


def table2(
    groups_by_dataset: Mapping[str, Sequence[Group]], on: str = "validation", reference: str = REFERENCE
) -> Table:
    """Cheapest configuration of each model that beats the reference's best, per dataset and metric."""
    rows = []
    skipped = []
    for dataset in order_datasets(groups_by_dataset):
        groups = selectable(groups_by_dataset[dataset], on)
        if not any(g.model == reference for g in groups):
            skipped.append(dataset)
            continue
        for metric in ("accuracy", "loss"):
            ref = best_configuration([g for g in groups if g.model == reference], metric, on)[reference]  # type: ignore[arg-type]
            matches = cheapest_matching(groups, reference, metric, on)  # type: ignore[arg-type]
            for model in order_models(_by_model(groups)):
                if model == reference:
                    continue
                g = matches.get(model)
                params = None if g is None or g.trainable_params is None else g.trainable_params
                test = None if g is None else getattr(g, f"test_{metric}")
                rows.append(
                    {
                        "dataset": dataset,
                        "model": model,
                        "metric": metric,
                        "vann_dendrites": ref.dendrites,
                        "vann_somata": ref.somata,
                        "vann_params": None
                        if ref.trainable_params is None
                        else int(round(ref.trainable_params)),
                        "vann_test_mean": getattr(ref, f"test_{metric}").mean
                        if getattr(ref, f"test_{metric}")
                        else None,
                        "vann_trials": ref.n,
                        "dendrites": None if g is None else g.dendrites,
                        "somata": None if g is None else g.somata,
                        "params": None if params is None else int(round(params)),
                        "test_mean": None if test is None else test.mean,
                        "test_sd": None if test is None else test.sd,
                        "trials": None if g is None else g.n,
                        "fewer_params_factor": (
                            None
                            if params is None or ref.trainable_params is None
                            else float(ref.trainable_params / params)
                        ),
                    }
                )
    rows.sort(key=lambda r: (r["metric"] != "accuracy",))
    note = (
        f"Match = the configuration with the fewest trainable parameters whose mean {on} accuracy is above "
        f"(loss below) that of {reference}'s best configuration (best on the {on} split); "
        f"'fewer params' = {reference}'s best params / the match's params. — = no configuration matches."
    )
    if skipped:
        note += f" No {reference} runs for: {', '.join(dataset_label(d) for d in skipped)}."
    return Table(
        name="table2",
        title=f"Table 2 — trainable parameters needed to match {reference}'s best",
        columns=[
            "dataset",
            "model",
            "metric",
            "vann_dendrites",
            "vann_somata",
            "vann_params",
            "vann_test_mean",
            "vann_trials",
            "dendrites",
            "somata",
            "params",
            "test_mean",
            "test_sd",
            "trials",
            "fewer_params_factor",
        ],
        rows=rows,
        note=note,
        display={
            "dataset": ["dataset"],
            "model": ["model"],
            "metric": ["metric"],
            f"{reference} best params": ["vann_params"],
            f"{reference} best (test)": ["vann_test_mean"],
            f"{reference} trials": ["vann_trials"],
            "D": ["dendrites"],
            "S": ["somata"],
            "params": ["params"],
            "test (mean ± sd)": ["test_mean", "test_sd"],
            "trials": ["trials"],
            "fewer params": ["fewer_params_factor"],
        },
    )
