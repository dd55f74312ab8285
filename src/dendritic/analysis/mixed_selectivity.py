"""The selectivity study (issue 23) as rows of numbers: runs in, one row per condition out.

Why: the causal chain the figure shows is α (the regulariser's strength; α < 0 lowers
selectivity, α > 0 raises it) or class-specific somata → the node entropy and selectivity the
network *reached* (measured on the test set after training, in each run's ``extra``) → test
accuracy, loss and noise robustness, for dANN-LRF against a vANN of matched parameters. Each
row aggregates the trials of one condition (mean, sample s.d.) and, against α = 0 of the same
model, size and protocol, a Welch t-test of test accuracy and the effect in points.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from dendritic.analysis._util import require

__all__ = ["CLASS_SPECIFIC", "condition_of", "selectivity_rows"]

#: The condition label of the class-specific read-out (the α conditions are numbers).
CLASS_SPECIFIC = "class-specific"
#: The measures each run records per hidden layer (``training.selectivity.node_activity``).
_MEASURES = ("entropy_mean", "index_mean", "classes_mean", "dead_fraction")


def _config(run: Mapping[str, Any]) -> Mapping[str, Any]:
    config = run.get("config")
    return config if isinstance(config, Mapping) else run


def condition_of(run: Mapping[str, Any]) -> float | str | None:
    """α of a regularised run, :data:`CLASS_SPECIFIC` for class-specific somata, None for a run of
    neither (not part of the study)."""
    config = _config(run)
    if config.get("readout") == CLASS_SPECIFIC:
        return CLASS_SPECIFIC
    if config.get("selectivity_layers") is None and not config.get("selectivity_alpha"):
        return None
    return float(config.get("selectivity_alpha") or 0.0)


def _stats(values: Sequence[float | None]) -> tuple[float, float]:
    x = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=float)
    if x.size == 0:
        return math.nan, math.nan
    return float(x.mean()), float(x.std(ddof=1)) if x.size > 1 else math.nan


def _activity(run: Mapping[str, Any], layer: str, measure: str) -> float | None:
    extra = run.get("extra")
    activity = extra.get("activity") if isinstance(extra, Mapping) else None
    values = activity.get(layer) if isinstance(activity, Mapping) else None
    value = values.get(measure) if isinstance(values, Mapping) else None
    return float(value) if isinstance(value, (int, float)) else None


def _welch(a: Sequence[float | None], b: Sequence[float | None]) -> float:
    xa = np.asarray([v for v in a if v is not None and math.isfinite(v)], dtype=float)
    xb = np.asarray([v for v in b if v is not None and math.isfinite(v)], dtype=float)
    if xa.size < 2 or xb.size < 2 or (xa.var() == 0 and xb.var() == 0):
        return math.nan
    stats = require("scipy.stats", "Welch t-tests")
    return float(stats.ttest_ind(xa, xb, equal_var=False).pvalue)


def selectivity_rows(runs: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per (model, D, S, protocol, condition): ``model``, ``dendrites``, ``somata``,
    ``sigma``, ``sequential``, ``condition`` (α or ``class-specific``), ``alpha`` (NaN for the
    class-specific read-out), ``params``, ``trials``, test accuracy and loss (``acc_mean``,
    ``acc_sd``, ``loss_mean``, ``loss_sd``), what the hidden layers reached (``<layer>_<measure>``
    for dendrites and somata: entropy in bits, selectivity index, classes per node, dead
    fraction; means over trials), and against α = 0 of the same model and protocol the accuracy
    effect in points (``effect_points``) and the Welch p-value (``p_vs_alpha0``). Sorted by
    model, size, protocol, then α (class-specific last)."""
    groups: dict[tuple[Any, ...], list[Mapping[str, Any]]] = {}
    for run in runs:
        condition = condition_of(run)
        if condition is None:
            continue
        config = _config(run)
        key = (
            str(config.get("model")),
            int(config.get("dendrites", 16)),
            int(config.get("somata", 256)),
            float(config.get("sigma", 0.0) or 0.0),
            bool(config.get("sequential", False)),
            condition,
        )
        groups.setdefault(key, []).append(run)
    rows = []
    for (model, dendrites, somata, sigma, sequential, condition), members in groups.items():
        row: dict[str, Any] = {
            "model": model,
            "dendrites": dendrites,
            "somata": somata,
            "sigma": sigma,
            "sequential": sequential,
            "condition": condition if isinstance(condition, str) else f"{condition:g}",
            "alpha": math.nan if isinstance(condition, str) else condition,
            "params": members[0].get("trainable_params"),
            "trials": len(members),
        }
        row["acc_mean"], row["acc_sd"] = _stats([r.get("test_accuracy") for r in members])
        row["loss_mean"], row["loss_sd"] = _stats([r.get("test_loss") for r in members])
        for layer in ("dendrites", "somata"):
            for measure in _MEASURES:
                row[f"{layer}_{measure}"], _ = _stats([_activity(r, f"{layer}_1", measure) for r in members])
        reference = groups.get((model, dendrites, somata, sigma, sequential, 0.0), [])
        accuracy = [r.get("test_accuracy") for r in members]
        base = [r.get("test_accuracy") for r in reference]
        base_mean, _ = _stats(base)
        row["effect_points"] = 100.0 * (row["acc_mean"] - base_mean) if reference else math.nan
        row["p_vs_alpha0"] = _welch(accuracy, base) if reference and condition != 0.0 else math.nan
        rows.append(row)
    rows.sort(
        key=lambda r: (
            r["model"] != "dANN-LRF",
            r["somata"] * r["dendrites"],
            r["model"],
            r["sequential"],
            r["sigma"],
            math.inf if isinstance(r["alpha"], float) and math.isnan(r["alpha"]) else r["alpha"],
        )
    )
    return rows
