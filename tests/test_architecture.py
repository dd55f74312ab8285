"""The architecture checks of ``make lint`` (pyproject.toml) pass on the code and catch a
violation: an import against the pipeline's direction, a missing annotation in the strictly typed
core, a print() in library code."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _tool(name: str) -> str:
    path = BIN / name
    if not path.exists():
        pytest.skip(f"{name} is not installed (pip install -e '.[test]')")
    return str(path)


@pytest.fixture
def tree(tmp_path):
    """A copy of the package and its configuration, to break on purpose."""
    shutil.copytree(ROOT / "src" / "dendritic", tmp_path / "src" / "dendritic",
                    ignore=shutil.ignore_patterns("*.so", "__pycache__"))  # fmt: skip
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def _append(path: Path, text: str) -> None:
    path.write_text(path.read_text() + text)


def _lint_imports(cwd: Path) -> subprocess.CompletedProcess:
    env = {"PYTHONPATH": str(cwd / "src"), "PATH": str(BIN)}
    return subprocess.run(
        [_tool("lint-imports"), "--no-cache"], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


def test_the_import_contracts_hold_and_an_upward_import_breaks_them(tree):
    kept = _lint_imports(tree)
    assert kept.returncode == 0, kept.stdout[-3000:]
    assert "0 broken" in kept.stdout
    # The analyses reach up into the command line: against the pipeline and the purity rule.
    _append(tree / "src/dendritic/analysis/stats.py", "\nfrom dendritic.cli.args import PROG  # noqa\n")
    broken = _lint_imports(tree)
    assert broken.returncode == 1
    assert "dendritic.analysis is not allowed to import dendritic.cli" in broken.stdout
    assert "BROKEN" in broken.stdout


def test_an_import_cycle_inside_a_package_breaks_the_contracts(tree):
    """``training/fit.py`` and ``training/loop.py`` once imported each other; a cycle like that
    (here planted between the engine and the loop) now fails ``make lint``."""
    _append(tree / "src/dendritic/training/engine.py", "\nfrom dendritic.training import loop  # noqa\n")
    broken = _lint_imports(tree)
    assert broken.returncode == 1
    assert "No import cycles inside a package" in broken.stdout and "BROKEN" in broken.stdout
    assert "in dendritic.training" in broken.stdout and ".engine -> .loop" in broken.stdout


_ROOT_IMPORTS = """
import json, sys
import grimp
graph = grimp.build_graph("dendritic", cache_dir=None)
packages = {m.rsplit(".", 1)[0] for m in graph.modules if "." in m}
print(json.dumps(sorted(
    (module, package)
    for package in packages
    for module in graph.find_descendants(package)
    if package in graph.find_modules_directly_imported_by(module)
)))
"""


def _imports_of_package_roots(src: Path) -> list[tuple[str, str]]:
    """(module, package) where a module imports the package it belongs to (its ``__init__``),
    which makes the package's order of imports circular. A fresh interpreter reads ``src``: in
    this one ``dendritic`` is already imported, and grimp would find that copy instead."""
    import json

    env = {"PYTHONPATH": str(src), "PATH": str(BIN)}
    done = subprocess.run(
        [sys.executable, "-c", _ROOT_IMPORTS], cwd=src, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return [tuple(pair) for pair in json.loads(done.stdout)]


def test_nothing_under_a_package_imports_its_root(tree):
    assert _imports_of_package_roots(ROOT / "src") == []
    _append(tree / "src/dendritic/store/queries.py", "\nfrom dendritic.store import RunStore  # noqa\n")
    _append(tree / "src/dendritic/models/spec.py", "\n\ndef _v():\n    import dendritic  # noqa\n")
    found = _imports_of_package_roots(tree / "src")
    assert ("dendritic.store.queries", "dendritic.store") in found
    assert ("dendritic.models.spec", "dendritic") in found


def _mypy(cwd: Path, target: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--no-incremental", "--follow-imports=silent", target],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_strict_core_rejects_an_unannotated_function(tmp_path):
    """With the project's mypy settings, a module of wiring (strict) must be fully annotated and
    one of sweeps (basic) need not be. (Empty parent packages keep this fast; the whole of src/
    passing is ``make lint``'s job.)"""
    pytest.importorskip("mypy")
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    for package in ("dendritic", "dendritic/wiring", "dendritic/sweeps"):
        (tmp_path / package).mkdir(exist_ok=True)
        (tmp_path / package / "__init__.py").write_text("")
    probe = tmp_path / "dendritic/wiring/probe.py"
    probe.write_text("def helper(x: int) -> int:\n    return x\n")
    kept = _mypy(tmp_path, "dendritic/wiring/probe.py")
    assert kept.returncode == 0, kept.stdout[-3000:]
    probe.write_text("def helper(x):\n    return x\n")
    broken = _mypy(tmp_path, "dendritic/wiring/probe.py")
    assert broken.returncode == 1
    assert "Function is missing a type annotation" in broken.stdout
    (tmp_path / "dendritic/sweeps/probe.py").write_text("def helper(x):\n    return x\n")
    assert _mypy(tmp_path, "dendritic/sweeps/probe.py").returncode == 0


def test_library_code_may_not_print(tree):
    ruff = [sys.executable, "-m", "ruff", "check", "--no-cache", "--select", "T20"]
    assert subprocess.run([*ruff, "src"], cwd=tree, capture_output=True).returncode == 0
    _append(tree / "src/dendritic/training/fit.py", "\nprint('epoch done')\n")
    _append(tree / "src/dendritic/cli/runs.py", "\nprint('the CLI may')\n")
    out = subprocess.run([*ruff, "src"], cwd=tree, capture_output=True, text=True)
    assert out.returncode == 1
    assert "src/dendritic/training/fit.py" in out.stdout and "T201" in out.stdout
    assert "cli/runs.py" not in out.stdout
