"""Comparing models on a continual benchmark at matched trainable parameters, over seeds.

dANNs and sANN keep the paper's D = 16 dendrites per soma and get the number of somata S whose
parameter count is closest to the target; vANN (and its input-sampling variants) keeps D = 1,
a plain MLP, and likewise gets the closest S. With the default target, dANN-LRF at D = 16,
S = 256 on a 28×28, 10-class dataset (76,554 parameters), every dANN and sANN lands on
S = 256 exactly and vANN on S = 87 (76,831 parameters).
"""

from __future__ import annotations

import json
import logging
import math
import os
import statistics
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from dendritic.continual.runner import METRIC_NAMES, PROTOCOL, ContinualConfig, ContinualResult, run_continual
from dendritic.training.config import test_limit

log = logging.getLogger("dendritic.continual")

__all__ = [
    "COMPARE_MODELS",
    "Comparison",
    "ComparisonRow",
    "compare",
    "comparisons_from_runs",
    "match_parameters",
    "parameter_count",
    "parse_seeds",
    "summarize_results",
]

COMPARE_MODELS = ("dANN-LRF", "dANN-GRF", "dANN-R", "sANN", "vANN")
COMPARE_ORDER = {m: i for i, m in enumerate(COMPARE_MODELS)}
MAX_SOMATA = 4096


def parameter_count(
    model: str,
    dendrites: int,
    somata: int,
    input_shape: Sequence[int],
    n_classes: int,
    *,
    synapses: int = 16,
) -> int:
    """Trainable parameters of a one-layer ``model`` for this input shape and class count.

    The closed form of :func:`dendritic.models.paper_parameter_count` with the real input size
    and the per-channel synapse count (an RGB dendrite has 3 × ``synapses`` inputs); it equals
    :func:`dendritic.models.count_parameters` of the built model without building it.
    """
    from dendritic.models import paper_parameter_count

    shape = tuple(int(v) for v in input_shape)
    channels = shape[2] if len(shape) == 3 else 1
    return paper_parameter_count(
        model, dendrites, somata, synapses * channels, n_inputs=math.prod(shape), n_classes=n_classes
    )


def match_parameters(
    model: str,
    target: int,
    input_shape: Sequence[int],
    n_classes: int,
    *,
    synapses: int = 16,
    dendrites: int | None = None,
    max_somata: int = MAX_SOMATA,
) -> tuple[int, int, int]:
    """(D, S, parameters) of ``model`` closest to ``target`` trainable parameters.

    D is ``dendrites``, by default 1 for dense dendrite→soma models (vANN and vANN-R/LRF/GRF:
    the plain MLP with one hidden unit per soma) and 16 otherwise (the paper's dANN/sANN
    size); S is searched over 1..``max_somata`` (ties go to the smaller S).
    """
    from dendritic.models.variants import resolve_name

    if isinstance(target, bool) or not isinstance(target, (int, np.integer)) or target < 1:
        raise ValueError(f"target must be a positive number of parameters, got {target!r}")
    variant, _ = resolve_name(model)
    d = dendrites if dendrites is not None else (1 if variant.cables == "all" else 16)
    best: tuple[int, int] | None = None  # (distance, S)
    for s in range(1, max_somata + 1):
        count = parameter_count(model, d, s, input_shape, n_classes, synapses=synapses)
        distance = abs(count - int(target))
        if best is None or distance < best[0]:
            best = (distance, s)
        if count > target:  # counts grow with S: nothing further can be closer
            break
    assert best is not None
    s = best[1]
    return d, s, parameter_count(model, d, s, input_shape, n_classes, synapses=synapses)


def parse_seeds(text: str) -> list[int]:
    """``"1-5"`` → [1, 2, 3, 4, 5]; ``"1,3,7"`` and mixes like ``"1-3,9"`` work too."""
    seeds: list[int] = []
    try:
        for part in str(text).split(","):
            part = part.strip()
            if "-" in part:
                low, high = (int(v) for v in part.split("-", 1))
                if high < low:
                    raise ValueError
                seeds.extend(range(low, high + 1))
            elif part:
                seeds.append(int(part))
    except ValueError:
        raise ValueError(f"cannot read seeds {text!r}; write e.g. 1-5 or 1,2,3") from None
    if not seeds or min(seeds) < 0:
        raise ValueError(f"cannot read seeds {text!r}; write e.g. 1-5 or 1,2,3 (non-negative)")
    return sorted(set(seeds))


