"""The tabular study (``dendritic tabular``): its grid on a tiny budget (two folds, one seed, a
few epochs) into a store, the records, resuming, the summary table and figure, one-line errors."""

from __future__ import annotations

import math

import numpy as np
import pytest

pytest.importorskip("sklearn")
pytest.importorskip("scipy")

from dendritic.analysis.tabular import run_score, tabular_rows  # noqa: E402
from dendritic.cli import main  # noqa: E402
from dendritic.store import RunStore  # noqa: E402
from dendritic.tabular import (  # noqa: E402
    MODELS,
    TabularStudy,
    dendritic_parameters,
    load_dataset,
    matched_hidden,
    run_study,
    with_noise_features,
)
from dendritic.tabular.summary import format_table, study_rows  # noqa: E402

TINY = TabularStudy(datasets=("iris", "diabetes"), noise=(0.0, 0.5), seeds=(1,), folds=2, epochs=2)


@pytest.fixture(scope="module")
def tiny_store(tmp_path_factory):
    path = tmp_path_factory.mktemp("tabular") / "runs.db"
    with RunStore(path) as store:
        first = run_study(store, TINY)
        again = run_study(store, TINY)
    return path, first, again


def test_the_grid_is_recorded_once_and_resumes(tiny_store):
    path, first, again = tiny_store
    assert TINY.size == 2 * 2 * 1 * 2 * len(MODELS) == 32
    assert (first.ran, first.skipped) == (32, 0)
    assert (again.ran, again.skipped) == (0, 32)
    with RunStore(path, readonly=True) as store:
        runs = store.list_runs(experiment="tabular")
    assert len(runs) == 32 and {r["status"] for r in runs} == {"finished"}
    assert {r["model"] for r in runs} == set(MODELS)
    assert {(r["config"]["fold"], r["config"]["folds"]) for r in runs} == {(1, 2), (2, 2)}
    for run in runs:
        score = run_score(run)
        assert score is not None and math.isfinite(score)
        if run["dataset"] == "iris":
            assert 0.0 <= run["test_accuracy"] <= 1.0
        else:
            assert run["test_accuracy"] is None and "test_r2" in run["extra"]
        assert run["extra"]["n_features"] == {"iris": 4, "diabetes": 10}[run["dataset"]] * (
            2 if run["config"]["noise"] == 0.5 else 1
        )
        assert run["wall_seconds"] > 0
        if run["model"] == "hgb":
            assert run["trainable_params"] is None
        else:
            assert run["trainable_params"] > 0


def test_the_mlp_matches_the_dendritic_parameters(tiny_store):
    path, *_ = tiny_store
    with RunStore(path, readonly=True) as store:
        runs = store.list_runs(experiment="tabular", dataset="iris")
    for noise in (0.0, 0.5):
        params = {r["model"]: r["trainable_params"] for r in runs if r["config"]["noise"] == noise}
        assert params["dendritic-local"] == params["dendritic-random"]
        assert abs(params["mlp"] - params["dendritic-local"]) <= 4 + 3 + 1  # one hidden unit's worth
        n_in = 4 if noise == 0.0 else 8
        assert params["dendritic-local"] == dendritic_parameters(TINY, n_in, 3)


def test_rows_and_table(tiny_store):
    path, *_ = tiny_store
    with RunStore(path, readonly=True) as store:
        rows = study_rows(store)
    assert len(rows) == 2 * 2 * len(MODELS)
    assert [r["dataset"] for r in rows[:8]] == ["iris"] * 8
    assert rows[0]["model"] == "dendritic-local" and rows[0]["noise"] == 0.0
    for r in rows:
        assert r["runs"] == 2 and r["seeds"] == 1 and r["folds"] == 2
        assert math.isnan(r["score_sd"])  # one seed: no spread across seeds
        assert r["metric"] == ("r2" if r["dataset"] == "diabetes" else "accuracy")
    table = format_table(rows)
    assert table.count("\n") == 1 + len(rows)
    assert "| iris | 4 | 0 % | dendritic-local |" in table
    assert "R² " in table and " — |" in table  # R² for diabetes; no parameters for trees


def test_score_sd_is_across_seeds_of_the_cv_mean():
    runs = [
        {
            "config": {"dataset": "wine", "noise": 0.0, "model": "mlp", "seed": s},
            "test_accuracy": a,
            "extra": {},
        }
        for s, a in ((1, 0.8), (1, 1.0), (2, 0.6), (2, 0.6))
    ]
    (row,) = tabular_rows(runs)
    assert row["score_mean"] == pytest.approx(0.75)
    assert row["score_sd"] == pytest.approx(np.std([0.9, 0.6], ddof=1))


