"""The run store: one SQLite file recording every training run of a sweep, safely.

``RunStore`` puts together the store's jobs, each in its own module: the connection and schema
(:mod:`.connection`, :mod:`.schema`), writing runs (:mod:`.writing`), process liveness
(:mod:`.liveness`), queries (:mod:`.queries`) and tidy exports (:mod:`.export`).
"""

from __future__ import annotations

from .connection import DEFAULT_FILENAME
from .export import StoreExports
from .writing import RunRecorder, StoreWriter

__all__ = ["DEFAULT_FILENAME", "RunRecorder", "RunStore"]


class RunStore(StoreWriter, StoreExports):
    """A SQLite file of training runs and their per-epoch metrics.

    ``RunStore(path)`` opens or creates the file (``path`` may be a directory, then
    ``runs.db`` inside it is used). Use it as a context manager or call :meth:`close`.
    One object may be shared by threads; a forked child transparently opens its own connection.
    ``readonly=True`` opens an existing store for analysis only.
    """