def _mean_sd(values: Sequence[float]) -> tuple[float, float]:
    vals = [v for v in values if v is not None and math.isfinite(v)]
    if not vals:
        return math.nan, math.nan
    return statistics.fmean(vals), (statistics.stdev(vals) if len(vals) > 1 else math.nan)


@dataclass
class ComparisonRow:
    """One (benchmark, scenario, model) over seeds: mean ± sample sd of each metric."""

    benchmark: str
    scenario: str
    model: str
    dendrites: int
    somata: int
    params: int
    seeds: list[int]
    stats: dict[str, tuple[float, float]]
    mean_matrix: list[list[float]]

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "benchmark": self.benchmark,
            "scenario": self.scenario,
            "model": self.model,
            "dendrites": self.dendrites,
            "somata": self.somata,
            "params": self.params,
            "n_seeds": len(self.seeds),
        }
        for name, (mean, sd) in self.stats.items():
            out[f"{name}_mean"] = mean
            out[f"{name}_sd"] = sd
        return out


@dataclass
class Comparison:
    """All runs of a comparison and their per-model summaries."""

    target_params: int
    rows: list[ComparisonRow]
    results: list[ContinualResult] = field(default_factory=list)

    def format_table(self) -> str:
        def cell(name: str, row: ComparisonRow) -> str:
            mean, sd = row.stats[name]
            if not math.isfinite(mean):
                return "-"
            return f"{100 * mean:.2f}" + (f" ± {100 * sd:.2f}" if math.isfinite(sd) else "")

        head = ["setting", "model", "D", "S", "params", "n", "ACC %", "forgetting", "BWT", "FWT"]
        table = [head]
        for r in self.rows:
            table.append(
                [
                    f"{r.benchmark}/{r.scenario}",
                    r.model,
                    str(r.dendrites),
                    str(r.somata),
                    f"{r.params:,}",
                    str(len(r.seeds)),
                    cell("acc", r),
                    cell("forgetting", r),
                    cell("bwt", r),
                    cell("fwt", r),
                ]
            )
        widths = [max(len(line[i]) for line in table) for i in range(len(head))]
        lines = ["  ".join(v.rjust(w) for v, w in zip(line, widths, strict=True)) for line in table]
        return "\n".join(lines) + "\n(metrics in percentage points; mean ± sample s.d. over seeds)"

    def write_csv(self, path: str | os.PathLike[str]) -> str:
        import csv

        rows = [r.as_dict() for r in self.rows]
        columns = list(rows[0]) if rows else []
        from dendritic.files import atomic_path

        with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, columns)
            writer.writeheader()
            for row in rows:
                writer.writerow(
                    {k: ("" if isinstance(v, float) and not math.isfinite(v) else v) for k, v in row.items()}
                )
        return str(path)


def compare(
    base: ContinualConfig,
    *,
    models: Iterable[str] = COMPARE_MODELS,
    scenarios: Iterable[str | None] | None = None,
    seeds: Iterable[int] = (1, 2, 3, 4, 5),
    target_params: int | None = None,
    reference: str = "dANN-LRF",
    store: Any | None = None,
    data_dir: str | os.PathLike[str] | None = None,
    progress: bool = False,
    on_result: Callable[[ContinualResult], None] | None = None,
    threads: int | None = None,
) -> Comparison:
    """Run every model × scenario × seed of ``base``'s benchmark at matched parameters.

    The target is ``target_params`` or, by default, the count of ``reference`` at ``base``'s
    dendrites and somata. Each model's S comes from :func:`match_parameters`, with D = 1 for
    dense dendrite→soma models (vANN) and ``base.dendrites`` for the others. Runs
    already finished in ``store`` are reused, so an interrupted comparison resumes. The data
    of each seed is prepared once and shared by all its runs.
    """
    from dendritic.data import get_info, prepare
    from dendritic.models.variants import resolve_name

    info = get_info(base.dataset)
    models = [resolve_name(m)[0].name for m in models]
    if not models:
        raise ValueError("compare needs at least one model")
    scenario_list = [base.scenario] if scenarios is None else list(scenarios)
    configs_per_scenario = [replace(base, scenario=s) for s in scenario_list]  # validates early
    seed_list = list(seeds)
    if target_params is None:
        target_params = parameter_count(
            reference, base.dendrites, base.somata, info.input_shape, info.n_classes, synapses=base.synapses
        )
    sizes = {
        m: match_parameters(
            m,
            target_params,
            info.input_shape,
            info.n_classes,
            synapses=base.synapses,
            dendrites=1 if resolve_name(m)[0].cables == "all" else base.dendrites,
        )
        for m in models
    }
    results: list[ContinualResult] = []
    cache: dict[int, Any] = {}

    def data_for(seed: int) -> Any:
        if seed not in cache:
            cache.clear()  # one seed's data in memory at a time
            cache[seed] = prepare(
                base.dataset, seed=seed, data_dir=data_dir, limit=base.limit, test_limit=test_limit(base)
            )
        return cache[seed]

    for seed in seed_list:
        for scen_config in configs_per_scenario:
            for m in models:
                d, s, _ = sizes[m]
                config = replace(scen_config, model=m, dendrites=d, somata=s, seed=seed)
                data = None
                if (
                    store is None
                    or (row := store.find(config.to_dict())) is None
                    or row["status"] != "finished"
                ):
                    data = data_for(seed)
                result = run_continual(config, store=store, progress=False, data=data, threads=threads)
                results.append(result)
                if on_result is not None:
                    on_result(result)
                note = " (from the store)" if result.reused else ""
                log.log(logging.INFO if progress else logging.DEBUG, "%s%s", result.summary(), note)
    rows = summarize_results(results)
    return Comparison(int(target_params), rows, results)


