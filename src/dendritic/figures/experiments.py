"""Which sweep a run belongs to, read from its config alone (the store keeps no experiment tag).

The sweeps are ``main``, ``noise``, ``sequential``, ``dropout``, ``lr``, ``early-stop`` and
``depth`` (``dendritic sweep NAME``). A run can belong to several (e.g. a noisy run with a
different learning rate); the figures use only runs that deviate from the main protocol in
the one setting their experiment varies, so results of different sweeps never mix.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "EXPERIMENTS",
    "StoreRuns",
    "experiments_of",
    "is_continual",
    "is_experiment",
    "load_runs",
    "setting",
    "skip_note",
]

EXPERIMENTS: tuple[str, ...] = ("main", "noise", "sequential", "dropout", "lr", "early-stop", "depth")

#: The main protocol's value of every setting an experiment varies.
_DEFAULTS: dict[str, Any] = {
    "sigma": 0.0,
    "sequential": False,
    "lr": 1e-3,
    "dropout": 0.0,
    "layers": 1,
    "early_stop": False,
}

#: The setting each non-main experiment varies.
_VARIES: dict[str, str] = {
    "noise": "sigma",
    "sequential": "sequential",
    "dropout": "dropout",
    "lr": "lr",
    "early-stop": "early_stop",
    "depth": "layers",
}


def setting(run: Mapping[str, Any], name: str) -> Any:
    """A config setting of a run (top-level field first), the main protocol's value if absent."""
    if run.get(name) is not None:
        return run[name]
    config = run.get("config") or {}
    value = config.get(name)
    return _DEFAULTS.get(name) if value is None else value


def _is_default(run: Mapping[str, Any], name: str) -> bool:
    value, default = setting(run, name), _DEFAULTS[name]
    if isinstance(default, bool):
        return bool(value) == default
    try:
        return math.isclose(float(value), float(default), rel_tol=1e-9, abs_tol=1e-12)
    except (TypeError, ValueError):
        return False


def is_continual(run: Mapping[str, Any]) -> bool:
    """A run of ``dendritic continual`` (its config says so): never part of a paper sweep."""
    config = run.get("config") or {}
    return run.get("protocol") == "continual" or config.get("protocol") == "continual"


def experiments_of(run: Mapping[str, Any]) -> set[str]:
    """Every experiment whose recognition rule the run satisfies (SPEC §5).

    main = every setting at its main-protocol value; noise = sigma > 0; sequential = sequential;
    dropout = a vANN with dropout > 0; lr = lr ≠ 0.001; early-stop = early_stop; depth = layers > 1.
    Continual runs belong to none: their accuracy is over a task stream, not the paper's protocol.
    """
    if is_continual(run):
        return set()
    out = set()
    off = {exp for exp, name in _VARIES.items() if not _is_default(run, name)}
    if not off:
        out.add("main")
    out.update(off)
    if "dropout" in out and not str(run.get("model", "")).startswith("vANN"):
        out.discard("dropout")
    return out


def is_experiment(run: Mapping[str, Any], experiment: str) -> bool:
    """True when ``run`` belongs to ``experiment`` and deviates from main in nothing else."""
    if experiment not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {experiment!r}; choose one of {', '.join(EXPERIMENTS)}")
    if experiment == "main":
        return "main" in experiments_of(run)
    off = {exp for exp, name in _VARIES.items() if not _is_default(run, name)}
    return off == {experiment} and experiment in experiments_of(run)


def skip_note(figure: str, experiments: Sequence[str], extra: str = "") -> str:
    """``Fig 7 skipped: needs runs of `dendritic sweep noise` …`` — the one wording used everywhere."""
    sweeps = " or ".join(f"`dendritic sweep {e}`" for e in experiments)
    return f"{figure} skipped: needs runs of {sweeps}{extra}"


#: How the figures and tables name the optimizers (``TrainConfig.optimizer``).
OPTIMIZER_LABELS = {"adam-keras": "Keras's Adam, as the paper's code", "adam-torch": "torch's Adam"}


@dataclass
class StoreRuns:
    """Finished runs of a store trained with one optimizer, with validation metrics attached,
    split by experiment. ``left_out`` counts the finished runs of other optimizers."""

    runs: list[dict[str, Any]]
    epochs_of: Callable[[Mapping[str, Any]], list[dict[str, Any]]]
    by_experiment: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    optimizer: str = "adam-keras"
    left_out: dict[str, int] = field(default_factory=dict)

    def optimizer_note(self) -> str:
        """One sentence for tables and reports: which optimizer's runs they show, what is left out."""
        text = f"Runs trained with {self.optimizer} ({OPTIMIZER_LABELS.get(self.optimizer, self.optimizer)})."
        for name, count in sorted(self.left_out.items()):
            text += (
                f" {count} finished run(s) trained with {name} are left out (--optimizer {name} shows them)."
            )
        return text

    def __post_init__(self) -> None:
        self.by_experiment = {e: [r for r in self.runs if is_experiment(r, e)] for e in EXPERIMENTS}

    def of(self, experiment: str, dataset: str | None = None) -> list[dict[str, Any]]:
        runs = self.by_experiment[experiment]
        return [r for r in runs if dataset is None or r.get("dataset") == dataset]

    def datasets(self, experiment: str) -> list[str]:
        from dendritic.figures.style import order_datasets

        return order_datasets(r["dataset"] for r in self.by_experiment[experiment] if r.get("dataset"))


def _with_val(run: dict[str, Any], epochs: list[dict[str, Any]]) -> dict[str, Any]:
    from dendritic.analysis import run_val_metrics

    try:
        got = run_val_metrics(run, epochs)
    except ValueError:  # a run without epoch rows (hand-made or imported): no validation metrics
        got = {"val_accuracy": None, "val_loss": None}
    return {**run, **got}


def load_runs(store: Any, *, models: Iterable[str] | None = None, optimizer: str | None = None) -> StoreRuns:
    """Finished runs of ``store`` with ``val_accuracy`` / ``val_loss`` from their epoch rows.

    Only runs of one optimizer are kept, so results of Keras's and torch's Adam never mix:
    ``optimizer``, or by default Keras's (the paper's) if the store has any, else torch's (runs
    recorded before the optimizer was a config field used torch's). Epoch rows are read once and
    cached, so learning curves reuse them.
    """
    from collections import Counter

    from dendritic.training.optim import form_of, optimizer_of

    if optimizer is not None:
        form_of(optimizer)  # unknown names: one line listing the valid ones
    cache: dict[Any, list[dict[str, Any]]] = {}

    def epochs_of(run: Mapping[str, Any]) -> list[dict[str, Any]]:
        run_id = run["id"]
        if run_id not in cache:
            cache[run_id] = store.epochs(run_id)
        return cache[run_id]

    wanted = None if models is None else set(models)
    finished = [r for r in store.list_runs(status="finished") if wanted is None or r.get("model") in wanted]
    forms = Counter(optimizer_of(r.get("config") or {}) for r in finished)
    chosen = optimizer or ("adam-keras" if forms.get("adam-keras") else "adam-torch")
    runs = [_with_val(r, epochs_of(r)) for r in finished if optimizer_of(r.get("config") or {}) == chosen]
    left_out = {name: count for name, count in forms.items() if name != chosen}
    return StoreRuns(runs=runs, epochs_of=epochs_of, optimizer=chosen, left_out=left_out)
