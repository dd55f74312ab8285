"""The run store's connection: opening a file (or read-only media), schema checks and migration,
short transactions, and one connection per process (a SQLite connection must not cross fork()).

Why SQLite: one file, in the standard library, crash-safe (every write is a short transaction, so
a killed process leaves either the whole row or none of it), and with WAL mode many readers
(analyses, progress bars) can read while the one writer (the sweep coordinator) writes.
Nothing is ever pickled: configs and extras are JSON text.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sqlite3
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from .liveness import pid_alive
from .schema import APPLICATION_ID, RUN_COLUMNS, SCHEMA_VERSION, create_schema, migrate
from .values import RunNotFound, StoreError, one_line

DEFAULT_FILENAME = "runs.db"

# Connections inherited through fork(): kept referenced so they are never closed in the child
# (closing a parent's SQLite connection in a child can disturb the parent's locks and WAL).
_ABANDONED: list[sqlite3.Connection] = []
_Store = TypeVar("_Store", bound="StoreConnection")


class StoreConnection:
    """The connection half of :class:`~dendritic.store.RunStore` (see there)."""

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
            self.schema_version = SCHEMA_VERSION
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

    def __enter__(self: _Store) -> _Store:
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
        return f"{type(self).__name__}({str(self.path)!r}{mode})"

    # ------------------------------------------------------------------ rows as seen now

    def _effective_status(self, row: Mapping[str, Any] | sqlite3.Row) -> str:
        """'running' rows whose process is gone on this host read as 'interrupted'."""
        status = row["status"]
        if status != "running" or row["host"] != self._host:
            return status
        return "running" if pid_alive(row["pid"], row["pid_start"]) else "interrupted"

    def _run_dict(self, row: sqlite3.Row) -> dict[str, Any]:
        """A row as a dict, JSON decoded. A damaged value never hides the run: it reads as empty
        and ``problem`` says what is wrong, so listings show every run and name the bad one."""
        out = dict.fromkeys(RUN_COLUMNS)  # a read-only store of an older schema lacks columns
        out.update(dict(row))
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

    def own_files(self) -> list[Path]:
        """The database file and SQLite's companions: no output may ever replace them."""
        from dendritic.files import sqlite_files

        return [] if self._memory else sqlite_files(self.path)
