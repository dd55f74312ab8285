"""scikit-learn estimators over a ``DendriticLayer``, trained by the library's :func:`fit`.

A :class:`DendriticClassifier` is one dendro-somatic layer (``somata`` somata, each summing
``dendrites`` dendrites of ``synapses`` synapses on the features) and a linear read-out, trained
with the cross-entropy; a :class:`DendriticRegressor` the same with the mean squared error on
standardised targets. :class:`DenseClassifier` / :class:`DenseRegressor` are the control: one
fully connected hidden layer of ``hidden`` units, trained the same way.

scikit-learn's conventions hold: ``__init__`` only stores its arguments (they are checked in
``fit``, each bad one a one-line ``ValueError``), ``random_state`` fixes the wiring, the initial
weights and the shuffling, ``warm_start`` continues training the fitted network (the optimizer
starts afresh). Scale the features first (``make_pipeline(StandardScaler(), ...)``).
"""

from __future__ import annotations

import copy
import math
import numbers
from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted
from torch import nn

from dendritic.errors import one_line
from dendritic.layers.kernels import dendritic_tables_bytes
from dendritic.nn.layer import DEFAULT_SLOPE, DendriticLayer, seeded
from dendritic.sklearn.order import FEATURE_ORDERS, feature_order, ordered_local_fields

__all__ = [
    "RECEPTIVE_FIELDS",
    "DendriticClassifier",
    "DendriticRegressor",
    "DenseClassifier",
    "DenseRegressor",
    "trainable_parameters",
]

#: The receptive fields a tabular estimator offers: features drawn at random, a compact patch of
#: the learned feature order (``feature_order``), or every feature.
RECEPTIVE_FIELDS: tuple[str, ...] = ("random", "local", "all")
OPTIMIZERS: tuple[str, ...] = ("adam-keras", "adam-torch")


def trainable_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


_NO_Y = "no_validation"  # scikit-learn's own marker for "X only"


def _validate_data(estimator: BaseEstimator, x: Any, y: Any = _NO_Y, *, reset: bool, **kw: Any) -> Any:
    """scikit-learn's input checks (``validate_data`` from 1.6, the method before); ``y`` None
    is checked (fit needs targets), left out it is not. Their ValueErrors are made one line (a
    NaN's runs to three, a 1-D input's or complex data's prints the array)."""
    try:
        try:
            from sklearn.utils.validation import validate_data
        except ImportError:  # scikit-learn < 1.6
            return estimator._validate_data(x, y, reset=reset, **kw)
        return validate_data(estimator, x, y, reset=reset, **kw)
    except ValueError as exc:
        if type(exc) is not ValueError or "\n" not in str(exc):
            raise
        raise ValueError(one_line(exc)) from exc


def _tensor(x: np.ndarray) -> torch.Tensor:
    """A float32 copy (the input may be read-only, e.g. a memory map)."""
    return torch.from_numpy(np.array(x, dtype=np.float32))


