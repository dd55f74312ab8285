"""Tidy exports of the run store: one row per run or per epoch, as CSV, JSON or Parquet.

A damaged value (hand-edited text in a number column, an epoch's extra that is not JSON) never
stops an export: its cell is left empty, a ``problem`` column names the run, epoch and field,
and the caller is told (:class:`Exported`). The runs and epochs tables of one export are read in
one transaction and written together: both files appear, or neither.
"""

from __future__ import annotations

import contextlib
import csv
import json
import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .queries import MISSING, StoreQueries, lookup_config
from .schema import EPOCH_METRICS
from .values import StoreError, json_safe, to_json

FORMATS = ("csv", "json", "parquet")

log = logging.getLogger(__name__)

#: One table to write: its file, rows and columns.
_Table = tuple[Path, list[dict[str, Any]], list[str]]


def flatten(mapping: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts become dotted keys (``{"opt": {"lr": 1}}`` -> ``{"opt.lr": 1}``)."""
    out: dict[str, Any] = {}
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(flatten(value, prefix=f"{name}."))
        else:
            out[name] = value
    return out


def resolve_format(path: str | os.PathLike[str], fmt: str | None) -> str:
    """The export format: given explicitly, else from the file suffix, else CSV."""
    if fmt is None:
        suffix = Path(path).suffix.lower().lstrip(".")
        fmt = {"pq": "parquet", "jsonl": "json"}.get(suffix, suffix)
        if fmt not in FORMATS:
            fmt = "csv"
    fmt = fmt.lower()
    if fmt not in FORMATS:
        raise StoreError(f"unknown export format {fmt!r}; use one of {', '.join(FORMATS)}")
    return fmt


def columns_of(rows: Iterable[Mapping[str, Any]], first: Sequence[str] = ()) -> list[str]:
    """Union of row keys in first-seen order, with ``first`` leading."""
    seen: dict[str, None] = dict.fromkeys(first)
    for row in rows:
        for key in row:
            seen.setdefault(key, None)
    return list(seen)


def _cell(value: Any) -> Any:
    """A CSV cell: None -> empty, lists/dicts -> JSON text, numbers kept at full precision."""
    if value is None:
        return ""
    if isinstance(value, (list, tuple, dict)):
        return to_json(value)
    return value


def _write_csv(path: Path, rows: list[dict[str, Any]], columns: list[str]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(columns)
        for row in rows:
            writer.writerow([_cell(row.get(c)) for c in columns])


def _write_json(path: Path, rows: list[dict[str, Any]], columns: list[str]) -> None:
    records = [{c: json_safe(row.get(c)) for c in columns} for row in rows]
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(records, fh, ensure_ascii=False, indent=1, allow_nan=False)
        fh.write("\n")


def _homogenise(rows: list[dict[str, Any]], columns: list[str]) -> dict[str, list[Any]]:
    """Column lists with one type each, as columnar formats need (mixed -> text)."""
    data: dict[str, list[Any]] = {}
    for col in columns:
        values = [row.get(col) for row in rows]
        values = [to_json(v) if isinstance(v, (list, tuple, dict)) else v for v in values]
        kinds = {type(v) for v in values if v is not None}
        if kinds <= {int, float} and float in kinds:
            values = [None if v is None else float(v) for v in values]
        elif len(kinds) > 1:
            values = [None if v is None else (v if isinstance(v, str) else to_json(v)) for v in values]
        data[col] = values
    return data


def _write_parquet(path: Path, rows: list[dict[str, Any]], columns: list[str]) -> None:
    data = _homogenise(rows, columns)
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        pass
    else:
        pq.write_table(pa.table(data) if columns else pa.table({}), path)
        return
    try:
        import pandas as pd

        pd.DataFrame(data, columns=columns).to_parquet(path, index=False)
    except ImportError:
        raise StoreError(
            "parquet export needs pyarrow: pip install pyarrow (or export format='csv'/'json')"
        ) from None


def export_target(path: str | os.PathLike[str], protected: Sequence[str | os.PathLike[str]] = ()) -> Path:
    """An export file checked before anything is written: never one of the ``protected`` files
    (the store being exported), in an existing folder."""
    from dendritic.errors import PathError
    from dendritic.files import check_output_file

    try:
        return check_output_file(path, option="export file", protected=protected, create_parents=False)
    except PathError as exc:
        raise StoreError(f"cannot export: {exc}") from None


def write_tables(tables: Sequence[_Table], fmt: str) -> list[Path]:
    """Write each table in ``fmt`` to a temporary file beside its target, and rename them all
    into place only when every one is written: the files appear together, complete, or not at
    all (a failure of the second never leaves the first behind)."""
    from dendritic.errors import PathError
    from dendritic.files import atomic_path

    writer = {"csv": _write_csv, "json": _write_json, "parquet": _write_parquet}[fmt]
    try:
        with contextlib.ExitStack() as stack:
            for target, rows, columns in tables:
                writer(stack.enter_context(atomic_path(target)), rows, columns)
    except PathError as exc:
        raise StoreError(f"export failed: {exc}") from None
    return [target for target, _, _ in tables]


def write_rows(
    path: str | os.PathLike[str],
    rows: list[dict[str, Any]],
    columns: list[str],
    fmt: str,
    *,
    protected: Sequence[str | os.PathLike[str]] = (),
) -> Path:
    """Write rows to ``path`` in ``fmt``; the file appears complete or not at all, and never
    replaces one of the ``protected`` files (the store being exported)."""
    return write_tables([(export_target(path, protected), rows, columns)], fmt)[0]


@dataclass
class Exported:
    """Files an export wrote, and the damaged values it left empty (one line each, naming the
    run, the epoch if any, and the field)."""

    paths: list[Path]
    problems: list[str] = field(default_factory=list)


# Export layout: identifying columns first, then the flattened config, then outcomes and provenance.
_LEAD = ("id", "key", "status", "model", "dataset", "dendrites", "somata", "seed")
_TAIL = (
    "test_accuracy",
    "test_loss",
    "best_epoch",
    "epochs_run",
    "wall_seconds",
    "trainable_params",
    "paper_params",
    "experiment",
    "created_at",
    "started_at",
    "finished_at",
    "attempts",
    "host",
    "pid",
    "device",
    "dendritic_version",
    "torch_version",
    "python_version",
    "checkpoint",
    "data",
    "error",
    "extra",
)
_RESERVED = set(_LEAD) | set(_TAIL) | {"run_id", "epoch", *EPOCH_METRICS}


class StoreExports(StoreQueries):
    """The export half of :class:`~dendritic.store.RunStore` (see there)."""

    def _tidy_run(self, run: Mapping[str, Any]) -> tuple[dict, dict, dict]:
        lead = {c: run[c] for c in _LEAD}
        config: dict[str, Any] = {}
        for name, value in flatten(run["config"]).items():
            if name in _RESERVED:
                if name in lead and lead[name] == value:
                    continue  # same as the indexed column
                name = f"config.{name}"
            config[name] = value
        tail = {c: run[c] for c in _TAIL}
        tail["extra"] = run["extra"] or None
        if run.get("problem"):
            tail["problem"] = run["problem"]
        return lead, config, tail

    def _runs_table(self, runs: Sequence[Mapping[str, Any]]) -> tuple[list[dict[str, Any]], list[str]]:
        """Rows and columns of the runs table (a ``problem`` column only if a run is damaged)."""
        parts = [self._tidy_run(r) for r in runs]
        config_cols = columns_of(p[1] for p in parts)
        columns = [*_LEAD, *config_cols, *_TAIL]
        if any("problem" in p[2] for p in parts):
            columns.append("problem")
        return [{**lead, **cfg, **tail} for lead, cfg, tail in parts], columns

    def _epochs_table(
        self,
        runs: Sequence[Mapping[str, Any]],
        epoch_rows: Sequence[Any],
        config_columns: Sequence[str],
    ) -> tuple[list[dict[str, Any]], list[str], list[str]]:
        """Rows, columns and damaged values of the epochs table of ``runs``."""
        by_id = {r["id"]: r for r in runs}
        epoch_dicts = [self._epoch_dict(er) for er in epoch_rows if er["run_id"] in by_id]
        taken = _RESERVED | {k for e in epoch_dicts for k in e}
        cfg_names = {c: (f"config.{c}" if c in taken else c) for c in config_columns}
        rows: list[dict[str, Any]] = []
        for ep in epoch_dicts:
            run = by_id[ep["run_id"]]
            row: dict[str, Any] = {"run_id": run["id"]}
            row.update({c: run[c] for c in _LEAD[1:]})
            for name, column in cfg_names.items():
                value = lookup_config(run["config"], name)
                row[column] = None if value is MISSING else value
            row.update(ep)
            rows.append(row)
        first = ["run_id", *_LEAD[1:], *cfg_names.values(), "epoch", *EPOCH_METRICS]
        problems = [ep["problem"] for ep in epoch_dicts if ep.get("problem")]
        return rows, columns_of(rows, first=first), problems

    def _read_for_export(
        self, epochs: bool, status: str | Iterable[str] | None, filters: Mapping[str, Any]
    ) -> tuple[list[dict[str, Any]], list[Any]]:
        """The selected runs and (if ``epochs``) all epoch rows, in one read transaction."""
        with self._read() as conn:
            runs = self.list_runs(status=status, **filters)
            rows = conn.execute("SELECT * FROM epochs ORDER BY run_id, epoch").fetchall() if epochs else []
        return runs, rows

    def export(
        self,
        path: str | os.PathLike[str],
        format: str | None = None,
        *,
        epochs_path: str | os.PathLike[str] | None = None,
        status: str | Iterable[str] | None = None,
        config_columns: Sequence[str] = (),
        **filters: Any,
    ) -> Exported:
        """The runs table (see :meth:`export_runs`) and, with ``epochs_path``, the epochs table
        (see :meth:`export_epochs`) from one snapshot, written together: both or neither.

        Damaged values are left empty and listed in the result's ``problems``.
        """
        fmt = resolve_format(path, format)
        protected = self.own_files()
        targets = [export_target(path, protected)]
        if epochs_path is not None:
            targets.append(export_target(epochs_path, protected))
        runs, epoch_rows = self._read_for_export(epochs_path is not None, status, filters)
        rows, columns = self._runs_table(runs)
        tables: list[_Table] = [(targets[0], rows, columns)]
        problems = [r["problem"] for r in runs if r["problem"]]
        if epochs_path is not None:
            ep_rows, ep_columns, ep_problems = self._epochs_table(runs, epoch_rows, config_columns)
            tables.append((targets[1], ep_rows, ep_columns))
            problems += ep_problems
        return Exported(write_tables(tables, fmt), problems)

    def export_runs(
        self,
        path: str | os.PathLike[str],
        format: str | None = None,
        *,
        status: str | Iterable[str] | None = None,
        **filters: Any,
    ) -> Path:
        """Write one tidy row per run (config flattened into columns) as csv, json or parquet.

        ``format`` defaults to the file suffix (else csv); filters are those of list_runs.
        Lists and dicts (e.g. layer sizes, extra) are JSON text in csv/parquet.
        """
        result = self.export(path, format, status=status, **filters)
        _log_problems(result)
        return result.paths[0]

    def export_epochs(
        self,
        path: str | os.PathLike[str],
        format: str | None = None,
        *,
        status: str | Iterable[str] | None = None,
        config_columns: Sequence[str] = (),
        **filters: Any,
    ) -> Path:
        """Write one row per epoch with its run's id, key, status, model, dataset, dendrites,
        somata and seed (plus any ``config_columns``, dotted names allowed).

        A damaged epoch keeps its row with the bad value empty and a ``problem`` column."""
        fmt = resolve_format(path, format)
        target = export_target(path, self.own_files())
        runs, epoch_rows = self._read_for_export(True, status, filters)
        rows, columns, problems = self._epochs_table(runs, epoch_rows, config_columns)
        result = Exported(write_tables([(target, rows, columns)], fmt), problems)
        _log_problems(result)
        return result.paths[0]


def _log_problems(result: Exported) -> None:
    for problem in result.problems:
        log.warning("%s (exported empty)", problem)
