"""Known-answer tests of dendritic.analysis: every expected value is worked out by hand in a comment."""

from __future__ import annotations

import math

import numpy as np
import pytest

pytest.importorskip("scipy")
pytest.importorskip("sklearn")

from dendritic.analysis import (  # noqa: E402 - after the optional-dependency skips
    HitCounter,
    activity_stats,
    attach_val_metrics,
    best_configuration,
    bonferroni,
    cheapest_matching,
    class_counts,
    dead_nodes,
    drop_dead,
    efficiency,
    efficiency_score,
    final_val_metrics,
    group_efficiency,
    group_runs,
    hit_matrix,
    neighbourhood_hit,
    neighbourhood_hit_per_point,
    node_entropy,
    normalised_efficiency_score,
    pairwise_by_level,
    pairwise_welch,
    real_weights,
    run_val_metrics,
    selectivity,
    separability,
    silhouette,
    sparsity,
    summarise,
    trustworthiness,
    tsne,
    two_way_anova,
    weight_histogram,
    weight_kde,
    weight_stats,
)

# ====================================================================== efficiency


def test_efficiency_three_row_table():
    # params × epoch = 100·1, 1000·10, 10000·10 → f = log10 = 2, 4, 5; min f = 2 → f_norm = 1, 2, 2.5
    # accuracy efficiency = acc / f_norm = 0.8/1, 0.9/2, 0.5/2.5 = 0.8, 0.45, 0.2
    # loss efficiency     = loss × f_norm = 0.5·1, 0.3·2, 0.4·2.5 = 0.5, 0.6, 1.0
    e = efficiency([100, 1000, 10000], [1, 10, 10], accuracy=[0.8, 0.9, 0.5], loss=[0.5, 0.3, 0.4])
    np.testing.assert_allclose(e.f, [2, 4, 5])
    np.testing.assert_allclose(e.f_norm, [1, 2, 2.5])
    np.testing.assert_allclose(e.accuracy, [0.8, 0.45, 0.2])
    np.testing.assert_allclose(e.loss, [0.5, 0.6, 1.0])
    np.testing.assert_allclose(efficiency_score([100], [1]), [2.0])
    np.testing.assert_allclose(normalised_efficiency_score([100, 1000], [1, 1]), [1.0, 1.5])


def test_efficiency_optional_metrics_and_huge_params():
    e = efficiency([10, 100], [1, 1])
    assert e.accuracy is None and e.loss is None
    # log10(4.25e7 · 100) = log10(4.25e9) ≈ 9.628 — no overflow in the product
    assert efficiency_score([42_505_738], [100])[0] == pytest.approx(math.log10(42_505_738 * 100))


@pytest.mark.parametrize(
    ("params", "epochs", "kwargs", "message"),
    [
        ([], [], {}, "empty"),
        ([10, 20], [1], {}, "length mismatch"),
        ([10, 0], [1, 1], {}, "positive"),
        ([10, 20], [0, 1], {}, "1-based"),
        ([1, 20], [1, 1], {}, "cannot be normalised"),  # f = log10(1) = 0
        ([10, 20], [1, 1], {"accuracy": [0.5]}, "length mismatch"),
    ],
)
def test_efficiency_bad_input(params, epochs, kwargs, message):
    with pytest.raises(ValueError, match=message):
        efficiency(params, epochs, **kwargs)


# ====================================================================== selection


def test_summarise_mean_sd_ci():
    # [0.8, 0.9, 1.0]: mean 0.9; sd = sqrt((0.01 + 0 + 0.01) / 2) = 0.1;
    # CI = t(0.975, df 2) · sd / sqrt(3) = 4.302653 · 0.1 / 1.732051 = 0.248414
    s = summarise([0.8, 0.9, 1.0])
    assert s.mean == pytest.approx(0.9)
    assert s.sd == pytest.approx(0.1)
    assert s.ci95 == pytest.approx(0.248414, abs=1e-6)
    assert (s.low, s.high) == pytest.approx((0.9 - 0.248414, 0.9 + 0.248414), abs=1e-6)
    one = summarise([0.7])
    assert one.mean == 0.7 and math.isnan(one.sd) and math.isnan(one.ci95) and one.n == 1
    with pytest.raises(ValueError, match="non-empty"):
        summarise([])


def _run(model, d, s, seed, params, test_acc, val_acc, *, status="finished", best_epoch=3, **extra):
    return {
        "id": f"{model}-{d}-{s}-{seed}",
        "model": model,
        "dataset": "fmnist",
        "dendrites": d,
        "somata": s,
        "seed": seed,
        "status": status,
        "trainable_params": params,
        "test_accuracy": test_acc,
        "test_loss": None if test_acc is None else 1 - test_acc,
        "val_accuracy": val_acc,
        "val_loss": None if val_acc is None else 1 - val_acc,
        "best_epoch": best_epoch,
        "config": {"sigma": 0.0, "early_stop": False, "lr": 1e-3},
        **extra,
    }


