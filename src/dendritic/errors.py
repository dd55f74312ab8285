"""The exceptions every part of `dendritic` shares: one base class, messages of one line."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from typing import Any

__all__ = [
    "DendriticError",
    "MissingDependencyError",
    "PathError",
    "Terminated",
    "one_line",
    "sigterm_interrupts",
]


def one_line(text: object) -> str:
    """Collapse a message to one line (CLI output and logs are read line by line)."""
    return " ".join(str(text).split())


class DendriticError(Exception):
    """Base of the errors a user can act on; ``str(error)`` is always one line."""

    def __init__(self, message: object = "") -> None:
        super().__init__(one_line(message))


class PathError(DendriticError, ValueError):
    """A path argument cannot be used: missing, of the wrong kind, unwritable, or an input
    of the command that an output would overwrite."""


class MissingDependencyError(DendriticError, ImportError):
    """An optional package a feature needs is not installed; the message says how to install it."""


class Terminated(KeyboardInterrupt):
    """SIGTERM (``kill``, a cluster scheduler's time limit) unwinding like Ctrl-C: a run in
    progress is recorded as 'interrupted' and a sweep's worker processes are stopped."""


def _raise_terminated(signum: int, frame: Any) -> None:
    raise Terminated("SIGTERM")


@contextlib.contextmanager
def sigterm_interrupts() -> Iterator[None]:
    """Inside, SIGTERM raises :class:`Terminated` instead of ending the process at once.

    Only in the main thread and only where SIGTERM still has its default action: a handler the
    program set (a sweep worker's, Ray's) is left alone. The previous action comes back after.
    """
    if (
        threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL
    ):
        yield
        return
    signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
