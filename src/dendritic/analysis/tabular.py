"""The tabular study as a table: runs in, one row per (dataset, uninformative fraction, model).

A row's score is test accuracy (classification) or R² (regression). Its mean is over every
(seed, fold) run; its s.d. is across seeds of each seed's cross-validated mean (a repeated
k-fold's usual spread), so it says how much the estimate moves from one shuffle to the next.
Every model is also compared with the matched MLP of its (dataset, noise): the difference of the
means and a Welch t-test over the seeds' cross-validated means.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["REFERENCE_MODEL", "TABULAR_MODELS", "run_score", "tabular_rows"]

#: The study's models in the order tables and figures show them.
TABULAR_MODELS: tuple[str, ...] = ("dendritic-local", "dendritic-random", "mlp", "hgb")
#: The model every other one is tested against (the same trainable parameters, no dendrites).
REFERENCE_MODEL = "mlp"
_DATASET_ORDER = ("breast-cancer", "wine", "digits", "iris", "diabetes")


def run_score(run: Mapping[str, Any]) -> float | None:
    """A tabular run's score: test accuracy, or R² (``extra.test_r2``) for regression."""
    if run.get("test_accuracy") is not None:
        return float(run["test_accuracy"])
    r2 = (run.get("extra") or {}).get("test_r2")
    return None if r2 is None else float(r2)


def _setting(run: Mapping[str, Any], name: str) -> Any:
    return (run.get("config") or {}).get(name, run.get(name))


def _order(value: str, known: Sequence[str]) -> tuple[int, str]:
    return (known.index(value) if value in known else len(known), value)


def _finite(values: Sequence[Any]) -> list[float]:
    return [float(v) for v in values if v is not None and math.isfinite(float(v))]


def tabular_rows(runs: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per (dataset, noise, model) of finished tabular runs: ``score_mean``,
    ``score_sd`` (across seeds of the per-seed mean; NaN with one seed), ``runs``, ``seeds``,
    ``folds`` (per seed, the fewest), ``params`` (mean trainable parameters; NaN for trees),
    ``fit_seconds`` (mean), ``features``, ``metric`` ("accuracy" or "r2"), and against the
    :data:`REFERENCE_MODEL` of the same (dataset, noise) ``vs_mlp`` (difference of the means) and
    ``p_vs_mlp`` (Welch, two-sided, uncorrected, over the seeds' means; NaN for the reference
    itself, without one, or with fewer than two seeds on either side)."""
    groups: dict[tuple[str, float, str], list[Mapping[str, Any]]] = {}
    for run in runs:
        if run_score(run) is None:
            continue
        key = (str(_setting(run, "dataset")), float(_setting(run, "noise")), str(_setting(run, "model")))
        groups.setdefault(key, []).append(run)
    rows: list[dict[str, Any]] = []
    for (dataset, noise, model), members in groups.items():
        by_seed: dict[Any, list[float]] = {}
        for run in members:
            by_seed.setdefault(_setting(run, "seed"), []).append(float(run_score(run)))  # type: ignore[arg-type]
        seed_means = [float(np.mean(v)) for v in by_seed.values()]
        extra = [run.get("extra") or {} for run in members]
        params = _finite([run.get("trainable_params") for run in members])
        seconds = _finite(
            [e.get("fit_seconds", run.get("wall_seconds")) for e, run in zip(extra, members, strict=True)]
        )
        features = _finite([e.get("n_features") for e in extra])
        rows.append(
            {
                "dataset": dataset,
                "noise": noise,
                "model": model,
                "metric": "r2" if any("test_r2" in e for e in extra) else "accuracy",
                "score_mean": float(np.mean([s for v in by_seed.values() for s in v])),
                "score_sd": float(np.std(seed_means, ddof=1)) if len(seed_means) > 1 else math.nan,
                "runs": len(members),
                "seeds": len(by_seed),
                "folds": min(len(v) for v in by_seed.values()),
                "params": float(np.mean(params)) if params else math.nan,
                "fit_seconds": float(np.mean(seconds)) if seconds else math.nan,
                "features": int(features[0]) if features else None,
                "_seed_means": seed_means,
            }
        )
    _compare_with_reference(rows)
    rows.sort(
        key=lambda r: (
            _order(r["dataset"], _DATASET_ORDER),
            r["noise"],
            _order(r["model"], TABULAR_MODELS),
        )
    )
    return rows


def _compare_with_reference(rows: list[dict[str, Any]]) -> None:
    reference = {(r["dataset"], r["noise"]): r for r in rows if r["model"] == REFERENCE_MODEL}
    for r in rows:
        ref = reference.get((r["dataset"], r["noise"]))
        r["vs_mlp"], r["p_vs_mlp"] = math.nan, math.nan
        if ref is not None and ref is not r:
            r["vs_mlp"] = r["score_mean"] - ref["score_mean"]
            mine, theirs = r["_seed_means"], ref["_seed_means"]
            if len(mine) > 1 and len(theirs) > 1:
                from dendritic.analysis.stats import pairwise_welch

                (test,) = pairwise_welch({"model": mine, "reference": theirs})
                r["p_vs_mlp"] = test.p
    for r in rows:
        del r["_seed_means"]