def _pool():
    # (model, D, S)      params  test acc      val acc       → means (test, val)
    # vANN 1 8           1000    .80 .82       .81 .83       → .81, .82
    # vANN 1 16          1500    .90 .90       .83 .83       → .90, .83   best on TEST
    # vANN 2 8           2000    .86 .88       .84 .84       → .87, .84   best on VALIDATION
    # dANN-R 1 8          100    .85 .87       .85 .85       → .86, .85
    # dANN-R 1 16         200    .91 .91       .86 .86       → .91, .86
    # dANN-R 2 8           80    .80 .80       .845 .845     → .80, .845
    # sANN 1 8             10    .50 .50       .50 .50       → never matches
    rows = [
        ("vANN", 1, 8, 1000, (0.80, 0.82), (0.81, 0.83)),
        ("vANN", 1, 16, 1500, (0.90, 0.90), (0.83, 0.83)),
        ("vANN", 2, 8, 2000, (0.86, 0.88), (0.84, 0.84)),
        ("dANN-R", 1, 8, 100, (0.85, 0.87), (0.85, 0.85)),
        ("dANN-R", 1, 16, 200, (0.91, 0.91), (0.86, 0.86)),
        ("dANN-R", 2, 8, 80, (0.80, 0.80), (0.845, 0.845)),
        ("sANN", 1, 8, 10, (0.50, 0.50), (0.50, 0.50)),
    ]
    runs = []
    for model, d, s, params, tests, vals in rows:
        for seed, (t, v) in enumerate(zip(tests, vals, strict=True), start=1):
            runs.append(_run(model, d, s, seed, params, t, v))
    runs.append(_run("vANN", 1, 8, 3, 1000, None, None, status="failed"))  # must be ignored
    return runs


def test_group_runs_stats_and_status_filter():
    groups = group_runs(_pool())
    assert len(groups) == 7
    g = next(g for g in groups if g.key == ("vANN", 1, 8))
    # the failed third trial is dropped → n = 2; test acc [0.80, 0.82]: mean 0.81,
    # sd = sqrt(2 · 0.01² / 1) = 0.0141421, CI = t(0.975, 1) · sd / sqrt(2) = 12.7062 · 0.01 = 0.127062
    assert g.n == 2 and g.model == "vANN" and g.dendrites == 1 and g.somata == 8
    assert g.test_accuracy.mean == pytest.approx(0.81)
    assert g.test_accuracy.sd == pytest.approx(0.0141421, abs=1e-6)
    assert g.test_accuracy.ci95 == pytest.approx(0.127062, abs=1e-5)
    assert g.val_loss.mean == pytest.approx(1 - 0.82)
    assert g.trainable_params == 1000
    assert g.best_epoch.mean == 3
    # sorted by key: models alphabetically, then D, S numerically
    assert [g.key for g in groups][:3] == [("dANN-R", 1, 8), ("dANN-R", 1, 16), ("dANN-R", 2, 8)]
    assert len(group_runs(_pool(), status=None)[-3:][0].run_ids) == 3  # vANN 1 8 with the failed run


def test_group_runs_extra_keys_from_config():
    runs = _pool()
    runs[0] = {**runs[0], "config": {**runs[0]["config"], "sigma": 0.5}}
    groups = group_runs(runs, extra_keys=("dataset", "sigma"))
    assert groups[0].names == ("model", "dendrites", "somata", "dataset", "sigma")
    keys = {g.key for g in groups if g.model == "vANN" and g.dendrites == 1 and g.somata == 8}
    assert keys == {("vANN", 1, 8, "fmnist", 0.0), ("vANN", 1, 8, "fmnist", 0.5)}
    with pytest.raises(ValueError, match="no field or config entry 'nope'"):
        group_runs(runs, extra_keys=("nope",))


def test_best_configuration_validation_vs_test():
    groups = group_runs(_pool())
    val = best_configuration(groups)  # default: accuracy on validation
    assert val["vANN"].key == ("vANN", 2, 8)  # val means .82, .83, .84 → D=2, S=8
    assert val["dANN-R"].key == ("dANN-R", 1, 16)
    test = best_configuration(groups, on="test")  # the paper's rule: test means .81, .90, .87
    assert test["vANN"].key == ("vANN", 1, 16)
    by_loss = best_configuration(groups, metric="loss")  # loss = 1 − acc → same picks
    assert by_loss["vANN"].key == ("vANN", 2, 8)
    keyed = best_configuration(groups, by=("model", "dendrites"))
    assert keyed[("vANN", 1)].key == ("vANN", 1, 16)  # val .82 vs .83 among D = 1


def test_best_configuration_tie_prefers_fewer_params():
    runs = [
        _run("vANN", 1, 8, 1, 500, 0.9, 0.9),
        _run("vANN", 2, 8, 1, 300, 0.9, 0.9),
        _run("vANN", 4, 8, 1, 900, 0.9, 0.9),
    ]
    assert best_configuration(group_runs(runs))["vANN"].key == ("vANN", 2, 8)


