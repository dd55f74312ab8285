"""Writing the run store: starting, logging, finishing and failing runs, each in one short
transaction, so a killed process leaves the whole row or none of it and never loses a finished
result (a replacement takes the old result's place only when it finishes).

One writer per run: a run is written only by the process that started it. Nobody takes over a
run whose process is alive (on this host by its pid, on another by its heartbeat lease, see
:mod:`.liveness`); and a process whose run was taken over anyway (a lease that ran out while it
was stalled) finds out at its next write, which is refused, so two processes never mix their
epochs and results in one row."""

from __future__ import annotations

import functools
import json
import os
import platform
import sqlite3
import sys
import time
import warnings
from collections.abc import Mapping
from datetime import datetime, timezone
from types import TracebackType
from typing import Any

from .connection import StoreConnection
from .liveness import LEASE_SECONDS, lease_age, lease_expired, process_start_token
from .schema import DENORMALISED, EPOCH_METRICS, FINAL_COLUMNS, META_COLUMNS
from .values import (
    RunTakenOver,
    StoreError,
    canonical_config,
    config_key,
    format_error,
    one_line,
    parse_time,
    to_float,
    to_int,
    to_json,
    utc_now,
)

_INT_COLUMNS = {"pid", "trainable_params", "paper_params", "best_epoch", "epochs_run"}
_FLOAT_COLUMNS = {"test_accuracy", "test_loss", "wall_seconds"}
_TEXT_COLUMNS = {"host", "device", "dendritic_version", "torch_version", "python_version", "experiment"}
#: Key suffix of a run that replaces a finished one until it finishes (see start_run).
_REPLACING = ":replace"


@functools.lru_cache(maxsize=1)
def _torch_version() -> str | None:
    """Torch's version without importing torch (the store itself is standard-library only)."""
    module = sys.modules.get("torch")
    if module is not None:
        return str(getattr(module, "__version__", None))
    try:
        from importlib.metadata import PackageNotFoundError, version

        try:
            return version("torch")
        except PackageNotFoundError:
            return None
    except ImportError:  # pragma: no cover
        return None


def _dendritic_version() -> str:
    from dendritic._version import __version__

    return __version__


def _denormalise(config: Mapping[str, Any]) -> dict[str, Any]:
    """Values of the indexed columns (model, dataset, dendrites, somata, seed) from a config."""
    out: dict[str, Any] = {}
    for column, names in DENORMALISED.items():
        out[column] = None
        for name in names:
            value = config.get(name)
            if isinstance(value, (str, int, float)) and not isinstance(value, bool):
                out[column] = value
                break
    return out


def _stored_object(text: str | None, what: str) -> dict[str, Any]:
    """A stored ``extra`` as a dict to merge into; damaged text is refused, never overwritten."""
    if not text:
        return {}
    try:
        value = json.loads(text)
    except (TypeError, ValueError) as exc:
        raise StoreError(f"{what}: its stored extra is not valid JSON ({one_line(exc)})") from None
    if not isinstance(value, dict):
        raise StoreError(f"{what}: its stored extra is not a JSON object")
    return value


def _seconds_between(start: str | None, end: str | None) -> float | None:
    a, b = parse_time(start), parse_time(end)
    if a is None or b is None:
        return None
    return max(0.0, (b - a).total_seconds())


