"""The sparse-controls study (``dendritic sweep sparse-controls``) as rows of numbers: per size and
control, mean ± s.d. over trials of test accuracy and loss, and against dANN-LRF of the same
size the difference in points and a Welch t-test (two-sided; Bonferroni over every comparison
of the table, accuracy and loss counted separately).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from dendritic.analysis.stats import _welch, bonferroni
from dendritic.sweeps.sparse_controls import CONTROLS, control_label

__all__ = ["REFERENCE", "control_rows"]

#: What every control is compared with.
REFERENCE = "dANN-LRF"


def _config(run: Mapping[str, Any]) -> dict[str, Any]:
    return {**run, **(run.get("config") or {})}


def _stats(values: Sequence[float]) -> tuple[float, float]:
    x = np.asarray(values, dtype=float)
    if x.size == 0:
        return math.nan, math.nan
    return float(x.mean()), float(x.std(ddof=1)) if x.size > 1 else math.nan


def _values(runs: Sequence[Mapping[str, Any]], key: str) -> list[float]:
    out = []
    for r in runs:
        v = r.get(key)
        if v is not None and math.isfinite(float(v)):
            out.append(float(v))
    return out


def _test(control: list[float], reference: list[float]) -> tuple[float, float]:
    """(t, two-sided p) of control vs reference, NaN with fewer than 2 values in either."""
    if len(control) < 2 or len(reference) < 2:
        return math.nan, math.nan
    xa, xb = np.asarray(control), np.asarray(reference)
    if xa.std() == 0 and xb.std() == 0:  # no spread: the t statistic is undefined
        return math.nan, (1.0 if xa.mean() == xb.mean() else 0.0)
    test = _welch("control", xa, REFERENCE, xb, None)
    return test.t, test.p


def control_rows(runs: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per (size, control): ``size`` (the reference's D×S), ``control``, D, S,
    ``params`` (trainable, as recorded), ``trials``, ``acc_mean``/``acc_sd`` (fractions),
    ``loss_mean``/``loss_sd``, ``acc_diff`` (points, control − dANN-LRF), ``loss_diff``, ``t_acc``,
    ``p_acc``, ``p_acc_bonferroni``, ``t_loss``, ``p_loss``, ``p_loss_bonferroni`` (NaN for the
    reference row and where fewer than 2 trials stand on either side). A run's size is the D of
    the dANN it controls (pdANN keeps the reference's D; its somata are matched)."""
    groups: dict[tuple[int, str], list[Mapping[str, Any]]] = {}
    somata_of: dict[int, int] = {}
    for run in runs:
        config = _config(run)
        label = control_label(config)
        if label not in CONTROLS:
            continue
        d = int(config.get("dendrites", 0))
        groups.setdefault((d, label), []).append(run)
        if label != "pdANN (dense fan-in)":
            somata_of[d] = int(config.get("somata", 0))
    order = {c: i for i, c in enumerate(CONTROLS)}
    rows: list[dict[str, Any]] = []
    for (d, label), members in sorted(groups.items(), key=lambda kv: (kv[0][0], order[kv[0][1]])):
        config = _config(members[0])
        acc, loss = _values(members, "test_accuracy"), _values(members, "test_loss")
        ref = groups.get((d, REFERENCE), [])
        ref_acc, ref_loss = _values(ref, "test_accuracy"), _values(ref, "test_loss")
        row: dict[str, Any] = {
            "size": f"D{d}xS{somata_of.get(d, config.get('somata'))}",
            "control": label,
            "dendrites": d,
            "somata": int(config.get("somata", 0)),
            "params": members[0].get("trainable_params"),
            "trials": len(members),
        }
        row["acc_mean"], row["acc_sd"] = _stats(acc)
        row["loss_mean"], row["loss_sd"] = _stats(loss)
        ref_acc_mean, ref_loss_mean = _stats(ref_acc)[0], _stats(ref_loss)[0]
        if label == REFERENCE:
            row["acc_diff"] = row["loss_diff"] = math.nan
            row["t_acc"] = row["p_acc"] = row["t_loss"] = row["p_loss"] = math.nan
        else:
            row["acc_diff"] = 100.0 * (row["acc_mean"] - ref_acc_mean)
            row["loss_diff"] = row["loss_mean"] - ref_loss_mean
            row["t_acc"], row["p_acc"] = _test(acc, ref_acc)
            row["t_loss"], row["p_loss"] = _test(loss, ref_loss)
        rows.append(row)
    pvalues = [(i, k) for i, r in enumerate(rows) for k in ("p_acc", "p_loss") if math.isfinite(r[k])]
    adjusted: list[float] = (
        [float(q) for q in bonferroni([rows[i][k] for i, k in pvalues])] if pvalues else []
    )
    for r in rows:
        r["p_acc_bonferroni"] = r["p_loss_bonferroni"] = math.nan
    for (i, k), q in zip(pvalues, adjusted, strict=True):
        rows[i][f"{k}_bonferroni"] = float(q)
    return rows
