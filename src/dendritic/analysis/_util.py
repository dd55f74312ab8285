"""Small shared helpers: array conversion, input checks, lazy optional imports."""

from __future__ import annotations

import importlib
from typing import Any

import numpy as np

__all__ = ["as_array", "check_1d", "check_same_length", "require", "sort_token"]


def as_array(x: Any, *, dtype: Any = None, name: str = "array") -> np.ndarray:
    """numpy view of ``x``; torch tensors are detached and moved to the CPU first."""
    if hasattr(x, "detach") and hasattr(x, "cpu"):  # torch.Tensor without importing torch
        x = x.detach().cpu().numpy()
    try:
        return np.asarray(x, dtype=dtype)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be numeric, got {type(x).__name__}: {exc}") from None


def check_1d(x: Any, name: str, *, dtype: Any = float, allow_empty: bool = False) -> np.ndarray:
    arr = as_array(x, dtype=dtype, name=name)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    if not allow_empty and arr.size == 0:
        raise ValueError(f"{name} is empty")
    return arr


def check_same_length(**arrays: np.ndarray) -> int:
    lengths = {name: len(a) for name, a in arrays.items()}
    if len(set(lengths.values())) > 1:
        detail = ", ".join(f"{n}={v}" for n, v in lengths.items())
        raise ValueError(f"length mismatch: {detail}")
    return next(iter(lengths.values()))


def require(module: str, purpose: str) -> Any:
    """Import an optional dependency, failing with an install hint instead of a bare ImportError."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        package = {"sklearn": "scikit-learn", "openTSNE": "openTSNE"}.get(module.split(".")[0], module)
        raise ImportError(
            f"{purpose} needs {package}; install it with: pip install 'dendritic[analysis]' (or pip install {package})"
        ) from exc


def sort_token(value: Any) -> tuple[int, Any]:
    """Sort key for mixed labels: numbers numerically first, everything else by its text."""
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
        return (0, value)
    return (1, str(value))