def summarize_results(results: Sequence[ContinualResult]) -> list[ComparisonRow]:
    """One row per (benchmark, scenario, model, D, S), in order of first appearance: the mean ±
    sample s.d. of each metric over the results' seeds and the mean accuracy matrix."""
    grouped: dict[tuple[str, str, str, int, int], list[ContinualResult]] = {}
    for r in results:
        c = r.config
        grouped.setdefault((c.benchmark, str(c.scenario), c.model, c.dendrites, c.somata), []).append(r)
    rows = []
    for (benchmark, scenario, model, d, s), runs in grouped.items():
        stats = {name: _mean_sd([r.metrics.get(name, math.nan) for r in runs]) for name in METRIC_NAMES}
        params = runs[0].trainable_params or parameter_count(
            model,
            d,
            s,
            _input_shape(runs[0].config.dataset),
            _n_classes(runs[0].config.dataset),
            synapses=runs[0].config.synapses,
        )
        mean_matrix = np.mean([r.accuracy_matrix for r in runs], axis=0).tolist()
        rows.append(
            ComparisonRow(
                benchmark,
                scenario,
                model,
                d,
                s,
                int(params),
                [r.config.seed for r in runs],
                stats,
                mean_matrix,
            )
        )
    return rows


def _input_shape(dataset: str) -> tuple[int, ...]:
    from dendritic.data import get_info

    return tuple(get_info(dataset).input_shape)


def _n_classes(dataset: str) -> int:
    from dendritic.data import get_info

    return int(get_info(dataset).n_classes)


#: Settings that must agree for continual runs to be compared (model, size, seed and scenario vary).
_VARYING = ("model", "dendrites", "somata", "seed", "scenario", "protocol")


def comparisons_from_runs(runs: Iterable[dict[str, Any]]) -> list[tuple[str, Comparison]]:
    """Finished continual runs of a store (``RunStore.list_runs``), grouped into comparisons.

    Runs whose settings agree apart from model, size, seed and scenario form one comparison;
    each comes with a title naming the dataset, benchmark and training budget. The target
    parameter count is dANN-LRF's when it is present, otherwise the most common count.
    Other runs (not continual, not finished, or unreadable) are left out.
    """
    from collections import Counter

    groups: dict[str, tuple[ContinualConfig, list[ContinualResult]]] = {}
    for run in runs:
        if run.get("status") != "finished" or (run.get("config") or {}).get("protocol") != PROTOCOL:
            continue
        try:
            result = ContinualResult.from_run(run)
        except (ValueError, TypeError, KeyError):
            continue
        shared = {k: v for k, v in result.config.to_dict().items() if k not in _VARYING}
        key = json.dumps(shared, sort_keys=True)
        groups.setdefault(key, (result.config, []))[1].append(result)
    out = []
    for config, results in groups.values():
        results.sort(
            key=lambda r: (
                str(r.config.scenario),
                COMPARE_ORDER.get(r.config.model, 99),
                r.config.model,
                r.config.seed,
            )
        )
        rows = summarize_results(results)
        counts = Counter(r.params for r in rows)
        lrf = [r.params for r in rows if r.model == "dANN-LRF"]
        target = lrf[0] if lrf else counts.most_common(1)[0][0]
        title = (
            f"{config.benchmark} {config.dataset}, {config.tasks} tasks × {config.epochs_per_task} epochs"
            + (f" × {config.passes} passes" if config.passes > 1 else "")
        )
        out.append((title, Comparison(int(target), rows, results)))
    return out
