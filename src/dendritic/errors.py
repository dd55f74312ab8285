"""The exceptions every part of `dendritic` shares: one base class, messages of one line."""

from __future__ import annotations

__all__ = ["DendriticError", "PathError", "one_line"]


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
