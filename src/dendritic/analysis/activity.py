"""Node activity of hidden layers on the test set (SPEC §7 "Node activity", Fig. 5 of the paper).

Activations are post-activation (leaky ReLU), so a node is *active* on a sample when its value
is > 0. Everything derives from the hit matrix H[class, node] = number of samples of that class
on which the node is active, plus the number of samples per class, so whole test sets can be
streamed through :class:`HitCounter` batch by batch.

Entropy of a node (bits) is taken over K + 1 bins: its K class hit counts plus one "silent"
count (samples on which it is not active), normalised to a distribution. Low entropy means
class-specific firing, high entropy mixed selectivity. Dead nodes (never active) have no
meaningful entropy: :func:`node_entropy` gives NaN for them and :func:`drop_dead` removes them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from dendritic.analysis._util import as_array

__all__ = [
    "ActivityStats",
    "HitCounter",
    "activity_stats",
    "class_counts",
    "dead_nodes",
    "drop_dead",
    "hit_matrix",
    "node_entropy",
    "selectivity",
    "sparsity",
]

SELECTIVITY_THRESHOLD = 0.40


def _check_labels(labels: Any, n_samples: int | None, n_classes: int | None) -> tuple[np.ndarray, int]:
    y = as_array(labels, name="labels")
    if y.ndim != 1:
        raise ValueError(f"labels must be 1-D, got shape {y.shape}")
    if n_samples is not None and y.shape[0] != n_samples:
        raise ValueError(f"activations have {n_samples} samples but labels have {y.shape[0]}")
    if y.size and not np.issubdtype(y.dtype, np.integer):
        if not np.all(np.equal(np.mod(y, 1), 0)):
            raise ValueError("labels must be integer class indices")
        y = y.astype(np.int64)
    y = y.astype(np.int64, copy=False)
    if n_classes is None:
        if y.size == 0:
            raise ValueError("cannot infer n_classes from empty labels; pass n_classes")
        n_classes = int(y.max()) + 1
    if n_classes < 1:
        raise ValueError(f"n_classes must be >= 1, got {n_classes}")
    if y.size and (y.min() < 0 or y.max() >= n_classes):
        raise ValueError(f"labels must lie in [0, {n_classes}), got range [{y.min()}, {y.max()}]")
    return y, n_classes


def _check_activations(activations: Any) -> np.ndarray:
    a = as_array(activations, name="activations")
    if a.ndim != 2:
        raise ValueError(f"activations must be 2-D (n_samples, n_nodes), got shape {a.shape}")
    return a


def hit_matrix(activations: Any, labels: Any, n_classes: int | None = None) -> np.ndarray:
    """H[class, node] = number of samples of ``class`` with activation > 0, shape (K, n_nodes), int64."""
    a = _check_activations(activations)
    y, k = _check_labels(labels, a.shape[0], n_classes)
    active = (a > 0).astype(np.int64)
    hits = np.zeros((k, a.shape[1]), dtype=np.int64)
    np.add.at(hits, y, active)
    return hits


def class_counts(labels: Any, n_classes: int | None = None) -> np.ndarray:
    """Samples per class, shape (K,), int64."""
    y, k = _check_labels(labels, None, n_classes)
    return np.bincount(y, minlength=k).astype(np.int64)


class HitCounter:
    """Accumulates the hit matrix and class counts over batches (no need to hold the test set).

    >>> counter = HitCounter(n_classes=10)
    >>> for x, y in loader:                     # doctest: +SKIP
    ...     counter.update(hidden(x), y)
    >>> stats = counter.stats()                 # doctest: +SKIP
    """

    def __init__(self, n_classes: int, n_nodes: int | None = None) -> None:
        if n_classes < 1:
            raise ValueError(f"n_classes must be >= 1, got {n_classes}")
        self.n_classes = int(n_classes)
        self.hits: np.ndarray | None = None if n_nodes is None else np.zeros((n_classes, n_nodes), np.int64)
        self.class_counts = np.zeros(n_classes, dtype=np.int64)

    @property
    def n_samples(self) -> int:
        return int(self.class_counts.sum())

    def update(self, activations: Any, labels: Any) -> None:
        """Add one batch of activations (n, n_nodes) and labels (n,)."""
        h = hit_matrix(activations, labels, self.n_classes)
        if self.hits is None:
            self.hits = h
        elif self.hits.shape != h.shape:
            raise ValueError(f"batch has {h.shape[1]} nodes but earlier batches had {self.hits.shape[1]}")
        else:
            self.hits += h
        self.class_counts += class_counts(labels, self.n_classes)

    def stats(self, threshold: float = SELECTIVITY_THRESHOLD) -> ActivityStats:
        if self.hits is None:
            raise ValueError("HitCounter has seen no batches")
        return _stats(self.hits.copy(), self.class_counts.copy(), threshold)


def _check_hits(hits: Any) -> np.ndarray:
    h = as_array(hits, name="hits")
    if h.ndim != 2:
        raise ValueError(f"hits must be 2-D (n_classes, n_nodes), got shape {h.shape}")
    if h.size and h.min() < 0:
        raise ValueError("hits must be non-negative counts")
    return h


def _check_counts(hits: np.ndarray, counts: Any) -> np.ndarray:
    c = as_array(counts, name="class_counts")
    if c.shape != (hits.shape[0],):
        raise ValueError(f"class_counts must have shape ({hits.shape[0]},), got {c.shape}")
    if np.any(hits > c[:, None]):
        raise ValueError("hits exceed the number of samples of their class")
    return c


def dead_nodes(hits: Any) -> np.ndarray:
    """Boolean mask of nodes active on no sample."""
    return _check_hits(hits).sum(axis=0) == 0


def sparsity(hits: Any) -> float:
    """Fraction of dead nodes."""
    dead = dead_nodes(hits)
    if dead.size == 0:
        raise ValueError("hits has no nodes")
    return float(dead.mean())


def node_entropy(hits: Any, class_counts: Any) -> np.ndarray:
    """Shannon entropy (bits) per node over K class hit counts + 1 silent count; NaN for dead nodes.

    The maximum is log2(K + 1) bits. 0 · log 0 is taken as 0.
    """
    h = _check_hits(hits).astype(float)
    c = _check_counts(h, class_counts)
    n = float(c.sum())
    if n <= 0:
        raise ValueError("no samples: class_counts sum to 0")
    silent = n - h.sum(axis=0)
    bins = np.vstack([h, silent[None, :]]) / n  # (K + 1, n_nodes), columns sum to 1
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(bins > 0, bins * np.log2(bins), 0.0)
    entropy = -terms.sum(axis=0)
    entropy[h.sum(axis=0) == 0] = np.nan
    return entropy + 0.0  # turn -0.0 into 0.0


def drop_dead(values: Any, hits: Any | None = None) -> np.ndarray:
    """Per-node values without dead nodes: by the ``hits`` matrix when given, else by dropping NaNs."""
    v = as_array(values, name="values")
    if v.ndim != 1:
        raise ValueError(f"values must be 1-D (one per node), got shape {v.shape}")
    if hits is None:
        return v[~np.isnan(v)]
    dead = dead_nodes(hits)
    if dead.shape != v.shape:
        raise ValueError(f"values have {v.shape[0]} nodes but hits have {dead.shape[0]}")
    return v[~dead]


def selectivity(hits: Any, class_counts: Any, threshold: float = SELECTIVITY_THRESHOLD) -> np.ndarray:
    """Per node, the number of classes on which it fires for > ``threshold`` of that class's samples.

    Classes with no samples count for no node.
    """
    if not 0 <= threshold < 1:
        raise ValueError(f"threshold must be in [0, 1), got {threshold}")
    h = _check_hits(hits).astype(float)
    c = _check_counts(h, class_counts).astype(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        rate = np.where(c[:, None] > 0, h / c[:, None], 0.0)
    return (rate > threshold).sum(axis=0).astype(np.int64)


@dataclass(frozen=True)
class ActivityStats:
    """Activity of one hidden layer. ``entropy`` is NaN for dead nodes."""

    hits: np.ndarray  #: (K, n_nodes)
    class_counts: np.ndarray  #: (K,)
    dead: np.ndarray  #: (n_nodes,) bool
    sparsity: float
    entropy: np.ndarray  #: (n_nodes,) bits, NaN for dead nodes
    selectivity: np.ndarray  #: (n_nodes,) number of classes

    @property
    def live_entropy(self) -> np.ndarray:
        """Entropy of the nodes that fired at least once."""
        return self.entropy[~self.dead]


def _stats(hits: np.ndarray, counts: np.ndarray, threshold: float) -> ActivityStats:
    return ActivityStats(
        hits=hits,
        class_counts=counts,
        dead=dead_nodes(hits),
        sparsity=sparsity(hits),
        entropy=node_entropy(hits, counts),
        selectivity=selectivity(hits, counts, threshold),
    )


def activity_stats(
    activations: Any,
    labels: Any | Sequence[int],
    n_classes: int | None = None,
    threshold: float = SELECTIVITY_THRESHOLD,
) -> ActivityStats:
    """All activity measures of one layer from its activations (n_samples, n_nodes) and labels."""
    h = hit_matrix(activations, labels, n_classes)
    counts = class_counts(labels, h.shape[0])
    return _stats(h, counts, threshold)
