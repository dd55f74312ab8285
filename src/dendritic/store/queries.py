"""Reading the run store: one run, its epochs, and runs selected by status, indexed columns and
config values."""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from .connection import StoreConnection, damaged_values
from .schema import EPOCH_METRICS, RUN_STATUSES
from .values import StoreError, config_key, one_line

_ANY_OF = (tuple, set, frozenset)
MISSING = object()


def lookup_config(config: Mapping[str, Any], name: str) -> Any:
    """``config[name]``, or a dotted path into nested dicts; ``MISSING`` if absent."""
    if name in config:
        return config[name]
    node: Any = config
    for part in name.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return MISSING
        node = node[part]
    return node


def _checkpoint_stem(path: Path) -> Path | None:
    """A checkpoint's name as one absolute path without ``.json`` / ``.safetensors`` (None if
    the text is no usable path)."""
    try:
        path = path.expanduser()
        if path.suffix in (".json", ".safetensors"):
            path = path.with_suffix("")
        return path.resolve()
    except (OSError, RuntimeError, ValueError):
        return None


def _matches(value: Any, wanted: Any) -> bool:
    if value is MISSING:
        return False
    if isinstance(wanted, _ANY_OF):
        return any(value == w for w in wanted)
    return bool(value == wanted)


class StoreQueries(StoreConnection):
    """The reading half of :class:`~dendritic.store.RunStore` (see there)."""

    def get_run(self, run_id: int) -> dict[str, Any]:
        """All columns of a run, config and extra decoded, status as seen now (see reap_stale)."""
        with self._read() as conn:
            return self._run_dict(self._row(conn, run_id))

    def epochs(self, run_id: int) -> list[dict[str, Any]]:
        """Per-epoch metrics of a run, in epoch order (extra metrics merged in).

        A damaged epoch (its extra not JSON, text in a metric) reads with that value left out
        and a ``problem`` key naming the run, epoch and field."""
        with self._read() as conn:
            self._row(conn, run_id)
            rows = conn.execute("SELECT * FROM epochs WHERE run_id = ? ORDER BY epoch", (run_id,)).fetchall()
        return [self._epoch_dict(r) for r in rows]

    @staticmethod
    def _epoch_dict(row: sqlite3.Row) -> dict[str, Any]:
        out = dict(row)
        problems = damaged_values(out, ("epoch", *EPOCH_METRICS))
        extra = out.pop("extra")
        if extra:
            try:
                value = json.loads(extra)
            except (TypeError, ValueError) as exc:
                problems.append(f"its stored extra is not valid JSON ({one_line(exc)})")
            else:
                if isinstance(value, dict):
                    for name, metric in value.items():
                        out.setdefault(name, metric)  # never over the row's own columns
                else:
                    problems.append("its stored extra is not a JSON object")
        if problems:
            out["problem"] = f"run {out['run_id']} epoch {out['epoch']}: " + "; ".join(problems)
        return out

    def find(self, key: str | Mapping[str, Any]) -> dict[str, Any] | None:
        """The run with this config key (or config dict), or None."""
        if isinstance(key, Mapping):
            key = config_key(key)
        with self._read() as conn:
            row = conn.execute("SELECT * FROM runs WHERE key = ?", (key,)).fetchone()
            return None if row is None else self._run_dict(row)

    def list_runs(
        self,
        *,
        status: str | Iterable[str] | None = None,
        model: Any = None,
        dataset: Any = None,
        experiment: Any = None,
        limit: int | None = None,
        **config_filters: Any,
    ) -> list[dict[str, Any]]:
        """Runs matching all filters, oldest first.

        ``status`` is the status as seen now (dead 'running' runs are 'interrupted').
        Other keywords compare with config values (dotted names reach nested dicts); a tuple or
        set means "any of". model, dataset, experiment, dendrites, somata and seed use indexed
        columns (and there a list means "any of" too).
        """
        statuses: set[str] | None = None
        if status is not None:
            statuses = {status} if isinstance(status, str) else set(status)
            unknown = statuses - set(RUN_STATUSES)
            if unknown:
                raise StoreError(f"unknown status {sorted(unknown)[0]!r}; use {RUN_STATUSES}")
        where: list[str] = []
        params: list[Any] = []
        if statuses is not None:
            stored = statuses | ({"running"} if "interrupted" in statuses else set())
            where.append(f"status IN ({', '.join('?' * len(stored))})")
            params.extend(sorted(stored))
        column_filters = {"model": model, "dataset": dataset, "experiment": experiment}
        for name in ("dendrites", "somata", "seed"):
            if name in config_filters:
                column_filters[name] = config_filters.pop(name)
        for name, wanted in column_filters.items():
            if wanted is None:
                continue
            if isinstance(wanted, (list, *_ANY_OF)):
                wanted = list(wanted)
                where.append(f"{name} IN ({', '.join('?' * len(wanted))})")
                params.extend(wanted)
            else:
                where.append(f"{name} = ?")
                params.append(wanted)
        sql = "SELECT * FROM runs"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY id"
        out: list[dict[str, Any]] = []
        if limit is not None and limit <= 0:
            return out
        with self._read() as conn:
            for row in conn.execute(sql, params):
                run = self._run_dict(row)
                if statuses is not None and run["status"] not in statuses:
                    continue
                cfg = run["config"]
                if not all(_matches(lookup_config(cfg, k), v) for k, v in config_filters.items()):
                    continue
                out.append(run)
                if limit is not None and len(out) >= limit:
                    break
        return out

    def runs_with_checkpoint(self, path: str | os.PathLike[str]) -> list[dict[str, Any]]:
        """Runs that record the checkpoint at ``path`` (either of its two files) as theirs, oldest
        first: who owns a checkpoint path. A relative recorded path is taken from the working
        folder, then from the store's folder (as ``dendritic analyze`` resolves it)."""
        target = _checkpoint_stem(Path(path))
        base = None if self._memory else Path(self.path).resolve().parent
        with self._read() as conn:
            rows = conn.execute("SELECT * FROM runs WHERE checkpoint IS NOT NULL ORDER BY id").fetchall()
        out = []
        for row in rows:
            ref = Path(str(row["checkpoint"]))
            candidates = [ref] if ref.is_absolute() or base is None else [ref, base / ref]
            if target is not None and any(_checkpoint_stem(c) == target for c in candidates):
                out.append(self._run_dict(row))
        return out

    def finished_keys(self) -> set[str]:
        """Keys of finished runs: what a resumed sweep skips."""
        with self._read() as conn:
            return {r[0] for r in conn.execute("SELECT key FROM runs WHERE status = 'finished'")}

    def counts(self) -> dict[str, int]:
        """Number of runs per status as seen now, e.g. for a sweep's progress line."""
        out = dict.fromkeys(RUN_STATUSES, 0)
        with self._read() as conn:
            for row in conn.execute("SELECT status, host, pid, pid_start FROM runs"):
                out[self._effective_status(row)] += 1
        return out

    def __len__(self) -> int:
        with self._read() as conn:
            return int(conn.execute("SELECT count(*) FROM runs").fetchone()[0])
