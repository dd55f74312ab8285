"""Continual learning: metrics on hand-built matrices, task construction, task-IL masking,
tiny end-to-end runs on fake data (stored, reproducible), comparison, figures and the CLI."""

import math
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from dendritic.cli import main
from dendritic.continual import (
    ContinualConfig,
    average_accuracy,
    backward_transfer,
    build_benchmark,
    compare,
    evaluate_task,
    forgetting,
    forgetting_last,
    forward_transfer,
    learning_accuracy,
    match_parameters,
    parameter_count,
    parse_benchmark,
    parse_seeds,
    run_continual,
    split_classes,
    summarize,
    task_permutations,
)
from dendritic.data import prepare
from dendritic.models import build_model, count_parameters
from dendritic.store import RunStore

sys.path.insert(0, str(Path(__file__).parent))
from fakedata import write_dataset  # noqa: E402


@pytest.fixture(autouse=True)
def _isolated(isolated_cache, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def data_dir(tmp_path):
    return write_dataset(tmp_path / "data", "mnist", n_train=500, n_test=200)


def tiny(**kw):
    base = dict(dataset="mnist", model="dANN-R", dendrites=2, somata=8, epochs_per_task=1, seed=1)
    base.update(kw)
    return ContinualConfig(**base)


# ------------------------------------------------------------------------------------ metrics
R1 = [
    [0.90, 0.10, 0.00],
    [0.60, 0.80, 0.20],
    [0.50, 0.70, 0.95],
]
B1 = [0.10, 0.05, 0.10]


def test_metrics_by_hand():
    # ACC = (0.50 + 0.70 + 0.95) / 3 = 2.15 / 3
    assert average_accuracy(R1) == pytest.approx(2.15 / 3)
    # BWT = ((0.50 - 0.90) + (0.70 - 0.80)) / 2 = (-0.40 - 0.10) / 2 = -0.25
    assert backward_transfer(R1) == pytest.approx(-0.25)
    # F: task 0: max(0.90, 0.60) - 0.50 = 0.40; task 1: max(0.10, 0.80) - 0.70 = 0.10; mean 0.25
    assert forgetting(R1) == pytest.approx(0.25)
    # first-minus-last: (0.90 - 0.50 + 0.80 - 0.70) / 2 = 0.25 (same here: no task ever improved)
    assert forgetting_last(R1) == pytest.approx(0.25)
    # FWT = ((R[0,1] - b1) + (R[1,2] - b2)) / 2 = ((0.10 - 0.05) + (0.20 - 0.10)) / 2 = 0.075
    assert forward_transfer(R1, B1) == pytest.approx(0.075)
    # LA = (0.90 + 0.80 + 0.95) / 3 = 2.65 / 3
    assert learning_accuracy(R1) == pytest.approx(2.65 / 3)
    summary = summarize(R1, B1)
    assert summary == pytest.approx(
        {
            "acc": 2.15 / 3,
            "bwt": -0.25,
            "forgetting": 0.25,
            "forgetting_last": 0.25,
            "fwt": 0.075,
            "la": 2.65 / 3,
        }
    )
    assert math.isnan(summarize(R1)["fwt"])


def test_the_two_forgetting_definitions_differ_when_a_task_improves_then_drops():
    # Task 0 rises from 0.6 to 0.9 while task 1 is trained, then falls to 0.4.
    r = [
        [0.60, 0.00, 0.00],
        [0.90, 0.80, 0.10],
        [0.40, 0.70, 0.90],
    ]
    # Chaudhry: task 0: max(0.60, 0.90) - 0.40 = 0.50; task 1: max(0.00, 0.80) - 0.70 = 0.10
    # F = (0.50 + 0.10) / 2 = 0.30
    assert forgetting(r) == pytest.approx(0.30)
    # first-minus-last: task 0: 0.60 - 0.40 = 0.20; task 1: 0.80 - 0.70 = 0.10; mean 0.15
    assert forgetting_last(r) == pytest.approx(0.15)
    # BWT = ((0.40 - 0.60) + (0.70 - 0.80)) / 2 = -0.15 = -(first-minus-last)
    assert backward_transfer(r) == pytest.approx(-0.15)


def test_chaudhry_max_includes_rows_before_a_task_was_trained():
    # Domain-IL-like: task 1 scored 0.60 before it was trained (forward transfer), 0.50 after.
    r = [
        [0.90, 0.60, 0.50],
        [0.80, 0.50, 0.40],
        [0.70, 0.45, 0.90],
    ]
    # all rows l <= T-2: task 0: max(0.90, 0.80) - 0.70 = 0.20; task 1: max(0.60, 0.50) - 0.45 = 0.15
    # F = 0.175
    assert forgetting(r) == pytest.approx(0.175)
    # learned_only (l >= j): task 0: 0.20; task 1: max(0.50) - 0.45 = 0.05; F = 0.125
    assert forgetting(r, learned_only=True) == pytest.approx(0.125)
    # a task that ends above all earlier accuracies counts as negative forgetting
    assert forgetting([[0.5, 0.0], [0.7, 0.9]]) == pytest.approx(-0.2)


def test_metric_edge_cases():
    one = [[0.8]]
    assert average_accuracy(one) == 0.8
    for fn in (backward_transfer, forgetting, forgetting_last):
        assert math.isnan(fn(one))
    assert math.isnan(forward_transfer(one, [0.1]))
    rng = np.random.default_rng(0)
    r = rng.random((6, 6))
    assert forgetting_last(r) == pytest.approx(-backward_transfer(r))
    assert forgetting(r) >= forgetting_last(r) - 1e-12
    with pytest.raises(ValueError, match="square"):
        average_accuracy([[0.1, 0.2]])
    with pytest.raises(ValueError, match="finite"):
        average_accuracy([[math.nan]])
    with pytest.raises(ValueError, match="one accuracy per task"):
        forward_transfer(R1, [0.1, 0.2])


# ------------------------------------------------------------------------------------ tasks
def test_split_classes_are_disjoint_cover_everything_and_are_seeded():
    tasks = split_classes(10, 5, seed=1)
    assert len(tasks) == 5 and all(len(t) == 2 for t in tasks)
    flat = [c for t in tasks for c in t]
    assert sorted(flat) == list(range(10))  # disjoint and complete
    assert split_classes(10, 5, seed=1) == tasks
    orders = {split_classes(10, 5, seed=s) for s in range(1, 6)}
    assert len(orders) == 5  # every seed its own order
    uneven = split_classes(47, 5, seed=3)
    assert [len(t) for t in uneven] == [10, 10, 9, 9, 9]
    assert sorted(c for t in uneven for c in t) == list(range(47))


def test_permutations_are_seeded_reproducible_and_prefix_stable():
    a = task_permutations(784, 5, seed=1)
    assert np.array_equal(a[0], np.arange(784))  # identity first by default
    for p in a:
        assert sorted(p.tolist()) == list(range(784))
    assert all(np.array_equal(x, y) for x, y in zip(a, task_permutations(784, 5, seed=1), strict=True))
    b = task_permutations(784, 5, seed=2)
    assert all(not np.array_equal(x, y) for x, y in zip(a[1:], b[1:], strict=True))
    ten = task_permutations(784, 10, seed=1)
    assert all(np.array_equal(x, y) for x, y in zip(a, ten[:5], strict=False))
    permuted_first = task_permutations(784, 5, seed=1, identity_first=False)
    assert not np.array_equal(permuted_first[0], np.arange(784))
    assert np.array_equal(permuted_first[1], a[1])


def test_benchmark_tasks_select_their_classes(data_dir):
    data = prepare("mnist", seed=1, data_dir=data_dir)
    bench = build_benchmark(data, "split", scenario="class-il", seed=1)
    seen_train, seen_test = set(), set()
    for task in bench.tasks:
        labels = set(data.y_train[task.train_idx].tolist())
        assert labels == set(task.classes)
        assert set(data.y_test[task.test_idx].tolist()) == set(task.classes)
        assert not (seen_train & set(task.train_idx.tolist()))
        seen_train |= set(task.train_idx.tolist())
        seen_test |= set(task.test_idx.tolist())
    assert seen_train == set(range(len(data.y_train))) and seen_test == set(range(len(data.y_test)))
    sorted_bench = build_benchmark(data, "sorted", seed=1)
    assert [t.classes for t in sorted_bench.tasks] == [(c,) for c in range(10)]
    perm = build_benchmark(data, "permuted", tasks=3, seed=1)
    x0, _ = perm.test_set(perm.tasks[0])
    x1, _ = perm.test_set(perm.tasks[1])
    assert torch.equal(x0, data.x_test)
    assert torch.equal(x1, data.x_test[:, perm.tasks[1].permutation])
    assert perm.scenario == "domain-il" and perm.tasks[1].describe()["permuted"] is True


def test_task_il_masking_restricts_predictions_to_the_task(data_dir):
    data = prepare("mnist", seed=1, data_dir=data_dir)
    model = build_model("dANN-R", data.input_shape, 10, 2, 8, seed=1)
    with torch.no_grad():
        model.output.bias[9] = 100.0  # the unmasked head answers class 9, whatever the image
    task_il = build_benchmark(data, "split", scenario="task-il", seed=1)
    class_il = build_benchmark(data, "split", scenario="class-il", seed=1)
    for ti, ci in zip(task_il.tasks, class_il.tasks, strict=True):
        x, _ = task_il.test_set(ti)
        with torch.no_grad():
            predicted = task_il.logits(ti, model(x)).argmax(dim=1)
            unmasked = class_il.logits(ci, model(x)).argmax(dim=1)
        assert set(predicted.tolist()) <= set(ti.classes)
        assert set(unmasked.tolist()) == {9}
        if 9 not in ti.classes:
            assert evaluate_task(model, class_il, ci) == 0.0
            assert evaluate_task(model, task_il, ti) > 0.0


def test_parse_and_validate_settings():
    assert parse_benchmark("split-fmnist") == ("split", "fmnist")
    assert parse_benchmark("Permuted", "mnist") == ("permuted", "mnist")
    with pytest.raises(ValueError, match="unknown benchmark"):
        parse_benchmark("rotated")
    with pytest.raises(ValueError, match="names dataset"):
        parse_benchmark("split-fmnist", "mnist")
    assert ContinualConfig().scenario == "class-il" and ContinualConfig().tasks == 5
    assert ContinualConfig(benchmark="permuted").scenario == "domain-il"
    assert ContinualConfig(benchmark="sorted").tasks == 10
    with pytest.raises(ValueError, match="unknown scenario"):
        ContinualConfig(scenario="instance-il")
    with pytest.raises(ValueError, match="does not apply"):
        ContinualConfig(benchmark="permuted", scenario="task-il")
    with pytest.raises(ValueError, match="more tasks than classes"):
        ContinualConfig(benchmark="split", tasks=11)
    with pytest.raises(ValueError, match="one task per class"):
        ContinualConfig(benchmark="sorted", tasks=5)
    with pytest.raises(ValueError, match="epochs_per_task"):
        ContinualConfig(epochs_per_task=0)
    assert "identity_first" not in ContinualConfig().to_dict()
    assert ContinualConfig(benchmark="permuted").to_dict()["protocol"] == "continual"


# ------------------------------------------------------------------------------------ end to end
@pytest.mark.parametrize(
    ("benchmark", "scenario", "tasks"),
    [
        ("split", "class-il", 5),
        ("split", "task-il", 5),
        ("permuted", "domain-il", 3),
        ("sorted", "class-il", 10),
    ],
)
def test_end_to_end_stored_and_reproducible(tmp_path, data_dir, benchmark, scenario, tasks):
    config = tiny(benchmark=benchmark, scenario=scenario, tasks=tasks)
    with RunStore(tmp_path / "a.db") as store:
        result = run_continual(config, store=store, data_dir=data_dir)
        r = result.accuracy_matrix
        assert r.shape == (tasks, tasks) and np.all((r >= 0) & (r <= 1))
        assert len(result.baseline) == tasks and len(result.tasks) == tasks
        row = store.find(config.to_dict())
        assert row["status"] == "finished" and row["test_accuracy"] == pytest.approx(result.metrics["acc"])
        assert row["extra"]["accuracy_matrix"] == result.matrix
        assert row["extra"]["scenario"] == scenario and "forgetting" in row["extra"]
        assert row["epochs_run"] == tasks and len(store.epochs(row["id"])) == tasks
        again = run_continual(config, store=store, data_dir=data_dir)  # resumes: no retraining
        assert again.reused and again.run_id == result.run_id and again.matrix == result.matrix
    with RunStore(tmp_path / "b.db") as fresh:
        rerun = run_continual(config, store=fresh, data_dir=data_dir)
    assert not rerun.reused
    assert rerun.matrix == result.matrix and rerun.baseline == result.baseline  # bit-identical
    assert rerun.metrics == pytest.approx(result.metrics, nan_ok=True)


def test_training_learns_and_forgets(tmp_path):
    """A small MLP learns each split task when trained, then forgets it in class-IL (no replay);
    the task-IL mask protects it."""
    data_dir = write_dataset(tmp_path / "more", "mnist", n_train=2000, n_test=300)
    config = tiny(model="vANN", dendrites=1, somata=32, epochs_per_task=5, lr=0.01)
    result = run_continual(config, data_dir=data_dir)
    r = result.accuracy_matrix
    assert np.diag(r).mean() > 0.9  # every task learnt when trained
    assert result.metrics["forgetting"] > 0.5  # and mostly forgotten (class-IL, no replay)
    task_il = run_continual(replace(config, scenario="task-il"), data_dir=data_dir)
    assert task_il.metrics["acc"] > result.metrics["acc"]
    other_seed = run_continual(replace(config, seed=2), data_dir=data_dir)
    assert other_seed.tasks != result.tasks  # another class order


def test_match_parameters_and_counts():
    shape, k = (28, 28, 1), 10
    target = parameter_count("dANN-LRF", 16, 256, shape, k)
    assert target == 76_554  # 18·16·256 + 11·256 + 10
    for name in ("dANN-LRF", "dANN-GRF", "dANN-R", "sANN"):
        assert match_parameters(name, target, shape, k) == (16, 256, 76_554)
    # vANN, D = 1: S² + 796·S + 10; S = 87 → 76,831 (|Δ| 277), S = 86 → 75,862 (|Δ| 692)
    assert match_parameters("vANN", target, shape, k) == (1, 87, 76_831)
    for name, d, s, in_shape in [("dANN-GRF", 4, 8, (28, 28, 1)), ("sANN", 2, 8, (28, 28, 1)),
                                 ("vANN", 1, 7, (28, 28, 1)), ("dANN-LRF", 2, 4, (32, 32, 3))]:  # fmt: skip
        model = build_model(name, in_shape, k, d, s, seed=1)
        assert count_parameters(model) == parameter_count(name, d, s, in_shape, k)
    with pytest.raises(ValueError):
        match_parameters("vANN", 0, shape, k)
    assert parse_seeds("1-5") == [1, 2, 3, 4, 5] and parse_seeds("3,1,2-3") == [1, 2, 3]
    with pytest.raises(ValueError, match="seeds"):
        parse_seeds("5-1")


def test_compare_resumes_and_draws(tmp_path, data_dir):
    pytest.importorskip("matplotlib")
    from dendritic.continual.figures import write_comparison_figures

    base = tiny(benchmark="split", tasks=2)
    kwargs = dict(models=["dANN-R", "vANN"], scenarios=["class-il", "task-il"], seeds=[1, 2])
    with RunStore(tmp_path / "cmp.db") as store:
        first = compare(base, store=store, data_dir=data_dir, **kwargs)
        assert len(first.results) == 8 and not any(r.reused for r in first.results)
        second = compare(base, store=store, data_dir=data_dir, **kwargs)
        assert all(r.reused for r in second.results)
    assert [r.as_dict() for r in second.rows] == [r.as_dict() for r in first.rows]
    sizes = {(r.model, r.dendrites, r.somata) for r in first.rows}
    assert sizes == {("dANN-R", 2, 8), ("vANN", 1, 1)}  # target: dANN-LRF at D=2, S=8 = 386
    assert first.target_params == 386
    row = first.rows[0]
    assert row.seeds == [1, 2] and np.asarray(row.mean_matrix).shape == (2, 2)
    assert "ACC %" in first.format_table()
    paths = write_comparison_figures(first, tmp_path / "figs")
    assert len(paths) == 3 and all(p.stat().st_size > 1000 for p in paths)
    assert (tmp_path / "figs" / "continual-split-task-il-matrices.png") in paths


# ------------------------------------------------------------------------------------ CLI
def _args(data_dir, *extra):
    return [
        "continual", "run", "--dataset", "mnist", "--model", "dANN-R", "--dendrites", "2", "--somata", "8",
        "--epochs-per-task", "1", "--data-dir", str(data_dir), "--quiet", *extra,
    ]  # fmt: skip


def test_cli_run_and_compare(tmp_path, data_dir, capsys):
    assert main(_args(data_dir, "--benchmark", "split-mnist", "--scenario", "task-il")) == 0
    out = capsys.readouterr().out
    assert "ACC" in out and "forgetting" in out and "after task" in out and "run 1 in runs.db" in out
    assert main(_args(data_dir, "--benchmark", "split-mnist", "--scenario", "task-il")) == 0
    assert "reused finished run 1" in capsys.readouterr().out
    assert main(_args(data_dir, "--benchmark", "permuted", "--tasks", "2", "--no-store", "--json")) == 0
    import json

    payload = json.loads(capsys.readouterr().out)
    assert len(payload["accuracy_matrix"]) == 2 and payload["scenario"] == "domain-il"
    argv = [
        "continual", "compare", "--dataset", "mnist", "--benchmark", "split", "--tasks", "2",
        "--models", "dANN-R,vANN", "--seeds", "1", "--dendrites", "2", "--somata", "8",
        "--epochs-per-task", "1", "--data-dir", str(data_dir), "--quiet", "--out", "cmp",
    ]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "matched to 386 trainable parameters" in out and "vANN" in out
    assert (tmp_path / "cmp" / "continual-summary.csv").exists()
    assert (tmp_path / "cmp" / "continual-forgetting-vs-params.png").exists()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--benchmark", "rotated"], "unknown benchmark"),
        (["--scenario", "instance-il"], "unknown scenario"),
        (["--benchmark", "permuted", "--scenario", "task-il"], "does not apply"),
        (["--benchmark", "split", "--tasks", "11"], "more tasks than classes"),
    ],
)
def test_cli_errors_are_one_line(data_dir, capsys, extra, message):
    assert main(_args(data_dir, *extra)) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("dendritic: error:") and message in err and "\n" not in err
