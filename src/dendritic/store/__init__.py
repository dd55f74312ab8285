"""Results store: every training run of a sweep recorded safely in one SQLite file.

``RunStore`` writes runs (config, provenance, final metrics) and per-epoch metrics in short
transactions, so killed processes never leave half-written rows; runs whose process died are
reported as 'interrupted'. Sweeps resume with :meth:`RunStore.finished_keys`; analyses read with
:meth:`RunStore.list_runs` or export tidy CSV/JSON/Parquet tables.
"""

from ._schema import RUN_STATUSES, SCHEMA_VERSION
from ._util import RunNotFound, StoreError, canonical_config, config_key
from .runstore import DEFAULT_FILENAME, RunRecorder, RunStore

__all__ = [
    "DEFAULT_FILENAME",
    "RUN_STATUSES",
    "SCHEMA_VERSION",
    "RunNotFound",
    "RunRecorder",
    "RunStore",
    "StoreError",
    "canonical_config",
    "config_key",
]