def test_rows_compare_every_model_with_the_matched_mlp():
    scipy_stats = pytest.importorskip("scipy.stats")
    scores = {"mlp": (0.80, 0.82, 0.81), "dendritic-local": (0.90, 0.86, 0.91), "hgb": (0.95,)}
    runs = [
        {
            "config": {"dataset": "wine", "noise": 0.5, "model": m, "seed": s},
            "test_accuracy": a,
            "extra": {},
        }
        for m, values in scores.items()
        for s, a in enumerate(values)
    ]
    rows = {r["model"]: r for r in tabular_rows(runs)}
    local = rows["dendritic-local"]
    assert local["vs_mlp"] == pytest.approx(np.mean(scores["dendritic-local"]) - 0.81)
    expected = scipy_stats.ttest_ind(scores["dendritic-local"], scores["mlp"], equal_var=False).pvalue
    assert local["p_vs_mlp"] == pytest.approx(expected)
    assert 0 < local["p_vs_mlp"] < 0.05
    assert math.isnan(rows["mlp"]["vs_mlp"]) and math.isnan(rows["mlp"]["p_vs_mlp"])
    assert rows["hgb"]["vs_mlp"] == pytest.approx(0.95 - 0.81)
    assert math.isnan(rows["hgb"]["p_vs_mlp"])  # one seed: a difference, no test
    assert all("_seed_means" not in r for r in rows.values())
    table = format_table(list(rows.values()))
    assert f"| +{100 * local['vs_mlp']:.1f} ({local['p_vs_mlp']:.2g}) |" in table
    assert "| +14.0 |" in table and "| mlp | 81.0 ± 1.0 % | — |" in table


def test_summary_command_and_figure(tiny_store, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    path, *_ = tiny_store
    out = tmp_path / "summary"
    assert main(["tabular", "summary", "--store", str(path), "--out", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("| dataset | features |")
    assert (out / "tabular-summary.md").read_text().strip() == printed.strip()
    assert (out / "tabular-summary.csv").read_text().count("\n") == 1 + 16
    assert (out / "beyond-tabular.png").stat().st_size > 1000


def test_the_report_figure_draws_tabular_runs(tiny_store):
    pytest.importorskip("matplotlib")
    from dendritic.figures.specs import FIGURES, FigureInputs, Skip
    from dendritic.report.runs import load_runs

    path, *_ = tiny_store
    with RunStore(path, readonly=True) as store:
        inputs = FigureInputs(load_runs(store), None)
        fig = FIGURES["beyond-tabular"].draw(inputs)
    assert len([ax for ax in fig.axes if ax.get_visible()]) == 2
    empty = type("NoRuns", (), {"runs": [], "of": lambda self, *a: [], "epochs_of": lambda self, r: []})()
    with pytest.raises(Skip, match="needs runs of `dendritic tabular run`"):
        FIGURES["beyond-tabular"].draw(FigureInputs(empty, None))


def test_noise_features_make_the_asked_fraction():
    x, _ = load_dataset("breast-cancer")
    rng = np.random.default_rng(0)
    assert with_noise_features(x, 0.0, rng) is x
    half = with_noise_features(x, 0.5, rng)
    most = with_noise_features(x, 0.9, rng)
    assert half.shape[1] == 60 and most.shape[1] == 300
    np.testing.assert_array_equal(most[:, :30], x)
    noise = most[:, 30:]
    assert abs(noise.mean()) < 0.05 and abs(noise.std() - 1) < 0.05
    with pytest.raises(ValueError, match=r"in \[0, 0.99\]"):
        with_noise_features(x, 1.0, rng)


def test_matched_hidden_is_closest():
    for params, n_in, n_out in ((1667, 4, 3), (5834, 640, 10), (2625, 10, 1)):
        h = matched_hidden(params, n_in, n_out)
        counts = [w * (n_in + 1) + n_out * (w + 1) for w in range(1, 3 * h + 2)]
        assert abs(counts[h - 1] - params) == min(abs(c - params) for c in counts)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"folds": 1}, r"folds must be an integer in \[2, 100\], got 1"),
        ({"datasets": ("mnist",)}, "unknown dataset 'mnist'; choose from breast-cancer"),
        ({"models": ("svm",)}, "unknown model 'svm'"),
        ({"noise": (0.95, 1.0)}, r"noise fractions must be in \[0, 0.99\]"),
        ({"seeds": ()}, "at least one seed"),
        ({"epochs": 0}, "epochs must be an integer >= 1"),
        ({"lr": -1.0}, "lr must be a positive number"),
    ],
)
def test_bad_study_arguments_are_one_line_errors(kwargs, message):
    with pytest.raises(ValueError, match=message) as info:
        TabularStudy(**kwargs)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--seeds", "0"], "--seeds must be at least 1"),
        (["--seeds", "x"], "--seeds takes a count"),
        (["--datasets", "iris,foo"], "unknown dataset 'foo'"),
        (["--noise", "a"], "--noise takes fractions"),
        (["--folds", "1"], "--folds"),
    ],
)
def test_bad_command_lines_are_one_line_errors(argv, message, tmp_path, capsys):
    store = tmp_path / "never.db"
    try:
        code = main(["tabular", "run", "--store", str(store), *argv])
    except SystemExit as stop:  # argparse's own usage errors
        code = stop.code
    assert code in (1, 2)
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not store.exists()