def test_cheapest_matching_rules():
    groups = group_runs(_pool())
    # validation: vANN best = .84. dANN-R matches: (1,8) .85 @100, (1,16) .86 @200, (2,8) .845 @80
    got = cheapest_matching(groups)
    assert set(got) == {"dANN-R", "sANN"}  # the reference model is left out
    assert got["dANN-R"].key == ("dANN-R", 2, 8)  # fewest params (80)
    assert got["sANN"] is None  # .50 never beats .84
    scan = cheapest_matching(groups, rule="paper-scan")
    assert scan["dANN-R"].key == ("dANN-R", 1, 8)  # D ascending, then S ascending: first match
    # test: vANN best = .90 → only dANN-R (1,16) at .91
    on_test = cheapest_matching(groups, on="test")
    assert on_test["dANN-R"].key == ("dANN-R", 1, 16)
    # loss: vANN best val loss = 1 − .84 = .16; (2,8) has .155 < .16 and is cheapest
    assert cheapest_matching(groups, metric="loss")["dANN-R"].key == ("dANN-R", 2, 8)


def test_cheapest_matching_ties_by_metric():
    runs = [
        _run("vANN", 1, 8, 1, 5000, 0.8, 0.80),
        _run("dANN", 1, 8, 1, 100, 0.9, 0.85),
        _run("dANN", 2, 8, 1, 100, 0.9, 0.90),  # same params, better metric → wins
        _run("dANN", 4, 8, 1, 400, 0.9, 0.95),
    ]
    assert cheapest_matching(group_runs(runs))["dANN"].key == ("dANN", 2, 8)


def test_selection_bad_input():
    groups = group_runs(_pool())
    with pytest.raises(ValueError, match="no runs to group"):
        group_runs([])
    with pytest.raises(ValueError, match="none of the 1 runs has status"):
        group_runs([_run("vANN", 1, 8, 1, 10, None, None, status="failed")])
    with pytest.raises(ValueError, match="no groups"):
        best_configuration([])
    with pytest.raises(ValueError, match="metric must be"):
        best_configuration(groups, metric="f1")
    with pytest.raises(ValueError, match="on must be"):
        best_configuration(groups, on="train")
    with pytest.raises(ValueError, match="reference model 'pdANN'"):
        cheapest_matching(groups, reference_model="pdANN")
    with pytest.raises(ValueError, match="rule must be"):
        cheapest_matching(groups, rule="first")
    no_val = [{**r, "val_accuracy": None, "val_loss": None} for r in _pool()]
    with pytest.raises(ValueError, match="has no val_accuracy .*attach_val_metrics"):
        best_configuration(group_runs(no_val))


def test_final_val_metrics_last_or_best_epoch():
    rows = [
        {"epoch": 2, "val_loss": 0.3, "val_accuracy": 0.85},
        {"epoch": 1, "val_loss": 0.5, "val_accuracy": 0.80},
        {"epoch": 3, "val_loss": 0.4, "val_accuracy": 0.90},
    ]
    # without early stopping the last epoch (3) was tested; with it, the min-val-loss epoch (2)
    assert final_val_metrics(rows) == {"epoch": 3, "val_accuracy": 0.90, "val_loss": 0.4}
    assert final_val_metrics(rows, early_stop=True) == {"epoch": 2, "val_accuracy": 0.85, "val_loss": 0.3}
    assert final_val_metrics(rows, early_stop=True, best_epoch=1)["val_accuracy"] == 0.80
    with pytest.raises(ValueError, match="no epoch rows"):
        final_val_metrics([])
    with pytest.raises(ValueError, match="best_epoch 7"):
        final_val_metrics(rows, early_stop=True, best_epoch=7)

    run = {"best_epoch": 2, "config": {"early_stop": True}}
    assert run_val_metrics(run, rows) == {"val_accuracy": 0.85, "val_loss": 0.3}
    assert (
        run_val_metrics({**run, "extra": {"val_accuracy": 0.7, "val_loss": 0.9}}, rows)["val_accuracy"] == 0.7
    )
    assert run_val_metrics({"config": {}}) == {"val_accuracy": None, "val_loss": None}
    runs = [{**_run("vANN", 1, 8, s, 10, 0.5, None), "config": {"early_stop": False}} for s in (1, 2)]
    attached = attach_val_metrics(runs, lambda r: rows)
    assert [r["val_accuracy"] for r in attached] == [0.90, 0.90] and runs[0]["val_accuracy"] is None
    # or let group_runs call a function per run
    groups = group_runs(runs, val_metrics=lambda r: run_val_metrics(r, rows))
    assert groups[0].val_accuracy.mean == pytest.approx(0.90)


