"""How long a sweep will take: a small cost model calibrated on this project's CPU machine.

One training step (batch B) costs ``c0 + B·(a_dense·dense + a_sparse·sparse + a_unit·units)``
seconds on one thread, where per sample ``dense`` counts the multiply-adds of all-to-all layers,
``sparse`` the connections of gathered (embedding-bag) layers, and ``units`` the hidden units
plus the structured dendrite→soma sums (element-wise work). An epoch is ``ceil(n_train/B)``
steps plus a forward pass over the validation set (a third of a step's cost per sample).
The constants were fitted to real runs and timed steps on the development machine
(:func:`fit_runs`, :func:`calibrate`; see docs/sweeps.md); when the store already holds
finished runs of the same model and size, their measured seconds per epoch are used instead.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from dendritic.data import get_info
from dendritic.models.variants import resolve_name
from dendritic.training.config import TrainConfig

__all__ = [
    "CostModel",
    "DEFAULT_COST",
    "calibrate",
    "estimate_seconds",
    "features",
    "fit_runs",
    "measured_epoch_seconds",
]


@dataclass(frozen=True)
class CostModel:
    """Seconds per training step on one thread: ``c0 + B·(dense·a_dense + sparse·a_sparse + units·a_unit)``."""

    c0: float
    a_dense: float
    a_sparse: float
    a_unit: float
    #: Speed-up of one run given t threads is t ** thread_exponent. 0: on the shared 2-core
    #: development VM two threads were *slower* than one (see docs/sweeps.md), so none is assumed.
    thread_exponent: float = 0.0

    def step_seconds(self, feats: Mapping[str, float], batch: int = 128) -> float:
        per_sample = (
            feats["dense"] * self.a_dense + feats["sparse"] * self.a_sparse + feats["units"] * self.a_unit
        )
        return self.c0 + batch * per_sample

    def epoch_seconds(self, config: TrainConfig, threads: int = 1) -> float:
        feats = features(config)
        n_train, n_val = _split_sizes(config)
        steps = math.ceil(n_train / config.batch_size)
        step = self.step_seconds(feats, config.batch_size)
        per_sample = (step - self.c0) / config.batch_size
        seconds = steps * step + n_val * per_sample / 3.0
        return seconds / max(1, threads) ** self.thread_exponent


# Fitted (non-negative least squares on relative error) to 12 real Fashion-MNIST runs of the
# timing sweep in docs/sweeps.md plus 9 timed steps of large models, 1 thread, torch 2.13 CPU with
# the C++ sparse kernel and fused Adam, on the 2-core development VM; within ±20 % on 19 of 21.
DEFAULT_COST = CostModel(c0=2.0e-3, a_dense=1.5e-10, a_sparse=5.5e-10, a_unit=0.0)


def _split_sizes(config: TrainConfig) -> tuple[int, int]:
    info = get_info(config.dataset)
    n = info.n_train if config.limit is None else min(config.limit, info.n_train)
    n_val = int(round(n * config.val_fraction))
    return n - n_val, n_val


def features(config: TrainConfig | Mapping[str, Any]) -> dict[str, float]:
    """Per-sample work of a model, from its config alone (no model is built)."""
    cfg = config if isinstance(config, TrainConfig) else TrainConfig.from_dict(dict(config))
    info = get_info(cfg.dataset)
    variant, _ = resolve_name(cfg.model)
    height, width, channels = info.input_shape
    n_in, ds, s = height * width * channels, cfg.dendrites * cfg.somata, cfg.somata
    dense = sparse = units = 0.0
    for layer in range(cfg.layers):
        fan = cfg.synapses * (channels if layer == 0 and variant.synapses in ("lrf", "grf") else 1)
        if variant.synapses == "dense":
            dense += n_in * ds
        else:
            sparse += min(fan, n_in) * ds
        if variant.cables == "dense":
            dense += ds * s
        elif variant.cables == "random":
            sparse += ds
        else:
            units += ds  # structured: a reshape-and-sum, element-wise work
        units += ds + s
        n_in = s
    dense += s * info.n_classes
    return {"dense": dense, "sparse": sparse, "units": units}


def _run_key(config: Mapping[str, Any]) -> tuple[Any, ...]:
    return (
        config.get("model"),
        config.get("dataset"),
        config.get("dendrites"),
        config.get("somata"),
        config.get("layers", 1),
        config.get("limit"),
        config.get("sequential", False),
    )


def measured_epoch_seconds(runs: Iterable[Mapping[str, Any]]) -> dict[tuple[Any, ...], float]:
    """Median seconds per epoch of finished runs, per (model, dataset, D, S, layers, limit, sequential)."""
    samples: dict[tuple[Any, ...], list[float]] = {}
    for run in runs:
        seconds, epochs = run.get("wall_seconds"), run.get("epochs_run")
        if run.get("status") != "finished" or not seconds or not epochs:
            continue
        samples.setdefault(_run_key(run["config"]), []).append(float(seconds) / int(epochs))
    return {k: statistics.median(v) for k, v in samples.items()}


def estimate_seconds(
    configs: Sequence[TrainConfig],
    *,
    workers: int = 1,
    threads: int = 1,
    cost: CostModel = DEFAULT_COST,
    measured: Mapping[tuple[Any, ...], float] | None = None,
) -> tuple[float, float, int]:
    """(wall seconds with ``workers`` parallel runs, CPU-run seconds in total, runs timed from the store).

    Wall time is the summed run time divided by ``workers`` (runs are many and similar in cost
    within a seed, so the pool stays busy); early-stopping runs are counted at their maximum.
    """
    total = 0.0
    from_store = 0
    for config in configs:
        epochs = config.resolved_epochs()
        key = _run_key(config.to_dict())
        if measured and key in measured:
            per_epoch = measured[key]
            from_store += 1
        else:
            per_epoch = cost.epoch_seconds(config, threads)
        total += per_epoch * epochs
    return total / max(1, workers), total, from_store


# ---------------------------------------------------------------------------- calibration
CALIBRATION_POINTS: tuple[tuple[str, int, int], ...] = (
    ("vANN", 1, 32),
    ("vANN", 4, 128),
    ("vANN", 16, 256),
    ("vANN", 4, 512),
    ("pdANN", 16, 128),
    ("vANN-R", 16, 256),
    ("dANN-R", 1, 32),
    ("dANN-R", 16, 256),
    ("dANN-LRF", 64, 512),
    ("dANN-GRF", 32, 128),
    ("sANN", 16, 256),
    ("sANN-LRF", 64, 256),
)


def time_step(model_name: str, dendrites: int, somata: int, *, steps: int = 6, batch: int = 128) -> float:
    """Median seconds of one training step (forward, backward, Adam) on random Fashion-MNIST-shaped data."""
    import torch
    import torch.nn.functional as F

    from dendritic.models import build_model
    from dendritic.training.loop import make_optimizer

    model = build_model(model_name, (28, 28, 1), 10, dendrites, somata, seed=1)
    opt = make_optimizer(model, 1e-3)  # the training loop's own (fused) Adam
    x, y = torch.rand(batch, 784), torch.randint(0, 10, (batch,))
    times = []
    for i in range(steps + 2):
        t = time.perf_counter()
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if i >= 2:  # warm-up
            times.append(time.perf_counter() - t)
    return statistics.median(times)


def calibrate(points: Sequence[tuple[str, int, int]] = CALIBRATION_POINTS, *, threads: int = 1) -> CostModel:
    """Time a few models here and fit the constants (non-negative least squares on relative error)."""
    import numpy as np
    import torch

    torch.set_num_threads(threads)
    rows, targets = [], []
    for name, d, s in points:
        f = features(TrainConfig(model=name, dendrites=d, somata=s))
        rows.append([1.0, 128 * f["dense"], 128 * f["sparse"], 128 * f["units"]])
        targets.append(time_step(name, d, s))
    a = np.array(rows) / np.array(targets)[:, None]  # relative error: small models count too
    b = np.ones(len(targets))
    coef = _nnls(a, b)
    return CostModel(
        c0=float(coef[0]), a_dense=float(coef[1]), a_sparse=float(coef[2]), a_unit=float(coef[3])
    )


def fit_runs(runs: Iterable[Mapping[str, Any]]) -> CostModel:
    """Fit the constants to finished runs of a store (``store.list_runs(status="finished")``).

    Each run gives its mean seconds per epoch (wall seconds / epochs). The epoch time is linear
    in the constants: ``steps·c0 + (n_train + n_val/3)·(a_dense·dense + a_sparse·sparse + a_unit·units)``.
    The fit minimises relative error with non-negative constants. Runs of few model families
    cannot separate ``a_sparse`` from ``a_unit``; the fit then puts the cost on one of them.
    """
    import numpy as np

    rows, targets = [], []
    for run in runs:
        seconds, epochs = run.get("wall_seconds"), run.get("epochs_run")
        if run.get("status") != "finished" or not seconds or not epochs:
            continue
        cfg = TrainConfig.from_dict(dict(run["config"]))
        f = features(cfg)
        n_train, n_val = _split_sizes(cfg)
        weight = n_train + n_val / 3.0
        rows.append(
            [
                math.ceil(n_train / cfg.batch_size),
                weight * f["dense"],
                weight * f["sparse"],
                weight * f["units"],
            ]
        )
        targets.append(float(seconds) / int(epochs))
    if len(rows) < 2:
        raise ValueError("fitting the cost model needs at least two finished runs")
    a = np.array(rows) / np.array(targets)[:, None]
    coef = _nnls(a, np.ones(len(targets)))
    return CostModel(
        c0=float(coef[0]), a_dense=float(coef[1]), a_sparse=float(coef[2]), a_unit=float(coef[3])
    )


def _nnls(a: Any, b: Any) -> Any:
    """Tiny non-negative least squares: refit without any coefficient that comes out negative."""
    import numpy as np

    active = list(range(a.shape[1]))
    coef = np.zeros(a.shape[1])
    while active:
        sol, *_ = np.linalg.lstsq(a[:, active], b, rcond=None)
        if (sol >= 0).all():
            coef[active] = sol
            break
        active = [i for i, v in zip(active, sol, strict=True) if v >= 0]
    return coef
