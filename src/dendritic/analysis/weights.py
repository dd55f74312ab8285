"""Distributions of real connection weights (SPEC §7 "Weights", Fig. 6 of the paper).

Sparse layers store absent connections as zeros, which would swamp any histogram; only real
connections count: the nonzero entries, or those selected by an explicit connectivity mask
(which also keeps a real weight that happens to be exactly 0).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from dendritic.analysis._util import as_array, require

__all__ = ["WeightStats", "real_weights", "weight_histogram", "weight_kde", "weight_stats"]


def real_weights(weights: Any, mask: Any | None = None) -> np.ndarray:
    """Flat float array of the real connections: ``weights[mask]``, or the nonzero entries."""
    w = as_array(weights, dtype=float, name="weights")
    if mask is None:
        out = w[w != 0]
    else:
        m = as_array(mask, name="mask").astype(bool)
        if m.shape != w.shape:
            raise ValueError(f"mask shape {m.shape} does not match weights shape {w.shape}")
        out = w[m]
    out = out.ravel()
    if not np.all(np.isfinite(out)):
        raise ValueError("weights contain NaN or infinity")
    return out


def _nonempty(weights: Any, mask: Any | None) -> np.ndarray:
    w = real_weights(weights, mask)
    if w.size == 0:
        raise ValueError("no real (nonzero / masked) weights")
    return w


@dataclass(frozen=True)
class WeightStats:
    """Summary of real weights. Skewness and excess kurtosis are NaN when the weights are constant."""

    n: int
    mean: float
    sd: float  #: population sd (ddof 0)
    min: float
    max: float
    range: float
    skewness: float
    excess_kurtosis: float  #: Fisher: 0 for a Gaussian


def weight_stats(weights: Any, mask: Any | None = None, *, bias: bool = True) -> WeightStats:
    """n, mean, sd, min, max, range, skewness and excess (Fisher) kurtosis of the real weights.

    ``bias=True`` uses the plain moment ratios m3/m2^1.5 and m4/m2² − 3 (scipy's default);
    ``bias=False`` the sample-size corrected estimators.
    """
    w = _nonempty(weights, mask)
    sd = float(w.std())
    lo, hi = float(w.min()), float(w.max())
    if hi == lo or w.size < 2:
        skew = kurt = float("nan")
    else:
        st = require("scipy.stats", "weight statistics")
        skew = float(st.skew(w, bias=bias))
        kurt = float(st.kurtosis(w, fisher=True, bias=bias))
    return WeightStats(
        n=int(w.size),
        mean=float(w.mean()),
        sd=sd,
        min=lo,
        max=hi,
        range=hi - lo,
        skewness=skew,
        excess_kurtosis=kurt,
    )


def weight_histogram(
    weights: Any,
    bins: int | Any = 50,
    *,
    mask: Any | None = None,
    range: tuple[float, float] | None = None,
    density: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """(counts, edges) of the real weights; ``bins`` is a count or explicit edges (as numpy)."""
    w = _nonempty(weights, mask)
    if not isinstance(bins, (int, np.integer)):
        edges = as_array(bins, dtype=float, name="bins")
        if edges.ndim != 1 or edges.size < 2 or np.any(np.diff(edges) <= 0):
            raise ValueError("bin edges must be a 1-D increasing array of at least 2 values")
        bins = edges
    elif bins < 1:
        raise ValueError(f"bins must be >= 1, got {bins}")
    counts, edges = np.histogram(w, bins=bins, range=range, density=density)
    return counts, edges


def weight_kde(
    weights: Any,
    grid: Any | None = None,
    *,
    mask: Any | None = None,
    n_grid: int = 200,
    bw_method: str | float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(grid, density) of a Gaussian KDE (scipy.stats.gaussian_kde) of the real weights.

    Default grid: ``n_grid`` points spanning the data padded by 10 % of its range. Constant
    weights (zero variance, where a KDE is undefined) give a point mass: 0 everywhere but the grid point
    nearest the value, whose density makes the trapezoid integral 1 (all zeros if the value is
    outside the grid).
    """
    w = _nonempty(weights, mask)
    lo, hi = float(w.min()), float(w.max())
    if grid is None:
        if n_grid < 2:
            raise ValueError(f"n_grid must be >= 2, got {n_grid}")
        pad = 0.1 * (hi - lo) if hi > lo else max(abs(lo), 1.0)
        x = np.linspace(lo - pad, hi + pad, n_grid)
    else:
        x = as_array(grid, dtype=float, name="grid")
        if x.ndim != 1 or x.size < 2 or np.any(np.diff(x) <= 0):
            raise ValueError("grid must be a 1-D increasing array of at least 2 values")
    if hi == lo:
        density = np.zeros_like(x)
        i = int(np.argmin(np.abs(x - lo)))
        within = x[0] <= lo <= x[-1]
        if within:  # trapezoid weight of grid point i is (its cell width) / 2
            left = x[i] - x[i - 1] if i > 0 else 0.0
            right = x[i + 1] - x[i] if i < x.size - 1 else 0.0
            density[i] = 2.0 / (left + right)
        return x, density
    st = require("scipy.stats", "weight KDE")
    return x, st.gaussian_kde(w, bw_method=bw_method)(x)
