"""Figures, tables and `dendritic analyze` from a small synthetic store with two real checkpoints."""

from __future__ import annotations

import csv
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("matplotlib")
pytest.importorskip("sklearn")

from dendritic.analysis import group_runs  # noqa: E402
from dendritic.cli import main  # noqa: E402
from dendritic.data import clear_cache  # noqa: E402
from dendritic.figures import FIGURES, paper, table1, table2  # noqa: E402
from dendritic.figures.style import panel_axes  # noqa: E402
from dendritic.models import paper_parameter_count  # noqa: E402
from dendritic.report import experiment_of_run, is_experiment, load_runs, make_figures  # noqa: E402
from dendritic.store import RunStore  # noqa: E402
from dendritic.training import TrainConfig, train  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from fakedata import write_dataset  # noqa: E402

NO_CHECKPOINT = "run {} has no checkpoint; train with --checkpoint or a sweep with --checkpoints"
BASE_ACCURACY = {
    "dANN-R": 0.86,
    "dANN-LRF": 0.875,
    "dANN-GRF": 0.87,
    "pdANN": 0.865,
    "vANN": 0.855,
    "vANN-LRF": 0.86,
    "sANN": 0.85,
}


# ---------------------------------------------------------------- a synthetic store


def add_synthetic_run(store: RunStore, rng: np.random.Generator, epochs: int = 5, **config) -> int:
    """One finished run with plausible metrics: bigger is a bit better, dendrites help, vANN overfits."""
    cfg = TrainConfig(epochs=epochs, **config)
    d, s = cfg.dendrites, cfg.somata
    base_model = "vANN" if cfg.model.startswith("vANN-0") else cfg.model
    params = paper_parameter_count(base_model, d, s)
    acc = BASE_ACCURACY.get(base_model, 0.85) + 0.01 * math.log2(d) + 0.004 * math.log2(s / 8)
    acc -= 0.08 * cfg.sigma + (0.03 if cfg.sequential else 0.0)
    acc = min(acc + rng.normal(0, 0.003), 0.99)
    loss = 1.25 - acc + (0.04 if params > 20_000 else 0.0) + rng.normal(0, 0.004)
    best = int(rng.integers(2, epochs + 1))
    run_id = store.start_run(cfg.to_dict(), meta={"trainable_params": params, "host": "synthetic", "pid": 1})
    for e in range(1, epochs + 1):
        store.log_epoch(
            run_id,
            e,
            train_loss=loss * (1.6 - 0.12 * e),
            train_accuracy=min(acc + 0.01 * e - 0.03, 0.999),
            val_loss=loss + 0.01 * (e - best) ** 2,
            val_accuracy=acc - 0.002 * abs(e - best) + rng.normal(0, 0.002),
        )
    store.finish_run(run_id, test_accuracy=acc, test_loss=loss)
    return run_id