def _check_int(name: str, value: Any, low: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    return int(value)


def _check_choice(name: str, value: Any, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
    return str(value)


#: Bytes a trainable parameter takes while an estimator fits and predicts: float32 weight,
#: gradient and Adam's two moments, the float64 copy predictions run on, and an int64 index.
BYTES_PER_PARAMETER = 32
#: Bytes a node (dendrite, soma, hidden unit) takes per sample in flight: float32 output, the
#: input its backward keeps and its gradient while training; float64 outputs while predicting.
BYTES_PER_ACTIVATION = 16
#: Predictions run this many samples at a time, so their memory does not grow with ``X``.
PREDICT_ROWS = 1024


def _check_fits(name: str, params: int, *, nodes: int, rows: int, tables: int = 0) -> None:
    """A one-line error before a network beyond this machine's memory is built (torch's own
    allocation failure is a RuntimeError, or the kernel's OOM killer). ``nodes`` units of the
    network hold ``rows`` samples at once; ``tables``: bytes of the sparse stages' backward tables."""
    from dendritic.models.network import ModelTooLargeError
    from dendritic.wiring.budget import available_memory, gigabytes

    needed = params * BYTES_PER_PARAMETER + tables + nodes * rows * BYTES_PER_ACTIVATION
    available = available_memory()
    if available is not None and needed > available:
        raise ModelTooLargeError(
            f"{name} with {params:,} trainable parameters needs about {gigabytes(needed)} to fit; "
            f"this machine has {gigabytes(available)} of memory available"
        )


def _rows_in_flight(batch_size: int, n: int) -> int:
    """The most samples a network holds at once: a training batch (of ``n`` samples), or a
    prediction chunk (of any ``X`` predicted later)."""
    return max(min(int(batch_size), n), PREDICT_ROWS)


class _TorchEstimator(BaseEstimator):
    """What the four estimators share: checks, seeding, the training through :func:`fit`."""

    _loss = "cross_entropy"
    # set by the subclasses' __init__
    epochs: int
    batch_size: int
    lr: float
    optimizer: str
    random_state: Any
    warm_start: bool

    # ----------------------------------------------------------------- to override
    def _check_model_params(self) -> None:
        raise NotImplementedError

    def _network(self, x: np.ndarray, n_out: int, rng: np.random.Generator) -> nn.Module:
        """The untrained network for inputs ``x`` (after the checks); its wiring from ``rng``."""
        raise NotImplementedError

    # ----------------------------------------------------------------- shared
    def _check_params(self) -> None:
        _check_int("epochs", self.epochs)
        _check_int("batch_size", self.batch_size)
        if (
            isinstance(self.lr, bool)
            or not isinstance(self.lr, numbers.Real)
            or not math.isfinite(self.lr)
            or self.lr <= 0
        ):
            raise ValueError(f"lr must be a positive number, got {self.lr!r}")
        _check_choice("optimizer", self.optimizer, OPTIMIZERS)
        if not isinstance(self.warm_start, (bool, np.bool_)):
            raise ValueError(f"warm_start must be True or False, got {self.warm_start!r}")
        self._check_model_params()

    def _seed(self) -> int:
        return int(check_random_state(self.random_state).randint(0, 2**31 - 1))

    def _build(self, x: np.ndarray, n_out: int, seed: int) -> nn.Module:
        rng, generator = seeded(seed)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(generator.initial_seed()))  # the read-out's initial weights
            return self._network(x, n_out, rng)

    def _train(self, x: np.ndarray, target: torch.Tensor, n_out: int, same_shape: bool) -> None:
        """Build (or, warm, keep) the network and train it for ``epochs`` epochs."""
        from dendritic.training.fit import fit

        seed = self._seed()
        if not (self.warm_start and same_shape and hasattr(self, "model_")):
            self.model_ = self._build(x, n_out, seed)
            self.loss_curve_: list[float] = []
        inputs = _tensor(x)
        result = fit(
            self.model_,
            (inputs, target),
            epochs=int(self.epochs),  # numpy integers pass the checks: plain ints for fit's
            optimizer=self.optimizer,
            lr=float(self.lr),
            batch_size=min(int(self.batch_size), len(inputs)),
            seed=seed,
            loss=self._loss,
        )
        self.model_.eval()
        self.loss_curve_ = [*self.loss_curve_, *(m.train_loss for m in result.history)]
        self.n_iter_ = result.epochs_run
        self.n_trainable_params_ = trainable_parameters(self.model_)

    def _forward(self, x: Any) -> np.ndarray:
        """The network's outputs, computed in float64 from the trained float32 weights, so a
        sample's prediction does not depend on the batch it comes in (scikit-learn checks that);
        :data:`PREDICT_ROWS` samples at a time."""
        check_is_fitted(self, "model_")
        x = _validate_data(self, x, reset=False, dtype=[np.float64, np.float32])
        model = copy.deepcopy(self.model_).double()
        inputs = torch.from_numpy(np.array(x, dtype=np.float64))
        with torch.no_grad():
            out = [model(chunk) for chunk in torch.split(inputs, PREDICT_ROWS)]
        return torch.cat(out).numpy() if out else model(inputs).numpy()

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.non_deterministic = False
        return tags


# ---------------------------------------------------------------------------- the networks


class _DendriticNetwork:
    """The dendritic estimators' network: features → ``DendriticLayer`` → linear read-out."""

    somata: int
    dendrites: int
    synapses: int
    receptive_field: str
    feature_order: str
    cables: str

    # Stored as given (checked in ``fit``); scikit-learn's get_params reads this signature.
    def __init__(
        self,
        somata: int = 32,
        dendrites: int = 8,
        synapses: int = 4,
        *,
        receptive_field: str = "random",
        feature_order: str = "correlation",
        cables: str = "structured",
        epochs: int = 100,
        batch_size: int = 32,
        lr: float = 3e-3,
        optimizer: str = "adam-keras",
        random_state: Any = None,
        warm_start: bool = False,
    ) -> None:
        self.somata = somata
        self.dendrites = dendrites
        self.synapses = synapses
        self.receptive_field = receptive_field
        self.feature_order = feature_order
        self.cables = cables
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.optimizer = optimizer
        self.random_state = random_state
        self.warm_start = warm_start

    def _check_model_params(self) -> None:
        _check_int("somata", self.somata)
        _check_int("dendrites", self.dendrites)
        _check_int("synapses", self.synapses)
        _check_choice("receptive_field", self.receptive_field, RECEPTIVE_FIELDS)
        _check_choice("feature_order", self.feature_order, FEATURE_ORDERS)
        _check_choice("cables", self.cables, ("structured", "random", "all"))

    def _network(self, x: np.ndarray, n_out: int, rng: np.random.Generator) -> nn.Module:
        n = x.shape[1]
        synapses = min(self.synapses, n)  # a dendrite cannot sample more features than there are
        dendrites = self.somata * self.dendrites
        sampled = self.receptive_field != "all"
        fan_in = synapses if sampled else n  # "all": every dendrite reads every feature
        cables = dendrites * (self.somata if self.cables == "all" else 1)
        tables = dendritic_tables_bytes(
            n, dendrites, fan_in, dendrites, self.somata, sampled=sampled, own_cables=self.cables != "all"
        )
        _check_fits(
            type(self).__name__,
            dendrites * (fan_in + 1) + cables + self.somata + (self.somata + 1) * n_out,
            nodes=dendrites + self.somata + n_out,
            rows=_rows_in_flight(self.batch_size, len(x)),
            tables=tables,
        )
        field: Any = self.receptive_field
        self.feature_order_: np.ndarray | None = None
        if field == "local":
            self.feature_order_ = feature_order(x, self.feature_order)
            field = ordered_local_fields(rng, self.feature_order_, self.somata, self.dendrites, synapses)
        layer = DendriticLayer(
            n,
            somata=self.somata,
            dendrites=self.dendrites,
            synapses=synapses,
            receptive_field=field,
            cables=self.cables,
            rng=rng,
            generator=torch.Generator().manual_seed(int(rng.integers(0, 2**62))),
        )
        return nn.Sequential(layer, nn.Linear(self.somata, n_out))


class _DenseNetwork:
    """The control: features → ``hidden`` fully connected units (leaky ReLU) → linear read-out."""

    hidden: int

    # Stored as given (checked in ``fit``); scikit-learn's get_params reads this signature.
    def __init__(
        self,
        hidden: int = 32,
        *,
        epochs: int = 100,
        batch_size: int = 32,
        lr: float = 3e-3,
        optimizer: str = "adam-keras",
        random_state: Any = None,
        warm_start: bool = False,
    ) -> None:
        self.hidden = hidden
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.optimizer = optimizer
        self.random_state = random_state
        self.warm_start = warm_start

    def _check_model_params(self) -> None:
        _check_int("hidden", self.hidden)

    def _network(self, x: np.ndarray, n_out: int, rng: np.random.Generator) -> nn.Module:
        _check_fits(
            type(self).__name__,
            (x.shape[1] + 1) * self.hidden + (self.hidden + 1) * n_out,
            nodes=self.hidden + n_out,
            rows=_rows_in_flight(self.batch_size, len(x)),
        )
        return nn.Sequential(
            nn.Linear(x.shape[1], self.hidden), nn.LeakyReLU(DEFAULT_SLOPE), nn.Linear(self.hidden, n_out)
        )


# ---------------------------------------------------------------------------- the two tasks


class _Classifier(ClassifierMixin, _TorchEstimator):
    _loss = "cross_entropy"

    def fit(self, X: Any, y: Any) -> Any:
        """Train on features ``X`` (samples × features) and class labels ``y``."""
        self._check_params()
        previous = getattr(self, "classes_", None), getattr(self, "n_features_in_", None)
        x, y = _validate_data(self, X, y, reset=True, dtype=[np.float64, np.float32])
        check_classification_targets(y)
        classes, labels = np.unique(y, return_inverse=True)
        same = (
            previous[0] is not None
            and np.array_equal(previous[0], classes)
            and previous[1] == self.n_features_in_
        )
        self.classes_ = classes
        self._train(x, torch.as_tensor(labels, dtype=torch.long), len(classes), same)
        return self

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities (softmax of the read-out), columns in the order of ``classes_``."""
        logits = self._forward(X)
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        return p / p.sum(axis=1, keepdims=True)

    def predict_log_proba(self, X: Any) -> np.ndarray:
        return np.log(self.predict_proba(X))

    def predict(self, X: Any) -> np.ndarray:
        winners = self._forward(X).argmax(axis=1)
        return self.classes_[winners]


class _Regressor(RegressorMixin, _TorchEstimator):
    _loss = "mse"

    def fit(self, X: Any, y: Any) -> Any:
        """Train on features ``X`` and targets ``y`` (one column, or several); the targets are
        standardised for training and the predictions mapped back."""
        self._check_params()
        previous = getattr(self, "n_features_in_", None), getattr(self, "n_outputs_", None)
        x, y = _validate_data(
            self, X, y, reset=True, dtype=[np.float64, np.float32], multi_output=True, y_numeric=True
        )
        y = np.asarray(y, dtype=np.float64)
        self._y_1d = y.ndim == 1
        y2 = y.reshape(len(y), -1)
        self.n_outputs_ = y2.shape[1]
        self.y_mean_ = y2.mean(axis=0)
        scale = y2.std(axis=0)
        self.y_scale_ = np.where(scale > 0, scale, 1.0)
        target = torch.as_tensor((y2 - self.y_mean_) / self.y_scale_, dtype=torch.float32)
        same = previous == (self.n_features_in_, self.n_outputs_)
        self._train(x, target, self.n_outputs_, same)
        return self

    def predict(self, X: Any) -> np.ndarray:
        out = self._forward(X) * self.y_scale_ + self.y_mean_
        return out.ravel() if self._y_1d else out

    def _more_tags(self) -> dict[str, Any]:  # scikit-learn < 1.6
        return {"multioutput": True}

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        tags.target_tags.single_output = True
        return tags


class DendriticClassifier(_DendriticNetwork, _Classifier):
    """A dendritic ANN classifier for tabular data (scikit-learn estimator).

    Args:
        somata, dendrites, synapses: the layer's sizes (``synapses`` at most the number of features).
        receptive_field: ``"random"`` (each dendrite samples features uniformly), ``"local"``
            (a compact patch of consecutive features in ``feature_order``) or ``"all"``.
        feature_order: the 1-D order "local" fields lie on: ``"correlation"`` (learned from the
            training data: hierarchical clustering of the features' absolute correlations;
            needs scipy) or ``"given"`` (the columns as they come).
        cables: dendrite → soma wiring: ``"structured"`` (each soma its own dendrites, dANN),
            ``"random"`` (sANN) or ``"all"``.
        epochs, batch_size, lr, optimizer: training (Adam in the paper's form ``"adam-keras"``,
            the library's default, or ``"adam-torch"``).
        random_state: int for repeatable fits (wiring, initial weights, shuffling).
        warm_start: a second ``fit`` on data of the same shape continues training.

    Attributes: ``classes_``, ``n_features_in_``, ``model_`` (the ``torch.nn.Module``),
    ``feature_order_`` ("local" only), ``loss_curve_``, ``n_iter_``, ``n_trainable_params_``.
    """


class DendriticRegressor(_DendriticNetwork, _Regressor):
    """A dendritic ANN regressor for tabular data (scikit-learn estimator): the arguments of
    :class:`DendriticClassifier`, trained with the mean squared error on standardised targets
    (one or several columns). Attributes: ``n_features_in_``, ``n_outputs_``, ``model_``,
    ``feature_order_``, ``loss_curve_``, ``n_iter_``, ``n_trainable_params_``."""


class DenseClassifier(_DenseNetwork, _Classifier):
    """The dendritic classifier's control: one fully connected hidden layer of ``hidden`` leaky
    ReLU units, trained by the same :func:`fit` with the same arguments."""


class DenseRegressor(_DenseNetwork, _Regressor):
    """The dendritic regressor's control: one fully connected hidden layer of ``hidden`` units."""
