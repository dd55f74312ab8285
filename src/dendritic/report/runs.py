"""Which experiment (sweep) a stored run belongs to, and the finished runs the figures draw.

A run records the experiment it was made for (``dendritic sweep NAME`` tags its runs with NAME;
``dendritic train`` with the experiment whose protocol its config follows; ``dendritic continual``
with ``continual``). The figures select runs by that tag, so results of different sweeps never
mix. Runs stored before the tag existed (schema v2 and older) are recognised from their config
by the grids' own rule, :func:`dendritic.sweeps.experiment_of`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from dendritic.sweeps.grids import EXPERIMENTS as GRIDS
from dendritic.sweeps.grids import experiment_of, in_main_grid

__all__ = [
    "EXPERIMENTS",
    "StoreRuns",
    "experiment_of_run",
    "is_continual",
    "is_experiment",
    "load_runs",
]

EXPERIMENTS: tuple[str, ...] = tuple(GRIDS)
#: Studies recorded by their own command, not a sweep grid (``dendritic rl run``): their runs are
#: selected by tag alone and kept whatever the optimizer (they train with their library's own).
STUDIES: tuple[str, ...] = ("rl",)


def is_continual(run: Mapping[str, Any]) -> bool:
    """A run of ``dendritic continual``: never part of a paper sweep."""
    config = run.get("config") or {}
    return "continual" in (run.get("experiment"), run.get("protocol"), config.get("protocol"))


def _paper_model(name: Any) -> bool:
    from dendritic.models.variants import resolve_name

    try:
        resolve_name(str(name))
    except ValueError:
        return False
    return True


def experiment_of_run(run: Mapping[str, Any]) -> str | None:
    """The experiment of a stored run: its tag; for an untagged run of one of the paper's models
    (stored before tags existed), the experiment its config follows; else None."""
    tag = run.get("experiment")
    if tag:
        return str(tag)
    if is_continual(run):
        return "continual"
    if not _paper_model(run.get("model")):
        return None
    return experiment_of(_config(run))


def _config(run: Mapping[str, Any]) -> dict[str, Any]:
    config = dict(run.get("config") or {})
    config.setdefault("model", run.get("model"))
    return config


def is_experiment(run: Mapping[str, Any], experiment: str) -> bool:
    """True when ``run`` belongs to ``experiment``.

    A grid point two sweeps share counts for main too: the depth sweep's L = 1 runs are main's
    runs (same config, so the store holds them once, tagged with whichever sweep ran them first).
    Other main-protocol runs of other sweeps (``depth-deep``'s vANN of matched width, the
    ``morphology`` sweep's other synapse counts) are not points of the main grid and stay out.
    """
    if experiment not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {experiment!r}; choose one of {', '.join(EXPERIMENTS)}")
    tag = experiment_of_run(run)
    if tag == experiment:
        return True
    return experiment == "main" and tag in EXPERIMENTS and in_main_grid(_config(run))


#: How the figures and tables name the optimizers (``TrainConfig.optimizer``).
OPTIMIZER_LABELS = {"adam-keras": "Keras's Adam, as the paper's code", "adam-torch": "torch's Adam"}


@dataclass
class StoreRuns:
    """Finished runs of a store trained with one optimizer, with validation metrics attached,
    split by experiment. ``left_out`` counts the finished runs of other optimizers; ``damaged``
    names the finished runs left out because a stored value of theirs (or of an epoch) is
    damaged, one line each (run, epoch, field)."""

    runs: list[dict[str, Any]]
    epochs_of: Callable[[Mapping[str, Any]], list[dict[str, Any]]]
    by_experiment: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    optimizer: str = "adam-keras"
    left_out: dict[str, int] = field(default_factory=dict)
    damaged: list[str] = field(default_factory=list)

    def damaged_notes(self) -> list[str]:
        """One note per damaged run the figures and tables leave out."""
        return [f"left out: {problem}" for problem in self.damaged]

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
        self.by_experiment.update({s: [r for r in self.runs if r.get("experiment") == s] for s in STUDIES})

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
    cached, so learning curves reuse them. Runs with a damaged stored value (their own or an
    epoch's) are left out and listed in ``damaged``.
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
    finished, damaged = [], []
    for run in store.list_runs(status="finished"):
        if wanted is not None and run.get("model") not in wanted:
            continue
        # A damaged value must not stop (or silently skew) a report: the run is left out, named.
        problems = [run.get("problem"), *(e.get("problem") for e in epochs_of(run))]
        problems = [p for p in problems if p]
        if problems:
            damaged.append("; ".join(problems))
        else:
            finished.append(run)
    studies = [r for r in finished if r.get("experiment") in STUDIES]
    finished = [r for r in finished if r.get("experiment") not in STUDIES]
    forms = Counter(optimizer_of(r.get("config") or {}) for r in finished)
    chosen = optimizer or ("adam-keras" if forms.get("adam-keras") else "adam-torch")
    runs = [_with_val(r, epochs_of(r)) for r in finished if optimizer_of(r.get("config") or {}) == chosen]
    runs += studies
    left_out = {name: count for name, count in forms.items() if name != chosen}
    return StoreRuns(runs=runs, epochs_of=epochs_of, optimizer=chosen, left_out=left_out, damaged=damaged)
