"""The study's table and curves from the store: per (algorithm, task, network), over seeds, the
IQM learning curve with its 95 % bootstrap band, steps to threshold, final evaluation return
± s.d., the mean return over the learning curve (sample efficiency), parameters and wall time,
and each network's difference from the dendritic one with a Welch p over seeds."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dendritic.analysis.rl import bootstrap_band, iqm, steps_to_threshold
from dendritic.rl.networks import NETWORKS
from dendritic.rl.run import EXPERIMENT
from dendritic.rl.zoo import THRESHOLDS

__all__ = ["REFERENCE_NETWORK", "RLGroup", "group_rl_runs", "load_rl_runs", "summary_rows"]

logger = logging.getLogger(__name__)

#: The network every other one of its (algorithm, task) is compared with.
REFERENCE_NETWORK = "dendritic"


@dataclass
class RLGroup:
    """The finished runs of one (algorithm, task, network): their curves on common steps."""

    algo: str
    task: str
    network: str
    seeds: list[int] = field(default_factory=list)
    steps: np.ndarray = field(default_factory=lambda: np.zeros(0))
    curves: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))  #: seeds × points
    finals: list[float] = field(default_factory=list)
    params: int = 0
    train_seconds: list[float] = field(default_factory=list)
    train_cpu_seconds: list[float] = field(default_factory=list)
    wall_seconds: list[float] = field(default_factory=list)

    @property
    def threshold(self) -> float:
        return THRESHOLDS[self.task]

    def band(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return bootstrap_band(self.curves)

    def curve_means(self) -> np.ndarray:
        """Each seed's mean evaluation return over the learning curve's points (evenly spaced in
        steps, so the normalised area under the curve: how soon and how well it learned)."""
        return self.curves.mean(axis=1) if self.curves.size else np.zeros(0)

    def row(self) -> dict[str, Any]:
        centre, _, _ = self.band()
        per_seed = [steps_to_threshold(list(self.steps), list(c), self.threshold) for c in self.curves]
        reached = [s for s in per_seed if s is not None]
        finals = np.asarray(self.finals, dtype=float)
        curve_means = self.curve_means()
        return {
            "algo": self.algo,
            "task": self.task,
            "network": self.network,
            "seeds": len(self.seeds),
            "params": self.params,
            "final_mean": float(finals.mean()),
            "final_sd": float(finals.std(ddof=1)) if finals.size > 1 else math.nan,
            "final_iqm": float(iqm(finals)),
            "curve_mean": float(curve_means.mean()),
            "curve_sd": float(curve_means.std(ddof=1)) if curve_means.size > 1 else math.nan,
            "threshold": self.threshold,
            "iqm_steps_to_threshold": steps_to_threshold(list(self.steps), list(centre), self.threshold),
            "seeds_reaching": len(reached),
            "median_steps_to_threshold": float(np.median(reached)) if reached else None,
            "train_seconds": float(np.mean(self.train_seconds)),
            "train_cpu_seconds": float(np.nanmean(self.train_cpu_seconds))
            if np.isfinite(self.train_cpu_seconds).any()
            else math.nan,
            "wall_seconds": float(np.mean(self.wall_seconds)),
        }


def load_rl_runs(store: Any) -> list[tuple[dict[str, Any], list[dict[str, Any]]]]:
    """The store's finished runs of the study with their evaluation points."""
    runs = store.list_runs(status="finished", experiment=EXPERIMENT)
    return [(r, store.epochs(r["id"])) for r in runs]


def _order(key: tuple[str, str, str]) -> tuple[int, str, int]:
    algo, task, network = key
    tasks = list(THRESHOLDS)
    return (tasks.index(task) if task in tasks else len(tasks), algo, NETWORKS.index(network))


def group_rl_runs(runs: Iterable[tuple[Mapping[str, Any], list[dict[str, Any]]]]) -> list[RLGroup]:
    """Runs grouped by (algorithm, task, network); curves cut to the points every seed has."""
    grouped: dict[tuple[str, str, str], list[tuple[Mapping[str, Any], list[dict[str, Any]]]]] = {}
    for run, epochs in runs:
        config = run.get("config") or {}
        key = (str(config.get("algo")), str(config.get("dataset")), str(config.get("model")))
        if key[1] not in THRESHOLDS or key[2] not in NETWORKS or not epochs:
            continue
        grouped.setdefault(key, []).append((run, epochs))
    out = []
    for key in sorted(grouped, key=_order):
        members = grouped[key]
        n = min(len(e) for _, e in members)
        group = RLGroup(*key)
        group.steps = np.asarray([int(e["steps"]) for e in members[0][1][:n]], dtype=float)
        group.curves = np.asarray([[float(p["return_mean"]) for p in e[:n]] for _, e in members])
        for run, epochs in members:
            extra = run.get("extra") or {}
            group.seeds.append(int(run["config"]["seed"]))
            group.finals.append(float(extra.get("final_return", epochs[-1]["return_mean"])))
            group.train_seconds.append(float(extra.get("train_seconds") or math.nan))
            group.train_cpu_seconds.append(float(extra.get("train_cpu_seconds") or math.nan))
            group.wall_seconds.append(float(run.get("wall_seconds") or math.nan))
            group.params = int(run.get("trainable_params") or 0)
        out.append(group)
    return out


def summary_rows(groups: Iterable[RLGroup]) -> list[dict[str, Any]]:
    """One row per group (:meth:`RLGroup.row`), with its difference from the
    :data:`REFERENCE_NETWORK` of the same (algorithm, task): ``vs_dendritic`` and ``p_vs_dendritic``
    for the final return, ``curve_vs_dendritic`` and ``p_curve_vs_dendritic`` for the mean return
    over the curve (this network's mean minus the dendritic one's; Welch, two-sided, uncorrected,
    over seeds; NaN for the dendritic row itself, a missing reference or fewer than two seeds, and
    the p-values NaN without scipy — the ``[rl]`` extra alone does not bring it)."""
    from dendritic.analysis.stats import pairwise_welch

    groups = list(groups)
    without_scipy = False
    reference = {(g.algo, g.task): g for g in groups if g.network == REFERENCE_NETWORK}
    rows = []
    for g in groups:
        row = g.row()
        ref = reference.get((g.algo, g.task))
        for name, mine, theirs in (
            ("", list(g.finals), list(ref.finals) if ref else []),
            ("curve_", list(g.curve_means()), list(ref.curve_means()) if ref else []),
        ):
            diff = p = math.nan
            if ref is not None and ref is not g:
                diff = float(np.mean(mine) - np.mean(theirs))
                if len(mine) > 1 and len(theirs) > 1 and not without_scipy:
                    try:
                        (test,) = pairwise_welch({"network": mine, "dendritic": theirs})
                        p = test.p
                    except ImportError:
                        without_scipy = True
            row[f"{name}vs_dendritic"], row[f"p_{name}vs_dendritic"] = diff, p
        rows.append(row)
    if without_scipy:
        logger.warning("no p-values: Welch's test needs scipy (pip install 'dendritic[analysis]')")
    return rows