def fill_synthetic(
    store: RunStore, *, main: bool = True, noise: bool = True, sequential: bool = True
) -> None:
    rng = np.random.default_rng(0)
    if main:
        for model in BASE_ACCURACY:
            for d in (1, 2, 4):
                for s in (16, 32):
                    for seed in (1, 2):
                        add_synthetic_run(
                            store, rng, model=model, dataset="mnist", dendrites=d, somata=s, seed=seed
                        )
        for model in ("dANN-LRF", "vANN"):
            for d in (1, 4):
                for seed in (1, 2):
                    add_synthetic_run(
                        store, rng, model=model, dataset="kmnist", dendrites=d, somata=16, seed=seed
                    )
    for model in ("dANN-LRF", "vANN"):
        for s in (16, 32):
            for seed in (1, 2):
                if noise:
                    for sigma in (0.25, 0.5):
                        add_synthetic_run(
                            store,
                            rng,
                            model=model,
                            dataset="mnist",
                            dendrites=2,
                            somata=s,
                            seed=seed,
                            sigma=sigma,
                        )
                if sequential:
                    add_synthetic_run(
                        store,
                        rng,
                        model=model,
                        dataset="mnist",
                        dendrites=2,
                        somata=s,
                        seed=seed,
                        sequential=True,
                    )


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A store with main (2 datasets), noise and sequential runs, plus two real checkpointed runs."""
    root = tmp_path_factory.mktemp("figures")
    data_dir = write_dataset(root / "data", "mnist", n_train=300, n_test=100)
    clear_cache()
    store = RunStore(root / "runs.db")
    fill_synthetic(store)
    real = {}
    for model, d in (("dANN-LRF", 2), ("vANN", 1)):
        cfg = TrainConfig(model=model, dataset="mnist", dendrites=d, somata=8, epochs=4, seed=1)
        result = train(cfg, store=store, data_dir=data_dir, checkpoint=root / "ckpt" / model, download=False)
        real[model] = result.run_id
    store.close()
    yield {"root": root, "db": root / "runs.db", "data": data_dir, "real": real}
    clear_cache()


@pytest.fixture(scope="module")
def drawn(workspace):
    """make_figures on the workspace store, once for the module."""
    store = RunStore(workspace["db"], readonly=True)
    try:
        result = make_figures(
            store,
            workspace["root"] / "figures",
            data_dir=workspace["data"],
            tsne_samples=60,
            download=False,
            formats=("png",),  # PDFs: see test_figures_cli_select_on_test (rendering is the slow part)
        )
    finally:
        store.close()
    return result


@pytest.fixture
def groups(workspace):
    store = RunStore(workspace["db"], readonly=True)
    runs = load_runs(store)
    store.close()
    return runs


# ---------------------------------------------------------------- experiment recognition


def _run(experiment=None, **cfg):
    return {"model": cfg.pop("model", "dANN-R"), "experiment": experiment, "config": cfg}


def test_untagged_runs_are_recognised_by_their_config():
    """Runs stored before tags existed: the grids' rule (sweeps.experiment_of) classifies them."""
    assert experiment_of_run(_run()) == "main"
    assert experiment_of_run(_run(sigma=0.5)) == "noise"
    assert experiment_of_run(_run(sequential=True)) == "sequential"
    assert experiment_of_run(_run(model="vANN-0.5", dropout=0.5)) == "dropout"
    assert experiment_of_run(_run(model="dANN-R", dropout=0.5)) is None  # dropout is a vANN control only
    assert experiment_of_run(_run(lr=0.01)) == "lr"
    assert experiment_of_run(_run(early_stop=True)) == "early-stop"
    assert experiment_of_run(_run(layers=3)) == "depth"
    assert experiment_of_run(_run(sigma=0.5, lr=0.01)) is None  # mixed runs feed no figure
    assert not is_experiment(_run(sigma=0.5, lr=0.01), "noise")
    assert is_experiment(_run(lr=1e-3, sigma=0.0), "main")
    assert experiment_of_run(_run(model="my-cnn")) is None  # not a paper model: never in a figure
    assert experiment_of_run(_run(protocol="continual")) == "continual"


def test_tagged_runs_belong_to_their_tag():
    assert experiment_of_run(_run("noise", sigma=0.5)) == "noise"
    assert is_experiment(_run("lr", lr=0.01), "lr")
    assert not is_experiment(_run("demo"), "main")  # the demo's short runs are not main's
    assert not is_experiment(_run("main", model="my-cnn"), "noise")
    # The depth sweep's L = 1 grid point is main's: it counts for both, and a deep run only for depth.
    point = {"dendrites": 16, "somata": 256}
    assert is_experiment(_run("depth", layers=1, **point), "main")
    assert is_experiment(_run("depth", layers=1, **point), "depth")
    assert not is_experiment(_run("depth", layers=2, **point), "main")
    # Main-protocol runs of the studies beyond the paper that are not main-grid points stay out.
    assert is_experiment(_run("depth-deep", dendrites=16, somata=256), "main")
    assert not is_experiment(_run("depth-deep", model="vANN", dendrites=1, somata=87), "main")
    assert not is_experiment(_run("morphology", dendrites=64, somata=194, synapses=4), "main")
    assert not is_experiment(_run("morphology", dendrites=16, somata=211, synapses=8, branches=2), "main")
    with pytest.raises(ValueError, match="unknown experiment 'nope'"):
        is_experiment(_run(), "nope")


# ---------------------------------------------------------------- tables


def _hand_runs():
    """vANN best 0.90 at 10k params; dANN-LRF beats it at 3k (0.91) and 1k params does not (0.85)."""
    rows = []
    for model, d, params, acc in (
        ("vANN", 1, 10_000, 0.90),
        ("vANN", 2, 20_000, 0.89),
        ("dANN-LRF", 1, 1_000, 0.85),
        ("dANN-LRF", 2, 3_000, 0.91),
        ("dANN-LRF", 4, 6_000, 0.92),
    ):
        for seed, jitter in ((1, -0.001), (2, 0.001)):
            rows.append(
                {
                    "id": len(rows) + 1,
                    "status": "finished",
                    "model": model,
                    "dataset": "mnist",
                    "dendrites": d,
                    "somata": 16,
                    "seed": seed,
                    "trainable_params": params,
                    "test_accuracy": acc + jitter,
                    "test_loss": 1 - acc,
                    "val_accuracy": acc,
                    "val_loss": 1 - acc,
                    "best_epoch": 3,
                }
            )
    return rows


