"""`dendritic report`: one self-contained HTML page, checked as text and in headless Chromium."""

from __future__ import annotations

import html
import re
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("matplotlib")
pytest.importorskip("sklearn")

from dendritic.cli import main  # noqa: E402
from dendritic.report import (  # noqa: E402
    build_report,
    make_figures,  # noqa: E402
    run_counts,
)
from dendritic.store import RunStore  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from browser import CHROMIUM, render  # noqa: E402
from test_figures import add_synthetic_run  # noqa: E402

HEADINGS = ("Dendritic ANNs — results report", "Runs", "Tables", "Figures", "Not drawn", "Environment")


@pytest.fixture(scope="module")
def store_path(tmp_path_factory):
    """Main runs of three models, noise runs, a failed run and an unfinished one."""
    root = tmp_path_factory.mktemp("report")
    rng = np.random.default_rng(3)
    with RunStore(root / "runs.db") as store:
        for model in ("dANN-LRF", "vANN", "pdANN"):
            for d in (1, 4):
                for seed in (1, 2):
                    add_synthetic_run(
                        store, rng, model=model, dataset="mnist", dendrites=d, somata=16, seed=seed
                    )
                    add_synthetic_run(
                        store, rng, model=model, dataset="mnist", dendrites=d, somata=16, seed=seed, sigma=0.5
                    )
        failed = store.start_run(
            {"model": "dANN-R", "dataset": "mnist", "dendrites": 2, "somata": 16, "seed": 1}
        )
        store.fail_run(failed, "out of memory")
        store.start_run(
            {"model": "dANN-R", "dataset": "mnist", "dendrites": 4, "somata": 16, "seed": 1},
            meta={"host": "elsewhere", "pid": 1},
        )
        for scenario in ("class-il", "task-il"):
            for model, d, s in (("dANN-LRF", 2, 8), ("vANN", 1, 3)):
                for seed in (1, 2):
                    add_continual_run(
                        store, rng, scenario=scenario, model=model, dendrites=d, somata=s, seed=seed
                    )
    return root / "runs.db"


def add_continual_run(store, rng, **settings):
    """A finished 2-task split run as `dendritic continual` stores it, with a random matrix."""
    from dendritic.continual import ContinualConfig, ContinualResult, summarize

    config = ContinualConfig(benchmark="split", dataset="mnist", tasks=2, epochs_per_task=1, **settings)
    matrix = rng.uniform(0.2, 1.0, size=(2, 2)).tolist()
    baseline = [0.5, 0.5]
    result = ContinualResult(config, matrix, baseline, summarize(matrix, baseline), [], 100, 1.0)
    run_id = store.start_run(config.to_dict())
    store.finish_run(
        run_id, test_accuracy=result.metrics["acc"], trainable_params=100, extra=result.store_extra()
    )
    return result


@pytest.fixture(scope="module")
def report(store_path):
    """Figures drawn once into a folder (PNG only), then the report embedding them."""
    root = store_path.parent
    with RunStore(store_path, readonly=True) as store:
        make_figures(store, root / "figures", formats=("png",), only=["fig2", "fig7"], download=False)
        path = build_report(store, root / "report.html", figures_dir=root / "figures")
    return path


def test_report_is_one_self_contained_page(report, store_path):
    text = report.read_text(encoding="utf-8")
    shown = html.unescape(text)
    for heading in HEADINGS:
        assert heading in text
    # Fig 2, Fig 7 and the continual section: two heat-map figures and the forgetting plot
    assert text.count('<img src="data:image/png;base64,') == 5
    assert '<h2 id="continual">Continual learning</h2>' in text
    assert "split mnist, 2 tasks × 1 epochs" in shown
    assert "Table 1 — best configuration" in text and "Table 2 — trainable parameters" in text
    assert "Fig 7 sequential panels skipped: needs runs of `dendritic sweep sequential`" in shown
    # nothing is fetched from anywhere: no URLs in src/href other than in-page anchors and data URIs
    for attr in re.findall(r'(?:src|href)="([^"]*)"', text):
        assert attr.startswith(("#", "data:image/png;base64,")), attr
    assert "<link" not in text and "@import" not in text and "url(" not in text
    import torch

    import dendritic

    assert f"<td>torch</td><td>{torch.__version__}</td>" in text
    assert f"dendritic {dendritic.__version__}" in text and "generated (UTC)" in text


