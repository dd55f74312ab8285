"""Tidy exports of the run store: one row per run or per epoch, as CSV, JSON or Parquet."""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from .queries import MISSING, StoreQueries, lookup_config
from .schema import EPOCH_METRICS
from .values import StoreError, json_safe, to_json

FORMATS = ("csv", "json", "parquet")


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
    from dendritic.errors import PathError
    from dendritic.files import atomic_write, check_output_file

    try:
        target = check_output_file(path, option="export file", protected=protected, create_parents=False)
    except PathError as exc:
        raise StoreError(f"cannot export: {exc}") from None
    writer = {"csv": _write_csv, "json": _write_json, "parquet": _write_parquet}[fmt]
    try:
        return atomic_write(target, lambda tmp: writer(tmp, rows, columns))
    except PathError as exc:
        raise StoreError(f"export failed: {exc}") from None


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
        return lead, config, tail

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
        fmt = resolve_format(path, format)
        parts = [self._tidy_run(r) for r in self.list_runs(status=status, **filters)]
        config_cols = columns_of(p[1] for p in parts)
        columns = [*_LEAD, *config_cols, *_TAIL]
        rows = [{**lead, **cfg, **tail} for lead, cfg, tail in parts]
        return write_rows(path, rows, columns, fmt, protected=self.own_files())

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
        somata and seed (plus any ``config_columns``, dotted names allowed)."""
        fmt = resolve_format(path, format)
        with self._read() as conn:
            runs = {r["id"]: r for r in self.list_runs(status=status, **filters)}
            epoch_rows = conn.execute("SELECT * FROM epochs ORDER BY run_id, epoch").fetchall()
        epoch_dicts = [self._epoch_dict(er) for er in epoch_rows if er["run_id"] in runs]
        taken = _RESERVED | {k for e in epoch_dicts for k in e}
        cfg_names = {c: (f"config.{c}" if c in taken else c) for c in config_columns}
        rows: list[dict[str, Any]] = []
        for ep in epoch_dicts:
            run = runs[ep["run_id"]]
            row: dict[str, Any] = {"run_id": run["id"]}
            row.update({c: run[c] for c in _LEAD[1:]})
            for name, column in cfg_names.items():
                value = lookup_config(run["config"], name)
                row[column] = None if value is MISSING else value
            row.update(ep)
            rows.append(row)
        first = ["run_id", *_LEAD[1:], *cfg_names.values(), "epoch", *EPOCH_METRICS]
        return write_rows(path, rows, columns_of(rows, first=first), fmt, protected=self.own_files())
