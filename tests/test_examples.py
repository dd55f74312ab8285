"""Every script in examples/ runs, on small data, as its docstring says (issue 13)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from fakedata import write_dataset  # noqa: E402

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
pytest.importorskip("sklearn")


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_example_has_a_test_and_a_command():
    names = {p.stem for p in EXAMPLES.glob("*.py")}
    assert names == {"tabular_breast_cancer", "cnn_head_fmnist", "digits_local_fields", "compile_dann",
                     "rl_cartpole", "sklearn_grid_search"}  # fmt: skip
    for path in EXAMPLES.glob("*.py"):
        assert f"python examples/{path.name}" in path.read_text(), path.name


def test_tabular_example_learns(capsys):
    results = _load("tabular_breast_cancer").main(["--epochs", "15"])
    assert results["dendritic"] > 0.85 and results["mlp"] > 0.85
    assert "dendritic: test accuracy" in capsys.readouterr().out


def test_sklearn_example_searches_a_pipeline(capsys):
    results = _load("sklearn_grid_search").main(["--epochs", "2"])
    assert set(results) == {"dendritic", "hgb"} and all(0.5 < v <= 1.0 for v in results.values())
    out = capsys.readouterr().out
    assert "best: {'dann__receptive_field':" in out and "held-out accuracy: dendritic" in out


def test_digits_example_compares_the_rules(capsys):
    results = _load("digits_local_fields").main(["--epochs", "8", "--seeds", "2"])
    assert set(results) == {"local", "global", "random"} and all(min(v) > 0.7 for v in results.values())


@pytest.fixture
def fmnist_like(tmp_path, isolated_cache):
    return write_dataset(tmp_path / "fmnist", "fmnist", n_train=2000, n_test=200)


def test_cnn_head_example_runs(fmnist_like, capsys):
    accuracy = _load("cnn_head_fmnist").main(["--data-dir", str(fmnist_like), "--epochs", "3"])
    assert accuracy > 0.5  # the generated classes are easy: 1,800 images, 3 epochs
    assert "the dendritic head (input_shape=(16, 7, 7)" in capsys.readouterr().out


def test_compile_example_trains_like_eager(fmnist_like, capsys):
    results = _load("compile_dann").main(
        ["--data-dir", str(fmnist_like), "--dendrites", "4", "--somata", "32"]
    )
    assert results["eager"] == results["compiled"]
    out = capsys.readouterr().out
    assert "ms per step" in out and "largest difference" in out


def test_an_example_runs_from_the_command_line(tmp_path):
    """As a user runs it: a fresh interpreter, the command from the docstring."""
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / "tabular_breast_cancer.py"), "--epochs", "3"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert "mlp: test accuracy" in result.stdout


def test_rl_example_runs_both_policies(capsys):
    pytest.importorskip("stable_baselines3")
    results = _load("rl_cartpole").main(["--steps", "512", "--episodes", "2"])
    assert set(results) == {"dendritic", "mlp"} and all(v > 0 for v in results.values())
    assert "dendritic: return" in capsys.readouterr().out
