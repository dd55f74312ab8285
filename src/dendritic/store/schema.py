"""SQL schema of the run store and its migrations (PRAGMA user_version holds the version)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

#: Version written to ``PRAGMA user_version``; bump it and add a migration when the schema changes.
SCHEMA_VERSION = 3

#: ``PRAGMA application_id`` of run stores ("dANN"), so other SQLite files are not mistaken for one.
APPLICATION_ID = 0x64414E4E

RUN_STATUSES = ("running", "finished", "failed", "interrupted")

#: Config fields copied into indexed columns, with the config names accepted for each.
DENORMALISED: dict[str, tuple[str, ...]] = {
    "model": ("model", "model_name"),
    "dataset": ("dataset", "dataset_name"),
    "dendrites": ("dendrites", "num_dendrites", "n_dendrites"),
    "somata": ("somata", "num_somata", "n_somata"),
    "seed": ("seed", "trial"),
}

#: Run columns that ``start_run(meta=...)`` may set.
META_COLUMNS = (
    "host",
    "pid",
    "device",
    "dendritic_version",
    "torch_version",
    "python_version",
    "trainable_params",
    "paper_params",
    "checkpoint",
    "data",
    "experiment",
)

#: Run columns that ``finish_run(**metrics)`` may set.
FINAL_COLUMNS = (
    "test_accuracy",
    "test_loss",
    "best_epoch",
    "epochs_run",
    "wall_seconds",
    "trainable_params",
    "paper_params",
    "checkpoint",
    "device",
    "data",
)

EPOCH_METRICS = ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "seconds")

RUN_COLUMNS = (
    "id",
    "key",
    "config",
    "model",
    "dataset",
    "dendrites",
    "somata",
    "seed",
    "status",
    "created_at",
    "started_at",
    "finished_at",
    "heartbeat_at",
    "wall_seconds",
    "attempts",
    "host",
    "pid",
    "pid_start",
    "dendritic_version",
    "torch_version",
    "python_version",
    "device",
    "error",
    "trainable_params",
    "paper_params",
    "test_accuracy",
    "test_loss",
    "best_epoch",
    "epochs_run",
    "checkpoint",
    "data",
    "experiment",
    "extra",
)

_SCHEMA_V1 = """
CREATE TABLE runs (
    id                INTEGER PRIMARY KEY,
    key               TEXT    NOT NULL UNIQUE,
    config            TEXT    NOT NULL,
    model             TEXT,
    dataset           TEXT,
    dendrites         INTEGER,
    somata            INTEGER,
    seed              INTEGER,
    status            TEXT    NOT NULL
                      CHECK (status IN ('running', 'finished', 'failed', 'interrupted')),
    created_at        TEXT    NOT NULL,
    started_at        TEXT,
    finished_at       TEXT,
    heartbeat_at      TEXT,
    wall_seconds      REAL,
    attempts          INTEGER NOT NULL DEFAULT 1,
    host              TEXT,
    pid               INTEGER,
    pid_start         TEXT,
    dendritic_version TEXT,
    torch_version     TEXT,
    python_version    TEXT,
    device            TEXT,
    error             TEXT,
    trainable_params  INTEGER,
    paper_params      INTEGER,
    test_accuracy     REAL,
    test_loss         REAL,
    best_epoch        INTEGER,
    epochs_run        INTEGER,
    checkpoint        TEXT,
    extra             TEXT
);
CREATE INDEX runs_status ON runs (status);
CREATE INDEX runs_model_dataset ON runs (model, dataset, dendrites, somata, seed);
CREATE INDEX runs_dataset ON runs (dataset);
CREATE TABLE epochs (
    run_id         INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    epoch          INTEGER NOT NULL CHECK (epoch >= 1),
    train_loss     REAL,
    train_accuracy REAL,
    val_loss       REAL,
    val_accuracy   REAL,
    seconds        REAL,
    extra          TEXT,
    PRIMARY KEY (run_id, epoch)
) WITHOUT ROWID;
"""


def _v1_to_v2(conn: sqlite3.Connection) -> None:
    """v2: ``data``, the provenance of a run's dataset (resolved files and their SHA-256)."""
    conn.execute("ALTER TABLE runs ADD COLUMN data TEXT")


def _v2_to_v3(conn: sqlite3.Connection) -> None:
    """v3: ``experiment``, the experiment (sweep) a run was made for: ``main``, ``noise``, ...,
    ``continual``, or NULL (runs recorded before v3, and runs of no experiment)."""
    conn.execute("ALTER TABLE runs ADD COLUMN experiment TEXT")
    conn.execute("CREATE INDEX runs_experiment ON runs (experiment)")


#: ``MIGRATIONS[v]`` upgrades a version-``v`` file to ``v + 1`` inside the open transaction.
MIGRATIONS: dict[int, Callable[[sqlite3.Connection], None]] = {1: _v1_to_v2, 2: _v2_to_v3}


def create_schema(conn: sqlite3.Connection) -> None:
    """Create the current schema in an empty database (caller holds the write transaction)."""
    for statement in _SCHEMA_V1.split(";"):
        if statement.strip():
            conn.execute(statement)
    for version in range(1, SCHEMA_VERSION):
        MIGRATIONS[version](conn)
    conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


def migrate(conn: sqlite3.Connection, version: int) -> None:
    """Bring a file from ``version`` up to :data:`SCHEMA_VERSION` (caller holds the transaction)."""
    while version < SCHEMA_VERSION:
        MIGRATIONS[version](conn)
        version += 1
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
