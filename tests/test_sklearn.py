"""dendritic.sklearn: scikit-learn's own estimator checks, pipelines and grid search, the 1-D
wiring of "random" and "local" (over a learned feature order) receptive fields, one-line errors."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

pytest.importorskip("sklearn")
pytest.importorskip("scipy")

from sklearn.datasets import load_iris, load_wine, make_regression  # noqa: E402
from sklearn.model_selection import GridSearchCV, StratifiedKFold  # noqa: E402
from sklearn.pipeline import Pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

from dendritic.sklearn import (  # noqa: E402
    DendriticClassifier,
    DendriticRegressor,
    DenseClassifier,
    DenseRegressor,
    correlation_order,
    ordered_local_fields,
)

#: Small, quick settings that still learn scikit-learn's check datasets.
FAST = {"somata": 16, "dendrites": 4, "synapses": 4, "epochs": 40, "lr": 1e-2}


def _checked_estimators() -> list:
    return [
        DendriticClassifier(**FAST),
        DendriticClassifier(**FAST, receptive_field="local"),
        DendriticRegressor(**FAST),
        DenseClassifier(hidden=16, epochs=40, lr=1e-2),
        DenseRegressor(hidden=16, epochs=40, lr=1e-2),
    ]


@parametrize_with_checks(_checked_estimators())
def test_sklearn_estimator_checks(estimator, check):
    """Every check of scikit-learn's suite, none expected to fail. scikit-learn itself skips one
    per estimator, check_array_api_input, unless SCIPY_ARRAY_API=1 (the estimators take numpy input)."""
    check(estimator)


def _iris() -> tuple[np.ndarray, np.ndarray]:
    x, y = load_iris(return_X_y=True)
    return x, y


def test_grid_search_over_a_pipeline():
    x, y = _iris()
    pipe = Pipeline([("scale", StandardScaler()), ("dann", DendriticClassifier(epochs=15, random_state=0))])
    grid = GridSearchCV(
        pipe,
        {"dann__somata": [8, 16], "dann__receptive_field": ["random", "local"]},
        cv=StratifiedKFold(2, shuffle=True, random_state=0),
    )
    grid.fit(x, y)
    assert set(grid.best_params_) == {"dann__somata", "dann__receptive_field"}
    assert len(grid.cv_results_["mean_test_score"]) == 4
    assert grid.best_score_ > 0.6
    assert grid.score(x, y) > 0.6


def test_same_random_state_same_model_and_predictions():
    x, y = _iris()
    x = StandardScaler().fit_transform(x)
    a = DendriticClassifier(epochs=5, random_state=3, receptive_field="local").fit(x, y)
    b = DendriticClassifier(epochs=5, random_state=3, receptive_field="local").fit(x, y)
    c = DendriticClassifier(epochs=5, random_state=4, receptive_field="local").fit(x, y)
    np.testing.assert_array_equal(a.predict_proba(x), b.predict_proba(x))
    assert not np.array_equal(a.predict_proba(x), c.predict_proba(x))
    assert a.loss_curve_ == b.loss_curve_


def test_random_wiring_samples_features_per_dendrite():
    x, y = _iris()
    clf = DendriticClassifier(somata=6, dendrites=3, synapses=2, epochs=1, random_state=0).fit(x, y)
    table = clf.model_[0].dendrite_linear.connectivity.table()
    assert table.shape == (18, 2)
    assert np.all(np.diff(table, axis=1) > 0)  # distinct features per dendrite
    assert table.max() < 4
    assert clf.feature_order_ is None
    # 4 features, synapses=8: a dendrite samples all 4 (clipped), still a valid fit
    wide = DendriticClassifier(somata=2, dendrites=2, synapses=8, epochs=1, random_state=0).fit(x, y)
    assert wide.model_[0].dendrite_linear.connectivity.table().shape == (4, 4)


def _grouped(seed: int = 0, groups: int = 4, per: int = 5, n: int = 400) -> tuple[np.ndarray, np.ndarray]:
    """``groups`` blocks of ``per`` strongly correlated features, columns shuffled."""
    rng = np.random.default_rng(seed)
    latent = rng.normal(size=(n, groups))
    x = np.repeat(latent, per, axis=1) + 0.1 * rng.normal(size=(n, groups * per))
    perm = rng.permutation(groups * per)
    return x[:, perm], np.repeat(np.arange(groups), per)[perm]


def test_correlation_order_puts_correlated_features_side_by_side():
    x, group = _grouped()
    order = correlation_order(x)
    assert sorted(order.tolist()) == list(range(x.shape[1]))
    along = group[order]
    assert np.count_nonzero(np.diff(along)) == 3  # each group one contiguous run


def test_local_fields_lie_on_the_learned_order():
    x, group = _grouped()
    y = (x[:, 0] > 0).astype(int)
    clf = DendriticClassifier(
        somata=10, dendrites=4, synapses=3, receptive_field="local", epochs=1, random_state=1
    ).fit(x, y)
    order = clf.feature_order_
    np.testing.assert_array_equal(order, correlation_order(x))
    position = np.empty_like(order)
    position[order] = np.arange(len(order))
    table = clf.model_[0].dendrite_linear.connectivity.table()
    spans = np.ptp(position[table], axis=1)
    assert np.all(spans == 2)  # 3 consecutive positions of the order
    # most dendrites sample one correlated group (a patch may straddle two)
    same_group = np.mean([len(set(group[row])) == 1 for row in table])
    assert same_group > 0.5
    given = DendriticClassifier(
        somata=10, dendrites=4, synapses=3, receptive_field="local", feature_order="given", epochs=1
    ).fit(x, y)
    np.testing.assert_array_equal(given.feature_order_, np.arange(x.shape[1]))
    assert np.all(np.ptp(given.model_[0].dendrite_linear.connectivity.table(), axis=1) == 2)


def test_ordered_local_fields_rejects_a_non_permutation():
    with pytest.raises(ValueError, match="permutation"):
        ordered_local_fields(np.random.default_rng(0), np.array([0, 0, 1]), 2, 2, 2)


def test_warm_start_continues_training():
    x, y = _iris()
    x = StandardScaler().fit_transform(x)
    clf = DendriticClassifier(epochs=3, random_state=0, warm_start=True).fit(x, y)
    model = clf.model_
    clf.fit(x, y)
    assert clf.model_ is model
    assert len(clf.loss_curve_) == 6
    cold = DendriticClassifier(epochs=3, random_state=0).fit(x, y)
    first = cold.model_
    cold.fit(x, y)
    assert cold.model_ is not first and len(cold.loss_curve_) == 3


def test_regressor_learns_and_supports_several_targets():
    x, y = make_regression(n_samples=200, n_features=6, n_targets=2, noise=1.0, random_state=0)
    reg = DendriticRegressor(epochs=60, lr=1e-2, random_state=0).fit(x, y)
    assert reg.predict(x).shape == (200, 2)
    assert reg.score(x, y) > 0.8
    one = DendriticRegressor(epochs=5, random_state=0).fit(x, y[:, 0])
    assert one.predict(x).shape == (200,)


def test_parameters_and_pickle():
    x, y = _iris()
    clf = DendriticClassifier(somata=8, dendrites=2, synapses=2, epochs=2, random_state=0).fit(x, y)
    # dendrites 8·2·(2 weights + 1 bias), cables 16 + 8 soma biases, read-out 8·3 + 3
    assert clf.n_trainable_params_ == 8 * 2 * 3 + 16 + 8 + 8 * 3 + 3
    again = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(again.predict_proba(x), clf.predict_proba(x))


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"somata": 0}, "somata must be an integer >= 1, got 0"),
        ({"dendrites": 2.5}, "dendrites must be an integer >= 1"),
        ({"synapses": True}, "synapses must be an integer >= 1"),
        ({"receptive_field": "global"}, "receptive_field must be one of random, local, all"),
        ({"feature_order": "alphabetical"}, "feature_order must be one of correlation, given"),
        ({"cables": "nope"}, "cables must be one of"),
        ({"epochs": 0}, "epochs must be an integer >= 1"),
        ({"batch_size": -1}, "batch_size must be an integer >= 1"),
        ({"lr": 0.0}, "lr must be a positive number"),
        ({"lr": float("nan")}, "lr must be a positive number"),
        ({"optimizer": "sgd"}, "optimizer must be one of adam-keras, adam-torch"),
        ({"warm_start": "yes"}, "warm_start must be True or False"),
    ],
)
def test_bad_arguments_are_one_line_errors_in_fit(params, message):
    clf = DendriticClassifier(**params)  # scikit-learn style: __init__ only stores
    assert clf.get_params()[next(iter(params))] is next(iter(params.values()))
    x, y = _iris()
    with pytest.raises(ValueError, match=message) as info:
        clf.fit(x, y)
    assert "\n" not in str(info.value)


def test_dense_hidden_is_checked():
    with pytest.raises(ValueError, match="hidden must be an integer >= 1"):
        DenseRegressor(hidden=0).fit(np.zeros((4, 2)), np.zeros(4))


def test_import_dendritic_does_not_load_sklearn():
    import subprocess
    import sys

    code = "import sys, dendritic; assert 'sklearn' not in sys.modules and 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_predictions_run_in_chunks_with_the_same_outputs(monkeypatch):
    """Predictions go PREDICT_ROWS samples at a time (memory independent of len(X)); the outputs
    are those of one pass."""
    from dendritic.sklearn import estimators

    x, y = load_wine(return_X_y=True)
    model = DendriticClassifier(somata=12, dendrites=3, synapses=4, epochs=2, random_state=0).fit(x, y)
    whole = model.predict_proba(x)
    monkeypatch.setattr(estimators, "PREDICT_ROWS", 7)
    chunked = model.predict_proba(x)
    np.testing.assert_allclose(chunked, whole, rtol=0, atol=1e-12)
    assert chunked.shape == (len(x), 3)