def test_table1_and_table2_follow_their_definitions(tmp_path):
    groups = {"mnist": group_runs(_hand_runs())}
    t1 = table1(groups)
    best = {(r["model"], r["criterion"]): r for r in t1.rows}
    assert best["dANN-LRF", "accuracy"]["dendrites"] == 4 and best["vANN", "accuracy"]["params"] == 10_000
    assert best["dANN-LRF", "accuracy"]["test_accuracy_mean"] == pytest.approx(0.92)
    configs = {model: len({(r["dendrites"], r["somata"]) for r in _hand_runs() if r["model"] == model})
               for model in ("dANN-LRF", "vANN")}  # fmt: skip
    assert {m: best[m, "accuracy"]["configs"] for m in configs} == configs  # how many it was searched over
    assert "| configs |" in t1.to_markdown()
    t2 = table2(groups)
    row = next(r for r in t2.rows if r["model"] == "dANN-LRF" and r["metric"] == "accuracy")
    assert row["params"] == 3_000 and row["vann_params"] == 10_000  # the cheapest match, not the best
    assert row["fewer_params_factor"] == pytest.approx(10_000 / 3_000)
    md = t2.to_markdown()
    assert "| dataset |" in md and "3.3×" in md and "3,000" in md
    with open(t1.write_csv(tmp_path / "t1.csv"), newline="") as handle:
        assert len(list(csv.DictReader(handle))) == len(t1.rows) == 4


def test_points_say_how_many_trials_stand_behind_them():
    """Issue 25: a point with fewer trials than the rest is hollow, each panel states n, and
    Table 2 gives the trials of the match and of vANN's best."""
    rows = _hand_runs()
    extra = [
        dict(r, id=100 + i, seed=3) for i, r in enumerate(rows) if r["seed"] == 1 and r["dendrites"] != 4
    ]
    groups = group_runs(rows + extra)  # three trials everywhere but dANN-LRF D=4 (two)
    row = next(
        r for r in table2({"mnist": groups}).rows if r["model"] == "dANN-LRF" and r["metric"] == "accuracy"
    )
    assert row["trials"] == 3 and row["vann_trials"] == 3
    fig = paper.fig2(groups)
    ax = fig.axes[0]
    assert any(t.get_text() == "n = 2–3 trials (hollow: < 3)" for t in ax.texts)
    hollow = [ln for ln in ax.get_lines() if ln.get_markerfacecolor() == "white" and len(ln.get_xdata())]
    assert [list(ln.get_xdata()) for ln in hollow] == [[6_000.0]]
    even = paper.fig2(group_runs(rows))
    assert any(t.get_text() == "n = 2 trials per point" for t in even.axes[0].texts)
    assert not [
        ln for ln in even.axes[0].get_lines() if ln.get_markerfacecolor() == "white" and len(ln.get_xdata())
    ]


# ---------------------------------------------------------------- the driver


def test_make_figures_writes_what_the_store_allows(drawn, workspace):
    out = workspace["root"] / "figures"
    drawn_names = set(drawn.figures)
    expected = {
        "fig2",
        "fig3",
        "fig4",
        "fig5",
        "fig6",
        "fig7",
        "supp-learning-curves",
        "supp-epochs-to-minimum",
        "supp-vann-x-curves",
        "supp-sann-differences",
        "supp-dataset-examples",
    }
    assert expected <= drawn_names, drawn.skipped
    for name in expected:
        path = out / f"{name}.png"
        assert path.is_file() and path.stat().st_size > 1000, path
    assert drawn.skipped["supp-dropout"] == "Dropout figure skipped: needs runs of `dendritic sweep dropout`"
    assert drawn.skipped["supp-lr"].endswith("needs runs of `dendritic sweep lr`")
    assert drawn.skipped["supp-early-stop"].endswith("`dendritic sweep early-stop`")
    assert drawn.skipped["supp-depth"].endswith("`dendritic sweep depth`")
    assert drawn_names | {k for k in drawn.skipped if k in FIGURES} == set(FIGURES)
    for name in ("table1", "table2"):
        assert (out / f"{name}.csv").stat().st_size > 100 and (out / f"{name}.md").stat().st_size > 100
    assert (out / "figures.json").is_file() and (out / "fig6-scores.csv").is_file()
    stats = (out / "fig6-anova.md").read_text(encoding="utf-8")
    assert "two-way ANOVA (model × layer)" in stats
    assert "| dANN-LRF | dendrites_1 | 1 |" in stats  # the per-model means table
    summary = (out / "fig5-summary.md").read_text(encoding="utf-8")
    assert summary.count("| dANN-LRF |") == 2 and summary.count("| vANN |") == 2  # two layers each
    assert (out / "fig5-summary.csv").is_file()
    assert stats.count("not computed") == 3  # one t-SNE per model and layer: no replicates
    assert set(drawn.analyses) == {"dANN-LRF", "vANN"}  # only models with a checkpoint
    assert {r["run"]["id"] for rs in drawn.analyses.values() for r in rs} == set(workspace["real"].values())


