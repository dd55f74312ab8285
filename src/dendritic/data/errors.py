"""Exceptions of :mod:`dendritic.data`.

Messages are kept to ONE line on purpose: they end up in CLI output and experiment logs,
where a multi-line traceback message is hard to grep and easy to truncate.
"""

from __future__ import annotations

from dendritic.errors import DendriticError

__all__ = [
    "CorruptDatasetError",
    "DatasetMismatchError",
    "DatasetNotFoundError",
    "EmptySplitError",
    "UnsafePickleError",
]


def one_line(text: object) -> str:
    """Collapse any whitespace run (newlines included) into single spaces."""
    return " ".join(str(text).split())


class DatasetNotFoundError(DendriticError, FileNotFoundError):
    """No copy of the dataset was found and none could be downloaded.

    A ``FileNotFoundError`` so that callers that already handle missing files keep working.
    """

    def __init__(self, message: str) -> None:
        super().__init__(one_line(message))

    def __str__(self) -> str:  # FileNotFoundError would otherwise format (errno, strerror)
        return str(self.args[0]) if self.args else ""


class CorruptDatasetError(DendriticError, ValueError):
    """A dataset file exists but its content is not what it should be.

    Raised for bad magic numbers, sizes that disagree with the header, broken gzip/zip/tar
    streams, image/label count mismatches, labels out of range and failed checksums.
    """

    def __init__(self, message: str) -> None:
        super().__init__(one_line(message))


class DatasetMismatchError(CorruptDatasetError):
    """A file's digest is the one of another dataset's file (or of another part of this one)."""


class UnsafePickleError(CorruptDatasetError):
    """A pickle asked for something outside the tiny whitelist a CIFAR batch needs."""


class EmptySplitError(DendriticError, ValueError):
    """The protocol's settings leave a split with no image (e.g. ``limit=1``: the only image
    kept goes to validation). Caught when the data is prepared, before any model is built,
    instead of surfacing later as a numpy reshape or a division by zero."""

    def __init__(self, message: str) -> None:
        super().__init__(one_line(message))