def test_summary_of_an_empty_store_is_a_one_line_error(tmp_path, capsys):
    path = tmp_path / "empty.db"
    RunStore(path).close()
    assert main(["tabular", "summary", "--store", str(path)]) == 1
    assert "no finished tabular runs" in capsys.readouterr().err


def test_run_command_fits_and_resumes(tmp_path, capsys):
    store = tmp_path / "cli.db"
    argv = ["tabular", "run", "--store", str(store), "--datasets", "wine", "--models", "dendritic-local,hgb"]
    argv += ["--noise", "0.5", "--seeds", "3,4", "--folds", "2", "--epochs", "1", "--quiet"]
    assert main(argv) == 0
    assert capsys.readouterr().out.startswith("8 runs fitted, 0 already in")
    assert main(argv) == 0
    assert capsys.readouterr().out.startswith("0 runs fitted, 8 already in")
    with RunStore(store, readonly=True) as s:
        runs = s.list_runs(experiment="tabular")
    assert sorted({r["seed"] for r in runs}) == [3, 4]
    local = [r for r in runs if r["model"] == "dendritic-local"]
    assert {r["config"]["epochs"] for r in local} == {1} and {r["config"]["lr"] for r in local} == {0.01}


def test_parallel_study_records_the_same_fits(tmp_path, capsys):
    """--workers 2: (dataset, seed) parts in two processes, each writing its fits to the one
    store; the scores are those of the same fits in one process, and it resumes the same way."""
    import os

    argv = ["tabular", "run", "--datasets", "wine,iris", "--models", "dendritic-random,mlp", "--noise", "0",
            "--seeds", "1,2", "--folds", "2", "--epochs", "1", "--quiet"]  # fmt: skip
    scores = {}
    for workers in (1, 2):
        store = tmp_path / f"runs{workers}.db"
        assert main([*argv, "--store", str(store), "--workers", str(workers)]) == 0
        assert capsys.readouterr().out.startswith("16 runs fitted, 0 already in")
        with RunStore(store, readonly=True) as s:
            runs = s.list_runs(experiment="tabular", status="finished")
        assert len(runs) == 16
        assert {r["pid"] == os.getpid() for r in runs} == {workers == 1}
        scores[workers] = {
            (r["dataset"], r["model"], r["seed"], r["config"]["fold"]): r["test_accuracy"] for r in runs
        }
    assert scores[1] == scores[2]
    assert main([*argv, "--store", str(tmp_path / "runs2.db"), "--workers", "2"]) == 0
    assert capsys.readouterr().out.startswith("0 runs fitted, 16 already in")
    with pytest.raises(ValueError, match=r"workers must be an integer in \[1, 256\], got 0"):
        run_study(None, TINY, workers=0)


def test_the_tabular_table_is_written_beside_its_figure_and_shown_in_the_report(tiny_store, tmp_path):
    """`dendritic figures` writes beyond-tabular.csv/.md; the HTML report shows the table under the
    figure, drawn now or read from a figures folder (rendered in headless Chromium where there is one)."""
    import json
    import sys
    from pathlib import Path

    pytest.importorskip("matplotlib")
    from dendritic.report import build_report, make_figures

    path, *_ = tiny_store
    out = tmp_path / "figures"
    with RunStore(path, readonly=True) as store:
        result = make_figures(store, out, formats=("png",), only=["beyond-tabular"], download=False)
        assert set(result.figures) == {"beyond-tabular"}, result.skipped
        rows = (out / "beyond-tabular.csv").read_text().splitlines()
        assert len(rows) == 1 + 2 * 2 * len(MODELS)  # 2 datasets x 2 noise levels x the models
        table = (out / "beyond-tabular.md").read_text()
        assert "| iris | 50 | mlp | accuracy % |" in table and "| diabetes | 0 | hgb | R² |" in table
        manifest = json.loads((out / "figures.json").read_text())
        (entry,) = manifest["figures"]
        assert entry["table"]["header"][:4] == ["dataset", "uninformative %", "model", "metric"]
        assert len(entry["table"]["rows"]) == len(rows) - 1
        from_folder = build_report(store, tmp_path / "from-folder.html", figures_dir=out)
        drawn = build_report(store, tmp_path / "drawn.html")
    for report in (from_folder, drawn):
        page = report.read_text()
        assert 'id="beyond-tabular-table"' in page and "<td>diabetes</td>" in page
    # a damaged table in figures.json is a one-line error, not a broken page
    manifest["figures"][0]["table"]["rows"] = [[1, 2]]
    (out / "figures.json").write_text(json.dumps(manifest))
    with (
        RunStore(path, readonly=True) as store,
        pytest.raises(ValueError, match="is not title, header and rows"),
    ):
        build_report(store, tmp_path / "bad.html", figures_dir=out)
    sys.path.insert(0, str(Path(__file__).parent))
    from browser import assert_renders

    assert_renders(from_folder, images=1)