def test_fig6_statistics_with_replicates(tmp_path):
    """With replicate t-SNE runs the file holds each score's ANOVA and the pairwise model tests."""
    from dendritic.report.make import FiguresResult, _write_scores

    rng = np.random.default_rng(0)

    def analysis(shift):
        reps = lambda: [  # noqa: E731
            {
                "silhouette": shift + rng.normal(0, 0.01),
                "neighbourhood_hit": 0.8 + rng.normal(0, 0.01),
                "trustworthiness": 0.9 + rng.normal(0, 0.01),
            }
            for _ in range(3)
        ]
        return {
            "run": {"id": 1},
            "embedding": {"dendrites_1": {"repeats": reps()}, "somata_1": {"repeats": reps()}},
        }

    analyses = {"dANN-LRF": [analysis(0.3), analysis(0.3)], "vANN": [analysis(0.1), analysis(0.1)]}
    result = FiguresResult()
    _write_scores(tmp_path, analyses, result)
    text = (tmp_path / "fig6-anova.md").read_text(encoding="utf-8")
    assert "**silhouette**" in text and "| model |" in text
    assert "Pairwise Welch tests between models within each layer (2 tests, Bonferroni)" in text
    line = next(row for row in text.splitlines() if row.startswith("| dendrites_1 | dANN-LRF | vANN |"))
    assert float(line.split("|")[-2]) < 1e-6  # 0.3 vs 0.1 with sd 0.01: clearly different


def _count(fig) -> int:
    return len(panel_axes(fig))


def test_each_figure_has_its_panels(groups, drawn):
    """Panels of the figures make_figures drew (counted on the returned Figures, colorbars excluded)."""
    assert drawn.panels == {
        "fig2": 6,  # S = 8 (real runs), 16, 32 swept, neither 256 nor 512: the two largest → 2 + 2 × 2
        "fig3": 4,
        "fig4": 4,
        "fig5": 8,
        "fig6": 2 * 2 + 3,  # two models × two layers of t-SNE maps + three scores
        "fig7": 4,
        "supp-learning-curves": 2,
        "supp-epochs-to-minimum": 2,
        "supp-vann-x-curves": 4,  # (dANN-LRF, vANN-LRF), (pdANN, vANN)
        "supp-sann-differences": 2,  # (dANN-R, sANN): accuracy and loss heatmaps; colorbars not counted
        "supp-dataset-examples": 1,
    }
    main = group_runs(groups.of("main", "mnist"))
    noise = {0.0: main}
    noise.update(_split(group_runs(groups.of("noise"), ["sigma"]), "sigma"))
    seq = group_runs(groups.of("sequential"))
    assert _count(paper.fig7(noise, None)) == 2
    assert _count(paper.fig7(None, seq, main)) == 2
    fig = paper.supp_sann_differences(main)
    assert _count(fig) == 2 and len(fig.axes) == 4


def _split(groups, key):
    out = {}
    for g in groups:
        out.setdefault(g[key], []).append(g)
    return out


