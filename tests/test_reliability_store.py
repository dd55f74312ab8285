"""Issue 22, the run store's defects: one writer per run (#2), damaged values never block the
other runs (#4), a file that is not a run store is never modified (#5), and a store on a full
disk still reads (#10).

Each test uses the issue's inputs; each bad input ends in one line on stderr, a non-zero exit,
no traceback, and a store that is byte-identical.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import hashlib
import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

import dendritic
from dendritic.cli import main
from dendritic.store import RunStore, StoreError
from dendritic.store.liveness import LEASE_SECONDS

sys.path.insert(0, str(Path(__file__).parent))
from fakedata import write_dataset  # noqa: E402

SRC = str(Path(dendritic.__file__).resolve().parents[1])


@pytest.fixture(autouse=True)
def _workspace(isolated_cache, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def data_dir(tmp_path):
    return write_dataset(tmp_path / "data", "mnist", n_train=300, n_test=100)


def _config(seed: int) -> dict:
    return {"model": "dANN-R", "dataset": "mnist", "dendrites": 2, "somata": 8, "seed": seed}


def _fill_store(path: Path) -> Path:
    """Three finished runs, one epoch each (with an extra metric)."""
    with RunStore(path) as s:
        for seed in (1, 2, 3):
            rid = s.start_run(_config(seed))
            s.log_epoch(rid, 1, train_loss=1.0, val_loss=1.1, val_accuracy=0.5, lr=0.01)
            s.finish_run(rid, test_accuracy=0.5 + seed / 100, test_loss=1.0)
    return path


def _digest(*paths: Path) -> list[str | None]:
    return [hashlib.sha256(p.read_bytes()).hexdigest() if p.exists() else None for p in paths]


def _fails_in_one_line(capsys, argv: list[str], *, code: int = 1, expect: str = "") -> str:
    """Run the CLI in-process; it must exit ``code`` with one stderr line and no traceback."""
    rc = main(argv)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert rc == code, (argv, rc, err)
    assert "Traceback" not in err
    assert len(lines) == 1, (argv, err)
    assert lines[0].startswith("dendritic: error:"), lines[0]
    assert expect in lines[0], (expect, lines[0])
    return lines[0]


def _train(data_dir: Path, *extra: str) -> list[str]:
    return ["train", "--model", "dANN-R", "--dataset", "mnist", "--dendrites", "2", "--somata", "8",
            "--epochs", "1", "--data-dir", str(data_dir), "--quiet", *extra]  # fmt: skip


def _utc_ago(seconds: float) -> str:
    return (datetime.now(timezone.utc) - timedelta(seconds=seconds)).isoformat(timespec="milliseconds")


# ---------------------------------------------------------------- #2 one writer per run

#: A process that starts a run (or its replacement) and holds it until told to finish.
_OWNER = textwrap.dedent(
    """
    import json, sys
    from dendritic.store import RunStore
    store = RunStore(sys.argv[1])
    rid = store.start_run(json.loads(sys.argv[2]), replace=sys.argv[3] == "replace")
    store.log_epoch(rid, 1, train_loss=0.25)
    print("started", flush=True)
    sys.stdin.readline()
    store.log_epoch(rid, 2, train_loss=0.125)
    store.finish_run(rid, test_accuracy=0.75, test_loss=0.5)
    """
)


@pytest.mark.parametrize("finished_before", [False, True], ids=["new-run", "replacing-a-finished-run"])
def test_replace_never_takes_over_a_live_run(data_dir, capsys, finished_before):
    """#2: `train --replace` of a run still running in another process is refused in one line
    that does not offer --replace; the running process keeps its row and finishes it alone."""
    # The config `train` records for these options (from a run in another store, or in runs.db
    # itself when the live process is replacing a finished run).
    probe = "runs.db" if finished_before else "probe.db"
    assert main([*_train(data_dir), "--store", probe]) == 0
    with RunStore(probe, readonly=True) as s:
        (done,) = s.list_runs()
    env = {**os.environ, "PYTHONPATH": SRC}
    how = "replace" if finished_before else "new"
    owner = subprocess.Popen(
        [sys.executable, "-c", _OWNER, "runs.db", json.dumps(done["config"]), how],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        assert owner.stdout is not None and owner.stdout.readline().strip() == "started"
        files = [Path("runs.db"), Path("runs.db-wal")]
        before = _digest(*files)
        line = _fails_in_one_line(capsys, _train(data_dir, "--replace"), expect="is still running")
        assert f"process {owner.pid} on this host" in line
        assert "with --replace" not in line and "to take it over" not in line
        assert _digest(*files) == before  # not one byte of the live run's row changed
    finally:
        assert owner.stdin is not None
        owner.stdin.write("go\n")
        owner.stdin.close()
        assert owner.wait(timeout=60) == 0  # its own writes were never refused
    with RunStore("runs.db", readonly=True) as s:
        (run,) = s.list_runs()
        assert run["status"] == "finished" and run["pid"] == owner.pid
        assert run["test_accuracy"] == 0.75 and run["attempts"] == (2 if finished_before else 1)
        assert [(e["epoch"], e["train_loss"]) for e in s.epochs(run["id"])] == [(1, 0.25), (2, 0.125)]


def test_a_run_taken_over_after_its_lease_refuses_the_old_owners_writes(tmp_path):
    """#2: a run of another host is taken over only when its heartbeat is older than the lease;
    then the process that had it is refused at its next write, so the row never mixes the two."""
    path = tmp_path / "runs.db"
    config = _config(7)
    old, new = RunStore(path), RunStore(path)
    rid = old.start_run(config, meta={"host": "node-a", "pid": 4242})
    old.log_epoch(rid, 1, train_loss=1.0)

    with pytest.raises(StoreError, match="still running on host node-a") as info:
        new.start_run(config, replace=True)  # within its lease: a live run, never taken over
    assert "wait for it to finish or stop it first" in str(info.value)
    assert "with --replace" not in str(info.value)

    with sqlite3.connect(path) as raw:  # node-a falls silent for longer than its lease
        raw.execute("UPDATE runs SET heartbeat_at = ? WHERE id = ?", (_utc_ago(LEASE_SECONDS + 60), rid))
    with pytest.raises(StoreError, match="run it again with --replace"):
        new.start_run(config)  # without replace: told how to take it over
    assert new.start_run(config, replace=True) == rid
    new.log_epoch(rid, 1, train_loss=0.5)

    # node-a wakes up: every write of its run is refused, nothing of its own is recorded.
    with pytest.raises(StoreError, match="was taken over by pid"):
        old.log_epoch(rid, 2, train_loss=0.9)
    with pytest.raises(StoreError, match="was taken over"):
        old.finish_run(rid, test_accuracy=0.1)
    assert old.fail_run(rid, "stopped: the run was taken over") is False
    old.heartbeat(rid)
    new.finish_run(rid, test_accuracy=0.9, test_loss=0.3)

    run = new.get_run(rid)
    assert (run["status"], run["host"], run["pid"], run["attempts"]) == (
        "finished", socket.gethostname(), os.getpid(), 2,
    )  # fmt: skip
    assert run["test_accuracy"] == 0.9 and run["error"] is None
    assert [(e["epoch"], e["train_loss"]) for e in new.epochs(rid)] == [(1, 0.5)]
    old.close()
    new.close()


# ---------------------------------------------------------------- #4 damaged values


def _damage(path: Path) -> None:
    """The issue's two damaged values: run 2's epoch extra is not JSON, run 3's test accuracy
    is text. Run 1 is sound."""
    with contextlib.closing(sqlite3.connect(path)) as raw:  # closed: the WAL is checkpointed
        raw.execute("UPDATE epochs SET extra = '{broken' WHERE run_id = 2")
        raw.execute("UPDATE runs SET test_accuracy = 'high' WHERE id = 3")
        raw.commit()


_RUN2 = "run 2 epoch 1: its stored extra is not valid JSON"
_RUN3 = "run 3: its stored test_accuracy is not a number ('high')"


def _warnings(err: str) -> list[str]:
    assert "Traceback" not in err
    return [line for line in err.splitlines() if line.strip()]


def test_runs_show_names_a_damaged_value_and_shows_the_rest(tmp_path, capsys):
    """#4: `runs show` of a run with a damaged value shows the run, with one warning naming
    the run, epoch and field; the other runs show as before."""
    db = _fill_store(tmp_path / "runs.db")
    _damage(db)
    before = _digest(db)
    assert main(["runs", "show", "2"]) == 0
    out, err = capsys.readouterr()
    run = json.loads(out)
    assert run["id"] == 2 and run["test_accuracy"] == 0.52 and run["epochs"][0]["val_loss"] == 1.1
    assert run["epochs"][0]["problem"].startswith(_RUN2) and "lr" not in run["epochs"][0]
    (line,) = _warnings(err)
    assert line.startswith(f"dendritic: warning: {_RUN2}")

    assert main(["runs", "show", "3"]) == 0
    out, err = capsys.readouterr()
    run = json.loads(out)
    assert run["test_accuracy"] is None and run["problem"] == _RUN3 and run["epochs"][0]["lr"] == 0.01
    assert _warnings(err) == [f"dendritic: warning: {_RUN3}"]

    assert main(["runs", "show", "1"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["problem"] is None and err == ""
    assert _digest(db) == before


def _read_table(path: Path) -> list[dict]:
    if path.suffix == ".csv":
        with open(path, newline="", encoding="utf-8") as fh:
            return list(csv.DictReader(fh))
    if path.suffix == ".json":
        return json.loads(path.read_text())
    import pyarrow.parquet as pq

    return pq.read_table(path).to_pylist()


@pytest.mark.parametrize("fmt", ["csv", "json", "parquet"])
def test_export_of_all_runs_marks_damaged_values_and_exports_the_rest(tmp_path, capsys, fmt):
    """#4: `runs export --epochs` exports every run and epoch; damaged values are empty, a
    `problem` column names them, and stderr warns once per damaged value."""
    if fmt == "parquet":
        pytest.importorskip("pyarrow")
    db = _fill_store(tmp_path / "runs.db")
    _damage(db)
    before = _digest(db)
    assert main(["runs", "export", "--out", f"all.{fmt}", "--epochs"]) == 0
    out, err = capsys.readouterr()
    assert out.split() == ["wrote", f"all.{fmt}", "wrote", f"all-epochs.{fmt}"]
    lines = _warnings(err)
    assert len(lines) == 2 and lines[0].startswith(f"dendritic: warning: {_RUN3}")
    assert lines[1].startswith(f"dendritic: warning: {_RUN2}")

    runs = {str(r["id"]): r for r in _read_table(tmp_path / f"all.{fmt}")}
    assert sorted(runs) == ["1", "2", "3"]
    assert runs["3"]["problem"] == _RUN3 and runs["3"]["test_accuracy"] in ("", None)
    assert float(runs["1"]["test_accuracy"]) == 0.51 and runs["1"]["problem"] in ("", None)
    epochs = {str(e["run_id"]): e for e in _read_table(tmp_path / f"all-epochs.{fmt}")}
    assert sorted(epochs) == ["1", "2", "3"]
    assert epochs["2"]["problem"].startswith(_RUN2) and epochs["2"]["lr"] in ("", None)
    assert float(epochs["1"]["lr"]) == 0.01 and float(epochs["2"]["val_loss"]) == 1.1
    assert _digest(db) == before


def test_export_with_epochs_writes_both_files_or_neither(tmp_path, capsys, monkeypatch):
    """#4: when the epochs table cannot be written, the runs file is not left behind alone."""
    import dendritic.store.export as export

    _fill_store(tmp_path / "runs.db")
    write_csv = export._write_csv

    def full_disk_on_epochs(path, rows, columns):
        if "-epochs" in Path(path).name:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        write_csv(path, rows, columns)

    monkeypatch.setattr(export, "_write_csv", full_disk_on_epochs)
    _fails_in_one_line(capsys, ["runs", "export", "--out", "all.csv", "--epochs"], expect="No space left")
    assert sorted(p.name for p in tmp_path.iterdir() if "all" in p.name) == []