def test_selection_from_a_real_run_store(tmp_path):
    from dendritic.store import RunStore

    # per run: val accuracy per epoch; early-stopped runs were tested at their min-val-loss epoch
    plan = [
        # model, D, S, seed, early_stop, [(val_loss, val_acc) per epoch], test_acc, params
        ("vANN", 1, 8, 1, False, [(0.5, 0.80), (0.4, 0.82)], 0.81, 5000),
        ("vANN", 1, 8, 2, False, [(0.5, 0.80), (0.4, 0.84)], 0.83, 5000),
        ("dANN", 1, 8, 1, True, [(0.5, 0.80), (0.3, 0.90), (0.4, 0.70)], 0.89, 300),
        ("dANN", 1, 8, 2, True, [(0.3, 0.86), (0.5, 0.95)], 0.85, 300),
    ]
    with RunStore(tmp_path / "runs.db") as store:
        for model, d, s, seed, early, epochs, test_acc, params in plan:
            config = {"model": model, "dendrites": d, "somata": s, "seed": seed, "early_stop": early}
            run_id = store.start_run(config, meta={"trainable_params": params})
            for i, (vl, va) in enumerate(epochs, start=1):
                store.log_epoch(run_id, i, train_loss=vl, train_accuracy=va, val_loss=vl, val_accuracy=va)
            store.finish_run(run_id, test_accuracy=test_acc, test_loss=1 - test_acc)
        runs = attach_val_metrics(store.list_runs(status="finished"), lambda r: store.epochs(r["id"]))
    # vANN (last epoch): .82, .84 → .83.  dANN (best epoch, computed by the store): epoch 2 → .90,
    # epoch 1 → .86 → .88 (the later .95 of the second run was never tested)
    groups = group_runs(runs)
    val = {g.model: g.val_accuracy.mean for g in groups}
    assert val == pytest.approx({"vANN": 0.83, "dANN": 0.88})
    assert [g.best_epoch.mean for g in groups] == pytest.approx([1.5, 2.0])  # dANN (2, 1); vANN (2, 2)
    assert cheapest_matching(groups)["dANN"].trainable_params == 300


def test_group_efficiency_of_best_configurations():
    best = best_configuration(group_runs(_pool()))
    pool = [best["vANN"], best["dANN-R"]]
    # params × best epoch: 2000 · 3 = 6000 → f = 3.77815; 200 · 3 = 600 → f = 2.77815
    # f_norm = 3.77815 / 2.77815 = 1.35995, 1; acc eff = test means .87 / 1.35995, .91 / 1
    e = group_efficiency(pool)
    np.testing.assert_allclose(e.f, [math.log10(6000), math.log10(600)])
    np.testing.assert_allclose(e.accuracy, [0.87 / 1.359951, 0.91], rtol=1e-6)
    np.testing.assert_allclose(e.loss, [0.13 * 1.359951, 0.09], rtol=1e-6)
    with pytest.raises(ValueError, match="empty"):
        group_efficiency([])


# ====================================================================== activity


def _activity_example():
    # 2 classes × 4 samples; five nodes (columns). "Active" = value > 0 (0 and negatives are silent).
    #   node 0: fires on every class-0 sample, never on class 1
    #   node 1: never fires (dead)
    #   node 2: fires on 2 samples of each class
    #   node 3: fires on all 8 samples
    #   node 4: fires on one class-0 sample only
    a = np.array(
        [
            # n0   n1    n2   n3   n4
            [1.0, 0.0, 0.5, 2.0, 0.3],  # class 0
            [2.0, -0.1, 0.5, 2.0, 0.0],  # class 0
            [0.5, 0.0, -1.0, 2.0, -0.2],  # class 0
            [3.0, 0.0, 0.0, 2.0, 0.0],  # class 0
            [0.0, 0.0, 0.7, 1.0, 0.0],  # class 1
            [-0.5, 0.0, 0.7, 1.0, 0.0],  # class 1
            [0.0, 0.0, -0.1, 1.0, 0.0],  # class 1
            [-1.0, -2.0, 0.0, 1.0, 0.0],  # class 1
        ]
    )
    y = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    return a, y


def test_hit_matrix_dead_sparsity():
    a, y = _activity_example()
    h = hit_matrix(a, y)
    np.testing.assert_array_equal(h, [[4, 0, 2, 4, 1], [0, 0, 2, 4, 0]])
    np.testing.assert_array_equal(class_counts(y), [4, 4])
    np.testing.assert_array_equal(dead_nodes(h), [False, True, False, False, False])
    assert sparsity(h) == pytest.approx(1 / 5)  # one dead node of five


def test_node_entropy_known_answers():
    a, y = _activity_example()
    e = node_entropy(hit_matrix(a, y), class_counts(y))
    # bins = (class-0 hits, class-1 hits, silent) / 8 samples
    # node 0: (4, 0, 4)/8 = (.5, 0, .5)     → H = 2 · .5 · 1 = 1 bit
    # node 1: dead                          → NaN
    # node 2: (2, 2, 4)/8 = (.25, .25, .5)  → H = .5 + .5 + .5 = 1.5 bits
    # node 3: (4, 4, 0)/8 = (.5, .5, 0)     → H = 1 bit
    # node 4: (1, 0, 7)/8                   → H = 1/8 · 3 + 7/8 · log2(8/7) = .375 + .168564 = .543564
    assert e[0] == pytest.approx(1.0)
    assert math.isnan(e[1])
    assert e[2] == pytest.approx(1.5)
    assert e[3] == pytest.approx(1.0)
    assert e[4] == pytest.approx(0.543564, abs=1e-6)
    np.testing.assert_allclose(drop_dead(e), [1.0, 1.5, 1.0, 0.543564], atol=1e-6)
    np.testing.assert_allclose(drop_dead(np.arange(5.0), hit_matrix(a, y)), [0, 2, 3, 4])


