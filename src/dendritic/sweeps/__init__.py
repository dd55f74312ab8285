"""Sweeps: the paper's experiment grids, run resumably in parallel on this machine or on Ray.

Typical use::

    from dendritic.store import RunStore
    from dendritic.sweeps import expand, run_sweep

    configs = expand("main", {"models": ["dANN-LRF", "vANN"], "trials": [1]})
    with RunStore("runs.db") as store:
        report = run_sweep(configs, store, workers=2)

or ``dendritic sweep main --models dANN-LRF,vANN --trials 1 --workers 2``. Only the
coordinator writes the store; workers are pure functions (config → result dict). See
docs/sweeps.md for the protocol, the grids and running on a Ray / Slurm cluster.
"""

from .backends import RAY_INSTALL_HINT, LocalBackend, RayBackend, available_cpus, make_backend
from .coordinator import SweepReport, plan, run_sweep, summary_line
from .estimate import DEFAULT_COST, CostModel, calibrate, estimate_seconds, features, fit_runs
from .grids import (
    AXES,
    DENDRITES,
    EXPERIMENTS,
    FIGURE_MODELS,
    SOMATA,
    TRIALS,
    Experiment,
    expand,
    experiment_names,
    experiment_of,
    get_experiment,
)
from .worker import Task, run_task

__all__ = [
    "AXES",
    "DEFAULT_COST",
    "DENDRITES",
    "EXPERIMENTS",
    "FIGURE_MODELS",
    "RAY_INSTALL_HINT",
    "SOMATA",
    "TRIALS",
    "CostModel",
    "Experiment",
    "LocalBackend",
    "RayBackend",
    "SweepReport",
    "Task",
    "available_cpus",
    "calibrate",
    "estimate_seconds",
    "expand",
    "experiment_names",
    "experiment_of",
    "features",
    "fit_runs",
    "get_experiment",
    "make_backend",
    "plan",
    "run_sweep",
    "run_task",
    "summary_line",
]
