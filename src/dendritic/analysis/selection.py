"""Grouping runs over trials and choosing configurations (SPEC §7 "Best configuration", §10.6).

Runs are plain dicts as returned by ``RunStore.list_runs()``. They are grouped by
(model, dendrites, somata) plus any extra keys, and each group gets mean, sd and a t-based 95 %
confidence interval over its trials.

*Validation metric of a run* means the validation accuracy / loss at the epoch whose weights were
tested: the last epoch, or ``best_epoch`` (minimum validation loss) when the run used early
stopping (best weights restored). It comes from, in order: a ``val_metrics`` callable given to
:func:`group_runs`; ``val_accuracy`` / ``val_loss`` fields of the run (top level or its
``extra`` dict), e.g. set by :func:`attach_val_metrics`. Selection uses validation metrics by
default; ``on="test"`` reproduces the paper's (test-set) rule.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, cast

import numpy as np

from dendritic.analysis._util import require, sort_token

__all__ = [
    "Group",
    "Summary",
    "attach_val_metrics",
    "best_configuration",
    "cheapest_matching",
    "final_val_metrics",
    "group_runs",
    "run_val_metrics",
    "summarise",
]

Metric = Literal["accuracy", "loss"]
Split = Literal["validation", "test"]
BASE_KEYS = ("model", "dendrites", "somata")
_SPLIT_PREFIX = {"validation": "val", "test": "test"}


# ---------------------------------------------------------------- validation metric of a run


def final_val_metrics(
    epochs: Sequence[Mapping[str, Any]], *, early_stop: bool = False, best_epoch: int | None = None
) -> dict[str, Any]:
    """Validation metrics at the epoch that was tested: the last one, or the best under early stopping.

    ``epochs`` are rows as from ``RunStore.epochs`` (keys ``epoch``, ``val_accuracy``, ``val_loss``).
    With ``early_stop`` and no ``best_epoch``, the best epoch is the first one of minimum
    validation loss (as the store computes it). Returns ``{"epoch", "val_accuracy", "val_loss"}``.
    """
    if not epochs:
        raise ValueError("no epoch rows: cannot take validation metrics")
    rows = sorted(epochs, key=lambda r: r["epoch"])
    if early_stop:
        if best_epoch is None:
            scored = [r for r in rows if r.get("val_loss") is not None]
            if not scored:
                raise ValueError("early stopping run has no validation loss in any epoch")
            row = min(scored, key=lambda r: (r["val_loss"], r["epoch"]))
        else:
            matches = [r for r in rows if r["epoch"] == best_epoch]
            if not matches:
                raise ValueError(f"best_epoch {best_epoch} is not among the epoch rows")
            row = matches[0]
    else:
        row = rows[-1]
    return {"epoch": row["epoch"], "val_accuracy": row.get("val_accuracy"), "val_loss": row.get("val_loss")}


def _early_stop(run: Mapping[str, Any]) -> bool:
    cfg = run.get("config") or {}
    return bool(run.get("early_stop", cfg.get("early_stop", False)))


def run_val_metrics(
    run: Mapping[str, Any], epochs: Sequence[Mapping[str, Any]] | None = None
) -> dict[str, Any]:
    """``{"val_accuracy", "val_loss"}`` of a run (see module docstring); values may be None.

    Precomputed fields win (top level, then ``run["extra"]``); otherwise ``epochs`` are used,
    honouring the run's ``config["early_stop"]`` and ``best_epoch``.
    """
    for source in (run, run.get("extra") or {}):
        if source.get("val_accuracy") is not None or source.get("val_loss") is not None:
            return {"val_accuracy": source.get("val_accuracy"), "val_loss": source.get("val_loss")}
    if epochs is None:
        return {"val_accuracy": None, "val_loss": None}
    got = final_val_metrics(epochs, early_stop=_early_stop(run), best_epoch=run.get("best_epoch"))
    return {"val_accuracy": got["val_accuracy"], "val_loss": got["val_loss"]}


def attach_val_metrics(
    runs: Iterable[Mapping[str, Any]], epochs_of: Callable[[Mapping[str, Any]], Sequence[Mapping[str, Any]]]
) -> list[dict[str, Any]]:
    """Copies of ``runs`` with ``val_accuracy`` / ``val_loss`` set from their epoch rows.

    Typical use: ``attach_val_metrics(store.list_runs(status="finished"), lambda r: store.epochs(r["id"]))``.
    """
    out = []
    for run in runs:
        got = final_val_metrics(epochs_of(run), early_stop=_early_stop(run), best_epoch=run.get("best_epoch"))
        out.append({**run, "val_accuracy": got["val_accuracy"], "val_loss": got["val_loss"]})
    return out


# ---------------------------------------------------------------- summaries and groups


@dataclass(frozen=True)
class Summary:
    """Mean, sample sd (ddof 1) and t-based 95 % CI half-width over ``n`` trials (sd, ci NaN if n < 2)."""

    mean: float
    sd: float
    ci95: float
    n: int

    @property
    def low(self) -> float:
        return self.mean - self.ci95

    @property
    def high(self) -> float:
        return self.mean + self.ci95


def summarise(values: Sequence[float] | np.ndarray, confidence: float = 0.95) -> Summary:
    """Mean ± sd ± t-based CI half-width (t quantile with n − 1 df) of one sample."""
    x = np.asarray(values, dtype=float)
    if x.ndim != 1 or x.size == 0:
        raise ValueError(f"need a non-empty 1-D sample, got shape {x.shape}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    n = int(x.size)
    mean = float(x.mean())
    if n < 2:
        return Summary(mean=mean, sd=math.nan, ci95=math.nan, n=n)
    sd = float(x.std(ddof=1))
    t = require("scipy.stats", "confidence intervals").t.ppf(0.5 + confidence / 2, n - 1)
    return Summary(mean=mean, sd=sd, ci95=float(t * sd / math.sqrt(n)), n=n)


@dataclass(frozen=True)
class Group:
    """The trials of one configuration. ``names`` label the entries of ``key``."""

    names: tuple[str, ...]
    key: tuple[Any, ...]
    n: int
    trainable_params: float | None  #: mean over trials (they agree in practice); None if unknown
    test_accuracy: Summary | None
    test_loss: Summary | None
    val_accuracy: Summary | None
    val_loss: Summary | None
    best_epoch: Summary | None
    run_ids: tuple[Any, ...] = ()

    def __getitem__(self, name: str) -> Any:
        try:
            return self.key[self.names.index(name)]
        except ValueError:
            raise KeyError(f"group has no key {name!r}; it has {self.names}") from None

    @property
    def model(self) -> str:
        return self["model"]

    @property
    def dendrites(self) -> int:
        return self["dendrites"]

    @property
    def somata(self) -> int:
        return self["somata"]

    def metric(self, metric: Metric = "accuracy", on: Split = "validation") -> Summary:
        """Summary of ``metric`` on split ``on``; ValueError if the group has none."""
        _check_metric(metric, on)
        name = f"{_SPLIT_PREFIX[on]}_{metric}"
        value = getattr(self, name)
        if value is None:
            hint = (
                " (attach them with attach_val_metrics or pass val_metrics= to group_runs)"
                if on == "validation"
                else ""
            )
            raise ValueError(f"group {dict(zip(self.names, self.key, strict=True))} has no {name}{hint}")
        return value


def _check_metric(metric: str, on: str) -> None:
    if metric not in ("accuracy", "loss"):
        raise ValueError(f"metric must be 'accuracy' or 'loss', got {metric!r}")
    if on not in _SPLIT_PREFIX:
        raise ValueError(f"on must be 'validation' or 'test', got {on!r}")


def _lookup(run: Mapping[str, Any], name: str) -> Any:
    """A run field, else a config entry (dotted names reach nested dicts)."""
    if run.get(name) is not None:
        return run[name]
    node: Any = run.get("config") or {}
    for part in name.split("."):
        if not isinstance(node, Mapping) or part not in node:
            raise ValueError(f"run {run.get('id', '?')} has no field or config entry {name!r}")
        node = node[part]
    return node


def _order(key: tuple[Any, ...]) -> tuple[tuple[int, Any], ...]:
    return tuple(sort_token(v) for v in key)


def _summary_or_none(values: list[Any]) -> Summary | None:
    present = [float(v) for v in values if v is not None]
    return summarise(present) if present else None


def group_runs(
    runs: Iterable[Mapping[str, Any]],
    extra_keys: Sequence[str] = (),
    *,
    val_metrics: Callable[[Mapping[str, Any]], Mapping[str, Any]] | None = None,
    status: str | None = "finished",
) -> list[Group]:
    """Group runs by (model, dendrites, somata, *extra_keys) and summarise each over its trials.

    ``extra_keys`` name run fields or config entries (e.g. ``"dataset"``, ``"dropout"``,
    ``"config.sigma"`` style dotted names). Only runs whose ``status`` equals ``status`` are used
    (runs without a status field are kept; ``status=None`` keeps all). ``val_metrics(run)`` may
    supply ``val_accuracy`` / ``val_loss``; otherwise the run's own fields are used. Groups come
    back sorted by key. Metrics missing from every run of a group are ``None``.
    """
    names = (*BASE_KEYS, *extra_keys)
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate grouping keys: {names}")
    buckets: dict[tuple[Any, ...], list[tuple[Mapping[str, Any], Mapping[str, Any]]]] = {}
    seen = 0
    for run in runs:
        seen += 1
        if status is not None and "status" in run and run["status"] != status:
            continue
        key = tuple(_lookup(run, n) for n in names)
        val = val_metrics(run) if val_metrics is not None else run_val_metrics(run)
        buckets.setdefault(key, []).append((run, val))
    if seen == 0:
        raise ValueError("no runs to group")
    if not buckets:
        raise ValueError(f"none of the {seen} runs has status {status!r}")
    groups = []
    for key in sorted(buckets, key=_order):
        members = buckets[key]
        params = [r.get("trainable_params") for r, _ in members]
        groups.append(
            Group(
                names=names,
                key=key,
                n=len(members),
                trainable_params=None
                if any(p is None for p in params)
                else float(np.mean(np.asarray(params, dtype=float))),
                test_accuracy=_summary_or_none([r.get("test_accuracy") for r, _ in members]),
                test_loss=_summary_or_none([r.get("test_loss") for r, _ in members]),
                val_accuracy=_summary_or_none([v.get("val_accuracy") for _, v in members]),
                val_loss=_summary_or_none([v.get("val_loss") for _, v in members]),
                best_epoch=_summary_or_none([r.get("best_epoch") for r, _ in members]),
                run_ids=tuple(r.get("id") for r, _ in members),
            )
        )
    return groups


# ---------------------------------------------------------------- selection


def _partition(groups: Sequence[Group], by: str | Sequence[str]) -> dict[Hashable, list[Group]]:
    if not groups:
        raise ValueError("no groups to select from")
    by_names = (by,) if isinstance(by, str) else tuple(by)
    parts: dict[Hashable, list[Group]] = {}
    for g in groups:
        missing = [b for b in by_names if b not in g.names]
        if missing:
            raise ValueError(f"cannot partition by {missing[0]!r}: groups are keyed by {g.names}")
        values = tuple(g[b] for b in by_names)
        parts.setdefault(values[0] if isinstance(by, str) else values, []).append(g)
    return parts


def _signed(g: Group, metric: Metric, on: Split) -> float:
    """Metric mean made "smaller is better"."""
    mean = g.metric(metric, on).mean
    return -mean if metric == "accuracy" else mean


def _params(g: Group) -> float:
    return math.inf if g.trainable_params is None else g.trainable_params


def best_configuration(
    groups: Sequence[Group],
    metric: Metric = "accuracy",
    on: Split = "validation",
    *,
    by: str | Sequence[str] = "model",
) -> dict[Any, Group]:
    """Per ``by`` value (default: per model), the group with the highest mean accuracy / lowest mean loss.

    Selects on validation metrics by default (SPEC §10.6); ``on="test"`` is the paper's rule.
    Ties: fewer trainable parameters, then key order. Keys of the result are the ``by`` value
    (a tuple when ``by`` is a sequence).
    """
    _check_metric(metric, on)
    out: dict[Hashable, Group] = {}
    for part, members in _partition(groups, by).items():
        out[part] = min(members, key=lambda g: (_signed(g, metric, on), _params(g), _order(g.key)))
    return out


def cheapest_matching(
    groups: Sequence[Group],
    reference_model: str = "vANN",
    metric: Metric = "accuracy",
    on: Split = "validation",
    *,
    rule: Literal["cheapest", "paper-scan"] = "cheapest",
    by: str | Sequence[str] = "model",
) -> dict[Hashable, Group | None]:
    """Per model, the configuration that beats the reference model's best, or None if none does.

    "Beats" = mean accuracy strictly above (or mean loss strictly below) the reference's best
    configuration (chosen by :func:`best_configuration` with the same ``metric`` and ``on``) in
    the same partition (``by`` must contain ``"model"``; other ``by`` keys, e.g. dataset, are
    matched). ``rule="cheapest"``: fewest trainable parameters, ties by better metric, then key
    order. ``rule="paper-scan"``: the first match scanning D ascending, then S ascending (the
    reference's rule). The reference model itself is left out of the result (nothing can beat its
    own best); get its best from :func:`best_configuration`.
    """
    _check_metric(metric, on)
    if rule not in ("cheapest", "paper-scan"):
        raise ValueError(f"rule must be 'cheapest' or 'paper-scan', got {rule!r}")
    by_names = (by,) if isinstance(by, str) else tuple(by)
    if "model" not in by_names:
        raise ValueError(f"by must include 'model', got {by_names}")
    model_at = by_names.index("model")
    parts = _partition(groups, by)
    best = best_configuration(groups, metric, on, by=by)
    out: dict[Hashable, Group | None] = {}
    for part, members in parts.items():
        values: tuple[Any, ...] = (part,) if isinstance(by, str) else cast(tuple, part)
        if values[model_at] == reference_model:
            continue
        ref_values = (*values[:model_at], reference_model, *values[model_at + 1 :])
        ref_key = ref_values[0] if isinstance(by, str) else ref_values
        if ref_key not in best:
            raise ValueError(f"no groups of reference model {reference_model!r} for {ref_key!r}")
        threshold = _signed(best[ref_key], metric, on)
        matching = [g for g in members if _signed(g, metric, on) < threshold]
        if not matching:
            out[part] = None
        elif rule == "cheapest":
            if any(g.trainable_params is None for g in matching):
                raise ValueError("rule 'cheapest' needs trainable_params on every group")
            out[part] = min(matching, key=lambda g: (_params(g), _signed(g, metric, on), _order(g.key)))
        else:
            out[part] = min(
                matching, key=lambda g: (sort_token(g.dendrites), sort_token(g.somata), _order(g.key))
            )
    return out
