"""The tabular study: do dendritic networks keep up on tabular data, and do they resist
uninformative features? (``dendritic tabular run``.)

scikit-learn's bundled real datasets (no download): breast cancer, wine, digits (64 pixel
intensities as flat features) and iris, classified; diabetes, regressed. Each is used clean and
with uninformative standard-normal features appended so that they make 50 % and 90 % of the
columns. Per seed, a shuffled 5-fold split (stratified for the classifiers); per fold:

- ``dendritic-random`` / ``dendritic-local``: :class:`~dendritic.sklearn.DendriticClassifier`
  (or Regressor) with random receptive fields, or local ones on the correlation order learned
  from the training fold;
- ``mlp``: :class:`~dendritic.sklearn.DenseClassifier`, one hidden layer whose width gives the
  trainable parameters closest to the dendritic network's (our own torch MLP, trained by the
  same ``fit`` with the same epochs, batch size, learning rate and optimizer);
- ``hgb``: scikit-learn's ``HistGradientBoostingClassifier`` / ``Regressor`` with its defaults,
  the field's reference.

Features are standardised on the training fold (the networks; trees need no scaling). Every fit
is a run of the store, tagged ``experiment='tabular'``: test accuracy (classification) or R²
(regression, ``extra.test_r2``), trainable parameters (trees: NaN), fit seconds. Finished runs
are skipped when the study runs again.
"""

from __future__ import annotations

import logging
import math
import numbers
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

__all__ = [
    "DATASETS",
    "EXPERIMENT",
    "MAX_SEED",
    "MODELS",
    "NOISE_FRACTIONS",
    "StudyResult",
    "TabularStudy",
    "clean_features",
    "dendritic_parameters",
    "load_dataset",
    "matched_hidden",
    "run_study",
    "with_noise_features",
]

log = logging.getLogger("dendritic.tabular")

#: The store's experiment tag of the study's runs.
EXPERIMENT = "tabular"
#: Dataset → task; loaded from scikit-learn's bundled files.
DATASETS: dict[str, str] = {
    "breast-cancer": "classification",
    "wine": "classification",
    "digits": "classification",
    "iris": "classification",
    "diabetes": "regression",
}
MODELS: tuple[str, ...] = ("dendritic-random", "dendritic-local", "mlp", "hgb")
#: Fractions of the columns that are uninformative Gaussian noise.
NOISE_FRACTIONS: tuple[float, ...] = (0.0, 0.5, 0.9)
#: The largest fraction: 99 noise columns per real one (a fraction nearer 1 asks for more
#: columns than memory holds: 0.9999999 is ten million per real column).
MAX_NOISE = 0.99


def load_dataset(name: str) -> tuple[np.ndarray, np.ndarray]:
    """Features and targets of a bundled scikit-learn dataset (:data:`DATASETS`)."""
    from sklearn import datasets

    loaders: dict[str, Callable[..., Any]] = {
        "breast-cancer": datasets.load_breast_cancer,
        "wine": datasets.load_wine,
        "digits": datasets.load_digits,
        "iris": datasets.load_iris,
        "diabetes": datasets.load_diabetes,
    }
    if name not in loaders:
        raise ValueError(f"unknown tabular dataset {name!r}; choose from {', '.join(DATASETS)}")
    x, y = loaders[name](return_X_y=True)
    return np.asarray(x, dtype=np.float64), np.asarray(y)