def test_selectivity_threshold_is_strict():
    a, y = _activity_example()
    # firing rates per class: n0 (1, 0), n1 (0, 0), n2 (.5, .5), n3 (1, 1), n4 (.25, 0); > .40 →
    np.testing.assert_array_equal(selectivity(hit_matrix(a, y), class_counts(y)), [1, 0, 2, 2, 0])
    # 2/5 = 0.40 is not > 0.40; 3/5 = 0.60 is
    assert selectivity([[2], [3]], [5, 5])[0] == 1
    assert selectivity([[2], [3]], [5, 5], threshold=0.6)[0] == 0
    assert selectivity([[0], [3]], [0, 5])[0] == 1  # an empty class counts for nothing


def test_activity_stats_and_streaming_counter():
    a, y = _activity_example()
    full = activity_stats(a, y)
    assert full.sparsity == pytest.approx(0.2)
    np.testing.assert_allclose(full.live_entropy, [1.0, 1.5, 1.0, 0.543564], atol=1e-6)
    counter = HitCounter(n_classes=2)
    for batch in (slice(0, 3), slice(3, 4), slice(4, 8)):
        counter.update(a[batch], y[batch])
    assert counter.n_samples == 8
    streamed = counter.stats()
    np.testing.assert_array_equal(streamed.hits, full.hits)
    np.testing.assert_array_equal(streamed.selectivity, full.selectivity)
    np.testing.assert_allclose(streamed.entropy, full.entropy, equal_nan=True)


def test_activity_accepts_torch_tensors():
    torch = pytest.importorskip("torch")
    a, y = _activity_example()
    h = hit_matrix(torch.tensor(a, requires_grad=True), torch.tensor(y))
    np.testing.assert_array_equal(h, hit_matrix(a, y))


def test_activity_bad_input():
    a, y = _activity_example()
    with pytest.raises(ValueError, match="8 samples but labels have 7"):
        hit_matrix(a, y[:7])
    with pytest.raises(ValueError, match="2-D"):
        hit_matrix(a[0], y[:1])
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 2\)"):
        hit_matrix(a, y + 1, n_classes=2)
    with pytest.raises(ValueError, match="integer class indices"):
        hit_matrix(a, y + 0.5)
    with pytest.raises(ValueError, match="class_counts must have shape"):
        node_entropy(hit_matrix(a, y), [4, 4, 0])
    with pytest.raises(ValueError, match="exceed"):
        node_entropy([[5]], [4])
    counter = HitCounter(n_classes=2)
    with pytest.raises(ValueError, match="no batches"):
        counter.stats()
    counter.update(a, y)
    with pytest.raises(ValueError, match="batch has 4 nodes"):
        counter.update(a[:, :4], y)


# ====================================================================== weights


def test_weight_stats_known_answers():
    # nonzero entries 1, 1, 4: mean 2; deviations −1, −1, 2
    # m2 = (1 + 1 + 4)/3 = 2; m3 = (−1 − 1 + 8)/3 = 2; m4 = (1 + 1 + 16)/3 = 6
    # skew = m3 / m2^1.5 = 2 / 2.828427 = 0.707107; excess kurtosis = m4 / m2² − 3 = 6/4 − 3 = −1.5
    s = weight_stats([[0.0, 1.0, 0.0], [1.0, 4.0, 0.0]])
    assert (s.n, s.min, s.max, s.range) == (3, 1.0, 4.0, 3.0)
    assert s.mean == pytest.approx(2.0)
    assert s.sd == pytest.approx(math.sqrt(2))
    assert s.skewness == pytest.approx(0.707107, abs=1e-6)
    assert s.excess_kurtosis == pytest.approx(-1.5)
    # symmetric 1, 2, 3, 4: m2 = (2.25 + .25 + .25 + 2.25)/4 = 1.25, m4 = (5.0625·2 + .0625·2)/4 = 2.5625
    # → skew 0, kurtosis 2.5625 / 1.5625 − 3 = −1.36
    s = weight_stats(np.array([1.0, 2.0, 3.0, 4.0]))
    assert s.skewness == pytest.approx(0.0, abs=1e-12)
    assert s.excess_kurtosis == pytest.approx(-1.36)


def test_weight_mask_keeps_real_zero():
    w = np.array([[0.0, 2.0], [3.0, 0.0]])
    mask = np.array([[True, True], [False, False]])  # the (0, 0) connection exists but is 0
    np.testing.assert_array_equal(real_weights(w, mask), [0.0, 2.0])
    np.testing.assert_array_equal(real_weights(w), [2.0, 3.0])
    assert weight_stats(w, mask).n == 2


def test_weight_histogram_given_edges():
    w = [[0.0, -1.0, 0.5], [0.25, 0.0, 2.0]]
    # real weights −1, .5, .25, 2 into [−1, 0), [0, 1), [1, 2] (numpy's last bin is closed) → 1, 2, 1
    counts, edges = weight_histogram(w, [-1, 0, 1, 2])
    np.testing.assert_array_equal(counts, [1, 2, 1])
    np.testing.assert_array_equal(edges, [-1, 0, 1, 2])
    counts, edges = weight_histogram(w, 3)
    assert counts.sum() == 4 and edges[0] == -1 and edges[-1] == 2


