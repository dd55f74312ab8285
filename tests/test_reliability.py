"""Issue 12: nothing a user types can lose results, mislabel data or read outside its folder.

One regression test per defect found by probing the CLI (the same inputs), and a fuzz-style
sweep over every numeric and path argument of every command. Each bad input must end in one
line on stderr, a non-zero exit, no traceback, and a results store that is byte-identical.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dendritic.cli import build_parser, main
from dendritic.store import RunStore

sys.path.insert(0, str(Path(__file__).parent))
from fakedata import write_dataset  # noqa: E402

FMNIST_DEBIAN = Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture(autouse=True)
def _workspace(isolated_cache, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def data_dir(tmp_path):
    return write_dataset(tmp_path / "data", "mnist", n_train=300, n_test=100)


@pytest.fixture
def store(tmp_path):
    """runs.db in the working folder (every command's default) with two finished runs."""
    path = tmp_path / "runs.db"
    with RunStore(path) as s:
        for seed in (1, 2):
            rid = s.start_run(
                {"model": "dANN-R", "dataset": "mnist", "dendrites": 2, "somata": 8, "seed": seed}
            )
            s.log_epoch(rid, 1, train_loss=1.0, val_loss=1.1, val_accuracy=0.5)
            s.finish_run(rid, test_accuracy=0.5 + seed / 100, test_loss=1.0)
    return path


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _fails_in_one_line(capsys, argv: list[str], *, code: int | None = None, expect: str = "") -> str:
    """Run the CLI in-process; it must exit non-zero with one stderr line and no traceback."""
    try:
        rc = main(argv)
    except SystemExit as exc:  # argparse usage errors
        rc = exc.code
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert rc not in (0, None), f"{argv} exited 0"
    if code is not None:
        assert rc == code, (argv, rc, err)
    assert "Traceback" not in err
    assert len(lines) == 1, (argv, err)
    assert lines[0].startswith("dendritic"), lines[0]
    assert expect in lines[0], (expect, lines[0])
    return lines[0]


def _train(data_dir, *extra) -> list[str]:
    return ["train", "--model", "dANN-R", "--dataset", "mnist", "--dendrites", "2", "--somata", "8",
            "--epochs", "1", "--data-dir", str(data_dir), "--quiet", *extra]  # fmt: skip


@contextlib.contextmanager
def read_only_view(folder: Path, tmp_path: Path):
    """``folder`` seen through a read-only bind mount (real read-only media; needs root)."""
    view = tmp_path / f"ro-{folder.name}"
    view.mkdir()
    if subprocess.run(["mount", "--bind", str(folder), str(view)], capture_output=True).returncode:
        pytest.skip("cannot bind-mount here (needs root)")
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(view)], check=True, capture_output=True)
        yield view
    finally:
        subprocess.run(["umount", str(view)], check=True)


# ---------------------------------------------------------------- 1. data loss


@pytest.mark.parametrize("fmt", ["csv", "json", "parquet"])
def test_export_onto_the_store_is_refused_and_the_store_kept(store, capsys, fmt):
    before = _digest(store)
    _fails_in_one_line(capsys, ["runs", "export", "--store", "runs.db", "--out", "runs.db", "--format", fmt],
                       expect="refusing to overwrite")  # fmt: skip
    assert _digest(store) == before
    os.symlink("runs.db", "link.csv")  # the same file by another name
    _fails_in_one_line(capsys, ["runs", "export", "--out", "link.csv", "--format", fmt], expect="refusing")
    assert _digest(store) == before and len(RunStore(store, readonly=True)) == 2


def test_report_onto_the_store_is_refused_and_the_store_kept(store, capsys):
    pytest.importorskip("matplotlib")
    before = _digest(store)
    _fails_in_one_line(
        capsys, ["report", "--store", "runs.db", "--out", "runs.db"], expect="refusing to overwrite"
    )
    _fails_in_one_line(
        capsys, ["figures", "--store", "runs.db", "--out", "runs.db"], expect="refusing to overwrite"
    )
    assert _digest(store) == before