def test_report_leaves_out_damaged_runs_and_names_them(tmp_path, capsys):
    """#4: `report` of a store with damaged values is written; the damaged runs are left out
    and named (run and field) in its notes."""
    pytest.importorskip("matplotlib")
    db = _fill_store(tmp_path / "runs.db")
    _damage(db)
    before = _digest(db)
    assert main(["report", "--out", "report.html"]) == 0
    assert "Traceback" not in capsys.readouterr().err
    page = (tmp_path / "report.html").read_text()
    assert f"note: left out: {_RUN2}" in page
    assert "note: left out: run 3: its stored test_accuracy is not a number (&#x27;high&#x27;)" in page
    assert _digest(db) == before


# ---------------------------------------------------------------- #5 not a run store


@pytest.mark.parametrize("user_version", [0, 2], ids=["plain", "with-a-user-version"])
def test_a_sqlite_file_that_is_not_a_run_store_is_never_modified(data_dir, tmp_path, capsys, user_version):
    """#5: a SQLite file refused as "not a run store" stays byte-identical (no switch to WAL
    mode, no companion files), whichever command opened it."""
    other = tmp_path / "other.db"
    with contextlib.closing(sqlite3.connect(other)) as raw:
        raw.execute("CREATE TABLE notes (text TEXT)")
        raw.execute("INSERT INTO notes VALUES ('mine')")
        raw.execute(f"PRAGMA user_version = {user_version}")
        raw.commit()
    before = _digest(other)
    for argv in (
        _train(data_dir, "--store", str(other)),
        ["runs", "list", "--store", str(other)],
        ["sweep", "main", "--store", str(other), "--dry-run"],
    ):
        _fails_in_one_line(capsys, argv, expect="is a SQLite database but not a run store")
        assert _digest(other) == before, argv
    with pytest.raises(StoreError, match="not a run store"):
        RunStore(other)
    assert _digest(other) == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("other")) == ["other.db"]
    with contextlib.closing(sqlite3.connect(other)) as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "delete"