class StoreWriter(StoreConnection):
    """The writing half of :class:`~dendritic.store.RunStore` (see there)."""

    def _elapsed(self, run_id: int, started_at: str | None, now: str) -> float | None:
        t0 = self._t0.get(run_id)
        if t0 is not None:
            return time.monotonic() - t0
        return _seconds_between(started_at, now)

    def _meta_fields(self, meta: Mapping[str, Any] | None) -> tuple[dict[str, Any], dict[str, Any]]:
        """Run columns from defaults + ``meta``; unknown meta keys go to ``extra``."""
        fields: dict[str, Any] = {
            "host": self._host,
            "pid": os.getpid(),
            "device": None,
            "dendritic_version": _dendritic_version(),
            "torch_version": _torch_version(),
            "python_version": platform.python_version(),
            "trainable_params": None,
            "paper_params": None,
            "checkpoint": None,
            "data": None,
            "experiment": None,
        }
        extra: dict[str, Any] = {}
        for name, value in (meta or {}).items():
            if name == "extra":
                if not isinstance(value, Mapping):
                    raise StoreError("meta['extra'] must be a dict")
                extra.update(value)
            elif name in META_COLUMNS:
                fields[name] = self._convert(name, value)
            else:
                extra[name] = value
        local = fields["host"] == self._host and fields["pid"] is not None
        fields["pid_start"] = process_start_token(fields["pid"]) if local else None
        return fields, extra

    @staticmethod
    def _convert(name: str, value: Any) -> Any:
        if value is None:
            return None
        if name in _INT_COLUMNS:
            return to_int(value, name)
        if name in _FLOAT_COLUMNS:
            return to_float(value)
        if name == "checkpoint":
            return os.fspath(value)
        if name == "data":
            return to_json(value)
        if name in _TEXT_COLUMNS:
            return str(value)
        return value  # pragma: no cover

    # ------------------------------------------------------------------ writing

    def start_run(
        self,
        config: Mapping[str, Any],
        *,
        meta: Mapping[str, Any] | None = None,
        replace: bool = False,
    ) -> int:
        """Record that the run of ``config`` starts now; returns its id.

        The run is identified by :func:`config_key`. A run that exists but did not finish
        (failed, interrupted) is retried in the same row: its epochs and error are cleared.
        A finished run raises :class:`StoreError` unless ``replace=True``. A run still running
        in another live process is never taken over, not even with ``replace=True``: on this
        host its pid must be gone; a run of another host may be taken over with ``replace=True``
        once its heartbeat is older than :data:`~dendritic.store.liveness.LEASE_SECONDS` (the
        process that had it is then refused at its next write). ``meta`` sets host, pid,
        device, versions, trainable_params, paper_params, checkpoint, data and experiment (the
        sweep the run is made for, see :func:`dendritic.sweeps.experiment_of`); other meta keys
        go to ``extra``.

        Replacing a finished run never loses it: the new attempt runs in a row of its own (key
        ``KEY:replace``) and takes the old row's place only when :meth:`finish_run` records its
        result; until then, or if it fails or is killed, the old result stays as it was.
        """
        text = canonical_config(config)
        key = config_key(config)
        denorm = _denormalise(json.loads(text))
        fields, extra = self._meta_fields(meta)
        values = {**denorm, **fields, "config": text, "extra": to_json(extra) if extra else None}
        now = utc_now()
        with self._write() as conn:
            row = conn.execute("SELECT * FROM runs WHERE key = ?", (key,)).fetchone()
            if row is not None and row["status"] == "finished":
                self._check_same_config(row, key, text)
                if not replace:
                    raise StoreError(
                        f"run {row['id']} (key {key}) already finished; run it again with --replace "
                        "(replace=True), which keeps this result until the new run finishes"
                    )
                run_id, attempt = self._start_attempt(
                    conn, f"{key}{_REPLACING}", text, values, now, takeover=True
                )
            else:
                run_id, attempt = self._start_attempt(conn, key, text, values, now, takeover=replace, row=row)
        self._t0[run_id] = time.monotonic()
        self._owned[run_id] = attempt
        return run_id

    @staticmethod
    def _check_same_config(row: sqlite3.Row, key: str, text: str) -> None:
        if row["config"] != text:
            raise StoreError(
                f"config key {key} of run {row['id']} belongs to a different config "
                "(hash collision or edited file)"
            )

    def _start_attempt(
        self,
        conn: sqlite3.Connection,
        key: str,
        text: str,
        values: dict[str, Any],
        now: str,
        *,
        takeover: bool,
        row: sqlite3.Row | None = None,
    ) -> tuple[int, int]:
        """Start (or restart, in the same row) the unfinished run of ``key``; returns its id and
        attempt number (what tells this process's writes from those of a later owner's)."""
        if row is None:
            row = conn.execute("SELECT * FROM runs WHERE key = ?", (key,)).fetchone()
        if row is None:
            cols = ["key", "status", "created_at", "started_at", "heartbeat_at", "epochs_run"]
            cols += list(values)
            params = [key, "running", now, now, now, 0, *values.values()]
            cur = conn.execute(
                f"INSERT INTO runs ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})", params
            )
            assert cur.lastrowid is not None  # an INSERT's rowid
            return int(cur.lastrowid), 1
        run_id = int(row["id"])
        self._check_same_config(row, key, text)
        mine = row["host"] == self._host and row["pid"] == os.getpid()
        if row["status"] == "running" and not mine:
            self._refuse_live(row, key, takeover=takeover)
        conn.execute("DELETE FROM epochs WHERE run_id = ?", (run_id,))
        reset = {
            **values,
            "status": "running",
            "started_at": now,
            "heartbeat_at": now,
            "finished_at": None,
            "wall_seconds": None,
            "error": None,
            "test_accuracy": None,
            "test_loss": None,
            "best_epoch": None,
            "epochs_run": 0,
        }
        assignments = ", ".join(f"{c} = ?" for c in reset)
        conn.execute(
            f"UPDATE runs SET {assignments}, attempts = attempts + 1 WHERE id = ?",
            [*reset.values(), run_id],
        )
        attempts = conn.execute("SELECT attempts FROM runs WHERE id = ?", (run_id,)).fetchone()[0]
        return run_id, int(attempts)

    def _refuse_live(self, row: sqlite3.Row, key: str, *, takeover: bool) -> None:
        """Raise unless the 'running' ``row`` may be started again: its process is gone (this
        host), or, with ``takeover``, its lease ran out (another host). A live run is never
        taken over, so the message never offers --replace for one."""
        run = f"run {row['id']} (key {key})"
        if row["host"] == self._host:
            if self._effective_status(row) == "running":
                raise StoreError(
                    f"{run} is still running in process {row['pid']} on this host; wait for it to "
                    "finish or stop that process first (--replace never takes over a live run)"
                )
            return  # its process is gone: retried in the same row
        age = lease_age(parse_time(row["heartbeat_at"] or row["started_at"]), datetime.now(timezone.utc))
        beat = "no heartbeat" if age is None else f"last heartbeat {age:.0f} s ago"
        where = f"on host {row['host']} (pid {row['pid']}, {beat})"
        if not lease_expired(age):
            raise StoreError(
                f"{run} is still running {where}; wait for it to finish or stop it first: a run of "
                f"another host can be taken over only after {LEASE_SECONDS:.0f} s without a heartbeat"
            )
        if not takeover:
            raise StoreError(
                f"{run} is marked running {where}, beyond its {LEASE_SECONDS:.0f} s lease; if that "
                "process is gone, run it again with --replace (replace=True) to take it over"
            )

    def _owned_by_another(self, row: sqlite3.Row) -> str | None:
        """Why this process may no longer write ``row`` (a later attempt owns it), or None.

        Only runs this store object started are checked; their attempt number was remembered.
        """
        attempt = self._owned.get(int(row["id"]))
        if attempt is None or row["attempts"] == attempt:
            return None
        return (
            f"run {row['id']} was taken over by pid {row['pid']} on {row['host']} (attempt "
            f"{row['attempts']}) after this process started it (attempt {attempt}); this process "
            "must stop writing it"
        )

    def log_epoch(self, run_id: int, epoch: int, **metrics: Any) -> None:
        """Record metrics of one (1-based) epoch of a running run.

        Known metrics are train_loss, train_accuracy, val_loss, val_accuracy, seconds; any
        other keyword is kept too (JSON). Logging the same epoch again adds/overwrites the
        metrics it names. NaN values are stored as NULL (SQLite has no NaN).
        """
        epoch_no = to_int(epoch, "epoch")
        if epoch_no is None or epoch_no < 1:
            raise StoreError(f"epochs are numbered from 1, got {epoch!r}")
        cols = {m: to_float(metrics.pop(m)) for m in EPOCH_METRICS if m in metrics}
        now = utc_now()
        with self._write() as conn:
            row = self._row(conn, run_id)
            lost = self._owned_by_another(row)
            if lost is not None:
                raise RunTakenOver(lost)
            if row["status"] != "running":
                raise StoreError(
                    f"run {run_id} is {row['status']}, not running; start_run it again to log epochs"
                )
            extra_text = None
            if metrics:
                old = conn.execute(
                    "SELECT extra FROM epochs WHERE run_id = ? AND epoch = ?", (run_id, epoch_no)
                ).fetchone()
                merged = _stored_object(
                    old["extra"] if old is not None else None, f"run {run_id} epoch {epoch_no}"
                )
                merged.update(metrics)
                extra_text = to_json(merged)
            names = [*cols, "extra"]
            updates = ", ".join(f"{c} = COALESCE(excluded.{c}, {c})" for c in names)
            conn.execute(
                f"INSERT INTO epochs (run_id, epoch, {', '.join(names)}) "
                f"VALUES (?, ?, {', '.join('?' * len(names))}) "
                f"ON CONFLICT (run_id, epoch) DO UPDATE SET {updates}",
                [run_id, epoch_no, *cols.values(), extra_text],
            )
            conn.execute(
                "UPDATE runs SET epochs_run = MAX(COALESCE(epochs_run, 0), ?), heartbeat_at = ? WHERE id = ?",
                (epoch_no, now, run_id),
            )

    def heartbeat(self, run_id: int) -> None:
        """Mark a running run as alive now (for very long epochs; see :meth:`reap_stale`).

        A run another process has taken over is left alone: its lease is not ours to renew."""
        with self._write() as conn:
            if self._owned_by_another(self._row(conn, run_id)) is not None:
                return
            conn.execute(
                "UPDATE runs SET heartbeat_at = ? WHERE id = ? AND status = 'running'",
                (utc_now(), run_id),
            )

    @staticmethod
    def _best_epoch(conn: sqlite3.Connection, run_id: int) -> int | None:
        row = conn.execute(
            "SELECT epoch FROM epochs WHERE run_id = ? AND val_loss IS NOT NULL "
            "ORDER BY val_loss, epoch LIMIT 1",
            (run_id,),
        ).fetchone()
        return None if row is None else int(row[0])

    @staticmethod
    def _last_epoch(conn: sqlite3.Connection, run_id: int) -> int:
        row = conn.execute("SELECT MAX(epoch) FROM epochs WHERE run_id = ?", (run_id,)).fetchone()
        return int(row[0] or 0)

    def finish_run(self, run_id: int, **final_metrics: Any) -> None:
        """Mark a run finished with its final metrics.

        Known keywords: test_accuracy, test_loss, best_epoch, epochs_run, wall_seconds,
        trainable_params, paper_params, checkpoint, device, and ``extra`` (a dict merged into
        the run's extra); other keywords are kept in extra. Missing best_epoch (epoch of the
        lowest validation loss), epochs_run and wall_seconds are computed.
        """
        cols = {n: self._convert(n, final_metrics.pop(n)) for n in FINAL_COLUMNS if n in final_metrics}
        extra_update = final_metrics.pop("extra", None) or {}
        if not isinstance(extra_update, Mapping):
            raise StoreError("finish_run(extra=...) must be a dict")
        extra_update = {**extra_update, **final_metrics}
        to_json(extra_update)  # fail before touching the file if not JSON-able
        now = utc_now()
        with self._write() as conn:
            row = self._row(conn, run_id)
            lost = self._owned_by_another(row)
            if lost is not None:
                raise RunTakenOver(lost)
            if row["status"] == "finished":
                raise StoreError(f"run {run_id} is already finished")
            if row["key"].endswith(_REPLACING):
                # A replacement finished: only now does it take the place of the old result.
                key = row["key"][: -len(_REPLACING)]
                old = conn.execute("SELECT id, attempts FROM runs WHERE key = ?", (key,)).fetchone()
                if old is not None:
                    conn.execute("DELETE FROM runs WHERE id = ?", (old["id"],))  # epochs cascade
                    cols["attempts"] = int(old["attempts"]) + int(row["attempts"])
                cols["key"] = key
            cols.setdefault("best_epoch", self._best_epoch(conn, run_id))
            cols.setdefault("epochs_run", self._last_epoch(conn, run_id))
            cols.setdefault("wall_seconds", self._elapsed(run_id, row["started_at"], now))
            extra = _stored_object(row["extra"], f"run {run_id}")
            extra.update(extra_update)
            values = {
                **cols,
                "status": "finished",
                "finished_at": now,
                "heartbeat_at": now,
                "error": None,
                "extra": to_json(extra) if extra else None,
            }
            assignments = ", ".join(f"{c} = ?" for c in values)
            conn.execute(f"UPDATE runs SET {assignments} WHERE id = ?", [*values.values(), run_id])
        self._t0.pop(run_id, None)
        self._owned.pop(run_id, None)

    def fail_run(self, run_id: int, error: str | BaseException, status: str = "failed") -> bool:
        """Mark a run 'failed' (or 'interrupted', e.g. on KeyboardInterrupt) with its error.

        An exception is stored with its traceback. A finished run, or one another process has
        taken over since this one started it, is left untouched and False is returned, so calling
        this from an ``except`` block never clobbers a real result or another process's run.
        """
        if status not in ("failed", "interrupted"):
            raise StoreError(f"fail_run status must be 'failed' or 'interrupted', got {status!r}")
        text = format_error(error)
        now = utc_now()
        with self._write() as conn:
            row = self._row(conn, run_id)
            if row["status"] == "finished" or self._owned_by_another(row) is not None:
                self._owned.pop(run_id, None)
                return False
            conn.execute(
                "UPDATE runs SET status = ?, error = ?, finished_at = ?, heartbeat_at = ?, "
                "wall_seconds = ?, best_epoch = ?, epochs_run = ? WHERE id = ?",
                (
                    status,
                    text,
                    now,
                    now,
                    self._elapsed(run_id, row["started_at"], now),
                    self._best_epoch(conn, run_id),
                    self._last_epoch(conn, run_id),
                    run_id,
                ),
            )
        self._t0.pop(run_id, None)
        self._owned.pop(run_id, None)
        return True

    def delete_run(self, run_id: int) -> bool:
        """Delete a run and its epochs; False if there was no such run."""
        with self._write() as conn:
            cur = conn.execute("DELETE FROM runs WHERE id = ?", (run_id,))
        self._t0.pop(run_id, None)
        self._owned.pop(run_id, None)
        return cur.rowcount > 0

    def reap_stale(self, *, older_than: float | None = None) -> list[int]:
        """Write status 'interrupted' for 'running' runs whose process is gone; returns their ids.

        Runs of this host are checked by pid. Runs of other hosts cannot be checked that way;
        with ``older_than`` (seconds) those whose last heartbeat is older are reaped too.
        """
        now = utc_now()
        now_dt = datetime.now(timezone.utc)
        reaped: list[int] = []
        with self._write() as conn:
            for row in conn.execute("SELECT * FROM runs WHERE status = 'running'").fetchall():
                reason = None
                if row["host"] == self._host:
                    if self._effective_status(row) == "interrupted":
                        reason = f"process {row['pid']} on {row['host']} ended without finishing"
                elif older_than is not None:
                    beat = parse_time(row["heartbeat_at"] or row["started_at"])
                    age = None if beat is None else (now_dt - beat).total_seconds()
                    if age is not None and age > older_than:
                        reason = f"no heartbeat from {row['host']} for {age:.0f}s"
                if reason is None:
                    continue
                conn.execute(
                    "UPDATE runs SET status = 'interrupted', error = ?, finished_at = ?, "
                    "wall_seconds = ? WHERE id = ?",
                    (
                        f"{reason} (marked by reap_stale)",
                        now,
                        _seconds_between(row["started_at"], row["heartbeat_at"]),
                        row["id"],
                    ),
                )
                reaped.append(int(row["id"]))
        return reaped

    def record(
        self,
        config: Mapping[str, Any],
        *,
        meta: Mapping[str, Any] | None = None,
        replace: bool = False,
    ) -> RunRecorder:
        """Context manager around one run: failures and Ctrl-C are recorded, then re-raised.

        ``with store.record(cfg) as run: ...; run.log_epoch(1, ...); run.finish(test_accuracy=a)``
        """
        return RunRecorder(self, config, meta=meta, replace=replace)

    # ------------------------------------------------------------------ reading


