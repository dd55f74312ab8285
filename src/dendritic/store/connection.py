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
import logging
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

log = logging.getLogger(__name__)

#: Bytes SQLite must be able to add beside a WAL-mode store to read it (its WAL index, the -shm
#: file, is 32 KiB); below twice that a filesystem counts as full for a reader.
_FULL_BELOW = 64 << 10
#: Columns the store only ever writes numbers (or NULL) into; anything else there is damage.
_NUMBER_COLUMNS = (
    "wall_seconds",
    "test_accuracy",
    "test_loss",
    "attempts",
    "pid",
    "trainable_params",
    "paper_params",
    "best_epoch",
    "epochs_run",
)

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
        #: Attempt number of each run this object started (see StoreWriter._owned_by_another).
        self._owned: dict[int, int] = {}
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
        uri = path.resolve().as_uri()
        if _needs_wal_index(path) and _free_bytes(path.parent) < _FULL_BELOW:
            return self._open_on_full_disk(uri)  # SQLite would fail creating its WAL index
        try:
            return self._connect(f"{uri}?mode=ro", uri=True)
        except _DiskFull:
            return self._open_on_full_disk(uri)
        except StoreError as exc:
            # On read-only media SQLite cannot create the WAL index (-shm) a WAL-mode file needs
            # even for reading; nobody can write such a file, so reading it as immutable is safe.
            if "unable to open" not in str(exc) and "readonly" not in str(exc):
                raise
        self.immutable = True
        return self._connect(f"{uri}?immutable=1", uri=True)

    def _open_on_full_disk(self, uri: str) -> sqlite3.Connection:
        """Read a store on a full disk without writing beside it, or say that the disk is full.

        A reader of a WAL-mode file needs SQLite's WAL index (the -shm file) and fails with
        "disk I/O error" when it cannot create or grow it. When the write-ahead log holds no
        changes, the database file alone is the whole store, and no writer can add any on a
        full disk, so reading it as immutable is exact. Otherwise the log must be read through
        the index: then the one-line error says the disk is full.
        """
        free = _free_bytes(self.path.parent)
        if _wal_has_changes(self.path):
            raise StoreError(
                f"cannot read run store {self.path}: the disk holding it is full ({free:,} bytes "
                "free) and SQLite needs about 32 KiB there to read the recent changes in its "
                "write-ahead log; free some space and try again"
            )
        log.warning("run store %s: the disk holding it is full; reading it as a snapshot", self.path)
        self.immutable = True
        return self._connect(f"{uri}?immutable=1", uri=True)

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
            elif _io_error(exc) and not self._memory and _free_bytes(path.parent) < _FULL_BELOW:
                raise _DiskFull(f"cannot open run store {path}: the disk holding it is full") from None
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
        # Is it a run store (or an empty file to make one)? Asked before anything is written, so
        # a file that is not one is refused untouched (not even switched to WAL mode).
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if (version > 0 and not {"runs", "epochs"} <= tables) or (version == 0 and tables):
            raise StoreError(f"{self.path} is a SQLite database but not a run store")
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
            return str(status)
        pid, start = row["pid"], row["pid_start"]
        if not isinstance(pid, int) or not (start is None or isinstance(start, str)):
            return "running"  # a damaged pid cannot be checked; never declared dead on a guess
        return "running" if pid_alive(pid, start) else "interrupted"

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
        for name in ("config", "extra"):
            if not isinstance(out[name], dict):
                out[name] = {}
                problems.append(f"its stored {name} is not a JSON object")
        problems += damaged_values(out, _NUMBER_COLUMNS)
        out["problem"] = f"run {out['id']}: " + "; ".join(problems) if problems else None
        out["stored_status"] = out["status"]
        out["status"] = self._effective_status(out)
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


# ---------------------------------------------------------------------------- damaged values


def damaged_values(row: dict[str, Any], numbers: tuple[str, ...]) -> list[str]:
    """Blank the values of ``row`` that the store never writes (text or bytes in a number
    column, bytes anywhere) and say what each was, so one bad cell never fails a whole read."""
    problems = []
    for name, value in row.items():
        if isinstance(value, bytes):
            row[name] = None
            problems.append(f"its stored {name} is binary data ({len(value)} bytes), not a value")
        elif name in numbers and value is not None and not isinstance(value, (int, float)):
            row[name] = None
            shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
            problems.append(f"its stored {name} is not a number ({shown})")
    return problems


# ---------------------------------------------------------------------------- full disks


class _DiskFull(StoreError):
    """SQLite failed to write beside a store (its WAL index) because the disk is full."""


def _io_error(exc: sqlite3.Error) -> bool:
    """An I/O or disk-full error (SQLite says only "disk I/O error"; Python >= 3.11 names it)."""
    name = getattr(exc, "sqlite_errorname", None)
    if name is not None:
        return str(name).startswith(("SQLITE_IOERR", "SQLITE_FULL"))
    text = str(exc)
    return "disk I/O error" in text or "disk is full" in text


def _free_bytes(folder: Path) -> int:
    """Bytes this process may still write in ``folder``'s filesystem (unknown: plenty)."""
    try:
        st = os.statvfs(folder)
    except (OSError, AttributeError):  # no statvfs (Windows) or no folder
        return 1 << 62
    blocks = st.f_bfree if hasattr(os, "geteuid") and os.geteuid() == 0 else st.f_bavail
    return int(blocks * st.f_frsize)


def _needs_wal_index(path: Path) -> bool:
    """Whether reading ``path`` makes SQLite create its WAL index: a WAL-mode file (header bytes
    18-19 are 2) whose -shm file does not exist yet (nobody has the store open)."""
    try:
        with open(path, "rb") as fh:
            header = fh.read(20)
    except OSError:
        return False
    if len(header) < 20 or header[18:20] != b"\x02\x02":
        return False
    return not path.with_name(path.name + "-shm").exists()


def _wal_has_changes(path: Path) -> bool:
    """Whether the store's write-ahead log may hold changes not yet in the database file (a
    missing or empty -wal file holds none)."""
    try:
        return path.with_name(path.name + "-wal").stat().st_size > 0
    except FileNotFoundError:
        return False
    except OSError:
        return True