# ---------------------------------------------------------------- #10 full disk


@contextlib.contextmanager
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 256 KiB tmpfs (needs root; skipped where it cannot be mounted)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(disk)], capture_output=True
    ).returncode:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        yield disk
    finally:
        subprocess.run(["umount", str(disk)], check=True)


def _fill_disk(disk: Path) -> Path:
    """Fill the filesystem to the last byte; returns the filler file."""
    filler = disk / "filler"
    with open(filler, "wb", buffering=0) as fh:
        for size in (4096, 1):
            with contextlib.suppress(OSError):
                while fh.write(b"\0" * size):
                    pass
    assert shutil.disk_usage(disk).free == 0
    return filler


def test_a_store_on_a_full_disk_reads(tmp_path, capsys):
    """#10: `runs list` (and show, export) of an intact store on a full disk work, write
    nothing beside it, and list what they list once space is freed."""
    with small_disk(tmp_path) as disk:
        db = _fill_store(disk / "runs.db")
        filler = _fill_disk(disk)
        before, names = _digest(db), sorted(os.listdir(disk))

        assert main(["runs", "list", "--store", str(db)]) == 0
        listed = capsys.readouterr().out
        assert len(listed.strip().splitlines()) == 4  # header + 3 runs
        assert main(["runs", "show", "2", "--store", str(db)]) == 0
        assert json.loads(capsys.readouterr().out)["test_accuracy"] == 0.52
        assert main(["runs", "export", "--store", str(db), "--out", str(tmp_path / "x.csv"), "--epochs"]) == 0
        assert len(_read_table(tmp_path / "x-epochs.csv")) == 3
        assert _digest(db) == before and sorted(os.listdir(disk)) == names  # no -wal, no -shm

        # Another reader that tried first left SQLite's half-made WAL index behind: still fine.
        raw = sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True)
        with contextlib.closing(raw), pytest.raises(sqlite3.OperationalError, match="disk I/O error"):
            raw.execute("SELECT count(*) FROM runs").fetchone()
        capsys.readouterr()
        assert main(["runs", "list", "--store", str(db)]) == 0
        assert capsys.readouterr().out == listed and _digest(db) == before

        filler.unlink()
        assert main(["runs", "list", "--store", str(db)]) == 0
        assert capsys.readouterr().out == listed


