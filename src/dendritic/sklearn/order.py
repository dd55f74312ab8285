"""A 1-D order of tabular features, so that "local" receptive fields have neighbours to sample.

Pixels have neighbours; the columns of a table do not, and their given order is usually
arbitrary. :func:`correlation_order` learns one from the training data: features that move
together (large absolute correlation) end up side by side, so a dendrite whose synapses sit on
a compact patch of the order samples a group of related features. :func:`ordered_local_fields`
draws the library's "local" receptive fields on that order.
"""

from __future__ import annotations

import numpy as np

from dendritic.wiring.connectivity import Connectivity
from dendritic.wiring.geometry import InputGeometry
from dendritic.wiring.rules import make_receptive_fields

__all__ = ["FEATURE_ORDERS", "correlation_order", "feature_order", "ordered_local_fields"]

#: How ``feature_order`` can be learned: clustered by correlation, or the columns as given.
FEATURE_ORDERS: tuple[str, ...] = ("correlation", "given")


def correlation_order(x: np.ndarray) -> np.ndarray:
    """The features of ``x`` (samples × features) ordered by average-linkage hierarchical
    clustering of the distance ``1 − |corr|`` (the dendrogram's leaves, left to right).

    Constant features correlate with nothing (distance 1). Needs scipy."""
    from scipy.cluster.hierarchy import leaves_list, linkage
    from scipy.spatial.distance import squareform

    x = np.asarray(x, dtype=np.float64)
    n = x.shape[1]
    if n < 3:
        return np.arange(n, dtype=np.int64)
    centred = x - x.mean(axis=0)
    norms = np.sqrt((centred**2).sum(axis=0))
    safe = np.where(norms > 0, norms, 1.0)
    corr = (centred / safe).T @ (centred / safe)
    corr[:, norms == 0] = 0.0
    corr[norms == 0, :] = 0.0
    distance = np.clip(1.0 - np.abs(corr), 0.0, 1.0)
    np.fill_diagonal(distance, 0.0)
    distance = (distance + distance.T) / 2
    tree = linkage(squareform(distance, checks=False), method="average")
    return np.asarray(leaves_list(tree), dtype=np.int64)


def feature_order(x: np.ndarray, how: str) -> np.ndarray:
    """The order ``how`` (one of :data:`FEATURE_ORDERS`) gives the features of ``x``."""
    if how == "correlation":
        return correlation_order(x)
    if how == "given":
        return np.arange(np.asarray(x).shape[1], dtype=np.int64)
    raise ValueError(f"feature_order must be one of {', '.join(FEATURE_ORDERS)}, got {how!r}")


def ordered_local_fields(
    rng: np.random.Generator, order: np.ndarray, somata: int, dendrites: int, synapses: int
) -> Connectivity:
    """Local receptive fields on the 1-D line of features in ``order``: each dendrite a compact
    patch of ``synapses`` consecutive positions, mapped back to the features' columns."""
    order = np.asarray(order, dtype=np.int64)
    n = len(order)
    if sorted(order.tolist()) != list(range(n)):
        raise ValueError(f"a feature order must be a permutation of 0..{n - 1}")
    on_line = make_receptive_fields("local", rng, InputGeometry((n,)), somata, dendrites, synapses)
    return Connectivity.from_table(order[on_line.table()], n)
