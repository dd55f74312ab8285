"""The run store: one SQLite file recording every training run of a sweep, safely.

Why SQLite: one file, in the standard library, crash-safe (every write is a short transaction, so
a killed process leaves either the whole row or none of it), and with WAL mode many readers
(analyses, progress bars) can read while the one writer (the sweep coordinator) writes.
Nothing is ever pickled: configs and extras are JSON text.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import platform
import socket
import sqlite3
import sys
import threading
import time
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from types import TracebackType
from typing import Any

from ._export import columns_of, flatten, resolve_format, write_rows
from ._schema import (
    APPLICATION_ID,
    DENORMALISED,
    EPOCH_METRICS,
    FINAL_COLUMNS,
    META_COLUMNS,
    RUN_STATUSES,
    SCHEMA_VERSION,
    create_schema,
    migrate,
)
from ._util import (
    RunNotFound,
    StoreError,
    canonical_config,
    config_key,
    format_error,
    one_line,
    parse_time,
    pid_alive,
    process_start_token,
    to_float,
    to_int,
    to_json,
    utc_now,
)

DEFAULT_FILENAME = "runs.db"

_INT_COLUMNS = {"pid", "trainable_params", "paper_params", "best_epoch", "epochs_run"}
_FLOAT_COLUMNS = {"test_accuracy", "test_loss", "wall_seconds"}
_TEXT_COLUMNS = {"host", "device", "dendritic_version", "torch_version", "python_version"}

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
_ANY_OF = (tuple, set, frozenset)
#: Key suffix of a run that replaces a finished one until it finishes (see start_run).
_REPLACING = ":replace"
_MISSING = object()
# Connections inherited through fork(): kept referenced so they are never closed in the child
# (closing a parent's SQLite connection in a child can disturb the parent's locks and WAL).
_ABANDONED: list[sqlite3.Connection] = []


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


def _dendritic_version() -> str | None:
    try:
        from .. import __version__
    except ImportError:  # pragma: no cover
        return None
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


def _lookup(config: Mapping[str, Any], name: str) -> Any:
    """``config[name]``, or a dotted path into nested dicts; ``_MISSING`` if absent."""
    if name in config:
        return config[name]
    node: Any = config
    for part in name.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return _MISSING
        node = node[part]
    return node


def _matches(value: Any, wanted: Any) -> bool:
    if value is _MISSING:
        return False
    if isinstance(wanted, _ANY_OF):
        return any(value == w for w in wanted)
    return bool(value == wanted)


def _seconds_between(start: str | None, end: str | None) -> float | None:
    a, b = parse_time(start), parse_time(end)
    if a is None or b is None:
        return None
    return max(0.0, (b - a).total_seconds())


class RunStore:
    """A SQLite file of training runs and their per-epoch metrics.

    ``RunStore(path)`` opens or creates the file (``path`` may be a directory, then
    ``runs.db`` inside it is used). Use it as a context manager or call :meth:`close`.
    One object may be shared by threads; a forked child transparently opens its own connection.
    ``readonly=True`` opens an existing store for analysis only.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] = DEFAULT_FILENAME,
        *,
        timeout: float = 30.0,
        readonly: bool = False,
    ) -> None:
        if not str(os.fspath(path)).strip():
            raise StoreError("the results store path is empty; give a file name such as runs.db")
        memory = str(path) == ":memory:"
        target = Path(path).expanduser()
        if not memory and target.is_dir():
            target = target / DEFAULT_FILENAME
        self.path = target
        self.readonly = readonly
        self.timeout = float(timeout)
        self._memory = memory
        self._host = socket.gethostname()
        self._lock = threading.RLock()
        self._t0: dict[int, float] = {}
        self._closed = False
        self._conn: sqlite3.Connection | None = None
        self._conn_pid = os.getpid()
        #: Schema version of the file; a read-only store may be older than SCHEMA_VERSION.
        self.schema_version = SCHEMA_VERSION
        #: True when a read-only store had to be opened as immutable (read-only media).
        self.immutable = False
        self._conn = self._open()

    # ------------------------------------------------------------------ connection management

    def _open(self) -> sqlite3.Connection:
        """Open and check the file; every failure is a one-line StoreError naming the path."""
        path = self.path
        if not self._memory:
            parent = path.parent
            if parent.exists() and not parent.is_dir():
                raise StoreError(f"cannot open run store {path}: {parent} is not a directory")
            if not parent.exists():
                raise StoreError(f"cannot open run store {path}: directory {parent} does not exist")
            if self.readonly and not path.exists():
                raise StoreError(f"cannot open run store {path}: no such file")
            if path.exists() and not path.is_file():
                raise StoreError(f"cannot open run store {path}: not a file")
        if not self.readonly or self._memory:
            return self._connect(str(path), uri=False)
        try:
            return self._connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        except StoreError as exc:
            # On read-only media SQLite cannot create the WAL index (-shm) a WAL-mode file needs
            # even for reading; nobody can write such a file, so reading it as immutable is safe.
            if "unable to open" not in str(exc) and "readonly" not in str(exc):
                raise
        self.immutable = True
        return self._connect(f"{path.resolve().as_uri()}?immutable=1", uri=True)

    def _connect(self, target: str, *, uri: bool) -> sqlite3.Connection:
        path = self.path
        try:
            conn = sqlite3.connect(
                target, timeout=self.timeout, isolation_level=None, check_same_thread=False, uri=uri
            )
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open run store {path}: {exc}") from None
        try:
            self._setup(conn)
        except StoreError:
            conn.close()
            raise
        except sqlite3.Error as exc:
            conn.close()
            text = str(exc)
            if "not a database" in text or "malformed" in text:
                text = f"not a SQLite run store ({text})"
            raise StoreError(f"cannot open run store {path}: {text}") from None
        return conn

    def _setup(self, conn: sqlite3.Connection) -> None:
        """Pragmas, version checks, and schema creation/migration in one transaction."""
        conn.row_factory = sqlite3.Row
        conn.execute(f"PRAGMA busy_timeout = {int(self.timeout * 1000)}")
        version = conn.execute("PRAGMA user_version").fetchone()[0]  # fails on non-databases
        app_id = conn.execute("PRAGMA application_id").fetchone()[0]
        if app_id not in (0, APPLICATION_ID):
            raise StoreError(f"{self.path} is a SQLite file of another application, not a run store")
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"{self.path} uses run-store schema v{version}, newer than this dendritic "
                f"understands (v{SCHEMA_VERSION}); upgrade dendritic to read it"
            )
        if not self.readonly:
            # WAL: readers never block the writer nor see half-written transactions. NORMAL sync
            # is crash-safe in WAL mode (a power cut may lose only the last commits).
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA foreign_keys = ON")
        self.schema_version = version
        if version == SCHEMA_VERSION:
            return
        if self.readonly:
            if version == 0:
                raise StoreError(f"cannot open run store {self.path} read-only: it is not initialised")
            return  # an older schema reads fine; columns it lacks read as None
        conn.execute("BEGIN IMMEDIATE")
        try:
            version = conn.execute("PRAGMA user_version").fetchone()[0]  # another opener won?
            if version == 0:
                if conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]:
                    raise StoreError(f"{self.path} is a SQLite database but not a run store")
                create_schema(conn)
            elif version < SCHEMA_VERSION:
                migrate(conn, version)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def _db(self) -> sqlite3.Connection:
        if self._closed or self._conn is None:
            raise StoreError(f"run store {self.path} is closed")
        if self._conn_pid != os.getpid():
            # A SQLite connection must not cross fork(): abandon the parent's, open our own.
            _ABANDONED.append(self._conn)
            self._conn = None
            self._t0.clear()
            self._conn = self._open()
            self._conn_pid = os.getpid()
        return self._conn

    def _wrap(self, exc: sqlite3.Error) -> StoreError:
        text = str(exc)
        if "locked" in text or "busy" in text:
            return StoreError(
                f"run store {self.path} is busy: another process held the write lock for more "
                f"than {self.timeout:g}s ({text})"
            )
        return StoreError(f"run store {self.path}: {text}")

    @contextlib.contextmanager
    def _transaction(self, write: bool) -> Iterator[sqlite3.Connection]:
        """A short transaction: all of it becomes visible at COMMIT, or none of it."""
        with self._lock:
            if write and self.readonly:
                raise StoreError(f"run store {self.path} was opened read-only")
            conn = self._db()
            if conn.in_transaction:  # nested call inside our own transaction
                yield conn
                return
            try:
                conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
                yield conn
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise self._wrap(exc) from None
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

    def _write(self) -> contextlib.AbstractContextManager[sqlite3.Connection]:
        return self._transaction(write=True)

    def _read(self) -> contextlib.AbstractContextManager[sqlite3.Connection]:
        return self._transaction(write=False)

    def close(self) -> None:
        """Close the connection (idempotent); the WAL is checkpointed by SQLite on last close."""
        with self._lock:
            if self._conn is not None and self._conn_pid == os.getpid():
                self._conn.close()
            self._conn = None
            self._closed = True

    def __enter__(self) -> RunStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        mode = ", readonly=True" if self.readonly else ""
        return f"RunStore({str(self.path)!r}{mode})"

    # ------------------------------------------------------------------ status helpers

    def _effective_status(self, row: Mapping[str, Any]) -> str:
        """'running' rows whose process is gone on this host read as 'interrupted'."""
        status = row["status"]
        if status != "running" or row["host"] != self._host:
            return status
        return "running" if pid_alive(row["pid"], row["pid_start"]) else "interrupted"

    def _run_dict(self, row: sqlite3.Row) -> dict[str, Any]:
        """A row as a dict, JSON decoded. A damaged value never hides the run: it reads as empty
        and ``problem`` says what is wrong, so listings show every run and name the bad one."""
        out = dict(row)
        problems = []
        for name, empty in (("config", {}), ("extra", {}), ("data", None)):
            text = out.get(name)
            if not text:
                out[name] = empty
                continue
            try:
                out[name] = json.loads(text)
            except (TypeError, ValueError) as exc:
                out[name] = empty
                problems.append(f"its stored {name} is not valid JSON ({one_line(exc)})")
        if not isinstance(out["config"], dict):
            out["config"] = {}
            problems.append("its stored config is not a JSON object")
        out["problem"] = f"run {out['id']}: " + "; ".join(problems) if problems else None
        out["stored_status"] = out["status"]
        out["status"] = self._effective_status(row)
        return out

    @staticmethod
    def _row(conn: sqlite3.Connection, run_id: int) -> sqlite3.Row:
        row = conn.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
        if row is None:
            raise RunNotFound(f"no run with id {run_id}")
        return row

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
        A finished run raises :class:`StoreError` unless ``replace=True``; so does one that is
        still running in another live process. ``meta`` sets host, pid, device, versions,
        trainable_params, paper_params, checkpoint, data; other meta keys are kept in ``extra``.

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
                run_id = self._start_attempt(conn, f"{key}{_REPLACING}", text, values, now, takeover=True)
            else:
                run_id = self._start_attempt(conn, key, text, values, now, takeover=replace, row=row)
        self._t0[run_id] = time.monotonic()
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
    ) -> int:
        """Start (or restart, in the same row) the unfinished run of ``key``; returns its id."""
        if row is None:
            row = conn.execute("SELECT * FROM runs WHERE key = ?", (key,)).fetchone()
        if row is None:
            cols = ["key", "status", "created_at", "started_at", "heartbeat_at", "epochs_run"]
            cols += list(values)
            params = [key, "running", now, now, now, 0, *values.values()]
            cur = conn.execute(
                f"INSERT INTO runs ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})", params
            )
            return int(cur.lastrowid)
        run_id = int(row["id"])
        self._check_same_config(row, key, text)
        mine = row["host"] == self._host and row["pid"] == os.getpid()
        if not takeover and self._effective_status(row) == "running" and not mine:
            raise StoreError(
                f"run {run_id} (key {key}) is still running (pid {row['pid']} on "
                f"{row['host']}); run it with --replace (replace=True) to take it over"
            )
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
        return run_id

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
            if row["status"] != "running":
                raise StoreError(
                    f"run {run_id} is {row['status']}, not running; start_run it again to log epochs"
                )
            extra_text = None
            if metrics:
                old = conn.execute(
                    "SELECT extra FROM epochs WHERE run_id = ? AND epoch = ?", (run_id, epoch_no)
                ).fetchone()
                merged = json.loads(old["extra"]) if old is not None and old["extra"] else {}
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
        """Mark a running run as alive now (for very long epochs; see :meth:`reap_stale`)."""
        with self._write() as conn:
            self._row(conn, run_id)
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
            extra = json.loads(row["extra"]) if row["extra"] else {}
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

    def fail_run(self, run_id: int, error: str | BaseException, status: str = "failed") -> bool:
        """Mark a run 'failed' (or 'interrupted', e.g. on KeyboardInterrupt) with its error.

        An exception is stored with its traceback. A finished run is left untouched and False
        is returned, so calling this from an ``except`` block never clobbers a real result.
        """
        if status not in ("failed", "interrupted"):
            raise StoreError(f"fail_run status must be 'failed' or 'interrupted', got {status!r}")
        text = format_error(error)
        now = utc_now()
        with self._write() as conn:
            row = self._row(conn, run_id)
            if row["status"] == "finished":
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
        return True

    def delete_run(self, run_id: int) -> bool:
        """Delete a run and its epochs; False if there was no such run."""
        with self._write() as conn:
            cur = conn.execute("DELETE FROM runs WHERE id = ?", (run_id,))
        self._t0.pop(run_id, None)
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

    def get_run(self, run_id: int) -> dict[str, Any]:
        """All columns of a run, config and extra decoded, status as seen now (see reap_stale)."""
        with self._read() as conn:
            return self._run_dict(self._row(conn, run_id))

    def epochs(self, run_id: int) -> list[dict[str, Any]]:
        """Per-epoch metrics of a run, in epoch order (extra metrics merged in)."""
        with self._read() as conn:
            self._row(conn, run_id)
            rows = conn.execute("SELECT * FROM epochs WHERE run_id = ? ORDER BY epoch", (run_id,)).fetchall()
        return [self._epoch_dict(r) for r in rows]

    @staticmethod
    def _epoch_dict(row: sqlite3.Row) -> dict[str, Any]:
        out = dict(row)
        extra = out.pop("extra")
        if extra:
            out.update(json.loads(extra))
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
        limit: int | None = None,
        **config_filters: Any,
    ) -> list[dict[str, Any]]:
        """Runs matching all filters, oldest first.

        ``status`` is the status as seen now (dead 'running' runs are 'interrupted').
        Other keywords compare with config values (dotted names reach nested dicts); a tuple or
        set means "any of". model, dataset, dendrites, somata and seed use indexed columns
        (and there a list means "any of" too).
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
        column_filters = {"model": model, "dataset": dataset}
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
                if not all(_matches(_lookup(cfg, k), v) for k, v in config_filters.items()):
                    continue
                out.append(run)
                if limit is not None and len(out) >= limit:
                    break
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

    def integrity_check(self) -> list[str]:
        """SQLite's integrity and foreign-key checks; ``["ok"]`` when the file is sound."""
        with self._read() as conn:
            problems = [r[0] for r in conn.execute("PRAGMA integrity_check")]
            orphans = conn.execute("PRAGMA foreign_key_check").fetchall()
        if orphans:
            problems = [p for p in problems if p != "ok"]
            problems += [f"foreign key violation in {r[0]} rowid {r[1]}" for r in orphans]
        return problems

    @property
    def journal_mode(self) -> str:
        """The SQLite journal mode in effect ('wal' normally)."""
        with self._lock:
            return str(self._db().execute("PRAGMA journal_mode").fetchone()[0])

    # ------------------------------------------------------------------ export

    def own_files(self) -> list[Path]:
        """The database file and SQLite's companions: no output may ever replace them."""
        from dendritic.files import sqlite_files

        return [] if self._memory else sqlite_files(self.path)

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
                value = _lookup(run["config"], name)
                row[column] = None if value is _MISSING else value
            row.update(ep)
            rows.append(row)
        first = ["run_id", *_LEAD[1:], *cfg_names.values(), "epoch", *EPOCH_METRICS]
        return write_rows(path, rows, columns_of(rows, first=first), fmt, protected=self.own_files())


class RunRecorder:
    """One run in progress: log epochs, then :meth:`finish`; exits record failures.

    Leaving the ``with`` block by an exception marks the run 'failed' (traceback kept); by
    KeyboardInterrupt or SystemExit 'interrupted'; without calling finish() 'failed'. The
    exception always propagates.
    """

    def __init__(
        self,
        store: RunStore,
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