def test_weight_kde_known_value_and_constant():
    # two weights −1, 1: scipy's Scott bandwidth = sd(ddof 1) · n^(−1/5) = √2 · 2^(−0.2) = 1.231144;
    # the density at 0 is the mean of two Gaussians each 1 away: φ(1 / bw) / bw
    bw = math.sqrt(2) * 2**-0.2
    expected = math.exp(-0.5 / bw**2) / (math.sqrt(2 * math.pi) * bw)
    x, d = weight_kde([-1.0, 0.0, 1.0], grid=[-0.5, 0.0, 0.5])
    assert d[1] == pytest.approx(expected)
    x, d = weight_kde([-1.0, 1.0], n_grid=401)
    assert x[0] == pytest.approx(-1.2) and x[-1] == pytest.approx(1.2)  # padded by 10 % of the range
    # constant weights: a point mass at 2 on the grid 0..4 (spacing 1) → density 1 at x = 2
    x, d = weight_kde([2.0, 2.0, 0.0], grid=np.linspace(0, 4, 5))
    np.testing.assert_array_equal(d, [0, 0, 1, 0, 0])
    assert np.trapezoid(d, x) == pytest.approx(1.0)
    s = weight_stats([2.0, 2.0])
    assert s.range == 0 and math.isnan(s.skewness) and math.isnan(s.excess_kurtosis)


def test_weights_bad_input():
    with pytest.raises(ValueError, match="no real"):
        weight_stats(np.zeros((3, 3)))
    with pytest.raises(ValueError, match="mask shape"):
        real_weights(np.ones((2, 2)), np.ones((2, 3)))
    with pytest.raises(ValueError, match="increasing"):
        weight_histogram([1.0, 2.0], [1, 0])
    with pytest.raises(ValueError, match="NaN"):
        weight_stats([1.0, float("nan")])


# ====================================================================== embedding

# 1-D toy embedding (as a column) and its labels: A A B B B A at 0, 1, 3, 10, 11, 13
TOY = np.array([[0.0], [1.0], [3.0], [10.0], [11.0], [13.0]])
TOY_LABELS = np.array(["A", "A", "B", "B", "B", "A"])


def test_neighbourhood_hit_excludes_the_point_itself():
    # k = 2 nearest OTHER points (distances) and the fraction sharing the point's label:
    #   p0 (0, A):  p1 (1), p2 (3)   → A, B → 1/2
    #   p1 (1, A):  p0 (1), p2 (2)   → A, B → 1/2
    #   p2 (3, B):  p1 (2), p0 (3)   → A, A → 0
    #   p3 (10, B): p4 (1), p5 (3)   → B, A → 1/2
    #   p4 (11, B): p3 (1), p5 (2)   → B, A → 1/2
    #   p5 (13, A): p4 (2), p3 (3)   → B, B → 0
    # mean = 2/6 = 1/3. Counting the point itself (self + 1 nearest) would give
    # (1 + 1 + 1/2 + 1 + 1 + 1/2)/6 = 5/6 — the reference's defect (SPEC §10.7).
    np.testing.assert_allclose(neighbourhood_hit_per_point(TOY, TOY_LABELS, k=2), [0.5, 0.5, 0, 0.5, 0.5, 0])
    assert neighbourhood_hit(TOY, TOY_LABELS, k=2) == pytest.approx(1 / 3)


def test_neighbourhood_hit_duplicates_are_neighbours():
    # p0 and p1 sit on the same spot with different labels; p2, p3 are a same-label pair. k = 1:
    # p0 → p1 (dist 0, other label) 0; p1 → p0: 0; p2 → p3: 1; p3 → p2: 1 → mean 1/2.
    # Dropping "the first neighbour" by distance instead of by index could drop the duplicate.
    pts = np.array([[0.0, 0.0], [0.0, 0.0], [5.0, 0.0], [6.0, 0.0]])
    assert neighbourhood_hit(pts, [0, 1, 0, 0], k=1) == pytest.approx(0.5)


def test_silhouette_known_answer():
    # A at 0, 2; B at 10, 12. s = (b − a) / max(a, b):
    #   0: a = 2, b = (10 + 12)/2 = 11 → 9/11;   2: a = 2, b = (8 + 10)/2 = 9 → 7/9
    #   10: a = 2, b = (10 + 8)/2 = 9 → 7/9;     12: a = 2, b = (12 + 10)/2 = 11 → 9/11
    # mean = (9/11 + 7/9)/2 = 158/198 = 0.79798
    assert silhouette([[0.0], [2.0], [10.0], [12.0]], [0, 0, 1, 1]) == pytest.approx(158 / 198)


def test_trustworthiness_known_answer():
    # original 1-D points 0, 1, 3, 7, 12; embedding swaps the places of points 1 and 2: 0, 3, 1, 6, 10.
    # k = 1. Embedding nearest neighbour → its rank r in the original space (penalty r − k):
    #   p0 → p2 (orig. order from p0: p1, p2, ...) r = 2 → 1
    #   p1 → p2 (from p1: p0 (1), p2 (2))          r = 2 → 1
    #   p2 → p0 (from p2: p1 (2), p0 (3))          r = 2 → 1
    #   p3 → p1 (from p3: p2 (4), p4 (5), p1 (6))  r = 3 → 2
    #   p4 → p3 (nearest in both)                  r = 1 → 0
    # T = 1 − 2 / (n k (2n − 3k − 1)) · Σ = 1 − 2/(5 · 1 · 6) · 5 = 1 − 1/3 = 2/3
    x = np.array([[0.0], [1.0], [3.0], [7.0], [12.0]])
    e = np.array([[0.0], [3.0], [1.0], [6.0], [10.0]])
    assert trustworthiness(x, e, k=1) == pytest.approx(2 / 3)
    assert trustworthiness(x, x, k=1) == pytest.approx(1.0)