def with_noise_features(x: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """``x`` with standard-normal columns appended so that they are ``fraction`` of all columns."""
    if not 0.0 <= fraction <= MAX_NOISE:
        raise ValueError(f"a noise fraction must be in [0, {MAX_NOISE:g}], got {fraction}")
    n = x.shape[1]
    extra = int(round(n * fraction / (1.0 - fraction)))
    if extra == 0:
        return x
    return np.hstack([x, rng.standard_normal((len(x), extra))])


def matched_hidden(params: int, n_in: int, n_out: int) -> int:
    """The hidden width of a one-hidden-layer MLP (``n_in → h → n_out``, biases included) whose
    trainable parameters are closest to ``params``."""
    per_unit = n_in + 1 + n_out
    return max(1, int(round((params - n_out) / per_unit)))


#: Most cross-validation folds (``--folds``' range).
MAX_FOLDS = 100
#: Largest seed: a fit's ``random_state`` is ``seed * 1000 + fold``, and scikit-learn's seeds
#: are 32-bit.
MAX_SEED = (2**32 - 1 - MAX_FOLDS) // 1000
#: Most trainable parameters of the study's networks (the dendritic one, and the MLP matched to
#: it): ample for tabular data, and well inside memory with Adam's state.
MAX_PARAMS = 100_000_000
#: The estimators' optimizers (``dendritic.sklearn``).
OPTIMIZERS: tuple[str, ...] = ("adam-keras", "adam-torch")


def _sequence(name: str, values: Any) -> tuple[Any, ...]:
    """A list setting as a tuple; a lone string or number is refused in one line."""
    if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
        raise ValueError(f"{name} must be a list (tuple) of values, got {values!r}")
    return tuple(values)


_MOST_FOLDS: dict[str, int] = {}


def _most_folds(dataset: str) -> int:
    """The most cross-validation folds ``dataset`` takes: its smallest class's size
    (stratified) or its samples (cached)."""
    if dataset not in _MOST_FOLDS:
        _, y = load_dataset(dataset)
        if DATASETS[dataset] == "classification":
            _MOST_FOLDS[dataset] = int(np.unique(y, return_counts=True)[1].min())
        else:
            _MOST_FOLDS[dataset] = len(y)
    return _MOST_FOLDS[dataset]


@dataclass(frozen=True)
class TabularStudy:
    """The study's grid and the networks' settings (the same for every dataset)."""

    datasets: tuple[str, ...] = tuple(DATASETS)
    noise: tuple[float, ...] = NOISE_FRACTIONS
    models: tuple[str, ...] = MODELS
    seeds: tuple[int, ...] = tuple(range(1, 11))
    folds: int = 5
    somata: int = 32
    dendrites: int = 8
    synapses: int = 8
    epochs: int = 50
    batch_size: int = 32
    lr: float = 1e-2
    optimizer: str = "adam-keras"

    def __post_init__(self) -> None:
        # Every setting is checked here, before a store is opened: a bad one found by a fit
        # would leave failed (or, for folds, finished) runs of a refused study in the store.
        for name, field, known in (
            ("dataset", "datasets", tuple(DATASETS)),
            ("model", "models", MODELS),
        ):
            values = _sequence(field, getattr(self, field))
            if not values:
                raise ValueError(f"the tabular study needs at least one {name}")
            unknown = [v for v in values if not isinstance(v, str) or v not in known]
            if unknown:
                raise ValueError(f"unknown {name} {unknown[0]!r}; choose from {', '.join(known)}")
            object.__setattr__(self, field, tuple(dict.fromkeys(values)))  # a name twice: once
        self._check_noise_and_seeds()
        folds = self.folds
        if isinstance(folds, bool) or not isinstance(folds, numbers.Integral) or not 2 <= folds <= MAX_FOLDS:
            raise ValueError(f"folds must be an integer in [2, {MAX_FOLDS}], got {folds!r}")
        object.__setattr__(self, "folds", int(folds))
        for name in ("somata", "dendrites", "synapses", "epochs", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
            object.__setattr__(self, name, int(value))  # numpy integers key as plain ones
        lr = self.lr
        if isinstance(lr, bool) or not isinstance(lr, numbers.Real) or not (math.isfinite(lr) and lr > 0):
            raise ValueError(f"lr must be a positive number, got {lr!r}")
        if not isinstance(lr, (int, float)):
            object.__setattr__(self, "lr", float(lr))  # a numpy number: a plain one in the store key
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}")
        # the networks' size before any fit (the most columns a dataset gets, ten outputs): a size
        # beyond memory failed in the fit, a run of the store, in torch's words
        most = max(self.noise)
        columns = max(n + int(round(n * most / (1.0 - most))) for n in map(clean_features, self.datasets))
        params = dendritic_parameters(self, columns, 10)
        if params > MAX_PARAMS:
            raise ValueError(
                f"somata={self.somata}, dendrites={self.dendrites}, synapses={self.synapses} make "
                f"networks of up to {params:,} trainable parameters; the study takes at most {MAX_PARAMS:,}"
            )
        for dataset in self.datasets:  # every fold needs a sample (a member of every class)
            most = _most_folds(dataset)
            if self.folds > most:
                raise ValueError(
                    f"folds={self.folds} is more than {dataset} allows ({most}: "
                    + ("its smallest class" if DATASETS[dataset] == "classification" else "its samples")
                    + ")"
                )

    def _check_noise_and_seeds(self) -> None:
        """Noise fractions in [0, MAX_NOISE] and seeds in [0, MAX_SEED], each kept once."""
        noise = _sequence("noise", self.noise)
        good = [isinstance(f, numbers.Real) and not isinstance(f, bool) for f in noise]
        if not noise or not all(good) or any(not 0.0 <= float(f) <= MAX_NOISE for f in noise):
            raise ValueError(f"noise fractions must be in [0, {MAX_NOISE:g}], got {list(noise)}")
        object.__setattr__(self, "noise", tuple(dict.fromkeys(float(f) for f in noise)))
        seeds = _sequence("seeds", self.seeds)
        if not seeds:
            raise ValueError("the tabular study needs at least one seed")
        for seed in seeds:
            if (
                isinstance(seed, bool)
                or not isinstance(seed, numbers.Integral)
                or not 0 <= int(seed) <= MAX_SEED
            ):
                raise ValueError(f"seeds must be integers in [0, {MAX_SEED}], got {seed!r}")
        object.__setattr__(self, "seeds", tuple(dict.fromkeys(int(s) for s in seeds)))

    @property
    def size(self) -> int:
        return len(self.datasets) * len(self.noise) * len(self.seeds) * self.folds * len(self.models)

    def training(self) -> dict[str, Any]:
        return {
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "lr": self.lr,
            "optimizer": self.optimizer,
        }


@dataclass
class _Split:
    dataset: str
    noise: float
    seed: int
    fold: int
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray

    @property
    def task(self) -> str:
        return DATASETS[self.dataset]


def _splits(study: TabularStudy) -> Iterator[_Split]:
    from sklearn.model_selection import KFold, StratifiedKFold

    for dataset in study.datasets:
        x_clean, y = load_dataset(dataset)
        for noise in study.noise:
            for seed in study.seeds:
                rng = np.random.default_rng([seed, int(round(noise * 1000))])
                x = with_noise_features(x_clean, noise, rng)
                if DATASETS[dataset] == "classification":
                    splitter: Any = StratifiedKFold(study.folds, shuffle=True, random_state=seed)
                else:
                    splitter = KFold(study.folds, shuffle=True, random_state=seed)
                for fold, (train, test) in enumerate(splitter.split(x, y), start=1):
                    yield _Split(dataset, noise, seed, fold, x[train], y[train], x[test], y[test])


def _estimator(model: str, split: _Split, study: TabularStudy) -> tuple[Any, dict[str, Any]]:
    """The (unfitted) estimator of ``model`` for this split and its settings for the run's key."""
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from dendritic.sklearn import DendriticClassifier, DendriticRegressor, DenseClassifier, DenseRegressor

    classify = split.task == "classification"
    state = split.seed * 1000 + split.fold
    if model == "hgb":
        tree = HistGradientBoostingClassifier if classify else HistGradientBoostingRegressor
        # The networks' optimizer in the key too: a report keeps one optimizer's runs together.
        return tree(random_state=state), {"optimizer": study.optimizer}
    if model.startswith("dendritic-"):
        field = model.split("-", 1)[1]
        network: Any = (DendriticClassifier if classify else DendriticRegressor)(
            study.somata, study.dendrites, study.synapses, receptive_field=field, random_state=state,
            **study.training(),
        )  # fmt: skip
        sizes = {"somata": study.somata, "dendrites": study.dendrites, "synapses": study.synapses}
        return make_pipeline(StandardScaler(), network), {
            **sizes, "receptive_field": field, **study.training()
        }  # fmt: skip
    n_in = split.x_train.shape[1]
    n_out = len(np.unique(split.y_train)) if classify else 1
    hidden = matched_hidden(dendritic_parameters(study, n_in, n_out), n_in, n_out)
    network = (DenseClassifier if classify else DenseRegressor)(
        hidden, random_state=state, **study.training()
    )
    return make_pipeline(StandardScaler(), network), {"hidden": hidden, **study.training()}


def dendritic_parameters(study: TabularStudy, n_in: int, n_out: int) -> int:
    """Trainable parameters of the study's dendritic network for ``n_in`` features and ``n_out``
    outputs (the same for every receptive field): dendrites (weights and bias), cables, somatic
    biases, read-out."""
    s, d, k = study.somata, study.dendrites, min(study.synapses, n_in)
    return s * d * (k + 1) + s * d + s + s * n_out + n_out


def _config(model: str, split: _Split, study: TabularStudy, settings: dict[str, Any]) -> dict[str, Any]:
    """The run's config (its key in the store)."""
    return {
        "study": EXPERIMENT,
        "model": model,
        "dataset": split.dataset,
        "noise": split.noise,
        "seed": split.seed,
        "fold": split.fold,
        "folds": study.folds,
        **settings,
    }


def _fit_and_score(estimator: Any, split: _Split) -> dict[str, Any]:
    """Fit on the training fold, score on the test fold: the run's final values."""
    from sklearn.metrics import accuracy_score, r2_score

    t0 = time.perf_counter()
    estimator.fit(split.x_train, split.y_train)
    seconds = time.perf_counter() - t0
    predicted = estimator.predict(split.x_test)
    network = estimator[-1] if hasattr(estimator, "steps") else estimator
    n_features = int(split.x_train.shape[1])
    extra: dict[str, Any] = {
        "task": split.task,
        "n_features": n_features,
        "noise_features": n_features - clean_features(split.dataset),
        "fit_seconds": seconds,
    }
    final: dict[str, Any] = {"wall_seconds": seconds, "extra": extra}
    params = getattr(network, "n_trainable_params_", None)
    if params is not None:
        final["trainable_params"] = int(params)
    if split.task == "classification":
        final["test_accuracy"] = float(accuracy_score(split.y_test, predicted))
    else:
        extra["test_r2"] = float(r2_score(split.y_test, predicted))
    return final


_FEATURES: dict[str, int] = {}


def clean_features(dataset: str) -> int:
    """Columns of the clean dataset (cached)."""
    if dataset not in _FEATURES:
        _FEATURES[dataset] = load_dataset(dataset)[0].shape[1]
    return _FEATURES[dataset]


@dataclass
class StudyResult:
    ran: int = 0
    skipped: int = 0
    seconds: float = 0.0


def run_study(
    store: Any,
    study: TabularStudy,
    *,
    progress: Callable[[int, int], None] | None = None,
    threads: int | None = 1,
    workers: int = 1,
) -> StudyResult:
    """Fit every (dataset, noise, seed, fold, model) of ``study`` not yet finished in ``store``
    and record it (``experiment='tabular'``). ``threads``: torch's intra-op threads and the
    OpenMP / BLAS threads gradient boosting uses, during the study (1: every model on one core,
    so fit times compare; None leaves both as they are). ``workers`` > 1 fits the (dataset,
    seed) parts of the grid in that many processes, each recording its fits in ``store``'s file
    through a connection of its own (``progress`` then advances a part at a time)."""
    from dendritic.nn.spec import check_int
    from dendritic.sweeps.backends import MAX_WORKERS

    check_int("workers", workers, maximum=MAX_WORKERS)
    if workers > 1 and len(study.datasets) * len(study.seeds) > 1:
        return _run_parts(store, study, progress, threads, workers)
    import contextlib

    import torch
    from threadpoolctl import threadpool_limits

    result = StudyResult()
    t0 = time.perf_counter()
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    limits = threadpool_limits(limits=threads) if threads is not None else contextlib.nullcontext()
    try:
        with limits:
            _run_grid(store, study, result, progress)
    finally:
        torch.set_num_threads(previous)
    result.seconds = time.perf_counter() - t0
    log.info(
        "tabular study: %d runs fitted, %d already in the store (%.0f s)",
        result.ran,
        result.skipped,
        result.seconds,
    )
    return result


def _run_part(task: tuple[str, TabularStudy, int | None]) -> StudyResult:
    """One part of a parallel study, in a worker process with its own connection to the store."""
    from dendritic.store import RunStore

    path, part, threads = task
    with RunStore(path) as store:
        return run_study(store, part, threads=threads)


def _run_parts(
    store: Any,
    study: TabularStudy,
    progress: Callable[[int, int], None] | None,
    threads: int | None,
    workers: int,
) -> StudyResult:
    """The study's (dataset, seed) parts in ``workers`` processes (:func:`run_study`'s ``workers``)."""
    import os

    from dendritic.sweeps.backends import process_map

    result = StudyResult()
    t0 = time.perf_counter()
    parts = [replace(study, datasets=(d,), seeds=(s,)) for d in study.datasets for s in study.seeds]
    tasks = [(os.fspath(store.path), part, threads) for part in parts]
    done = 0
    if progress is not None:
        progress(0, study.size)
    # a fit in flight when another part raises dies with its process: the store reports it interrupted
    for part, got in zip(parts, process_map(_run_part, tasks, workers), strict=True):
        result.ran += got.ran
        result.skipped += got.skipped
        done += part.size
        if progress is not None:
            progress(done, study.size)
    result.seconds = time.perf_counter() - t0
    log.info(
        "tabular study: %d runs fitted, %d already in the store (%.0f s, %d processes)",
        result.ran,
        result.skipped,
        result.seconds,
        min(workers, len(parts)),
    )
    return result


def _run_grid(
    store: Any, study: TabularStudy, result: StudyResult, progress: Callable[[int, int], None] | None
) -> None:
    """Fit and record each run of the grid that the store has not finished."""
    from dendritic.store import config_key

    done = store.finished_keys()
    count = 0
    for split in _splits(study):
        for model in study.models:
            count += 1
            estimator, settings = _estimator(model, split, study)
            config = _config(model, split, study, settings)
            if config_key(config) in done:
                result.skipped += 1
            else:
                with store.record(config, meta={"experiment": EXPERIMENT, "device": "cpu"}) as run:
                    run.finish(**_fit_and_score(estimator, split))
                result.ran += 1
            if progress is not None:
                progress(count, study.size)
