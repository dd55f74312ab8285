"""Continual-learning metrics from an accuracy matrix, each a pure function.

``R[i, j]`` is the test accuracy on task ``j`` after training on tasks ``0..i`` (T×T, row = time,
column = task). The definitions follow GEM (Lopez-Paz & Ranzato 2017: ACC, BWT, FWT) and
Riemannian Walk (Chaudhry et al. 2018: forgetting); ``docs/continual.md`` has the formulas.
Metrics that need at least two tasks return NaN for a single task, so a one-task "stream" is
never mistaken for one without forgetting.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

__all__ = [
    "as_matrix",
    "average_accuracy",
    "backward_transfer",
    "forgetting",
    "forgetting_last",
    "forward_transfer",
    "learning_accuracy",
    "summarize",
]

MatrixLike = np.ndarray | Sequence[Sequence[float]]


def as_matrix(matrix: MatrixLike) -> np.ndarray:
    """A float64 T×T copy of ``matrix``; ValueError unless it is square, non-empty and finite."""
    r = np.array(matrix, dtype=np.float64)
    if r.ndim != 2 or r.shape[0] != r.shape[1] or r.shape[0] == 0:
        raise ValueError(f"an accuracy matrix must be square T×T with T >= 1, got shape {r.shape}")
    if not np.all(np.isfinite(r)):
        raise ValueError("an accuracy matrix must hold finite values")
    return r


def average_accuracy(matrix: MatrixLike) -> float:
    """ACC = mean_j R[T-1, j]: accuracy on every task after the whole stream."""
    r = as_matrix(matrix)
    return float(r[-1].mean())


def learning_accuracy(matrix: MatrixLike) -> float:
    """LA = mean_j R[j, j]: how well each task was learnt right after training on it."""
    r = as_matrix(matrix)
    return float(np.diag(r).mean())


def backward_transfer(matrix: MatrixLike) -> float:
    """BWT = mean_{j<T-1} (R[T-1, j] - R[j, j]); negative means later tasks hurt earlier ones."""
    r = as_matrix(matrix)
    t = len(r)
    if t < 2:
        return math.nan
    return float(np.mean(r[-1, : t - 1] - np.diag(r)[: t - 1]))


def forgetting(matrix: MatrixLike, *, learned_only: bool = False) -> float:
    """Chaudhry et al.'s forgetting F = mean_{j<T-1} (max_{l<T-1} R[l, j] - R[T-1, j]).

    The maximum runs over every earlier row ``l = 0..T-2``, also rows before task ``j`` was
    trained (exactly as in the paper's definition); those rows hold chance or worse in class-IL
    but can be high in domain-IL (permuted tasks transfer forwards). ``learned_only=True``
    restricts it to ``l = j..T-2`` (the best accuracy reached once the task was trained).
    It is at least first-minus-last forgetting (the max includes ``l = j``) and negative only
    when a task ends above every accuracy it had before.
    """
    r = as_matrix(matrix)
    t = len(r)
    if t < 2:
        return math.nan
    best = [r[j : t - 1, j].max() if learned_only else r[: t - 1, j].max() for j in range(t - 1)]
    return float(np.mean(np.asarray(best) - r[-1, : t - 1]))


def forgetting_last(matrix: MatrixLike) -> float:
    """First-minus-last forgetting mean_{j<T-1} (R[j, j] - R[T-1, j]); equals -BWT by definition."""
    r = as_matrix(matrix)
    t = len(r)
    if t < 2:
        return math.nan
    return float(np.mean(np.diag(r)[: t - 1] - r[-1, : t - 1]))


def forward_transfer(matrix: MatrixLike, baseline: Sequence[float] | np.ndarray) -> float:
    """FWT = mean_{j>=1} (R[j-1, j] - b_j): accuracy on task j before training it, above chance.

    ``baseline[j]`` is the accuracy of the untrained (randomly initialised) model on task j in
    the same scenario, so FWT measures what training tasks 0..j-1 did for task j.
    """
    r = as_matrix(matrix)
    b = np.asarray(baseline, dtype=np.float64)
    t = len(r)
    if b.shape != (t,):
        raise ValueError(f"the baseline needs one accuracy per task ({t}), got shape {b.shape}")
    if t < 2:
        return math.nan
    return float(np.mean([r[j - 1, j] - b[j] for j in range(1, t)]))


def summarize(matrix: MatrixLike, baseline: Sequence[float] | np.ndarray | None = None) -> dict[str, float]:
    """Every metric of one run, keyed as stored: acc, bwt, forgetting, forgetting_last, fwt, la.

    ``fwt`` is NaN without a baseline; metrics undefined for one task are NaN.
    """
    r = as_matrix(matrix)
    return {
        "acc": average_accuracy(r),
        "bwt": backward_transfer(r),
        "forgetting": forgetting(r),
        "forgetting_last": forgetting_last(r),
        "fwt": forward_transfer(r, baseline) if baseline is not None else math.nan,
        "la": learning_accuracy(r),
    }
