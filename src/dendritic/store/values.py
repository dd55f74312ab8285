"""Values of the run store: its errors, canonical JSON, run keys, time stamps and numbers."""

from __future__ import annotations

import hashlib
import json
import math
import traceback
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import PurePath
from typing import Any

from dendritic.errors import DendriticError


class StoreError(DendriticError, ValueError):
    """A run-store problem the user can act on; the message is always one line."""

    def __init__(self, message: str) -> None:
        ValueError.__init__(self, one_line(message))


class RunTakenOver(StoreError):
    """Another process took over this run (its lease ran out); this one must stop writing it."""


class RunNotFound(StoreError, KeyError):
    """No run with the requested id; also a KeyError so ``except KeyError`` works."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


def one_line(text: object) -> str:
    """Collapse a message to one line so it reads well in logs and CLIs."""
    lines = [ln.strip() for ln in str(text).splitlines() if ln.strip()]
    return " | ".join(lines)


def _json_default(obj: Any) -> Any:
    """Make common scientific values JSON-able without pickle: numpy/torch, paths, sets."""
    if hasattr(obj, "tolist"):  # numpy arrays and scalars, torch tensors
        return obj.tolist()
    if hasattr(obj, "item"):
        return obj.item()
    if isinstance(obj, PurePath):
        return str(obj)
    if isinstance(obj, (set, frozenset)):
        try:
            return sorted(obj)
        except TypeError:
            return sorted(obj, key=repr)
    raise TypeError(f"values of type {type(obj).__name__} are not JSON-serialisable")


def to_json(value: Any, *, canonical: bool = False) -> str:
    """Serialise to JSON text; canonical form (sorted keys, no spaces) is what keys hash."""
    try:
        if canonical:
            return json.dumps(
                value,
                sort_keys=True,
                separators=(",", ":"),
                ensure_ascii=False,
                allow_nan=False,
                default=_json_default,
            )
        return json.dumps(value, ensure_ascii=False, default=_json_default)
    except (TypeError, ValueError) as exc:
        raise StoreError(f"cannot store value as JSON: {exc}") from None


def canonical_config(config: Mapping[str, Any]) -> str:
    """The canonical JSON text of a config (sorted keys, tuples as lists, numpy as Python)."""
    if not isinstance(config, Mapping):
        raise StoreError(f"config must be a dict, got {type(config).__name__}")
    bad = [k for k in config if not isinstance(k, str)]
    if bad:
        raise StoreError(f"config keys must be strings, got {bad[0]!r}")
    try:
        return to_json(dict(config), canonical=True)
    except StoreError as exc:
        raise StoreError(f"config must be plain JSON data: {exc}") from None


def config_key(config: Mapping[str, Any]) -> str:
    """A stable 16-hex-digit id of a config, so a sweep can find a run it already did.

    It is the first 16 hex digits of the SHA-256 of the canonical JSON of the config: key order
    does not matter, but value types do (``lr=1`` and ``lr=1.0`` are different configs).
    """
    return hashlib.sha256(canonical_config(config).encode("utf-8")).hexdigest()[:16]


def utc_now() -> str:
    """ISO-8601 UTC time stamp with milliseconds; sorts lexicographically."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def parse_time(stamp: str | None) -> datetime | None:
    """Parse a stamp written by :func:`utc_now` (None passes through)."""
    if not stamp:
        return None
    try:
        return datetime.fromisoformat(stamp)
    except ValueError:
        return None


def format_error(error: str | BaseException) -> str:
    """Text for the ``error`` column: exceptions keep their traceback."""
    if isinstance(error, BaseException):
        text = "".join(traceback.format_exception(type(error), error, error.__traceback__))
        return text.strip() or type(error).__name__
    return str(error)


def to_float(value: Any) -> float | None:
    """Metric value as float (accepts numpy/torch scalars); None stays None."""
    if value is None:
        return None
    if hasattr(value, "item"):
        value = value.item()
    try:
        return float(value)
    except (TypeError, ValueError):
        raise StoreError(f"metric value {value!r} is not a number") from None


def to_int(value: Any, name: str) -> int | None:
    """Integer field (accepts numpy/torch scalars); None stays None."""
    if value is None:
        return None
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise StoreError(f"{name} must be an integer, got {value!r}")
    return value


def json_safe(value: Any) -> Any:
    """Replace NaN/inf (not valid JSON) by None, recursively, for standard JSON exports."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value
