"""Learning curves over seeds as the RL literature reports them: the interquartile mean (IQM)
and a 95 % bootstrap band over seeds (Agarwal et al., NeurIPS 2021), and steps to a threshold.

Pure: arrays in, numbers out.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["bootstrap_band", "iqm", "steps_to_threshold"]


def iqm(values: Sequence[float] | np.ndarray, axis: int = 0) -> np.ndarray | float:
    """Interquartile mean along ``axis``: the mean of what is left after ``floor(n / 4)`` values
    are cut from each end (SciPy's ``trim_mean(values, 0.25)``); robust to one odd seed, less noisy
    than the median. NaN for no values."""
    array = np.sort(np.asarray(values, dtype=float), axis=axis)
    n = array.shape[axis]
    if n == 0:
        return float("nan")
    cut = n // 4
    kept = np.take(array, np.arange(cut, n - cut), axis=axis)
    out = kept.mean(axis=axis)
    return float(out) if np.ndim(out) == 0 else out


def bootstrap_band(
    curves: np.ndarray | Sequence[Sequence[float]],
    *,
    level: float = 0.95,
    resamples: int = 2000,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(iqm, low, high)`` per point of ``curves`` (seeds × points): the IQM over seeds and the
    percentile band of the IQM over ``resamples`` resamplings of whole seeds (a seed's curve is
    kept whole, so the band respects the correlation along a run). One seed: the band is the curve."""
    data = np.asarray(curves, dtype=float)
    if data.ndim != 2 or data.shape[0] == 0:
        raise ValueError(f"curves must be seeds × points with at least one seed, got shape {data.shape}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    centre = np.asarray(iqm(data, axis=0), dtype=float)
    n = data.shape[0]
    if n == 1:
        return centre, centre.copy(), centre.copy()
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, n, size=(resamples, n))
    stats = np.asarray(iqm(data[picks], axis=1), dtype=float)  # resamples × points
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(stats, [tail, 1.0 - tail], axis=0)
    return centre, low, high


def steps_to_threshold(steps: Sequence[float], returns: Sequence[float], threshold: float) -> float | None:
    """The first number of environment steps at which ``returns`` reaches ``threshold``; None if
    it never does."""
    if len(steps) != len(returns):
        raise ValueError(f"{len(steps)} steps but {len(returns)} returns")
    for step, value in zip(steps, returns, strict=True):
        if value is not None and np.isfinite(value) and value >= threshold:
            return float(step)
    return None
