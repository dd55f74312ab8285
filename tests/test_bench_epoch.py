"""benchmarks/bench_epoch.py: FLOPs counting against hand-computed numbers, and a tiny end-to-end run."""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path

import pytest

from dendritic import build_model

sys.path.insert(0, str(Path(__file__).parent))
from fakedata import write_dataset  # noqa: E402

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_epoch.py"


def _load_bench():
    spec = importlib.util.spec_from_file_location("bench_epoch", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_epoch"] = module  # dataclass/annotation lookups need the module registered
    spec.loader.exec_module(module)
    return module


bench = _load_bench()


def test_flops_of_compact_dann_lrf():
    # D=2, S=4 on 28×28: 8 dendrites × 16 synapses = 128, 8 dendrite→soma cables, 4×10 output.
    model = build_model("dANN-LRF", (28, 28, 1), 10, 2, 4, seed=1)
    assert [bench.layer_macs(layer) for layer in bench.weight_layers(model)] == [128, 8, 40]
    flops = bench.flops_per_sample(model)
    assert flops["macs"] == 176
    assert flops["forward"] == 2 * (128 + 8 + 40) == 352
    # backward: first layer weight gradient only (1× its forward), the others 2× their forward
    assert flops["backward"] == 2 * 128 + 4 * (8 + 40) == 448
    assert flops["train_step"] == 800


def test_flops_of_masked_oracle_count_dense_products():
    model = build_model("dANN-LRF", (28, 28, 1), 10, 2, 4, seed=1, oracle=True)
    assert [bench.layer_macs(layer) for layer in bench.weight_layers(model)] == [784 * 8, 8 * 4, 4 * 10]
    flops = bench.flops_per_sample(model)
    assert flops["forward"] == 2 * (6272 + 32 + 40) == 12688
    assert flops["train_step"] == 12688 + 2 * 6272 + 4 * (32 + 40) == 25520


def test_flops_of_dense_models_agree_between_implementations():
    ours = bench.flops_per_sample(build_model("vANN", (28, 28, 1), 10, 2, 4, seed=1))
    masked = bench.flops_per_sample(build_model("vANN", (28, 28, 1), 10, 2, 4, seed=1, oracle=True))
    assert ours == masked
    assert ours["forward"] == 2 * (784 * 8 + 8 * 4 + 4 * 10)
    pdann = build_model("pdANN", (28, 28, 1), 10, 2, 4, seed=1)
    assert [bench.layer_macs(layer) for layer in bench.weight_layers(pdann)] == [784 * 8, 8, 40]


def test_size_parsing():
    assert bench._sizes("1x32,16X256") == [(1, 32), (16, 256)]
    with pytest.raises(argparse.ArgumentTypeError):
        bench._sizes("16-256")


def test_measure_end_to_end_on_tiny_data(tmp_path):
    data_dir = write_dataset(tmp_path / "data", "fmnist", n_train=300, n_test=100)
    common = {
        "model": "dANN-LRF",
        "dendrites": 2,
        "somata": 4,
        "threads": 1,
        "repeats": 1,
        "steps": 2,
        "full_epochs": True,
        "limit": None,
        "data_dir": str(data_dir),
    }
    ours = bench.measure({**common, "impl": "ours"})
    masked = bench.measure({**common, "impl": "masked"})

    assert ours["n_train"] == 270 and ours["n_val"] == 30 and ours["n_test"] == 100
    assert ours["steps_per_epoch"] == 3  # ceil(270 / 128)
    assert ours["epoch_source"] == "measured" and ours["epochs"]["epoch_s"] > 0
    assert ours["evaluation"]["eval_s"] > 0
    assert ours["flops"]["train_step"] == 800 and ours["params"] == masked["params"]
    assert ours["peak_mb"] >= ours["baseline_peak_mb"] > 0
    # the oracle is always estimated from steps and not evaluated
    assert masked["epoch_source"] == "from 2 steps" and "evaluation" not in masked
    assert masked["epoch_s"] == pytest.approx(3 * masked["step"]["step_s"])

    failed = {**common, "impl": "ours", "somata": 8, "error": "ValueError: boom"}
    args = bench.parse_args(["--limit", "300", "--repeats", "1"])
    report = bench.markdown_report(
        [ours, masked, failed], {**bench.machine_info(1), "load_end": (0.0, 0.0, 0.0)}, "cmd", args
    )
    assert "| dANN-LRF | 2 | 4 | " in report and "×" in report
    assert "| dANN-LRF | 2 | 8 | – | failed |" in report
    assert "**failed**: dANN-LRF (2, 8) ours: ValueError: boom" in report


def test_reuse_carries_unmeasured_rows_and_marks_them(tmp_path):
    row = {
        "model": "vANN", "dendrites": 1, "somata": 32, "impl": "masked", "threads": 1, "epoch_s": 1.5,
        "epoch_source": "from 9 steps", "peak_mb": 500.0, "params": 25450, "n_train": 54000,
        "flops": {"train_step": 100}, "gflops": 1.0, "steps_per_epoch": 422, "n_val": 6000, "n_test": 10000,
        "baseline_peak_mb": 400.0,
    }  # fmt: skip
    earlier = tmp_path / "earlier.json"
    earlier.write_text(
        json.dumps(
            {
                "command": "python benchmarks/bench_epoch.py --threads 1",
                "results": [
                    row,
                    {**row, "impl": "ours"},  # measured again now: not carried
                    {**row, "somata": 64, "threads": 2},  # another thread count: not carried
                    {**row, "somata": 128, "error": "boom"},  # failed rows are not carried
                ],
            }
        )
    )
    carried = bench.carried_results(earlier, 1, {("vANN", 1, 32, "ours")})
    assert [(r["model"], r["somata"], r["impl"]) for r in carried] == [("vANN", 32, "masked")]
    assert carried[0]["reused_from"]["file"] == str(earlier)
    assert "| 1.50 † |" in bench.markdown_table(carried)
    notes = bench.notes(carried, bench.parse_args([]))
    assert any("Carried over" in line and "earlier.json" in line for line in notes)
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(SystemExit, match="cannot reuse"):
        bench.carried_results(bad, 1, set())