def test_export_writes_atomically_and_parquet_works(store, capsys):
    pytest.importorskip("pyarrow")
    assert main(["runs", "export", "--format", "parquet", "--out", "all.parquet", "--epochs"]) == 0
    import pyarrow.parquet as pq

    assert pq.read_table("all.parquet").num_rows == 2 and pq.read_table("all-epochs.parquet").num_rows == 2
    assert not [p for p in Path().iterdir() if ".tmp" in p.name]


# ---------------------------------------------------------------- 2. mislabelled science


@pytest.mark.parametrize(
    "make,reason",
    [
        (lambda d: None, "does not exist"),
        (lambda d: d.write_text("x"), "is a file, not a folder"),
        (lambda d: d.mkdir(), "holds none of the dataset's files"),
        (
            lambda d: (
                write_dataset(d, "mnist", n_train=100, n_test=50),
                (d / "t10k-labels-idx1-ubyte.gz").unlink(),
            ),
            "lacks t10k-labels-idx1-ubyte",
        ),
    ],  # fmt: skip
    ids=["missing", "a-file", "empty", "a-file-missing"],
)
def test_a_bad_data_dir_never_falls_back_to_another_copy(tmp_path, capsys, make, reason):
    from dendritic.data import sources

    write_dataset(sources.cache_dir() / "mnist", "mnist", n_train=300, n_test=100)  # a copy elsewhere
    make(tmp_path / "given")
    _fails_in_one_line(capsys, _train(tmp_path / "given"), code=1, expect=reason)
    assert not Path("runs.db").exists() or not RunStore("runs.db", readonly=True).list_runs(status="finished")


def test_another_datasets_files_are_refused(tmp_path, capsys, monkeypatch, data_dir):
    """`train --dataset mnist --data-dir <Fashion-MNIST>`: refused by digest, never recorded as mnist."""
    from dendritic.data import loading

    if FMNIST_DEBIAN.is_dir():  # the very input of the report
        _fails_in_one_line(
            capsys, _train(FMNIST_DEBIAN), code=1, expect="is Fashion-MNIST's train images file"
        )
    # The same on generated files, wherever Debian's package is missing.
    content = gzip.decompress((data_dir / "train-images-idx3-ubyte.gz").read_bytes())
    monkeypatch.setitem(loading._BY_CONTENT, hashlib.sha256(content).hexdigest(), ("fmnist", "train_images"))
    _fails_in_one_line(capsys, _train(data_dir), code=1, expect="not MNIST's train images")
    assert not Path("runs.db").exists() or len(RunStore("runs.db", readonly=True)) == 0


