"""Parameter-and-time efficiency of trained models (SPEC §7, Fig. 3 of the paper).

A model is charged for how many trainable parameters it has and how many epochs it needed to
reach its minimum validation loss: f = log10(params × best_epoch), with best_epoch 1-based.
Scores are only comparable inside one pool, so f is divided by the pool's minimum f
(the cheapest model gets f_norm = 1). Accuracy efficiency = accuracy / f_norm (higher is
better); loss efficiency = loss × f_norm (lower is better).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from dendritic.analysis._util import check_1d, check_same_length
from dendritic.analysis.selection import Group, Split

__all__ = ["Efficiency", "efficiency", "efficiency_score", "group_efficiency", "normalised_efficiency_score"]


@dataclass(frozen=True)
class Efficiency:
    """Efficiency of every member of a pool, aligned with the inputs."""

    f: np.ndarray  #: log10(params × best_epoch)
    f_norm: np.ndarray  #: f / min(f) over the pool (≥ 1)
    accuracy: np.ndarray | None  #: accuracy / f_norm (higher better); None when no accuracy given
    loss: np.ndarray | None  #: loss × f_norm (lower better); None when no loss given


def efficiency_score(
    params: Sequence[float] | np.ndarray, best_epoch: Sequence[float] | np.ndarray
) -> np.ndarray:
    """Raw score f = log10(params × best_epoch) for each member (best_epoch is 1-based)."""
    p = check_1d(params, "params")
    e = check_1d(best_epoch, "best_epoch")
    check_same_length(params=p, best_epoch=e)
    if not np.all(np.isfinite(p)) or np.any(p <= 0):
        raise ValueError("params must be finite and positive")
    if not np.all(np.isfinite(e)) or np.any(e < 1):
        raise ValueError("best_epoch must be finite and >= 1 (it is 1-based)")
    return np.log10(p) + np.log10(e)  # = log10(p·e) without overflow for huge products


def normalised_efficiency_score(
    params: Sequence[float] | np.ndarray, best_epoch: Sequence[float] | np.ndarray
) -> np.ndarray:
    """f / min(f) over the pool; the cheapest member scores 1."""
    f = efficiency_score(params, best_epoch)
    f_min = f.min()
    if f_min <= 0:
        raise ValueError("min f over the pool is 0 (params × best_epoch == 1); f cannot be normalised")
    return f / f_min


def efficiency(
    params: Sequence[float] | np.ndarray,
    best_epoch: Sequence[float] | np.ndarray,
    *,
    accuracy: Sequence[float] | np.ndarray | None = None,
    loss: Sequence[float] | np.ndarray | None = None,
) -> Efficiency:
    """Accuracy and/or loss efficiency of every member of one compared pool.

    All arrays are aligned (one entry per model / configuration). Pass mean accuracy and loss
    of each configuration and its params and (mean) best epoch.
    """
    f = efficiency_score(params, best_epoch)
    f_norm = normalised_efficiency_score(params, best_epoch)
    acc_eff = loss_eff = None
    if accuracy is not None:
        acc = check_1d(accuracy, "accuracy")
        check_same_length(params=f, accuracy=acc)
        acc_eff = acc / f_norm
    if loss is not None:
        lo = check_1d(loss, "loss")
        check_same_length(params=f, loss=lo)
        loss_eff = lo * f_norm
    return Efficiency(f=f, f_norm=f_norm, accuracy=acc_eff, loss=loss_eff)


def group_efficiency(groups: Sequence[Group], on: Split = "test") -> Efficiency:
    """Efficiency of configuration groups (e.g. each model's best), from their means.

    Uses each group's trainable parameters, mean best epoch and mean accuracy / loss on ``on``;
    the pool is exactly ``groups``.
    """
    if not groups:
        raise ValueError("no groups: the efficiency pool is empty")
    missing = [g for g in groups if g.trainable_params is None or g.best_epoch is None]
    if missing:
        raise ValueError(
            f"group {dict(zip(missing[0].names, missing[0].key, strict=True))} lacks trainable_params or best_epoch"
        )
    return efficiency(
        [float(g.trainable_params) for g in groups],  # type: ignore[arg-type]
        [g.best_epoch.mean for g in groups],  # type: ignore[union-attr]
        accuracy=[g.metric("accuracy", on).mean for g in groups],
        loss=[g.metric("loss", on).mean for g in groups],
    )