def test_supplementary_controls_render(groups):
    """Dropout, learning-rate, early-stopping and depth figures from hand-made groups."""
    main = group_runs(groups.of("main", "mnist"))
    rng = np.random.default_rng(1)
    store = RunStore(":memory:")
    for seed in (1, 2):
        add_synthetic_run(
            store, rng, model="vANN-0.5", dataset="mnist", dendrites=2, somata=16, dropout=0.5, seed=seed
        )
        add_synthetic_run(
            store, rng, model="dANN-LRF", dataset="mnist", dendrites=2, somata=16, lr=0.01, seed=seed
        )
        add_synthetic_run(
            store, rng, model="dANN-LRF", dataset="mnist", dendrites=2, somata=16, early_stop=True, seed=seed
        )
        for layers in (1, 2):
            add_synthetic_run(
                store,
                rng,
                model="dANN-LRF",
                dataset="mnist",
                dendrites=2,
                somata=16,
                layers=layers,
                seed=seed,
            )
    runs = load_runs(store)
    assert _count(paper.supp_dropout(group_runs(runs.of("dropout")) + main)) == 2
    assert _count(paper.supp_lr({0.01: group_runs(runs.of("lr")), 0.001: main})) == 4
    assert _count(paper.supp_early_stop(group_runs(runs.of("early-stop")))) == 3
    depth = group_runs(runs.of("depth") + runs.of("main"), ["layers"])
    assert _count(paper.supp_depth(depth)) == 3
    store.close()


def test_missing_sweeps_are_skipped_with_the_sweep_named(tmp_path):
    with RunStore(tmp_path / "noise.db") as store:
        fill_synthetic(store, main=False, sequential=False)
        result = make_figures(store, tmp_path / "out", formats=("png",), download=False)
    assert result.skipped["fig2"] == "Fig 2 skipped: needs runs of `dendritic sweep main`"
    assert result.skipped["fig5"] == "Fig 5 skipped: needs runs of `dendritic sweep main`"
    assert result.skipped["fig7 (sequential)"].endswith("needs runs of `dendritic sweep sequential`")
    assert set(result.figures) == {"fig7"}  # the noise half, without σ = 0 from main
    assert (tmp_path / "out" / "fig7.png").stat().st_size > 1000
    assert (tmp_path / "out" / "table1.md").is_file()  # tables are written even when empty

    with RunStore(tmp_path / "empty.db") as store:
        result = make_figures(store, tmp_path / "empty", formats=("png",), download=False)
    assert not result.figures
    assert result.skipped["fig7"] == (
        "Fig 7 skipped: needs runs of `dendritic sweep noise` or `dendritic sweep sequential`"
    )


# ---------------------------------------------------------------- command line


def test_analyze_a_real_run(workspace, capsys, tmp_path):
    run_id = workspace["real"]["dANN-LRF"]
    out = tmp_path / "analysis"
    argv = ["analyze", str(run_id), "--store", str(workspace["db"]), "--out", str(out)]
    assert (
        main([*argv, "--data-dir", str(workspace["data"]), "--tsne-samples", "40", "--tsne-repeats", "2"])
        == 0
    )
    text = capsys.readouterr().out
    assert (
        f"run {run_id}: dANN-LRF on mnist" in text and "entropy median" in text and "trustworthiness" in text
    )
    for name in ("analysis.json", "arrays.npz", "entropy.png", "selectivity.png", "weights.png", "tsne.png"):
        assert (out / name).stat().st_size > 0, name
    import json

    doc = json.loads((out / "analysis.json").read_text())
    assert set(doc["activity"]) == {"dendrites_1", "somata_1"}
    assert set(doc["weights"]) == {"dendrites_1", "somata_1", "output"}
    assert doc["weights"]["dendrites_1"]["n"] == 2 * 8 * 16  # real connections only
    assert doc["test"]["accuracy"] == pytest.approx(doc["run"]["test_accuracy"])
    emb = doc["embedding"]["somata_1"]
    assert 0 <= emb["trustworthiness"] <= 1 and emb["n_samples"] == 40 and emb["init"] == "random"
    first, second = emb["repeats"]  # random initialisations: the repeats differ
    assert (first["seed"], second["seed"]) == (0, 1) and first["silhouette"] != second["silhouette"]
    arrays = np.load(out / "arrays.npz")
    assert arrays["hits__somata_1"].shape == (10, 8)


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def test_cli_bad_input_is_one_line(workspace, capsys, tmp_path):
    db = str(workspace["db"])
    assert main(["analyze", "1", "--store", db, "--out", str(tmp_path / "a")]) == 1
    assert _one_line_error(capsys) == "dendritic: error: " + NO_CHECKPOINT.format(1)
    assert main(["analyze", "9999", "--store", db]) == 1
    assert _one_line_error(capsys) == "dendritic: error: no run with id 9999"
    missing = str(tmp_path / "nope.db")
    for argv in (
        ["analyze", "1", "--store", missing],
        ["figures", "--store", missing, "--out", str(tmp_path / "f")],
        ["report", "--store", missing, "--out", str(tmp_path / "r.html")],
    ):
        assert main(argv) == 1
        line = _one_line_error(capsys)
        assert line.startswith("dendritic: error: cannot open run store") and "no such file" in line
    assert main(["figures", "--store", db, "--only", "fig9", "--out", str(tmp_path / "f")]) == 1
    assert "unknown figure(s) fig9" in _one_line_error(capsys)
    assert not (tmp_path / "a").exists()