def test_every_run_records_its_datas_provenance(data_dir, capsys):
    assert main(_train(data_dir)) == 0
    capsys.readouterr()
    assert main(["runs", "show", "1"]) == 0
    shown = json.loads(capsys.readouterr().out)
    files = {f["part"]: f for f in shown["data"]["files"]}
    path = data_dir / "train-images-idx3-ubyte.gz"
    assert files["train_images"]["file"] == str(path)
    assert files["train_images"]["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert shown["data"]["dataset"] == "mnist" and shown["data"]["verified"] is False


# ---------------------------------------------------------------- 3. work thrown away


@pytest.mark.parametrize(
    "target,message",
    [("afile/ck", "afile is a file, not a folder"), ("", "is empty"), ("ckdir/", "names a folder")],
)
def test_a_bad_checkpoint_path_fails_before_training(data_dir, capsys, target, message):
    Path("afile").write_text("x")
    started = time.perf_counter()
    _fails_in_one_line(capsys, _train(data_dir, "--checkpoint", target), code=1, expect=message)
    assert time.perf_counter() - started < 5
    assert not Path("runs.db").exists()  # nothing trained, nothing recorded


def test_an_unwritable_checkpoint_folder_fails_before_training(data_dir, capsys, tmp_path):
    (tmp_path / "shelf").mkdir()
    with read_only_view(tmp_path / "shelf", tmp_path) as ro:
        _fails_in_one_line(
            capsys, _train(data_dir, "--checkpoint", str(ro / "ck")), code=1, expect="not writable"
        )
    assert not Path("runs.db").exists()


def test_a_killed_replace_keeps_the_finished_result(tmp_path):
    """`--replace` runs in a row of its own; SIGKILL leaves the old result and checkpoint link."""
    from dendritic.training import TrainConfig

    data = write_dataset(tmp_path / "big", "mnist", n_train=3000, n_test=200)
    argv = ["-m", "dendritic.cli", "train", "--model", "vANN", "--dataset", "mnist", "--dendrites", "4",
            "--somata", "256", "--epochs", "15", "--threads", "1", "--data-dir", str(data), "--quiet",
            "--checkpoint", "ck", "--replace"]  # fmt: skip
    config = TrainConfig(model="vANN", dataset="mnist", dendrites=4, somata=256, epochs=15).to_dict()
    with RunStore("runs.db") as s:  # the finished result a user has (as `train` would record it)
        old_id = s.start_run(config)
        s.log_epoch(old_id, 1, train_loss=0.5)
        s.finish_run(old_id, test_accuracy=0.875, test_loss=0.4, checkpoint="old/ck.json")
        old = s.get_run(old_id)
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "xdg"))
    proc = subprocess.Popen([sys.executable, *argv], env=env, cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # wait until the replacement has logged an epoch
            with RunStore("runs.db", readonly=True) as s:
                if any(r["id"] != old_id and r["epochs_run"] for r in s.list_runs()):
                    break
            time.sleep(0.05)
        else:
            pytest.fail("the replacement run never logged an epoch")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    with RunStore("runs.db", readonly=True) as s:
        kept = s.get_run(old_id)
        assert kept["status"] == "finished" and kept["epochs_run"] == 1
        assert (kept["test_accuracy"], kept["checkpoint"]) == (0.875, "old/ck.json")
        assert s.finished_keys() == {old["key"]} and s.find(config)["id"] == old_id
        (other,) = [r for r in s.list_runs() if r["id"] != old_id]
        assert other["status"] == "interrupted" and other["test_accuracy"] is None
    # The next --replace finishes, and only then takes the old row's place.
    subprocess.run(
        [sys.executable, *argv], check=True, env=env, cwd=tmp_path, capture_output=True, timeout=300
    )
    with RunStore("runs.db", readonly=True) as s:
        (final,) = s.list_runs()
        assert final["key"] == old["key"] and final["status"] == "finished" and final["epochs_run"] == 15
        assert final["checkpoint"] == str(tmp_path / "ck.json") and final["attempts"] == 3
        assert len(s.epochs(final["id"])) == 15


# ---------------------------------------------------------------- 4. read-only stores


def test_read_commands_open_a_store_on_read_only_media(store, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    pytest.importorskip("sklearn")
    before = _digest(store)
    shelf = tmp_path / "shelf"
    shelf.mkdir()
    store.rename(shelf / "runs.db")
    with read_only_view(shelf, tmp_path) as ro:
        published = str(ro / "runs.db")
        assert main(["runs", "list", "--store", published]) == 0
        assert "dANN-R" in capsys.readouterr().out
        assert main(["runs", "show", "2", "--store", published]) == 0
        assert json.loads(capsys.readouterr().out)["seed"] == 2
        assert main(["runs", "export", "--store", published, "--out", "all.json"]) == 0
        assert main(["figures", "--store", published, "--out", "figs", "--quiet", "--format", "png"]) == 0
        assert main(["report", "--store", published, "--out", "report.html", "--quiet"]) == 0
        capsys.readouterr()
        assert _digest(ro / "runs.db") == before
    assert len(json.loads(Path("all.json").read_text())) == 2 and Path("report.html").stat().st_size > 1000


# ---------------------------------------------------------------- 5. reads outside its folder


@pytest.mark.parametrize("name", ["../secret", "/ABS/secret", "sub/../../secret", "link"])
def test_report_never_embeds_a_file_from_outside_the_figures_folder(store, tmp_path, capsys, name):
    pytest.importorskip("matplotlib")
    secret = b"\x89PNG\r\n\x1a\nTOP-SECRET"
    (tmp_path / "secret.png").write_bytes(secret)
    figs = tmp_path / "figs"
    figs.mkdir()
    if name == "link":
        (figs / "link.png").symlink_to(tmp_path / "secret.png")
    name = name.replace("/ABS", str(tmp_path))
    manifest = {"figures": [{"name": name, "label": "x", "caption": "y"}], "skipped": {}, "notes": []}
    (figs / "figures.json").write_text(json.dumps(manifest))
    _fails_in_one_line(capsys, ["report", "--figures", str(figs), "--out", "r.html"], code=1,
                       expect="outside" if name == "link" else "not a plain file name")  # fmt: skip
    assert not Path("r.html").exists()


def test_a_hostile_figures_manifest_is_one_line(store, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    figs = tmp_path / "figs"
    figs.mkdir()
    for text, expect in (
        ("[" * 50_000, "nested too deeply"),
        ('{"figures": "x"}', "not a figures manifest"),
        ('{"figures": [], "notes": NaN}', "not valid JSON"),
    ):
        (figs / "figures.json").write_text(text)
        _fails_in_one_line(
            capsys, ["report", "--figures", str(figs), "--out", "r.html"], code=1, expect=expect
        )


# ---------------------------------------------------------------- 6. untrusted sizes


def _checkpointed_run(data_dir) -> tuple[Path, Path]:
    assert main(_train(data_dir, "--checkpoint", "ck")) == 0
    return Path("ck.json"), Path("ck.safetensors")


def test_a_lying_checkpoint_is_refused_before_allocation_by_analyze(data_dir, capsys):
    pytest.importorskip("sklearn")
    from dendritic.models import checkpoint

    json_path, _ = _checkpointed_run(data_dir)
    capsys.readouterr()
    document = json.loads(json_path.read_text())
    for field, value, expect in (
        ("n_classes", 10_000_000, "n_classes must be an integer in"),
        ("n_classes", 11, "do not belong together"),
    ):
        forged = {**document, field: value}
        forged["document_sha256"] = checkpoint._document_digest(forged)
        json_path.write_text(json.dumps(forged))
        _fails_in_one_line(capsys, ["analyze", "1", "--tsne-samples", "0", "--data-dir", str(data_dir)],
                           code=1, expect=expect)  # fmt: skip
    for text, expect in (
        ('{"format": "dendritic-checkpoint", "n_classes": Infinity}', "not valid JSON"),
        ('{"format": "dendritic-checkpoint", "n_classes": 1e400}', "not valid JSON"),
        ("[" * 100_000, "nested too deeply"),
    ):
        json_path.write_text(text)
        _fails_in_one_line(capsys, ["analyze", "1", "--tsne-samples", "0"], code=1, expect=expect)


def test_a_gzip_bomb_in_the_data_folder_is_one_line(data_dir, capsys):
    import zlib

    comp = zlib.compressobj(9, zlib.DEFLATED, 31)
    bomb = comp.compress(bytes.fromhex("00000803") + (200).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2)
    bomb += b"".join(comp.compress(b"\0" * (1 << 24)) for _ in range(128)) + comp.flush()  # 2 GiB inside
    (data_dir / "train-images-idx3-ubyte.gz").write_bytes(bomb)
    _fails_in_one_line(capsys, _train(data_dir), code=1, expect="holds more than")


# ---------------------------------------------------------------- 7. tracebacks and crashes


@pytest.mark.parametrize(
    "argv,expect",
    [
        (["train", "--seed", "99999999999999999999"], "expected a seed in [0, 4294967295]"),
        (["runs", "show", "99999999999999999999"], "expected a run id in"),
        (["analyze", "99999999999999999999"], "expected a run id in"),
        (["train", "--somata", "99999999999"], "expected a positive integer in"),
        (["train", "--threads", "100000"], "expected a positive integer in [1, 1024]"),
        (["sweep", "main", "--threads", "100000"], "[1, 1024]"),
        (["train", "--lr", "inf"], "expected a finite number in (0, 1000]"),
        (["figures", "--format", ""], "names no format"),
        (["figures", "--format", "png,gif"], "unknown format 'gif'"),
    ],
)
def test_bad_numbers_are_one_line_usage_errors(capsys, store, argv, expect):
    before = _digest(store)
    _fails_in_one_line(capsys, argv, code=2, expect=expect)
    assert _digest(store) == before


def test_a_largest_run_id_is_looked_up_not_overflowed(store, capsys):
    _fails_in_one_line(
        capsys, ["runs", "show", str(2**63 - 1)], code=1, expect="no run with id 9223372036854775807"
    )


def test_a_model_too_big_for_memory_is_one_line(data_dir, capsys):
    _fails_in_one_line(
        capsys, _train(data_dir, "--somata", "2000000000"), code=1, expect="GB of memory available"
    )
    _fails_in_one_line(capsys, [*_train(data_dir), "--model", "vANN", "--dendrites", "100000", "--somata", "100000"],
                       code=1, expect="needs about")  # fmt: skip


def test_the_largest_seed_trains(data_dir, capsys):
    assert main(_train(data_dir, "--seed", str(2**32 - 1), "--no-store")) == 0


def test_a_full_disk_while_checkpointing_is_one_line_and_recorded(data_dir, capsys, tmp_path):
    small = tmp_path / "small"
    small.mkdir()
    if subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(small)], capture_output=True
    ).returncode:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        argv = [*_train(data_dir, "--checkpoint", str(small / "ck")), "--model", "vANN", "--somata", "64"]
        _fails_in_one_line(capsys, argv, code=1, expect="No space left on device")
        assert [p.name for p in small.iterdir()] == []
    finally:
        subprocess.run(["umount", str(small)], check=True)
    with RunStore("runs.db", readonly=True) as s:
        (run,) = s.list_runs()
        assert run["status"] == "failed" and "No space left on device" in run["error"]


def test_a_corrupt_row_is_named_and_the_others_still_listed(store, capsys):
    with sqlite3.connect(store) as raw:
        raw.execute("UPDATE runs SET config = '{broken' WHERE id = 1")
    assert main(["runs", "list"]) == 0
    captured = capsys.readouterr()
    assert len(captured.out.strip().splitlines()) == 3  # header + both runs
    assert captured.err.strip() == "dendritic: warning: run 1: its stored config is not valid JSON " + (
        "(Expecting property name enclosed in double quotes: line 1 column 2 (char 1))"
    )
    assert main(["runs", "show", "1"]) == 0
    assert json.loads(capsys.readouterr().out)["problem"].startswith("run 1: its stored config")
    assert main(["runs", "export", "--out", "x.csv"]) == 0


# ---------------------------------------------------------------- 9. smaller


def test_replace_message_names_the_flag(data_dir, capsys):
    assert main(_train(data_dir)) == 0
    line = _fails_in_one_line(capsys, _train(data_dir), code=1, expect="run it again with --replace")
    assert "keeps this result until the new run finishes" in line


def test_empty_store_path_writes_nothing(data_dir, capsys, tmp_path):
    for argv in (_train(data_dir, "--store", ""), ["runs", "list", "--store", ""],
                 ["sweep", "main", "--store", "", "--dry-run"]):  # fmt: skip
        _fails_in_one_line(capsys, argv, code=1, expect="--store is empty")
    assert not (tmp_path / "runs.db").exists()


@pytest.mark.parametrize("extra", [["--store", "x.db"], ["--replace"]])
def test_no_store_conflicts_are_errors(data_dir, capsys, extra):
    _fails_in_one_line(
        capsys, _train(data_dir, "--no-store", *extra), code=1, expect="--no-store does not record"
    )
    _fails_in_one_line(capsys, ["continual", "run", "--no-store", *extra], code=1, expect="--no-store")


def test_figures_with_no_format_claims_nothing(store, capsys):
    _fails_in_one_line(capsys, ["figures", "--format", ",", "--out", "f"], code=2, expect="names no format")
    assert not Path("f").exists()


# ---------------------------------------------------------------- fuzz: every numeric and path argument


def _commands(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()):
    """(argv prefix, parser) of every runnable command, sub-commands included."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield prefix, parser
        return
    for name, sub in subs[0].choices.items():
        yield from _commands(sub, (*prefix, name))


_POSITIONAL = {"run_id": "1", "experiment": "main"}


def _invalid_numbers(parse) -> list[str]:
    bounds = parse.bounds
    values = ["", "abc", "nan", "inf", "-inf", "1e400", "99999999999999999999999"]
    if parse.__name__ == "integer":
        low, high = bounds
        values += [str(low - 1), str(high + 1), "1.5"]
    else:
        low, high, low_open, high_open = bounds
        values += [repr(low - 1e-9) if not low_open else repr(float(low))]
        if high is not None:
            values += [repr(float(high)) if high_open else repr(high + 1e-9)]
    return values


def _numeric_cases():
    cases = []
    for prefix, parser in _commands(build_parser()):
        for action in parser._actions:
            if action.type is None or not getattr(action.type, "bounds", None):
                continue
            for value in _invalid_numbers(action.type):
                cases.append((prefix, action, value))
    return cases


def test_every_typed_argument_has_a_range():
    """New options cannot slip in without bounds: every typed argument is a bounded number or
    one of the list parsers."""
    for prefix, parser in _commands(build_parser()):
        for action in parser._actions:
            if action.type is None:
                continue
            name = getattr(action.type, "__name__", "")
            bounds = getattr(action.type, "bounds", None)
            assert bounds or name in ("_names", "_formats"), (prefix, action.dest)
            assert bounds is None or bounds[1] is not None, (prefix, action.dest)  # an upper bound too


@pytest.mark.parametrize(
    "prefix,action,value", _numeric_cases(), ids=lambda v: v if isinstance(v, str) else None
)
def test_fuzz_numeric_arguments(store, capsys, prefix, action, value):
    before = _digest(store)
    positionals = [
        _POSITIONAL[a.dest]
        for a in action.container._actions
        if a.dest in _POSITIONAL and not a.option_strings
    ]
    if action.option_strings:
        argv = [*prefix, *positionals, f"{action.option_strings[0]}={value}"]
    else:
        argv = [*prefix, value]
    _fails_in_one_line(capsys, argv, code=2)
    assert _digest(store) == before


#: Where a path option may point, and what kind of thing it is.
_PATH_KINDS = {
    "store": "store",
    "data_dir": "input-dir",
    "figures": "input-dir",
    "checkpoint": "checkpoint",
    "checkpoints": "output-dir",
}
_OUT_KIND = {("runs", "export"): "output-file", ("report",): "output-file"}


def _path_options():
    found = []
    for prefix, parser in _commands(build_parser()):
        for action in parser._actions:
            if not action.option_strings or action.type is not None or action.nargs == 0:
                continue
            if action.dest == "out":
                found.append((prefix, action, _OUT_KIND.get(prefix, "output-dir")))
            elif action.dest in _PATH_KINDS:
                found.append((prefix, action, _PATH_KINDS[action.dest]))
    return found


def test_every_path_option_is_fuzzed():
    known = {"out", *_PATH_KINDS}
    names = {a.dest for _, p in _commands(build_parser()) for a in p._actions if a.option_strings}
    pathlike = {n for n in names if n in known or n.endswith(("_dir", "_path", "_file"))}
    assert pathlike <= known, pathlike - known
    assert len(_path_options()) >= 20


def _bad_paths(kind: str, tmp_path: Path, ro: Path | None) -> list[tuple[str, str]]:
    """(value, what must be refused) for a path option of this kind."""
    cases = [("", "empty"), ("x" * 5000, "too long")]
    if ro is not None:
        cases.append((str(ro / "sub" / "x"), "unwritable"))
    if kind == "store":
        cases += [
            (str(tmp_path / "a-file.txt"), "not a store"),
            (str(tmp_path / "nowhere" / "r.db"), "missing folder"),
        ]
    elif kind == "input-dir":
        cases += [(str(tmp_path / "a-file.txt"), "a file"), (str(tmp_path / "nowhere"), "missing"),
                  (str(tmp_path / "runs.db"), "the store")]  # fmt: skip
    elif kind == "output-file":
        cases += [(str(tmp_path / "runs.db"), "the store"), (str(tmp_path), "a folder"),
                  (str(tmp_path / "a-file.txt" / "x"), "under a file")]  # fmt: skip
    elif kind == "output-dir":
        cases += [(str(tmp_path / "runs.db"), "the store"), (str(tmp_path / "a-file.txt"), "a file")]
    elif kind == "checkpoint":
        cases += [(str(tmp_path / "a-file.txt" / "ck"), "under a file"), (str(tmp_path) + "/", "a folder")]
    return cases


_WHAT_RUNS = {  # the smallest argv of each command that reaches its path checks
    ("train",): ["--dataset", "mnist", "--epochs", "1"],
    ("sweep",): ["main", "--models", "dANN-R", "--dendrites", "1", "--somata", "32", "--trials", "1"],
    ("analyze",): ["1"],
    ("runs", "show"): ["1"],
    ("continual", "compare"): ["--models", "dANN-R", "--seeds", "1"],
}


def test_fuzz_path_arguments(store, tmp_path, capsys, data_dir):
    """Every path option of every command against empty, too long, unwritable, missing, a file,
    a folder and the store itself: one line each, exit non-zero, the store byte-identical, and
    nothing written where the bad path pointed."""
    (tmp_path / "a-file.txt").write_text("not yours")
    protected = {p: _digest(p) for p in (store, tmp_path / "a-file.txt")}
    (tmp_path / "shelf" / "sub").mkdir(parents=True)
    mounted = contextlib.ExitStack()
    try:
        ro = mounted.enter_context(read_only_view(tmp_path / "shelf", tmp_path))
    except pytest.skip.Exception:
        ro = None
    checked = 0
    try:
        for prefix, action, kind in _path_options():
            base = [*prefix, *_WHAT_RUNS.get(prefix, [])]
            if action.dest != "data_dir" and "--data-dir" in {
                o for a in action.container._actions for o in a.option_strings
            }:
                base += ["--data-dir", str(data_dir)]
            for value, why in _bad_paths(kind, tmp_path, ro):
                if (
                    kind == "store"
                    and why == "missing folder"
                    and prefix[0] in ("runs", "analyze", "figures", "report")
                ):
                    why = "no such store"
                argv = [*base, f"{action.option_strings[0]}={value}"]
                line = _fails_in_one_line(capsys, argv)
                assert line, (argv, why)
                for path, digest in protected.items():
                    assert _digest(path) == digest, (argv, path)
                checked += 1
    finally:
        mounted.close()
    assert checked >= 100
    leftovers = sorted(p.name for p in tmp_path.iterdir())
    assert not [n for n in leftovers if n.startswith(".") and ".tmp" in n], leftovers
