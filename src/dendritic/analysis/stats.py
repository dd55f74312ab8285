"""Two-way ANOVA and Bonferroni-corrected pairwise Welch tests (SPEC §7 "Representations").

The paper compares separability scores across models and layers with a two-way ANOVA
(model × layer) followed by pairwise tests. The ANOVA here fits nested least-squares models on
dummy-coded factors and reads sums of squares off their residuals:

* Type II (default): each main effect adjusted for the other main effect
  (SS_A = RSS(B) − RSS(A + B)), interaction adjusted for both. Order-free, and for unbalanced
  designs without interaction it is the usual choice (it matches statsmodels ``anova_lm(typ=2)``).
* Type I (sequential, A then B then A:B).

For balanced designs both equal the textbook sums of squares. Degrees of freedom are rank
differences, so empty cells are handled (the interaction loses their columns).
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from dendritic.analysis._util import require, sort_token

__all__ = [
    "AnovaResult",
    "AnovaRow",
    "PairwiseTest",
    "bonferroni",
    "pairwise_by_level",
    "pairwise_welch",
    "two_way_anova",
]


@dataclass(frozen=True)
class AnovaRow:
    source: str
    ss: float
    df: int
    ms: float
    f: float  #: NaN for the residual row
    p: float  #: NaN for the residual row


@dataclass(frozen=True)
class AnovaResult:
    """Rows keyed by factor name, ``"<a>:<b>"`` for the interaction, and ``"residual"``."""

    rows: dict[str, AnovaRow]
    typ: int
    n: int
    balanced: bool

    def __getitem__(self, source: str) -> AnovaRow:
        return self.rows[source]


def _tidy(
    observations: Iterable[Any], names: tuple[str, str]
) -> tuple[list[Hashable], list[Hashable], np.ndarray]:
    a_levels: list[Hashable] = []
    b_levels: list[Hashable] = []
    values: list[float] = []
    for i, obs in enumerate(observations):
        if isinstance(obs, Mapping):
            try:
                a, b, v = obs[names[0]], obs[names[1]], obs["value"]
            except KeyError as exc:
                raise ValueError(f"observation {i} lacks key {exc.args[0]!r}") from None
        else:
            if len(obs) != 3:
                raise ValueError(f"observation {i} must be ({names[0]}, {names[1]}, value), got {obs!r}")
            a, b, v = obs
        a_levels.append(a)
        b_levels.append(b)
        values.append(float(v))
    y = np.asarray(values, dtype=float)
    if y.size == 0:
        raise ValueError("no observations")
    if not np.all(np.isfinite(y)):
        raise ValueError("observation values contain NaN or infinity")
    return a_levels, b_levels, y


def _dummies(levels: list[Hashable]) -> tuple[np.ndarray, list[Hashable]]:
    """Treatment-coded columns (first level dropped) and the sorted level list."""
    uniq = sorted(set(levels), key=sort_token)
    index = {v: i for i, v in enumerate(uniq)}
    codes = np.array([index[v] for v in levels])
    cols = (codes[:, None] == np.arange(1, len(uniq))[None, :]).astype(float)
    return cols, uniq


def _fit(design: np.ndarray, y: np.ndarray) -> tuple[float, int]:
    """Residual sum of squares and rank of the least-squares fit."""
    coef, _, rank, _ = np.linalg.lstsq(design, y, rcond=None)
    resid = y - design @ coef
    return float(resid @ resid), int(rank)


def two_way_anova(
    observations: Iterable[Sequence[Any] | Mapping[str, Any]],
    *,
    names: tuple[str, str] = ("model", "layer"),
    typ: Literal[1, 2] = 2,
) -> AnovaResult:
    """Two-way ANOVA with interaction on tidy (factor_a, factor_b, value) observations.

    Observations are 3-sequences or mappings with keys ``names[0]``, ``names[1]`` and ``"value"``.
    Returns SS, df, MS, F and p for both factors, their interaction and the residual.
    """
    if typ not in (1, 2):
        raise ValueError(f"typ must be 1 or 2, got {typ!r}")
    a_lv, b_lv, y = _tidy(observations, names)
    xa, a_levels = _dummies(a_lv)
    xb, b_levels = _dummies(b_lv)
    for name, levels in zip(names, (a_levels, b_levels), strict=True):
        if len(levels) < 2:
            raise ValueError(f"factor {name!r} needs at least 2 levels, got {len(levels)}")
    n = y.size
    ones = np.ones((n, 1))
    xab = (xa[:, :, None] * xb[:, None, :]).reshape(n, -1)
    fits = {
        "1": _fit(ones, y),
        "A": _fit(np.hstack([ones, xa]), y),
        "B": _fit(np.hstack([ones, xb]), y),
        "AB": _fit(np.hstack([ones, xa, xb]), y),
        "full": _fit(np.hstack([ones, xa, xb, xab]), y),
    }
    rss_full, rank_full = fits["full"]
    df_resid = n - rank_full
    if df_resid <= 0:
        raise ValueError("no residual degrees of freedom: need replicate observations within cells")

    def effect(reduced: str, bigger: str) -> tuple[float, int]:
        (rss_r, rank_r), (rss_b, rank_b) = fits[reduced], fits[bigger]
        return max(rss_r - rss_b, 0.0), rank_b - rank_r

    if typ == 1:
        effects = {names[0]: effect("1", "A"), names[1]: effect("A", "AB")}
    else:
        effects = {names[0]: effect("B", "AB"), names[1]: effect("A", "AB")}
    effects[f"{names[0]}:{names[1]}"] = effect("AB", "full")

    f_dist = require("scipy.stats", "ANOVA p-values").f
    ms_resid = rss_full / df_resid
    rows: dict[str, AnovaRow] = {}
    for source, (ss, df) in effects.items():
        if df == 0:
            rows[source] = AnovaRow(source, ss, 0, math.nan, math.nan, math.nan)
            continue
        ms = ss / df
        f = ms / ms_resid if ms_resid > 0 else math.inf
        p = float(f_dist.sf(f, df, df_resid)) if math.isfinite(f) else 0.0
        rows[source] = AnovaRow(source, ss, df, ms, f, p)
    rows["residual"] = AnovaRow("residual", rss_full, df_resid, ms_resid, math.nan, math.nan)
    cells: dict[tuple[Hashable, Hashable], int] = {}
    for a, b in zip(a_lv, b_lv, strict=True):
        cells[(a, b)] = cells.get((a, b), 0) + 1
    balanced = len(cells) == len(a_levels) * len(b_levels) and len(set(cells.values())) == 1
    return AnovaResult(rows=rows, typ=typ, n=int(n), balanced=balanced)


# ---------------------------------------------------------------- pairwise tests


def bonferroni(pvalues: Sequence[float] | np.ndarray, n_comparisons: int | None = None) -> np.ndarray:
    """Bonferroni-adjusted p-values: p × m capped at 1 (m = number of p-values unless given)."""
    p = np.asarray(pvalues, dtype=float)
    if p.ndim != 1:
        raise ValueError(f"pvalues must be 1-D, got shape {p.shape}")
    m = p.size if n_comparisons is None else n_comparisons
    if m < p.size:
        raise ValueError(f"n_comparisons ({m}) is smaller than the number of p-values ({p.size})")
    if np.any((p < 0) | (p > 1)):
        raise ValueError("p-values must lie in [0, 1]")
    return np.minimum(p * m, 1.0)


@dataclass(frozen=True)
class PairwiseTest:
    a: Hashable
    b: Hashable
    mean_a: float
    mean_b: float
    n_a: int
    n_b: int
    t: float  #: positive when mean_a > mean_b
    df: float  #: Welch–Satterthwaite
    p: float  #: two-sided, uncorrected
    p_adjusted: float  #: Bonferroni over the family of the call
    within: Hashable | None = None  #: level of the other factor (pairwise_by_level)


def _welch(a: Hashable, xa: np.ndarray, b: Hashable, xb: np.ndarray, within: Hashable | None) -> PairwiseTest:
    for label, x in ((a, xa), (b, xb)):
        if x.size < 2:
            raise ValueError(f"group {label!r} has {x.size} observation(s); a Welch test needs >= 2")
    st = require("scipy.stats", "Welch t-tests")
    with warnings.catch_warnings():  # a group of equal values (every seed solved: 500.0) is exact
        warnings.filterwarnings("ignore", "Precision loss occurred", RuntimeWarning)
        res = st.ttest_ind(xa, xb, equal_var=False)
    va, vb = xa.var(ddof=1) / xa.size, xb.var(ddof=1) / xb.size
    df_ws = (va + vb) ** 2 / (va**2 / (xa.size - 1) + vb**2 / (xb.size - 1)) if va + vb > 0 else math.nan
    return PairwiseTest(
        a=a,
        b=b,
        mean_a=float(xa.mean()),
        mean_b=float(xb.mean()),
        n_a=int(xa.size),
        n_b=int(xb.size),
        t=float(res.statistic),
        df=float(getattr(res, "df", df_ws)),
        p=float(res.pvalue),
        p_adjusted=math.nan,
        within=within,
    )


def _adjust(tests: list[PairwiseTest], m: int) -> list[PairwiseTest]:
    adjusted: Sequence[float] | np.ndarray = (
        bonferroni([0.0 if math.isnan(t.p) else t.p for t in tests], m) if tests else []
    )
    return [
        PairwiseTest(**{**t.__dict__, "p_adjusted": math.nan if math.isnan(t.p) else float(q)})
        for t, q in zip(tests, adjusted, strict=True)
    ]


def pairwise_welch(
    samples: Mapping[Hashable, Sequence[float] | np.ndarray],
    pairs: Sequence[tuple[Hashable, Hashable]] | None = None,
) -> list[PairwiseTest]:
    """Welch t-tests between groups (all pairs in key order, or the given ``pairs``).

    p-values are Bonferroni-adjusted over the tests of this call.
    """
    data = {k: np.asarray(v, dtype=float).ravel() for k, v in samples.items()}
    if pairs is None:
        pairs = list(itertools.combinations(data, 2))
    if not pairs:
        raise ValueError("need at least 2 groups (or one pair) to compare")
    for a, b in pairs:
        for label in (a, b):
            if label not in data:
                raise ValueError(f"unknown group {label!r} in pairs")
    tests = [_welch(a, data[a], b, data[b], None) for a, b in pairs]
    return _adjust(tests, len(tests))


def pairwise_by_level(
    observations: Iterable[Sequence[Any] | Mapping[str, Any]],
    *,
    names: tuple[str, str] = ("model", "layer"),
    compare: str | None = None,
    family: Literal["all", "per-level"] = "all",
) -> list[PairwiseTest]:
    """Welch tests between all pairs of levels of ``compare`` within each level of the other factor.

    ``compare`` defaults to ``names[0]`` (compare models within each layer). Bonferroni family:
    every test of the call (``"all"``, conservative) or the tests within one level
    (``"per-level"``). Pairs lacking data at a level are skipped.
    """
    if family not in ("all", "per-level"):
        raise ValueError(f"family must be 'all' or 'per-level', got {family!r}")
    compare = names[0] if compare is None else compare
    if compare not in names:
        raise ValueError(f"compare must be one of {names}, got {compare!r}")
    a_lv, b_lv, y = _tidy(observations, names)
    cmp_lv, within_lv = (a_lv, b_lv) if compare == names[0] else (b_lv, a_lv)
    buckets: dict[Hashable, dict[Hashable, list[float]]] = {}
    for c, w, v in zip(cmp_lv, within_lv, y, strict=True):
        buckets.setdefault(w, {}).setdefault(c, []).append(float(v))
    per_level: list[list[PairwiseTest]] = []
    for w in sorted(buckets, key=sort_token):
        groups = buckets[w]
        keys = sorted(groups, key=sort_token)
        tests = [
            _welch(a, np.asarray(groups[a]), b, np.asarray(groups[b]), w)
            for a, b in itertools.combinations(keys, 2)
        ]
        per_level.append(tests)
    if family == "per-level":
        return [t for tests in per_level for t in _adjust(tests, len(tests))]
    flat = [t for tests in per_level for t in tests]
    if not flat:
        raise ValueError(f"no level of the other factor has two {compare} levels to compare")
    return _adjust(flat, len(flat))