def test_tsne_small_and_separability():
    rng = np.random.default_rng(0)
    # two tight, far-apart blobs of 30 points in 5-D
    x = np.vstack([rng.normal(0, 0.1, (30, 5)), rng.normal(5, 0.1, (30, 5))])
    y = np.repeat([0, 1], 30)
    e1 = tsne(x, perplexity=10, seed=3)
    e2 = tsne(x, perplexity=10, seed=3)
    assert e1.shape == (60, 2)
    np.testing.assert_allclose(e1, e2)  # seeded → reproducible
    scores = separability(x, e1, y)
    assert scores.neighbourhood_hit == pytest.approx(1.0)  # 11 neighbours all from its own blob
    assert scores.silhouette > 0.5
    assert 0.0 < scores.trustworthiness <= 1.0


def test_embedding_bad_input():
    with pytest.raises(ValueError, match="perplexity must be in"):
        tsne(np.zeros((5, 3)), perplexity=50)
    with pytest.raises(ValueError, match="k = 11 needs more than 11 points, got 6"):
        neighbourhood_hit(TOY, TOY_LABELS)
    with pytest.raises(ValueError, match=r"labels must have shape \(6,\)"):
        neighbourhood_hit(TOY, TOY_LABELS[:5], k=2)
    with pytest.raises(ValueError, match="x has 5 points but embedding has 6"):
        trustworthiness(TOY[:5], TOY, k=1)
    with pytest.raises(ValueError, match="2 <= number of labels"):
        silhouette(TOY, ["A"] * 6)
    with pytest.raises(ValueError, match="backend must be"):
        tsne(np.random.default_rng(0).normal(size=(20, 3)), perplexity=5, backend="umap")


# ====================================================================== stats

# balanced 2 × 2, two replicates per cell:
#   A1B1: 1, 3 (mean 2)   A1B2: 5, 7 (mean 6)   A2B1: 2, 4 (mean 3)   A2B2: 10, 12 (mean 11)
BALANCED = [
    ("A1", "B1", 1),
    ("A1", "B1", 3),
    ("A1", "B2", 5),
    ("A1", "B2", 7),
    ("A2", "B1", 2),
    ("A2", "B1", 4),
    ("A2", "B2", 10),
    ("A2", "B2", 12),
]


def test_two_way_anova_balanced_by_hand():
    # grand mean 22/4 = 5.5; A means 4, 7 → SS_A = 4 · (1.5² + 1.5²) = 18, df 1
    # B means 2.5, 8.5 → SS_B = 4 · (3² + 3²) = 72, df 1
    # cells: SS_cells = 2 · (3.5² + .5² + 2.5² + 5.5²) = 98 → SS_AB = 98 − 18 − 72 = 8, df 1
    # within: every value is cell mean ± 1 → SS_res = 8, df 8 − 4 = 4, MS_res = 2
    # F_A = 18/2 = 9, F_B = 72/2 = 36, F_AB = 8/2 = 4; for F(1, 4): p = 2 · P(t_4 > √F)
    from scipy import stats as st

    r = two_way_anova(BALANCED)
    assert r.balanced and r.n == 8 and r.typ == 2
    for source, ss, f in (("model", 18, 9), ("layer", 72, 36), ("model:layer", 8, 4)):
        assert r[source].ss == pytest.approx(ss)
        assert r[source].df == 1
        assert r[source].f == pytest.approx(f)
        assert r[source].p == pytest.approx(2 * st.t.sf(math.sqrt(f), 4))
    assert r["model"].p == pytest.approx(0.039942, abs=1e-6)  # t = 3 on 4 df
    assert (r["residual"].ss, r["residual"].df, r["residual"].ms) == pytest.approx((8, 4, 2))
    # balanced: Type I gives the same table
    r1 = two_way_anova(BALANCED, typ=1)
    for source in ("model", "layer", "model:layer"):
        assert r1[source].ss == pytest.approx(r[source].ss)


def test_two_way_anova_unbalanced_type2_is_order_free():
    obs = [*BALANCED, ("A1", "B1", 2.5), ("A2", "B2", 9.0), ("A2", "B2", 13.0)]
    r2 = two_way_anova(obs)
    assert not r2.balanced
    # Type II SS of a factor = its Type I SS when entered second
    swapped = [(b, a, v) for a, b, v in obs]
    r1_ab = two_way_anova(obs, typ=1)
    r1_ba = two_way_anova(swapped, names=("layer", "model"), typ=1)
    assert r2["model"].ss == pytest.approx(r1_ba["model"].ss)
    assert r2["layer"].ss == pytest.approx(r1_ab["layer"].ss)
    assert r1_ab["model"].ss != pytest.approx(r2["model"].ss)  # unbalanced: types differ
    assert r2["residual"].df == 11 - 4


