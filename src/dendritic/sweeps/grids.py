"""The paper's experiment grids (SPEC §5) as named experiments, and their expansion into runs.

Each experiment is a product of axes (dataset, σ, learning rate, depth, trial, model, D, S).
Filters may only *shrink* an axis: asking for a value the experiment does not contain is a
one-line error naming the valid values, so a typo never silently launches the wrong sweep.
Runs come out seed-major (every trial-1 run before any trial-2 run), so a half-finished sweep
already covers the whole grid once, and consecutive runs share the same prepared data.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from dendritic.data import canonical_name, dataset_names
from dendritic.models.spec import BEYOND_PAPER, ModelSpec, matched_somata
from dendritic.models.variants import MODEL_NAMES, resolve_name
from dendritic.sweeps.selectivity import selectivity_points
from dendritic.sweeps.sparse_controls import sparse_control_points
from dendritic.training.config import TrainConfig
from dendritic.training.lottery import LOTTERY_DEFAULTS

__all__ = [
    "AXES",
    "DENDRITES",
    "EXPERIMENTS",
    "FIGURE_MODELS",
    "SOMATA",
    "TRIALS",
    "Experiment",
    "expand",
    "experiment_names",
    "experiment_of",
    "get_experiment",
    "in_main_grid",
]

#: Dendrites per soma and somata of the main grid (SPEC §5).
DENDRITES: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64)
SOMATA: tuple[int, ...] = (32, 64, 128, 256, 512)
TRIALS: tuple[int, ...] = (1, 2, 3, 4, 5)
#: The five models of the paper's Fig. 2 and Fig. 7, used by every control experiment.
FIGURE_MODELS: tuple[str, ...] = ("dANN-R", "dANN-LRF", "dANN-GRF", "pdANN", "vANN")
DROPOUT_MODELS: tuple[str, ...] = ("vANN-0.2", "vANN-0.5", "vANN-0.8")

#: Filterable axes, outermost first: the order runs are generated in. ``seed`` is the trial.
AXES: tuple[str, ...] = ("dataset", "sigma", "lr", "layers", "seed", "model", "somata", "dendrites")
#: The axes an experiment of explicit model points takes from its points.
POINT_AXES: tuple[str, ...] = ("layers", "model", "somata", "dendrites")
_INT_AXES = {"layers", "seed", "somata", "dendrites"}
_FLOAT_AXES = {"sigma", "lr"}
#: The command-line flag of each axis, for error messages.
FLAGS: dict[str, str] = {
    "dataset": "--dataset",
    "sigma": "--sigma",
    "lr": "--lr",
    "layers": "--layers",
    "seed": "--trials",
    "model": "--models",
    "somata": "--somata",
    "dendrites": "--dendrites",
}


@dataclass(frozen=True)
class Experiment:
    """A named grid: ``axes`` hold the values run by default, ``fixed`` other TrainConfig fields.

    ``datasets`` lists the datasets ``--dataset`` may pick (the default is ``axes['dataset']``);
    it is the only axis a user may widen, because the paper ran the main grid on five datasets.
    """

    name: str
    description: str
    axes: Mapping[str, tuple[Any, ...]]
    datasets: tuple[str, ...]
    fixed: Mapping[str, Any] = field(default_factory=dict)
    #: The protocol setting (a TrainConfig field) this experiment changes from main's; None for main.
    varies: str | None = None
    #: Explicit model points (TrainConfig fields: model, dendrites, somata, synapses, layers and
    #: the options beyond the paper) instead of the product of the model, layers, somata and
    #: dendrites axes; those axes then list the values the points take, for filters.
    points: tuple[Mapping[str, Any], ...] = ()

    @property
    def point_axes(self) -> tuple[str, ...]:
        """The axes the points set: :data:`POINT_AXES`, and any other axis a point names (the
        selectivity sweep's noise levels)."""
        return tuple(a for a in AXES if a in POINT_AXES or any(a in p for p in self.points))

    def choices(self, axis: str) -> tuple[Any, ...]:
        """Values a filter of ``axis`` may name."""
        return self.datasets if axis == "dataset" else tuple(self.axes[axis])

    def size(self) -> int:
        """Number of runs with the default axes."""
        n = len(self.points) if self.points else 1
        for axis in AXES:
            if not (self.points and axis in self.point_axes):
                n *= len(self.axes[axis])
        return n


def _experiment(
    name: str,
    description: str,
    *,
    models: Sequence[str] = FIGURE_MODELS,
    dendrites: Sequence[int] = DENDRITES,
    somata: Sequence[int] = SOMATA,
    sigma: Sequence[float] = (0.0,),
    lr: Sequence[float] = (1e-3,),
    layers: Sequence[int] = (1,),
    datasets: Sequence[str] | None = None,
    fixed: Mapping[str, Any] | None = None,
    varies: str | None = None,
    points: Sequence[Mapping[str, Any]] = (),
    trials: Sequence[int] = TRIALS,
) -> Experiment:
    if points:  # the point axes list the values the points take (first-seen order)
        models = tuple(dict.fromkeys(p["model"] for p in points))
        layers = tuple(dict.fromkeys(p.get("layers", 1) for p in points))
        somata = tuple(dict.fromkeys(p["somata"] for p in points))
        dendrites = tuple(dict.fromkeys(p["dendrites"] for p in points))
        points = [{"layers": 1, **p} for p in points]
        if any("sigma" in p for p in points):  # noise levels set per point
            points = [{"sigma": 0.0, **p} for p in points]
            sigma = tuple(dict.fromkeys(float(p["sigma"]) for p in points))
    axes = {
        "dataset": ("fmnist",),
        "sigma": tuple(float(s) for s in sigma),
        "lr": tuple(float(v) for v in lr),
        "layers": tuple(layers),
        "seed": tuple(trials),
        "model": tuple(models),
        "somata": tuple(somata),
        "dendrites": tuple(dendrites),
    }
    return Experiment(
        name, description, axes, tuple(datasets or dataset_names()), dict(fixed or {}), varies, tuple(points)
    )


# ---------------------------------------------------------------------------- beyond the paper

#: Fashion-MNIST's images as the models see them, for the matched-parameter grids.
_FMNIST_SHAPE, _FMNIST_CLASSES = (28, 28, 1), 10
#: The paper's dANN-LRF at D = 16, S = 256: the reference every point beyond the paper is matched to.
REFERENCE = ModelSpec("dANN-LRF", dendrites=16, somata=256, synapses=16)
DEEP_LAYERS: tuple[int, ...] = (1, 2, 4, 8, 12, 16, 20)
DEEP_MODELS: tuple[str, ...] = ("dANN-LRF", "dANN-GRF", "dANN-R")
#: The dANNs of ``depth-init`` (each with its matched vANN's depth points once).
INIT_MODELS: tuple[str, ...] = ("dANN-LRF",)


def _point(spec: ModelSpec) -> dict[str, Any]:
    """A grid point: the spec's fields, without the options beyond the paper at their paper values."""
    fields = ("model", "dendrites", "somata", "synapses", "layers", *BEYOND_PAPER)
    return spec.paper_dict({f: getattr(spec, f) for f in fields})


def _matched(spec: ModelSpec, reference: ModelSpec) -> ModelSpec:
    """``spec`` with the number of somata that gives it the reference's trainable parameters."""
    target = reference.trainable_parameters(_FMNIST_SHAPE, _FMNIST_CLASSES)
    return replace(spec, somata=matched_somata(spec, target, _FMNIST_SHAPE, _FMNIST_CLASSES))


def depth_points(
    models: Sequence[str] = DEEP_MODELS, residuals: Sequence[bool] = (False, True), init: str = "glorot-dense"
) -> list[dict[str, Any]]:
    """``depth-deep``: L dendro-somatic layers, plain and residual, for dANN-LRF, dANN-GRF and
    dANN-R at D = 16, S = 256, and a vANN (D = 1: an MLP of 2L hidden layers) of the same depth and
    residual stack whose width S gives dANN-LRF's trainable parameters. ``models``, ``residuals``
    and ``init`` pick a part of it with another initialisation (``depth-init``)."""
    points = []
    for layers in DEEP_LAYERS:
        for residual in residuals:
            reference = replace(REFERENCE, layers=layers, residual=residual, init=init)
            points += [_point(replace(reference, model=m)) for m in models]
            points.append(_point(_matched(replace(reference, model="vANN", dendrites=1), reference)))
    return points


def init_points() -> list[dict[str, Any]]:
    """``depth-init``: the plain stacks of ``depth-deep`` (dANN-LRF and its matched vANN) with
    He-uniform initial weights over each unit's real fan-in instead of the paper's Glorot over
    the dense shape."""
    return depth_points(INIT_MODELS, (False,), "he-fan-in")


def morphology_points() -> list[dict[str, Any]]:
    """``morphology``: dANN-LRF with branching dendrites (B branches of 16/B synapses), other
    splits of the 256-synapse budget per soma (D × synapses), and fixed or sign-constrained
    cable weights; each with the number of somata that matches the reference's trainable
    parameters, and the reference itself."""
    variants = [REFERENCE]
    variants += [replace(REFERENCE, branches=b, synapses=16 // b) for b in (2, 4, 8)]
    variants += [replace(REFERENCE, dendrites=d, synapses=256 // d) for d in (64, 32, 8, 4)]
    variants += [replace(REFERENCE, cable_weights=c) for c in ("ones", "random", "positive")]
    return [_point(v if v == REFERENCE else _matched(v, REFERENCE)) for v in variants]


EXPERIMENTS: dict[str, Experiment] = {
    e.name: e
    for e in (
        _experiment(
            "main",
            "all 12 models over D x S x 5 trials (2,100 runs per dataset; --dataset may name several)",
            models=MODEL_NAMES,
        ),
        _experiment(
            "noise",
            "Fashion-MNIST with fixed Gaussian noise sigma in {0.25, 0.5, 0.75, 1.0}; the 5 figure models",
            sigma=(0.25, 0.5, 0.75, 1.0),
            datasets=("fmnist",),
            varies="sigma",
        ),
        _experiment(
            "sequential",
            "class-sequential Fashion-MNIST (single-class batches, doubled epochs); the 5 figure models",
            datasets=("fmnist",),
            fixed={"sequential": True},
            varies="sequential",
        ),
        _experiment(
            "dropout",
            "vANN controls with dropout 0.2 / 0.5 / 0.8 after every hidden layer",
            models=DROPOUT_MODELS,
            varies="dropout",
        ),
        _experiment(
            "lr",
            "learning rates 0.01 and 1e-4 instead of 1e-3; the 5 figure models",
            lr=(0.01, 1e-4),
            varies="lr",
        ),
        _experiment(
            "early-stop",
            "early stopping (patience 10 on validation loss, at most 100 epochs); the 5 figure models",
            fixed={"early_stop": True},
            varies="early_stop",
        ),
        _experiment(
            "depth",
            "L in {1,2,3,4} dendro-somatic layers, D in {8,16,32,64}, S in {256,512}; the 5 figure models",
            layers=(1, 2, 3, 4),
            dendrites=(8, 16, 32, 64),
            somata=(256, 512),
            varies="layers",
        ),
        _experiment(
            "depth-deep",
            "L in {1,2,4,8,12,16,20} layers, plain and residual: dANN-LRF/GRF/R at D=16, S=256 and a "
            "vANN of matched parameters; 2 trials",
            points=depth_points(),
            datasets=("fmnist",),
            trials=(1, 2),
        ),
        _experiment(
            "depth-init",
            "depth-deep's plain stacks (dANN-LRF and its matched vANN) with He initial weights over each "
            "unit's real fan-in instead of the paper's Glorot over the dense shape; 2 trials",
            points=init_points(),
            datasets=("fmnist",),
            trials=(1, 2),
        ),
        _experiment(
            "morphology",
            "dANN-LRF's morphology at matched parameters: branching dendrites, dendrites vs synapses at "
            "256 synapses per soma, fixed/positive cable weights; sigma in {0, 0.5, 1}; 2 trials",
            points=morphology_points(),
            sigma=(0.0, 0.5, 1.0),
            datasets=("fmnist",),
            trials=(1, 2),
        ),
        _experiment(
            "sparse-controls",
            "dANN-LRF at 10.6 k, 76.5 k and 595 k parameters (D4xS128, D16xS256, D64xS512) vs sparse "
            "controls of its trainable parameters: linear dendrites, sANN, sANN-LRF, Erdos-Renyi MLP, "
            "pdANN, lottery tickets (rewind / fine-tune; one-shot from a 3-epoch parent at 595 k); 5 trials",
            points=sparse_control_points(),
            datasets=("fmnist",),
        ),
        _experiment(
            "selectivity",
            "is mixed selectivity causal? dANN-LRF and a matched vANN at D16xS256 and D64xS512: a class-"
            "selectivity regulariser over alpha (<0 lowers, >0 raises selectivity) and class-specific "
            "somata; noise sigma 0.5/1.0 and class-sequential at the alpha ends, 0 and class-specific; 3 trials",
            points=selectivity_points(),
            datasets=("fmnist",),
            trials=(1, 2, 3),
        ),
    )
}


def experiment_names() -> tuple[str, ...]:
    return tuple(EXPERIMENTS)


#: The main protocol's value of each setting an experiment varies (TrainConfig's defaults), and
#: of the model options beyond the paper.
PROTOCOL: dict[str, Any] = {
    **{
        e.varies: TrainConfig.__dataclass_fields__[e.varies].default for e in EXPERIMENTS.values() if e.varies
    },
    **BEYOND_PAPER,
    **LOTTERY_DEFAULTS,
    # the class-selectivity regulariser (the selectivity sweep tags its runs)
    "selectivity_alpha": 0.0,
    "selectivity_layers": None,
}


def _follows_main(config: Mapping[str, Any], name: str) -> bool:
    value, default = config.get(name), PROTOCOL[name]
    if value is None:
        return True
    if isinstance(default, bool):
        return bool(value) == default
    if isinstance(default, str):
        return bool(value == default)
    try:
        return math.isclose(float(value), float(default), rel_tol=1e-9, abs_tol=1e-12)
    except (TypeError, ValueError):
        return False


def experiment_of(config: Mapping[str, Any]) -> str | None:
    """The experiment whose protocol ``config`` follows, or None (SPEC §5).

    ``main`` when every setting an experiment varies has its main value; otherwise the one
    experiment whose setting is the only one changed (``dropout`` only for the vANN controls).
    A config that changes two settings, uses an option beyond the paper (branches, cable weights,
    residual, init: the ``depth-deep``, ``depth-init`` and ``morphology`` sweeps tag their runs),
    or a continual run follows none.
    """
    if config.get("protocol") == "continual":
        return None
    changed = {name for name in PROTOCOL if not _follows_main(config, name)}
    if not changed:
        return "main"
    matching = [e for e in EXPERIMENTS.values() if e.varies is not None and {e.varies} == changed]
    if not matching:
        return None  # several settings changed, or options beyond the paper (whose runs are tagged)
    experiment = matching[0]
    if experiment.name == "dropout" and not str(config.get("model", "")).startswith("vANN"):
        return None
    return experiment.name


def in_main_grid(config: Mapping[str, Any]) -> bool:
    """Whether ``config`` is a point of the main grid (any dataset, trial and model): the main
    protocol, 16 synapses, D and S from the grid. A run another sweep made at such a point (the
    depth sweep's L = 1) is one of main's runs too."""
    return (
        experiment_of(config) == "main"
        and _paper_model(config.get("model"))
        and int(config.get("synapses", 16)) == 16
        and config.get("dendrites") in DENDRITES
        and config.get("somata") in SOMATA
        and int(config.get("batch_size", 128)) == 128
        and config.get("random_mode", "exact") == "exact"
    )


def _paper_model(name: Any) -> bool:
    """Whether ``name`` is one of the paper's models (a control beyond it, e.g. ER-MLP, is not)."""
    try:
        return resolve_name(str(name))[0].name in MODEL_NAMES
    except ValueError:
        return False


def get_experiment(name: str) -> Experiment:
    """The experiment called ``name``, or a one-line ValueError listing the valid names."""
    key = str(name).strip().lower().replace("_", "-")
    if key not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {name!r}; valid experiments: {', '.join(EXPERIMENTS)}")
    return EXPERIMENTS[key]


def _format(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _normalise(axis: str, value: Any) -> Any:
    """A filter value in the axis' own type and spelling; ValueError naming the flag if it cannot be."""
    flag = FLAGS[axis]
    text = str(value).strip()
    try:
        if axis in _INT_AXES:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            return int(value) if not isinstance(value, str) else int(text)
        if axis in _FLOAT_AXES:
            return float(value)
        if axis == "dataset":
            return canonical_name(text)
        variant, rate = resolve_name(text)
        return variant.name if rate is None else f"vANN-{rate:g}"
    except ValueError:
        kind = "an integer" if axis in _INT_AXES else "a number" if axis in _FLOAT_AXES else "a name"
        raise ValueError(f"{flag} expects {kind}, got {text!r}") from None


def parse_list(text: str | Iterable[Any] | None) -> list[str] | None:
    """``"a,b, c"`` → ``["a", "b", "c"]``; None stays None; lists pass through."""
    if text is None:
        return None
    items = text.split(",") if isinstance(text, str) else [str(v) for v in text]
    items = [s.strip() for s in items if str(s).strip()]
    return items


def _select(experiment: Experiment, axis: str, wanted: Iterable[Any] | None) -> tuple[Any, ...]:
    if wanted is None:
        return tuple(experiment.axes[axis])
    valid = experiment.choices(axis)
    picked: list[Any] = []
    for raw in wanted:
        try:
            value = _normalise(axis, raw)
        except ValueError as exc:
            raise ValueError(f"{exc}; valid values: {', '.join(map(_format, valid))}") from None
        if value not in valid:
            raise ValueError(
                f"{FLAGS[axis]} {str(raw).strip()} is not in the {experiment.name} grid; "
                f"valid values: {', '.join(map(_format, valid))}"
            )
        if value not in picked:
            picked.append(value)
    if not picked:
        raise ValueError(f"{FLAGS[axis]} names no value")
    # Keep the grid's order whatever order the filter was written in.
    return tuple(v for v in valid if v in picked)


def expand(
    experiment: Experiment | str,
    filters: Mapping[str, Iterable[Any] | None] | None = None,
    *,
    epochs: int | None = None,
    limit: int | None = None,
    optimizer: str = "adam-keras",
) -> list[TrainConfig]:
    """The runs of ``experiment``, shrunk by ``filters`` (axis name → allowed values).

    Filter names are the axis names of :data:`AXES` (``seed`` is the trial) plus the plural
    spellings of the command line (``models``, ``trials``, ``datasets``). ``epochs``, ``limit``
    and ``optimizer`` (Adam's form, default the paper's Keras form) apply to every run (and so
    give runs of their own in the store).
    """
    exp = get_experiment(experiment) if isinstance(experiment, str) else experiment
    aliases = {"models": "model", "trials": "seed", "datasets": "dataset"}
    chosen: dict[str, tuple[Any, ...]] = {}
    for name, values in (filters or {}).items():
        axis = aliases.get(name, name)
        if axis not in AXES:
            raise ValueError(f"unknown filter {name!r}; valid filters: {', '.join(AXES)}")
        if values is not None:
            chosen[axis] = _select(exp, axis, parse_list(values) if isinstance(values, str) else values)
    configs: list[TrainConfig] = []
    if exp.points:
        outer = [a for a in AXES if a not in exp.point_axes]
        points = [p for p in exp.points if all(p[a] in chosen.get(a, (p[a],)) for a in exp.point_axes)]
        for combo in itertools.product(*(chosen.get(a, tuple(exp.axes[a])) for a in outer)):
            for point in points:
                settings = {**dict(zip(outer, combo, strict=True)), **point}
                configs.append(_config(settings, exp, epochs, limit, optimizer))
        return configs
    values = [chosen.get(axis, tuple(exp.axes[axis])) for axis in AXES]
    for combo in itertools.product(*values):
        configs.append(_config(dict(zip(AXES, combo, strict=True)), exp, epochs, limit, optimizer))
    return configs


def _config(
    settings: Mapping[str, Any], exp: Experiment, epochs: int | None, limit: int | None, optimizer: str
) -> TrainConfig:
    _, rate = resolve_name(settings["model"])
    return TrainConfig(
        **settings,
        **exp.fixed,
        dropout=0.0 if rate is None else rate,
        epochs=epochs,
        limit=limit,
        optimizer=optimizer,
    )