class RunRecorder:
    """One run in progress: log epochs, then :meth:`finish`; exits record failures.

    Leaving the ``with`` block by an exception marks the run 'failed' (traceback kept); by
    KeyboardInterrupt or SystemExit 'interrupted'; without calling finish() 'failed'. The
    exception always propagates.
    """

    def __init__(
        self,
        store: StoreWriter,
        config: Mapping[str, Any],
        *,
        meta: Mapping[str, Any] | None = None,
        replace: bool = False,
    ) -> None:
        self.store = store
        self.config = dict(config)
        self.key = config_key(config)
        self._meta = meta
        self._replace = replace
        self.id: int | None = None
        self.done = False

    def __enter__(self) -> RunRecorder:
        self.id = self.store.start_run(self.config, meta=self._meta, replace=self._replace)
        return self

    def _require_id(self) -> int:
        if self.id is None:
            raise StoreError("use the recorder in a with-block: the run has not started")
        return self.id

    def log_epoch(self, epoch: int, **metrics: Any) -> None:
        """See :meth:`RunStore.log_epoch`."""
        self.store.log_epoch(self._require_id(), epoch, **metrics)

    def finish(self, **final_metrics: Any) -> None:
        """See :meth:`RunStore.finish_run`."""
        self.store.finish_run(self._require_id(), **final_metrics)
        self.done = True

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.id is None or self.done:
            return
        try:
            if exc is None:
                self.store.fail_run(self.id, "the run block ended without finish()")
            elif isinstance(exc, (KeyboardInterrupt, SystemExit)):
                self.store.fail_run(self.id, exc, status="interrupted")
            else:
                self.store.fail_run(self.id, exc, status="failed")
        except StoreError as err:  # never hide the original exception
            if exc is None:
                raise
            warnings.warn(f"could not record the end of run {self.id}: {one_line(err)}", stacklevel=2)