def test_two_way_anova_matches_statsmodels():
    pd = pytest.importorskip("pandas")
    pytest.importorskip("statsmodels")
    from statsmodels.formula.api import ols
    from statsmodels.stats.anova import anova_lm

    obs = [
        *BALANCED,
        ("A1", "B1", 2.5),
        ("A2", "B2", 9.0),
        ("A2", "B2", 13.0),
        ("A3", "B1", 4),
        ("A3", "B2", 1),
    ]
    obs += [("A3", "B1", 5), ("A3", "B2", 2.5)]
    frame = pd.DataFrame(obs, columns=["model", "layer", "value"])
    table = anova_lm(ols("value ~ C(model) * C(layer)", data=frame).fit(), typ=2)
    r = two_way_anova(obs)
    for ours, theirs in (("model", "C(model)"), ("layer", "C(layer)"), ("model:layer", "C(model):C(layer)")):
        assert r[ours].ss == pytest.approx(table.loc[theirs, "sum_sq"])
        assert r[ours].f == pytest.approx(table.loc[theirs, "F"])
        assert r[ours].p == pytest.approx(table.loc[theirs, "PR(>F)"])


def test_two_way_anova_bad_input():
    with pytest.raises(ValueError, match="no observations"):
        two_way_anova([])
    with pytest.raises(ValueError, match="factor 'model' needs at least 2 levels"):
        two_way_anova([("A", "B1", 1), ("A", "B2", 2), ("A", "B1", 3)])
    with pytest.raises(ValueError, match="no residual degrees of freedom"):
        two_way_anova([("A1", "B1", 1), ("A1", "B2", 2), ("A2", "B1", 3), ("A2", "B2", 4)])
    with pytest.raises(ValueError, match="observation 0 must be"):
        two_way_anova([("A1", 1)])
    with pytest.raises(ValueError, match="lacks key 'value'"):
        two_way_anova([{"model": "A", "layer": 1}])
    with pytest.raises(ValueError, match="typ must be"):
        two_way_anova(BALANCED, typ=3)


def test_anova_accepts_mappings():
    obs = [{"model": a, "layer": b, "value": v} for a, b, v in BALANCED]
    assert two_way_anova(obs)["layer"].f == pytest.approx(36)


def test_pairwise_welch_by_hand():
    # a = 1, 2, 3: mean 2, var 1, n 3;  b = 4, 5, 6, 7: mean 5.5, var 5/3, n 4
    # se² = 1/3 + (5/3)/4 = 0.75 → t = (2 − 5.5)/√0.75 = −4.041452
    # df = 0.75² / ((1/3)²/2 + (5/12)²/3) = 0.5625 / (49/432) = 243/49 = 4.959184
    # three groups → three comparisons → p_adj = min(1, 3 p)
    from scipy import stats as st

    tests = pairwise_welch({"a": [1, 2, 3], "b": [4, 5, 6, 7], "c": [1, 1, 2]})
    assert [(t.a, t.b) for t in tests] == [("a", "b"), ("a", "c"), ("b", "c")]
    ab = tests[0]
    assert ab.t == pytest.approx(-4.041452, abs=1e-6)
    assert ab.df == pytest.approx(243 / 49)
    assert ab.p == pytest.approx(2 * st.t.sf(4.041452, 243 / 49), rel=1e-5)
    assert ab.p_adjusted == pytest.approx(3 * ab.p)
    assert tests[1].p_adjusted == 1.0  # 3 × 0.387 capped at 1
    only = pairwise_welch({"a": [1, 2, 3], "b": [4, 5, 6, 7], "c": [1, 1, 2]}, pairs=[("a", "b")])
    assert only[0].p_adjusted == pytest.approx(ab.p)  # one comparison: no correction


def test_bonferroni_and_pairwise_by_level():
    np.testing.assert_allclose(bonferroni([0.01, 0.2, 0.5]), [0.03, 0.6, 1.0])
    np.testing.assert_allclose(bonferroni([0.01], n_comparisons=4), [0.04])
    with pytest.raises(ValueError, match="p-values must lie"):
        bonferroni([1.5])
    obs = [
        (m, layer, v + 10 * (m == "dANN")) for layer in (1, 2) for m in ("dANN", "vANN") for v in (1, 2, 3)
    ]
    tests = pairwise_by_level(obs)  # dANN vs vANN within layer 1 and layer 2 → 2 comparisons
    assert [(t.within, t.a, t.b) for t in tests] == [(1, "dANN", "vANN"), (2, "dANN", "vANN")]
    assert all(t.p_adjusted == pytest.approx(min(1.0, 2 * t.p)) for t in tests)
    per = pairwise_by_level(obs, family="per-level")
    assert all(t.p_adjusted == pytest.approx(t.p) for t in per)
    by_layer = pairwise_by_level(obs, compare="layer")  # layer 1 vs 2 within each model
    assert [(t.within, t.a, t.b) for t in by_layer] == [("dANN", 1, 2), ("vANN", 1, 2)]
    with pytest.raises(ValueError, match="a Welch test needs >= 2"):
        pairwise_welch({"a": [1.0], "b": [2.0, 3.0]})
    with pytest.raises(ValueError, match="need at least 2 groups"):
        pairwise_welch({"a": [1.0, 2.0]})