def test_figures_cli_select_on_test(workspace, capsys, tmp_path):
    out = tmp_path / "f"
    argv = ["figures", "--store", str(workspace["db"]), "--out", str(out), "--only", "fig3", "--quiet"]
    assert main([*argv, "--select-on", "test"]) == 0
    text = capsys.readouterr().out
    assert "1 figures and 2 tables" in text
    assert (out / "fig3.png").stat().st_size > 1000 and (out / "fig3.pdf").read_bytes()[:5] == b"%PDF-"
    assert not (out / "fig2.png").exists()
    assert "chosen on the test split" in (out / "table1.md").read_text()


def test_analyses_in_worker_processes_match_the_serial_ones(drawn, workspace, tmp_path, caplog):
    """``workers=2`` analyses the checkpoints in fresh processes; the Fig 5 numbers and the
    t-SNE scores come back identical and in the same order."""
    store = RunStore(workspace["db"], readonly=True)
    caplog.set_level("INFO", logger="dendritic.figures")
    try:
        result = make_figures(
            store,
            tmp_path / "figures",
            data_dir=workspace["data"],
            tsne_samples=60,
            download=False,
            formats=("png",),
            only=["fig5", "fig6"],
            workers=2,
        )
    finally:
        store.close()
    assert set(result.figures) == {"fig5", "fig6"}
    assert any("in 2 processes" in r.getMessage() for r in caplog.records), caplog.text
    serial = (workspace["root"] / "figures" / "fig5-summary.csv").read_text(encoding="utf-8")
    assert (tmp_path / "figures" / "fig5-summary.csv").read_text(encoding="utf-8") == serial
    scores = (workspace["root"] / "figures" / "fig6-scores.csv").read_text(encoding="utf-8")
    assert (tmp_path / "figures" / "fig6-scores.csv").read_text(encoding="utf-8") == scores
    with pytest.raises(ValueError, match="workers must be at least 1"):
        make_figures(None, tmp_path / "x", workers=0)


def test_tables_use_one_optimizer_and_say_which(tmp_path):
    """Runs of Keras's and torch's Adam never mix: the tables take Keras's (the paper's) when the
    store has any, note the runs left out, and --optimizer adam-torch shows the others."""
    from dendritic.report.runs import load_runs

    rng = np.random.default_rng(3)
    with RunStore(tmp_path / "mixed.db") as store:
        for optimizer in ("adam-keras", "adam-torch"):
            for seed in (1, 2):
                add_synthetic_run(store, rng, model="dANN-LRF", dataset="mnist", dendrites=2, somata=16,
                                  seed=seed, optimizer=optimizer)  # fmt: skip
        legacy = TrainConfig(model="vANN", dataset="mnist", dendrites=1, somata=16, epochs=5).to_dict()
        del legacy["optimizer"]  # recorded before the field existed: torch's Adam
        rid = store.start_run(legacy)
        store.log_epoch(rid, 1, val_loss=1.0, val_accuracy=0.5)
        store.finish_run(rid, test_accuracy=0.5, test_loss=1.0)
        keras = load_runs(store)
        assert (
            keras.optimizer == "adam-keras" and len(keras.runs) == 2 and keras.left_out == {"adam-torch": 3}
        )
        assert "3 finished run(s) trained with adam-torch are left out" in keras.optimizer_note()
        torch_runs = load_runs(store, optimizer="adam-torch")
        assert len(torch_runs.runs) == 3 and {r["model"] for r in torch_runs.runs} == {"dANN-LRF", "vANN"}
        result = make_figures(store, tmp_path / "f", only=["fig3"], formats=["png"])
        assert "Runs trained with adam-keras" in result.tables["table1"].note
        assert json.loads((tmp_path / "f" / "figures.json").read_text())["optimizer"] == "adam-keras"
