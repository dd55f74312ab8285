"""2-D embeddings of hidden representations and how well they separate classes (SPEC §7, Fig. 7).

t-SNE (scikit-learn, or openTSNE on request) maps activations to 2-D; separability is then
scored by silhouette (on the embedding, by class label), neighbourhood hit (fraction of a
point's k nearest neighbours in the embedding that share its label, the point itself NOT
counted — the reference counted it, SPEC §10.7) and trustworthiness (how well the embedding's
k-neighbourhoods respect the original space), with k = 11 by default.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from dendritic.analysis._util import as_array, require

__all__ = [
    "Separability",
    "neighbourhood_hit",
    "neighbourhood_hit_per_point",
    "separability",
    "silhouette",
    "trustworthiness",
    "tsne",
]

DEFAULT_K = 11


def _points(x: Any, name: str) -> np.ndarray:
    a = as_array(x, dtype=float, name=name)
    if a.ndim != 2:
        raise ValueError(f"{name} must be 2-D (n_samples, n_features), got shape {a.shape}")
    if a.shape[0] < 2:
        raise ValueError(f"{name} needs at least 2 points, got {a.shape[0]}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} contains NaN or infinity")
    return a


def _labels(labels: Any, n: int) -> np.ndarray:
    y = as_array(labels, name="labels")
    if y.ndim != 1 or y.shape[0] != n:
        raise ValueError(f"labels must have shape ({n},), got {y.shape}")
    return y


def _check_k(k: int, n: int) -> None:
    if not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    if k >= n:
        raise ValueError(f"k = {k} needs more than {k} points, got {n}")


def tsne(
    x: Any,
    *,
    perplexity: float = 50.0,
    seed: int = 0,
    backend: Literal["sklearn", "opentsne"] = "sklearn",
    **kwargs: Any,
) -> np.ndarray:
    """2-D t-SNE of ``x`` (n_samples, n_features), seeded; returns (n_samples, 2) float array.

    scikit-learn's TSNE with its defaults (PCA init, automatic learning rate) unless ``kwargs``
    override them; ``backend="opentsne"`` uses openTSNE (optional, faster on large sets).
    """
    a = _points(x, "x")
    if not 0 < perplexity < a.shape[0]:
        raise ValueError(f"perplexity must be in (0, n_samples = {a.shape[0]}), got {perplexity}")
    if backend == "sklearn":
        manifold = require("sklearn.manifold", "t-SNE")
        model = manifold.TSNE(n_components=2, perplexity=perplexity, random_state=seed, **kwargs)
        return np.asarray(model.fit_transform(a), dtype=float)
    if backend == "opentsne":
        open_tsne = require("openTSNE", "t-SNE with backend='opentsne'")
        model = open_tsne.TSNE(n_components=2, perplexity=perplexity, random_state=seed, **kwargs)
        return np.asarray(model.fit(a), dtype=float)
    raise ValueError(f"backend must be 'sklearn' or 'opentsne', got {backend!r}")


def neighbourhood_hit_per_point(embedding: Any, labels: Any, k: int = DEFAULT_K) -> np.ndarray:
    """Per point, the fraction of its k nearest neighbours (Euclidean, itself excluded) with its label.

    The point is excluded by index, not by distance, so duplicates of it do count as neighbours.
    Ties at the k-th distance are broken by the neighbour search (arbitrary but deterministic).
    """
    e = _points(embedding, "embedding")
    y = _labels(labels, e.shape[0])
    _check_k(k, e.shape[0])
    neighbors = require("sklearn.neighbors", "neighbourhood hit")
    nn = neighbors.NearestNeighbors(n_neighbors=k).fit(e)
    # kneighbors() without X queries the fitted points and leaves each point out of its own list.
    idx = nn.kneighbors(return_distance=False)
    return (y[idx] == y[:, None]).mean(axis=1)


def neighbourhood_hit(embedding: Any, labels: Any, k: int = DEFAULT_K) -> float:
    """Mean neighbourhood hit over all points (1 = every neighbourhood is pure)."""
    return float(neighbourhood_hit_per_point(embedding, labels, k).mean())


def silhouette(embedding: Any, labels: Any) -> float:
    """Mean silhouette coefficient of the labelled points (scikit-learn, Euclidean)."""
    e = _points(embedding, "embedding")
    y = _labels(labels, e.shape[0])
    n_labels = np.unique(y).size
    if not 2 <= n_labels < e.shape[0]:
        raise ValueError(f"silhouette needs 2 <= number of labels < n_samples, got {n_labels} labels")
    metrics = require("sklearn.metrics", "silhouette score")
    return float(metrics.silhouette_score(e, y))


def trustworthiness(x: Any, embedding: Any, k: int = DEFAULT_K) -> float:
    """scikit-learn's trustworthiness of ``embedding`` w.r.t. the original ``x`` with k neighbours."""
    a = _points(x, "x")
    e = _points(embedding, "embedding")
    if a.shape[0] != e.shape[0]:
        raise ValueError(f"x has {a.shape[0]} points but embedding has {e.shape[0]}")
    _check_k(k, a.shape[0])
    if k >= a.shape[0] / 2:
        raise ValueError(f"trustworthiness needs k < n_samples / 2, got k = {k}, n = {a.shape[0]}")
    manifold = require("sklearn.manifold", "trustworthiness")
    return float(manifold.trustworthiness(a, e, n_neighbors=k))


@dataclass(frozen=True)
class Separability:
    silhouette: float
    neighbourhood_hit: float
    trustworthiness: float


def separability(x: Any, embedding: Any, labels: Any, k: int = DEFAULT_K) -> Separability:
    """All three scores of one embedding of activations ``x``."""
    return Separability(
        silhouette=silhouette(embedding, labels),
        neighbourhood_hit=neighbourhood_hit(embedding, labels, k),
        trustworthiness=trustworthiness(x, embedding, k),
    )