def test_run_counts_by_experiment_and_status(store_path):
    with RunStore(store_path, readonly=True) as store:
        counts = run_counts(store.list_runs())
    assert counts["main"] == {"finished": 12, "failed": 1, "running": 1}
    assert counts["noise"] == {"finished": 12}
    assert counts["continual"] == {"finished": 8}  # counted apart, never as main runs
    assert "sequential" not in counts


def test_report_cli_draws_figures_when_no_folder_is_given(tmp_path, capsys):
    rng = np.random.default_rng(4)
    with RunStore(tmp_path / "seq.db") as store:
        for model in ("dANN-LRF", "vANN"):
            for seed in (1, 2):
                add_synthetic_run(
                    store,
                    rng,
                    model=model,
                    dataset="mnist",
                    dendrites=2,
                    somata=16,
                    seed=seed,
                    sequential=True,
                )
    out = tmp_path / "out" / "report.html"
    assert main(["report", "--store", str(tmp_path / "seq.db"), "--out", str(out), "--quiet"]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    text = out.read_text(encoding="utf-8")
    assert text.count("data:image/png;base64,") == 1  # Fig 7, sequential panels only
    assert "Fig 2 skipped: needs runs of `dendritic sweep main`" in html.unescape(text)
    assert main(["report", "--store", str(tmp_path / "seq.db"), "--figures", str(tmp_path / "none")]) == 1
    assert (
        capsys.readouterr().err.strip() == f"dendritic: error: --figures {tmp_path / 'none'} does not exist"
    )


def test_continual_runs_form_comparisons(store_path):
    from dendritic.continual import comparisons_from_runs
    from dendritic.report.runs import load_runs

    with RunStore(store_path, readonly=True) as store:
        runs = store.list_runs()
        assert not any(r["config"].get("protocol") == "continual" for r in load_runs(store).of("main"))
    ((title, comparison),) = comparisons_from_runs(runs)
    assert title == "split mnist, 2 tasks × 1 epochs"
    assert [(r.scenario, r.model, r.seeds) for r in comparison.rows] == [
        ("class-il", "dANN-LRF", [1, 2]),
        ("class-il", "vANN", [1, 2]),
        ("task-il", "dANN-LRF", [1, 2]),
        ("task-il", "vANN", [1, 2]),
    ]
    runs_of = [r for r in runs if r["config"].get("protocol") == "continual"]
    accs = [
        r["extra"]["acc"] for r in runs_of if r["model"] == "vANN" and r["config"]["scenario"] == "task-il"
    ]
    mean, sd = comparison.rows[3].stats["acc"]
    assert mean == pytest.approx(np.mean(accs)) and sd == pytest.approx(np.std(accs, ddof=1))


@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (apt-get install chromium)")
def test_report_renders_in_headless_chromium(report):
    """The page loads in a real browser: exit 0, the headings in the DOM, every image decoded,
    and no console error (console messages reach stderr with --enable-logging=stderr)."""
    proc, console = render(report)
    assert proc.returncode == 0, proc.stderr[-2000:]
    dom = proc.stdout
    for heading in HEADINGS:
        assert heading in dom
    assert 'data-images="5"' in dom and 'data-images-decoded="5"' in dom, dom[:500]
    assert any("dendritic report loaded: 5/5 images decoded" in line for line in console), proc.stderr[-2000:]
    errors = [line for line in console if "dendritic report loaded" not in line]
    assert not errors, errors
