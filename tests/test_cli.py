"""The command line: happy paths, and bad input as one line with a non-zero exit, no traceback."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dendritic.cli import main

sys.path.insert(0, str(Path(__file__).parent))
from fakedata import write_dataset  # noqa: E402


@pytest.fixture(autouse=True)
def _isolated(isolated_cache, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def data_dir(tmp_path):
    return write_dataset(tmp_path / "data", "mnist", n_train=300, n_test=100)


def _train_args(data_dir, *extra):
    return [
        "train", "--model", "dANN-R", "--dataset", "mnist", "--dendrites", "2", "--somata", "8",
        "--epochs", "2", "--data-dir", str(data_dir), "--quiet", *extra,
    ]  # fmt: skip


def test_train_prints_a_summary_and_records_the_run(data_dir, capsys, tmp_path):
    assert main(_train_args(data_dir, "--checkpoint", "model")) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1
    assert "test accuracy" in out[0] and "trainable parameters" in out[0] and "run 1 in runs.db" in out[0]
    assert (tmp_path / "model.safetensors").is_file() and (tmp_path / "model.json").is_file()

    assert main(["runs", "list"]) == 0
    listing = capsys.readouterr().out
    assert "dANN-R" in listing and "finished" in listing
    assert main(["runs", "show", "1"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["config"]["dendrites"] == 2 and len(shown["epochs"]) == 2
    assert main(["runs", "export", "--format", "csv", "--out", "all.csv", "--epochs"]) == 0
    with open(tmp_path / "all.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert rows[0]["model"] == "dANN-R" and rows[0]["status"] == "finished"
    assert (tmp_path / "all-epochs.csv").is_file()

    # The same run again is refused unless --replace; then it runs again.
    assert main(_train_args(data_dir)) == 1
    assert "already finished" in capsys.readouterr().err
    assert main(_train_args(data_dir, "--replace")) == 0


def _run_cli(*args, cwd):
    env = dict(os.environ, XDG_CACHE_HOME=str(Path(cwd) / "xdg"))
    return subprocess.run(
        [sys.executable, "-m", "dendritic.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=120,
    )


@pytest.mark.parametrize(
    "args,message",
    [
        (["train", "--model", "dANN-Q"], "unknown model 'dANN-Q'"),
        (["train", "--dataset", "imagenet"], "unknown dataset"),
        (["train", "--dendrites", "0"], "expected a positive integer"),
        (["train", "--somata", "many"], "expected a positive integer"),
        (["train", "--lr", "-1"], "expected a finite number in (0, 1000]"),
        (["train", "--dropout", "1.5"], "expected a finite number in [0, 1)"),
        (["train", "--synapses", "5000", "--epochs", "1"], "--synapses 5000 is larger than the input"),
        (["train", "--store", "/proc/nope/runs.db", "--epochs", "1"], "runs.db"),
        (["runs", "show", "99"], "cannot open run store runs.db: no such file"),
        (["train", "--device", "tpu"], "device"),
    ],
)
def test_errors_are_one_line_with_non_zero_exit(args, message, tmp_path, data_dir):
    if args[0] == "train":
        args = [*args, "--dataset", "mnist", "--data-dir", str(data_dir)] if "--dataset" not in args else args
    result = _run_cli(*args, cwd=tmp_path)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0]


def test_missing_dataset_is_one_line(tmp_path):
    result = _run_cli("train", "--dataset", "kmnist", "--data-dir", str(tmp_path / "empty"), cwd=tmp_path)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "--data-dir" in lines[0] and "empty does not exist" in lines[0]
    (tmp_path / "empty").mkdir()
    result = _run_cli("train", "--dataset", "kmnist", "--data-dir", str(tmp_path / "empty"), cwd=tmp_path)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1 and len(lines) == 1
    assert "Kuzushiji-MNIST (kmnist) not found in --data-dir" in lines[0] and "holds none" in lines[0]


def test_runs_show_unknown_id(tmp_path, data_dir, capsys):
    assert main(_train_args(data_dir)) == 0
    assert main(["runs", "show", "42"]) == 1
    assert "42" in capsys.readouterr().err


def test_help_lists_the_commands():
    result = subprocess.run([sys.executable, "-m", "dendritic.cli", "--help"], capture_output=True, text=True)
    assert result.returncode == 0
    for command in ("train", "runs", "demo"):
        assert command in result.stdout


def test_every_help_text_formats():
    """Every command's and subcommand's --help renders (no escaped '%%' left in a description,
    which argparse prints as is) and names its options."""
    import argparse

    from dendritic.cli.main import build_parser

    def walk(parser: argparse.ArgumentParser, path: tuple[str, ...]):
        yield path, parser
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, child in action.choices.items():
                    yield from walk(child, (*path, name))

    seen = 0
    for path, parser in walk(build_parser(), ()):
        text = parser.format_help()
        assert "%%" not in text and "%(" not in text, (path, text)
        assert "usage:" in text and "-h, --help" in text, path
        seen += 1
    assert seen > 20  # every command and action was visited


def test_library_errors_name_the_commands_flags():
    """A field the user set by a flag is named by that flag; prose and other names stay as they are."""
    from dendritic.cli.args import in_flag_terms
    from dendritic.cli.main import build_parser

    args = build_parser().parse_args(["train", "--model", "vANN"])
    said = in_flag_terms(
        "rewind_epoch only applies to lottery='rewind', got rewind_epoch=3 with lottery='finetune'; "
        "the model must be vANN; limit_scope is Python-only; early_stop is off",
        args,
    )
    assert said == (
        "--rewind-epoch only applies to --lottery rewind, got --rewind-epoch 3 with --lottery finetune; "
        "the model must be vANN; limit_scope is Python-only; --early-stop is off"
    )
    # a message that already names the flag keeps its Python spelling beside it
    assert in_flag_terms("pass --data-dir DIR (data_dir=DIR)", args) == "pass --data-dir DIR (data_dir=DIR)"
    assert in_flag_terms("batch_size=0", None) == "batch_size=0"
    # each command has its own flags: `rl run` has no --rewind-epoch
    rl = build_parser().parse_args(["rl", "run", "--task", "CartPole-v1"])
    assert in_flag_terms("rewind_epoch=3", rl) == "rewind_epoch=3"