def test_a_store_whose_log_holds_changes_on_a_full_disk_says_so(tmp_path, capsys):
    """#10: when the store's write-ahead log holds changes (a copy of a live store) and the disk
    is full, the error is one line saying the disk is full, not "disk I/O error"."""
    with small_disk(tmp_path) as disk:
        live = _fill_store(disk / "live.db")
        with RunStore(live) as writer:  # open: its new run is in the WAL, not in the file yet
            writer.finish_run(writer.start_run(_config(4)), test_accuracy=0.6)
            for suffix in ("", "-wal"):
                shutil.copyfile(f"{live}{suffix}", disk / f"copy.db{suffix}")
        copy = disk / "copy.db"
        filler = _fill_disk(disk)
        before = _digest(copy, disk / "copy.db-wal")
        line = _fails_in_one_line(
            capsys, ["runs", "list", "--store", str(copy)], expect="the disk holding it is full"
        )
        assert "disk I/O error" not in line and str(copy) in line
        assert _digest(copy, disk / "copy.db-wal") == before

        filler.unlink()
        assert main(["runs", "list", "--store", str(copy)]) == 0
        assert len(capsys.readouterr().out.strip().splitlines()) == 5  # header + 4 runs


@pytest.mark.parametrize(
    "argv",
    [
        ["train", "--model", "vANN", "--dataset", "cifar10", "--epochs", "1"],
        [
            "sweep",
            "main",
            "--dataset",
            "cifar10",
            "--models",
            "vANN",
            "--trials",
            "1",
            "--somata",
            "8",
            "--dendrites",
            "1",
        ],
        ["continual", "run", "--model", "vANN", "--dataset", "cifar10", "--quiet"],
    ],  # fmt: skip
    ids=["train", "sweep", "continual"],
)
def test_a_command_that_fails_before_its_first_run_leaves_no_new_store(tmp_path, capsys, argv):
    """The dataset is missing: one line, exit 1, and no empty runs.db left to confuse later commands."""
    empty = tmp_path / "no-data"
    empty.mkdir()
    code = main([*argv, "--store", str(tmp_path / "runs.db"), "--data-dir", str(empty)])
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["no-data"]


def test_a_failing_command_keeps_a_store_that_was_there(tmp_path, capsys):
    path = _fill_store(tmp_path / "runs.db")
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    empty = tmp_path / "no-data"
    empty.mkdir()
    argv = [
        "train",
        "--model",
        "vANN",
        "--dataset",
        "cifar10",
        "--store",
        str(path),
        "--data-dir",
        str(empty),
    ]
    assert main(argv) == 1
    assert path.exists() and hashlib.sha256(path.read_bytes()).hexdigest() == before
    with RunStore(path, readonly=True) as s:
        assert len(s) == 3
