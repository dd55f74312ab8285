"""Beyond the paper: the depth and morphology studies as tables of numbers (runs in, rows out).

Every row aggregates the trials of one configuration: mean and sample s.d. of test accuracy and
loss, the train–test gap (last epoch's training accuracy minus test accuracy), trainable
parameters, and for depth the per-layer gradient norms the training recorded. The figures draw
these rows and the report writes them as CSV and Markdown.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from dendritic.analysis.efficiency import efficiency

__all__ = [
    "DEPTH_MODELS",
    "FAMILIES",
    "depth_rows",
    "morphology_label",
    "morphology_rows",
    "variant_family",
]

#: How the depth study orders and names its models.
DEPTH_MODELS: tuple[str, ...] = ("dANN-LRF", "dANN-GRF", "dANN-R", "vANN")
#: The morphology families, in the order the figures show them.
FAMILIES: tuple[str, ...] = ("reference", "branching", "dendrites x synapses", "cable weights")

Epochs = Callable[[Mapping[str, Any]], list[dict[str, Any]]]


def _setting(run: Mapping[str, Any], name: str, default: Any) -> Any:
    config = run.get("config") or {}
    value = config.get(name, run.get(name))
    return default if value is None else value


def _stats(values: Sequence[float | None]) -> tuple[float, float]:
    x = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=float)
    if x.size == 0:
        return math.nan, math.nan
    return float(x.mean()), float(x.std(ddof=1)) if x.size > 1 else math.nan


def _last(epochs: list[dict[str, Any]], name: str) -> float | None:
    for row in reversed(epochs):
        if row.get(name) is not None:
            return float(row[name])
    return None


def _norms(epochs: list[dict[str, Any]], name: str) -> list[float] | None:
    first = epochs[0] if epochs else {}
    value = first.get(name)
    return [float(v) for v in value] if isinstance(value, list) else None


def depth_rows(runs: Sequence[Mapping[str, Any]], epochs_of: Epochs) -> list[dict[str, Any]]:
    """One row per (model, residual, init, layers): trials, parameters, test accuracy and loss
    (mean, s.d.), train–test gap, and the gradient norms of the first and last dendro-somatic
    layer (before training and after epoch 1; ``grad_layers_*`` hold every layer's, mean over
    trials)."""
    groups: dict[tuple[str, bool, str, int], list[Mapping[str, Any]]] = {}
    for run in runs:
        key = (
            str(run.get("model")),
            bool(_setting(run, "residual", False)),
            str(_setting(run, "init", "glorot-dense")),
            int(_setting(run, "layers", 1)),
        )
        groups.setdefault(key, []).append(run)
    order = {m: i for i, m in enumerate(DEPTH_MODELS)}
    rows = []
    for (model, residual, init, layers), members in sorted(
        groups.items(),
        key=lambda kv: (order.get(kv[0][0], len(order)), kv[0][0], kv[0][2] != "glorot-dense", *kv[0][1:]),
    ):
        epochs = [epochs_of(r) for r in members]
        gaps = [
            (train - r["test_accuracy"])
            for r, e in zip(members, epochs, strict=True)
            if (train := _last(e, "train_accuracy")) is not None and r.get("test_accuracy") is not None
        ]
        row: dict[str, Any] = {
            "model": model,
            "residual": residual,
            "init": init,
            "layers": layers,
            "trials": len(members),
            "somata": int(_setting(members[0], "somata", 0)),
            "params": members[0].get("trainable_params"),
        }
        row["acc_mean"], row["acc_sd"] = _stats([r.get("test_accuracy") for r in members])
        row["loss_mean"], row["loss_sd"] = _stats([r.get("test_loss") for r in members])
        row["gap_mean"], row["gap_sd"] = _stats(gaps)
        for when, name in (("init", "grad_norms_init"), ("epoch1", "grad_norms")):
            profiles = [p for e in epochs if (p := _norms(e, name)) is not None]
            hidden = [p[:-1] for p in profiles if len(p) > 1]  # the last group is the output layer
            if hidden and all(len(h) == len(hidden[0]) for h in hidden):
                mean = np.mean(np.asarray(hidden, dtype=float), axis=0)
                row[f"grad_{when}_first"], row[f"grad_{when}_last"] = float(mean[0]), float(mean[-1])
                row[f"grad_layers_{when}"] = [float(v) for v in mean]
            else:
                row[f"grad_{when}_first"] = row[f"grad_{when}_last"] = math.nan
                row[f"grad_layers_{when}"] = []
        rows.append(row)
    return rows


def variant_family(run: Mapping[str, Any]) -> str:
    """Which morphology family a run of the ``morphology`` grid belongs to."""
    if int(_setting(run, "branches", 1)) > 1:
        return "branching"
    if _setting(run, "cable_weights", "learned") != "learned":
        return "cable weights"
    if int(_setting(run, "dendrites", 16)) != 16 or int(_setting(run, "synapses", 16)) != 16:
        return "dendrites x synapses"
    return "reference"


def morphology_label(run: Mapping[str, Any]) -> str:
    """A short name for a morphology: ``D16×16``, ``B=2 (8 syn.)``, ``cables ones``."""
    d, syn = int(_setting(run, "dendrites", 16)), int(_setting(run, "synapses", 16))
    family = variant_family(run)
    if family == "branching":
        return f"B={int(_setting(run, 'branches', 1))} ({syn} syn.)"
    if family == "cable weights":
        return f"cables {_setting(run, 'cable_weights', 'learned')}"
    return f"D{d}×{syn}"


def morphology_rows(runs: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per (morphology, noise σ): family, label, somata, parameters, trials, test and
    validation accuracy and test loss (mean, s.d.), mean best epoch, and the accuracy / loss
    efficiency within the morphologies of the same σ (SPEC §7's score; pool = those rows)."""
    groups: dict[tuple[str, float], list[Mapping[str, Any]]] = {}
    for run in runs:
        key = (morphology_label(run), float(_setting(run, "sigma", 0.0)))
        groups.setdefault(key, []).append(run)
    family_order = {f: i for i, f in enumerate(FAMILIES)}
    rows = []
    for (label, sigma), members in groups.items():
        row: dict[str, Any] = {
            "family": variant_family(members[0]),
            "label": label,
            "sigma": sigma,
            "dendrites": int(_setting(members[0], "dendrites", 16)),
            "synapses": int(_setting(members[0], "synapses", 16)),
            "branches": int(_setting(members[0], "branches", 1)),
            "cable_weights": str(_setting(members[0], "cable_weights", "learned")),
            "somata": int(_setting(members[0], "somata", 0)),
            "params": members[0].get("trainable_params"),
            "trials": len(members),
        }
        row["acc_mean"], row["acc_sd"] = _stats([r.get("test_accuracy") for r in members])
        row["loss_mean"], row["loss_sd"] = _stats([r.get("test_loss") for r in members])
        row["val_acc_mean"], _ = _stats([r.get("val_accuracy") for r in members])
        row["best_epoch"], _ = _stats([r.get("best_epoch") for r in members])
        rows.append(row)
    rows.sort(
        key=lambda r: (
            r["sigma"],
            family_order.get(r["family"], 9),
            -r["dendrites"],
            r["branches"],
            r["label"],
        )
    )
    for sigma in sorted({r["sigma"] for r in rows}):
        pool = [
            r
            for r in rows
            if r["sigma"] == sigma
            and r["params"]
            and r["best_epoch"] == r["best_epoch"]
            and r["acc_mean"] == r["acc_mean"]
        ]
        if not pool:
            continue
        eff = efficiency(
            [float(r["params"]) for r in pool],
            [max(1.0, float(r["best_epoch"])) for r in pool],
            accuracy=[r["acc_mean"] for r in pool],
            loss=[r["loss_mean"] for r in pool],
        )
        assert eff.accuracy is not None and eff.loss is not None
        for r, a, lo in zip(pool, eff.accuracy, eff.loss, strict=True):
            r["acc_efficiency"], r["loss_efficiency"] = float(a), float(lo)
    for r in rows:
        r.setdefault("acc_efficiency", math.nan)
        r.setdefault("loss_efficiency", math.nan)
    return rows
