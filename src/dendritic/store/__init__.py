"""Results store: every training run of a sweep recorded safely in one SQLite file.

``RunStore`` writes runs (config, provenance, final metrics) and per-epoch metrics in short
transactions, so killed processes never leave half-written rows; runs whose process died are
reported as 'interrupted'. Sweeps resume with :meth:`RunStore.finished_keys`; analyses read with
:meth:`RunStore.list_runs` or export tidy CSV/JSON/Parquet tables.

Modules by job: :mod:`.schema` (tables and migrations), :mod:`.connection` (opening, transactions),
:mod:`.writing` (runs and epochs), :mod:`.liveness` (is a run's process alive),
:mod:`.queries` (reading), :mod:`.export` (CSV/JSON/Parquet), :mod:`.values` (errors, keys, JSON).
"""

from .runstore import DEFAULT_FILENAME, RunRecorder, RunStore
from .schema import RUN_STATUSES, SCHEMA_VERSION
from .values import RunNotFound, RunTakenOver, StoreError, canonical_config, config_key

__all__ = [
    "DEFAULT_FILENAME",
    "RUN_STATUSES",
    "SCHEMA_VERSION",
    "RunNotFound",
    "RunRecorder",
    "RunTakenOver",
    "RunStore",
    "StoreError",
    "canonical_config",
    "config_key",
]
