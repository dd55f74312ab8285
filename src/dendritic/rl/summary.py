"""The study's table and curves from the store: per (algorithm, task, network), over seeds, the
IQM learning curve with its 95 % bootstrap band, steps to threshold, final evaluation return
± s.d., parameters and wall time."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dendritic.analysis.rl import bootstrap_band, iqm, steps_to_threshold
from dendritic.rl.networks import NETWORKS
from dendritic.rl.run import EXPERIMENT
from dendritic.rl.zoo import THRESHOLDS

__all__ = ["RLGroup", "group_rl_runs", "load_rl_runs", "summary_rows"]


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

    def row(self) -> dict[str, Any]:
        centre, _, _ = self.band()
        per_seed = [steps_to_threshold(list(self.steps), list(c), self.threshold) for c in self.curves]
        reached = [s for s in per_seed if s is not None]
        finals = np.asarray(self.finals, dtype=float)
        return {
            "algo": self.algo,
            "task": self.task,
            "network": self.network,
            "seeds": len(self.seeds),
            "params": self.params,
            "final_mean": float(finals.mean()),
            "final_sd": float(finals.std(ddof=1)) if finals.size > 1 else math.nan,
            "final_iqm": float(iqm(finals)),
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
    return [g.row() for g in groups]
