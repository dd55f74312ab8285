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
from dataclasses import dataclass, replace
from typing import Any

from dendritic.data import get_info
from dendritic.models.spec import BEYOND_PAPER
from dendritic.models.variants import resolve_name
from dendritic.training.config import TrainConfig
from dendritic.training.lottery import LOTTERY_DEFAULTS, parent_epochs_of, prune_schedule

__all__ = [
    "CostModel",
    "DEFAULT_COST",
    "calibrate",
    "estimate_seconds",
    "features",
    "fit_runs",
    "lottery_seconds",
    "measured_epoch_seconds",
    "run_seconds",
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
    #: One-layer dANNs train whole epochs in one C++ call (``training.engine.WholeStepEngine``): a step
    #: costs ``c0_fused + B·a_fused·sparse`` (the synapses dominate everything else there).
    c0_fused: float = 1.0e-4
    a_fused: float = 3.3e-10

    def step_seconds(self, feats: Mapping[str, float], batch: int = 128) -> float:
        if feats.get("fused"):
            return self.c0_fused + batch * feats["sparse"] * self.a_fused
        per_sample = (
            feats["dense"] * self.a_dense + feats["sparse"] * self.a_sparse + feats["units"] * self.a_unit
        )
        return self.c0 + batch * per_sample

    def epoch_seconds(
        self, config: TrainConfig, threads: int = 1, feats: Mapping[str, float] | None = None
    ) -> float:
        """Seconds of one epoch of ``config`` (of a network with work ``feats``, if given, on
        ``config``'s data and batch)."""
        feats = features(config) if feats is None else feats
        n_train, n_val = _split_sizes(config)
        steps = math.ceil(n_train / config.batch_size)
        step = self.step_seconds(feats, config.batch_size)
        per_sample = (step - (self.c0_fused if feats.get("fused") else self.c0)) / config.batch_size
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
    branches = ds * cfg.branches  # the units synapses feed: dendrites, or their branches
    dense = sparse = units = 0.0
    for layer in range(cfg.layers):
        fan = cfg.synapses * (
            channels if layer == 0 and variant.receptive_field in ("local", "global") else 1
        )
        if variant.receptive_field == "all":
            dense += n_in * branches
        else:
            sparse += min(fan, n_in) * branches
        if cfg.branches > 1:
            units += 2 * branches  # branch activations, then each dendrite's sum of its branches
        if variant.cables == "all":
            dense += ds * s
        elif variant.cables == "random":
            sparse += ds
        else:
            units += ds  # structured: a reshape-and-sum, element-wise work
        units += ds + s
        if cfg.residual:
            units += 4 * s  # normalisation and the residual sum
        n_in = s
    dense += s * info.n_classes
    # the whole-step C++ path of training.engine.WholeStepEngine (on the CPU): the paper's one-layer dANNs
    fused = (
        cfg.layers == 1
        and not cfg.dropout
        and variant.receptive_field != "all"
        and variant.cables == "structured"
        and all(getattr(cfg, k) == v for k, v in BEYOND_PAPER.items())
        and cfg.selectivity_layers is None  # the regulariser takes plain autograd steps
    )
    return {"dense": dense, "sparse": sparse, "units": units, "fused": float(fused)}


def _run_key(config: Mapping[str, Any]) -> tuple[Any, ...]:
    """What a run's speed depends on: the network (with the options beyond the paper, absent from
    configs at the paper's values) and the amount of data."""
    return (
        config.get("model"),
        config.get("dataset"),
        config.get("dendrites"),
        config.get("somata"),
        config.get("layers", 1),
        config.get("limit"),
        config.get("sequential", False),
        config.get("synapses", 16),
        *(config.get(name, default) for name, default in BEYOND_PAPER.items()),
        *(config.get(name, default) for name, default in LOTTERY_DEFAULTS.items()),
        config.get("selectivity_layers"),
    )


def measured_epoch_seconds(
    runs: Iterable[Mapping[str, Any]], *, host: str | None = None
) -> dict[tuple[Any, ...], float]:
    """Median seconds per epoch of finished runs, per network and data size (model, dataset, D, S,
    layers, synapses, the options beyond the paper, limit, sequential); with ``host``, only runs
    of that machine (others' speed says little about it)."""
    samples: dict[tuple[Any, ...], list[float]] = {}
    for run in runs:
        seconds, epochs = run.get("wall_seconds"), run.get("epochs_run")
        if run.get("status") != "finished" or not seconds or not epochs:
            continue
        if host is not None and run.get("host") != host:
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
        seconds, timed = run_seconds(config, threads=threads, cost=cost, measured=measured)
        total += seconds
        from_store += timed
    return total / max(1, workers), total, from_store


def run_seconds(
    config: TrainConfig,
    *,
    threads: int = 1,
    cost: CostModel = DEFAULT_COST,
    measured: Mapping[tuple[Any, ...], float] | None = None,
    shared_parent: bool = False,
) -> tuple[float, bool]:
    """(estimated seconds of one run, whether a finished run of the store timed it).
    ``shared_parent``: a lottery run whose dense parent another run of the sweep trains."""
    key = _run_key(config.to_dict())
    if (
        config.lottery != "none"
    ):  # the dense parent and the pruning rounds first (a store times the ticket only)
        return lottery_seconds(config, cost, threads=threads, parent=not shared_parent), False
    if measured and key in measured:
        return measured[key] * config.resolved_epochs(), True
    return cost.epoch_seconds(config, threads) * config.resolved_epochs(), False


def lottery_seconds(config: TrainConfig, cost: CostModel, *, threads: int = 1, parent: bool = True) -> float:
    """Estimated seconds of a lottery run: the dense parent's epochs (unless ``parent`` is False:
    it loads one another run trained), every intermediate round's epochs at the connections it
    kept (the first rounds are far denser than the ticket), and the ticket's own epochs at the
    cost of a sparse network of the same nonzeros (an sANN of the same D and S)."""
    ordinary = replace(config, **LOTTERY_DEFAULTS)
    ticket = replace(ordinary, model="sANN")
    epochs = parent_epochs_of(config)
    seconds = cost.epoch_seconds(ticket, threads) * config.resolved_epochs()
    if parent:
        seconds += cost.epoch_seconds(ordinary, threads) * epochs
    ticket_work = features(ticket)
    for kept in prune_schedule(config, get_info(config.dataset).input_shape)[:-1]:
        work = {**ticket_work, "sparse": float(sum(kept))}
        seconds += cost.epoch_seconds(ticket, threads, feats=work) * epochs
    return seconds


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
    """Median seconds of one training step (forward, backward, Adam) on random Fashion-MNIST-shaped
    data, run the way training runs it (``training.engine.WholeStepEngine``)."""
    import torch

    from dendritic.models import build_model
    from dendritic.training.loop import make_optimizer, train_steps

    model = build_model(model_name, (28, 28, 1), 10, dendrites, somata, seed=1)
    opt = make_optimizer(model, 1e-3)  # the training loop's own Adam
    x, y = torch.rand(4 * batch, 784), torch.randint(0, 10, (4 * batch,))
    loss_sum, correct = torch.zeros(()), torch.zeros((), dtype=torch.long)
    times = []
    for i in range(steps + 2):
        first = (i % 4) * batch
        t = time.perf_counter()
        train_steps(model, opt, x, y, torch.arange(first, first + batch), batch, loss_sum, correct)
        if i >= 2:  # warm-up
            times.append(time.perf_counter() - t)
    return statistics.median(times)


def calibrate(points: Sequence[tuple[str, int, int]] = CALIBRATION_POINTS, *, threads: int = 1) -> CostModel:
    """Time a few models here and fit the constants (non-negative least squares on relative error)."""
    import torch

    torch.set_num_threads(threads)
    rows, targets = [], []
    fused_rows, fused_targets = [], []
    for name, d, s in points:
        f = features(TrainConfig(model=name, dendrites=d, somata=s))
        seconds = time_step(name, d, s)
        if f["fused"]:
            fused_rows.append([1.0, 128 * f["sparse"]])
            fused_targets.append(seconds)
        else:
            rows.append([1.0, 128 * f["dense"], 128 * f["sparse"], 128 * f["units"]])
            targets.append(seconds)
    return _model_from_fits(rows, targets, fused_rows, fused_targets)


def _model_from_fits(
    rows: list[list[float]],
    targets: list[float],
    fused_rows: list[list[float]],
    fused_targets: list[float],
) -> CostModel:
    """Both fits (relative error, so small models count too); a part without two points keeps
    the default constants."""
    import numpy as np

    constants: dict[str, float] = {}
    if len(rows) >= 2:
        coef = _nnls(np.array(rows) / np.array(targets)[:, None], np.ones(len(targets)))
        constants |= {"c0": coef[0], "a_dense": coef[1], "a_sparse": coef[2], "a_unit": coef[3]}
    if len(fused_rows) >= 2:
        coef = _nnls(np.array(fused_rows) / np.array(fused_targets)[:, None], np.ones(len(fused_targets)))
        constants |= {"c0_fused": coef[0], "a_fused": coef[1]}
    if not constants:
        raise ValueError("fitting the cost model needs at least two finished runs of one kind")
    return replace(DEFAULT_COST, **{k: float(v) for k, v in constants.items()})


def fit_runs(runs: Iterable[Mapping[str, Any]]) -> CostModel:
    """Fit the constants to finished runs of a store (``store.list_runs(status="finished")``).

    Each run gives its mean seconds per epoch (wall seconds / epochs). The epoch time is linear
    in the constants: ``steps·c0 + (n_train + n_val/3)·(a_dense·dense + a_sparse·sparse + a_unit·units)``.
    The fit minimises relative error with non-negative constants. Runs of few model families
    cannot separate ``a_sparse`` from ``a_unit``; the fit then puts the cost on one of them.
    One-layer dANNs (the whole-step C++ path) fit ``c0_fused`` and ``a_fused`` separately.
    """
    rows, targets, fused_rows, fused_targets = [], [], [], []
    for run in runs:
        seconds, epochs = run.get("wall_seconds"), run.get("epochs_run")
        if run.get("status") != "finished" or not seconds or not epochs:
            continue
        cfg = TrainConfig.from_dict(dict(run["config"]))
        f = features(cfg)
        n_train, n_val = _split_sizes(cfg)
        weight = n_train + n_val / 3.0
        steps = math.ceil(n_train / cfg.batch_size)
        if f["fused"]:
            fused_rows.append([steps, weight * f["sparse"]])
            fused_targets.append(float(seconds) / int(epochs))
            continue
        rows.append([steps, weight * f["dense"], weight * f["sparse"], weight * f["units"]])
        targets.append(float(seconds) / int(epochs))
    return _model_from_fits(rows, targets, fused_rows, fused_targets)


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
