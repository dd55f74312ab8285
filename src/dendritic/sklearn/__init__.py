"""Dendritic estimators for tabular data, in scikit-learn's conventions (needs scikit-learn:
``pip install dendritic[analysis]``)::

    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from dendritic.sklearn import DendriticClassifier

    model = make_pipeline(StandardScaler(), DendriticClassifier(somata=32, dendrites=8, synapses=4,
                                                                 receptive_field="local", random_state=0))
    model.fit(x_train, y_train).score(x_test, y_test)

:class:`DendriticClassifier` / :class:`DendriticRegressor` are a ``DendriticLayer`` and a linear
read-out trained by :func:`dendritic.training.fit`; :class:`DenseClassifier` /
:class:`DenseRegressor` the fully connected control. A "local" receptive field lies on a 1-D
order of the features learned from the training data (:mod:`dendritic.sklearn.order`).
"""

from dendritic.sklearn.estimators import (
    RECEPTIVE_FIELDS,
    DendriticClassifier,
    DendriticRegressor,
    DenseClassifier,
    DenseRegressor,
    trainable_parameters,
)
from dendritic.sklearn.order import FEATURE_ORDERS, correlation_order, feature_order, ordered_local_fields

__all__ = [
    "FEATURE_ORDERS",
    "RECEPTIVE_FIELDS",
    "DendriticClassifier",
    "DendriticRegressor",
    "DenseClassifier",
    "DenseRegressor",
    "correlation_order",
    "feature_order",
    "ordered_local_fields",
    "trainable_parameters",
]
