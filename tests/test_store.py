"""Tests of the results store: round trips, retry semantics, crash safety, concurrency, export."""

from __future__ import annotations

import csv
import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

import dendritic
from dendritic.store import (
    RUN_STATUSES,
    SCHEMA_VERSION,
    RunNotFound,
    RunStore,
    StoreError,
    config_key,
)

SRC = str(Path(dendritic.__file__).resolve().parents[1])
POSIX = pytest.mark.skipif(os.name != "posix", reason="needs POSIX signals")


def cfg(**over):
    base = {
        "model": "dANN-R",
        "dataset": "fmnist",
        "dendrites": 16,
        "somata": 32,
        "seed": 0,
        "layers": 2,
        "lr": 1e-3,
        "epochs": 3,
        "sequential": False,
        "optim": {"name": "adam", "betas": [0.9, 0.999]},
    }
    base.update(over)
    return base


@pytest.fixture
def store(tmp_path):
    with RunStore(tmp_path / "runs.db") as s:
        yield s


def run_child(code: str, **kwargs) -> subprocess.Popen:
    """A Python child running ``code`` with the package importable."""
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


def wait_for_line(proc: subprocess.Popen, timeout: float = 30.0) -> str:
    """First stdout line of the child (it prints once it has written what we check)."""
    result: list[str] = []
    reader = threading.Thread(target=lambda: result.append(proc.stdout.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    if not result or not result[0]:
        proc.kill()
        _, err = proc.communicate()
        pytest.fail(f"child did not report: {err}")
    return result[0].strip()


# --------------------------------------------------------------------------- basics


def test_config_key_is_stable_and_order_independent():
    a = config_key({"b": 1, "a": [1, 2], "c": {"y": 1, "x": 2}})
    b = config_key({"c": {"x": 2, "y": 1}, "a": (1, 2), "b": 1})
    assert a == b and len(a) == 16 and int(a, 16) >= 0
    assert config_key({"lr": 0.1}) != config_key({"lr": 0.2})
    with pytest.raises(StoreError):
        config_key({"x": object()})


def test_open_sets_wal_foreign_keys_and_schema_version(tmp_path):
    with RunStore(tmp_path / "runs.db") as s:
        assert s.journal_mode == "wal"
    conn = sqlite3.connect(tmp_path / "runs.db")
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"runs", "epochs"} <= tables
    conn.close()
    # A directory means runs.db inside it; reopening an existing store works.
    with RunStore(tmp_path) as s:
        assert s.path == tmp_path / "runs.db"
        assert s._db().execute("PRAGMA foreign_keys").fetchone()[0] == 1


def test_round_trip_run_and_epochs(store):
    meta = {"device": "cpu", "trainable_params": 1234, "paper_params": 1200, "note": "hello"}
    rid = store.start_run(cfg(), meta=meta)
    run = store.get_run(rid)
    assert run["status"] == "running" and run["attempts"] == 1
    assert run["config"] == cfg()
    assert (run["model"], run["dataset"], run["dendrites"], run["somata"], run["seed"]) == (
        "dANN-R",
        "fmnist",
        16,
        32,
        0,
    )
    assert run["pid"] == os.getpid() and run["host"]
    assert run["dendritic_version"] == dendritic.__version__ and run["python_version"]
    assert run["trainable_params"] == 1234 and run["paper_params"] == 1200
    assert run["extra"] == {"note": "hello"}
    assert run["created_at"].endswith("+00:00")

    losses = [0.9, 0.5, 0.7]
    for e, loss in enumerate(losses, start=1):
        store.log_epoch(
            rid, e, train_loss=loss + 0.1, train_accuracy=0.5, val_loss=loss, val_accuracy=0.6,
            seconds=1.5, lr=0.01 * e,
        )  # fmt: skip
    store.log_epoch(rid, 3, val_accuracy=0.65)  # adds to epoch 3, keeps the rest
    store.finish_run(rid, test_accuracy=0.91, test_loss=0.3, checkpoint=Path("/x/ckpt.safetensors"),
                     extra={"acc_matrix": [[0.9, 0.1], [0.8, 0.85]]})  # fmt: skip
    run = store.get_run(rid)
    assert run["status"] == "finished" and run["stored_status"] == "finished"
    assert run["test_accuracy"] == pytest.approx(0.91) and run["test_loss"] == pytest.approx(0.3)
    assert run["best_epoch"] == 2 and run["epochs_run"] == 3
    assert run["wall_seconds"] >= 0 and run["finished_at"] >= run["started_at"]
    assert run["checkpoint"] == "/x/ckpt.safetensors"
    assert run["extra"] == {"note": "hello", "acc_matrix": [[0.9, 0.1], [0.8, 0.85]]}
    eps = store.epochs(rid)
    assert [e["epoch"] for e in eps] == [1, 2, 3]
    assert eps[1]["val_loss"] == pytest.approx(0.5) and eps[1]["lr"] == pytest.approx(0.02)
    assert eps[2]["val_accuracy"] == pytest.approx(0.65) and eps[2]["train_loss"] == pytest.approx(0.8)
    assert store.find(run["key"])["id"] == rid and store.find(cfg())["id"] == rid
    assert store.find("0" * 16) is None
    assert store.finished_keys() == {config_key(cfg())}
    assert len(store) == 1


def test_numpy_and_torch_values_are_accepted(store):
    np = pytest.importorskip("numpy")
    torch = pytest.importorskip("torch")
    rid = store.start_run(cfg(dendrites=np.int64(8), lr=np.float32(0.5)))
    assert store.get_run(rid)["dendrites"] == 8
    store.log_epoch(rid, np.int64(1), train_loss=torch.tensor(0.25), val_loss=np.float64(0.5))
    store.finish_run(rid, test_accuracy=torch.tensor(0.75), trainable_params=np.int64(10),
                     extra={"m": np.eye(2)})  # fmt: skip
    run = store.get_run(rid)
    assert run["test_accuracy"] == 0.75 and run["trainable_params"] == 10
    assert run["extra"]["m"] == [[1.0, 0.0], [0.0, 1.0]]
    assert store.epochs(rid)[0]["train_loss"] == 0.25


def test_nan_metrics_heartbeat_and_bad_config(store):
    rid = store.start_run(cfg())
    store.log_epoch(rid, 1, train_loss=float("nan"), val_loss=float("inf"), grad=float("nan"))
    ep = store.epochs(rid)[0]
    assert ep["train_loss"] is None and ep["val_loss"] == float("inf")  # SQLite: NaN -> NULL
    assert ep["grad"] != ep["grad"]  # extra metrics keep NaN (JSON text)
    before = store.get_run(rid)["heartbeat_at"]
    time.sleep(0.002)
    store.heartbeat(rid)
    assert store.get_run(rid)["heartbeat_at"] > before
    with pytest.raises(StoreError, match="JSON"):
        store.start_run(cfg(lr=float("nan")))


def test_unique_key_and_retry_semantics(store):
    rid = store.start_run(cfg())
    store.log_epoch(rid, 1, train_loss=1.0)
    store.fail_run(rid, RuntimeError("CUDA out of memory"))
    failed = store.get_run(rid)
    assert failed["status"] == "failed" and "CUDA out of memory" in failed["error"]
    assert "Traceback" in failed["error"] or "RuntimeError" in failed["error"]
    assert failed["epochs_run"] == 1

    # Same config (keys in another order): same row, reset to running, old epochs and error gone.
    again = store.start_run(dict(reversed(list(cfg().items()))))
    assert again == rid
    run = store.get_run(rid)
    assert run["status"] == "running" and run["error"] is None and run["attempts"] == 2
    assert store.epochs(rid) == [] and run["epochs_run"] == 0
    # Retrying from the same live process is allowed too (e.g. an in-process retry loop).
    assert store.start_run(cfg()) == rid
    store.finish_run(rid, test_accuracy=0.5)

    with pytest.raises(StoreError, match="already finished"):
        store.start_run(cfg())
    assert store.fail_run(rid, "late Ctrl-C", status="interrupted") is False  # never clobbers
    assert store.get_run(rid)["status"] == "finished"
    with pytest.raises(StoreError, match="already finished"):
        store.finish_run(rid)
    with pytest.raises(StoreError, match="not running"):
        store.log_epoch(rid, 2, train_loss=0.1)
    # --replace runs again in a row of its own; the finished result is kept until it finishes.
    new = store.start_run(cfg(), replace=True)
    assert new != rid and store.get_run(new)["status"] == "running"
    assert store.get_run(rid)["status"] == "finished" and store.get_run(rid)["test_accuracy"] == 0.5
    store.finish_run(new, test_accuracy=0.75)
    assert store.find(cfg())["id"] == new and store.find(cfg())["test_accuracy"] == 0.75
    with pytest.raises(RunNotFound):
        store.get_run(rid)
    rid = new

    other = store.start_run(cfg(seed=1))
    assert other != rid and len(store) == 2
    with sqlite3.connect(store.path) as raw, pytest.raises(sqlite3.IntegrityError):
        raw.execute("INSERT INTO runs (key, config, status, created_at) SELECT key, config, "
                    "'running', created_at FROM runs WHERE id = ?", (rid,))  # fmt: skip


def test_running_elsewhere_is_not_taken_over(store):
    rid = store.start_run(cfg())
    # Pretend the run belongs to another live process on this host (our parent, pid 1 style).
    with sqlite3.connect(store.path) as raw:
        raw.execute("UPDATE runs SET pid = ?, pid_start = NULL WHERE id = ?", (os.getppid(), rid))
    assert store.get_run(rid)["status"] == "running"
    with pytest.raises(StoreError, match="still running"):
        store.start_run(cfg())
    with pytest.raises(StoreError, match="still running"):  # issue 22 #2: not even with replace
        store.start_run(cfg(), replace=True)


def test_errors_for_bad_arguments(store):
    rid = store.start_run(cfg())
    with pytest.raises(StoreError, match="numbered from 1"):
        store.log_epoch(rid, 0, train_loss=1.0)
    with pytest.raises(StoreError, match="not a number"):
        store.log_epoch(rid, 1, train_loss="low")
    with pytest.raises(StoreError):
        store.fail_run(rid, "x", status="finished")
    with pytest.raises(RunNotFound):
        store.get_run(999)
    with pytest.raises(KeyError):  # RunNotFound is also a KeyError
        store.epochs(999)
    with pytest.raises(StoreError, match="unknown status"):
        store.list_runs(status="done")
    with pytest.raises(StoreError):
        store.start_run(["not", "a", "dict"])  # type: ignore[arg-type]
    assert str(RunNotFound("no run with id 3")) == "no run with id 3"


def test_list_runs_filters(store):
    ids = {}
    for model in ("dANN-R", "vANN"):
        for seed in range(3):
            ids[model, seed] = store.start_run(cfg(model=model, seed=seed, dendrites=4 + seed))
    store.finish_run(ids["vANN", 0], test_accuracy=0.8)
    store.fail_run(ids["vANN", 1], "boom")
    assert len(store.list_runs()) == 6
    assert {r["id"] for r in store.list_runs(model="vANN")} == {ids["vANN", s] for s in range(3)}
    assert [r["id"] for r in store.list_runs(model="dANN-R", seed=2)] == [ids["dANN-R", 2]]
    assert len(store.list_runs(dendrites=[4, 5])) == 4
    assert len(store.list_runs(dataset="fmnist", limit=2)) == 2
    assert [r["id"] for r in store.list_runs(status="finished")] == [ids["vANN", 0]]
    assert len(store.list_runs(status=("failed", "finished"))) == 2
    assert len(store.list_runs(status="running")) == 4
    # Config filters: plain keys, dotted keys into nested dicts, any-of with a tuple.
    assert len(store.list_runs(lr=1e-3)) == 6
    assert len(store.list_runs(**{"optim.name": "adam"})) == 6
    assert len(store.list_runs(**{"optim.betas": [0.9, 0.999]})) == 6
    assert len(store.list_runs(**{"optim.name": "sgd"})) == 0
    assert len(store.list_runs(model=("vANN",), seed=(0, 1))) == 2
    assert store.list_runs(nonexistent=1) == []
    assert store.counts() == {"running": 4, "finished": 1, "failed": 1, "interrupted": 0}
    assert store.delete_run(ids["vANN", 2]) is True and store.delete_run(ids["vANN", 2]) is False
    assert len(store) == 5


def test_delete_cascades_to_epochs(store):
    rid = store.start_run(cfg())
    store.log_epoch(rid, 1, train_loss=1.0)
    store.delete_run(rid)
    with sqlite3.connect(store.path) as raw:
        assert raw.execute("SELECT count(*) FROM epochs").fetchone()[0] == 0


def test_record_context_manager(store):
    with store.record(cfg(seed=1)) as run:
        run.log_epoch(1, train_loss=1.0, val_loss=0.9)
        run.finish(test_accuracy=0.7)
    assert store.get_run(run.id)["status"] == "finished"

    with pytest.raises(ZeroDivisionError), store.record(cfg(seed=2)) as run2:
        run2.log_epoch(1, train_loss=1.0)
        1 / 0  # noqa: B018
    failed = store.get_run(run2.id)
    assert failed["status"] == "failed" and "ZeroDivisionError" in failed["error"]

    with pytest.raises(KeyboardInterrupt), store.record(cfg(seed=3)) as run3:
        raise KeyboardInterrupt
    assert store.get_run(run3.id)["status"] == "interrupted"

    with store.record(cfg(seed=4)) as run4:
        pass  # forgot finish(): recorded as failed, so a sweep redoes it
    assert store.get_run(run4.id)["status"] == "failed"
    assert store.finished_keys() == {config_key(cfg(seed=1))}


# --------------------------------------------------------------------------- crash safety


@POSIX
def test_sigkilled_child_reads_as_interrupted(tmp_path):
    db = tmp_path / "runs.db"
    child = run_child(
        f"""
        import time
        from dendritic.store import RunStore
        s = RunStore({str(db)!r})
        rid = s.start_run({cfg()!r})
        s.log_epoch(rid, 1, train_loss=1.0, val_loss=0.9)
        s.log_epoch(rid, 2, train_loss=0.8, val_loss=0.7)
        print(rid, flush=True)
        time.sleep(60)
        """
    )
    rid = int(wait_for_line(child))
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL

    with RunStore(db) as s:
        assert s.integrity_check() == ["ok"]
        run = s.get_run(rid)
        assert run["stored_status"] == "running"  # nobody wrote the end ...
        assert run["status"] == "interrupted"  # ... but it is reported as interrupted
        assert s.list_runs(status="interrupted")[0]["id"] == rid
        assert s.list_runs(status="running") == [] and s.list_runs(status="finished") == []
        assert s.finished_keys() == set()
        assert [e["epoch"] for e in s.epochs(rid)] == [1, 2]
        assert s.epochs(rid)[1]["val_loss"] == pytest.approx(0.7)
        assert s.counts()["interrupted"] == 1
        assert s.reap_stale() == [rid]
        assert s.get_run(rid)["stored_status"] == "interrupted"
        assert "reap_stale" in s.get_run(rid)["error"]
        assert s.reap_stale() == []
        # A sweep retries it in the same row.
        assert s.start_run(cfg()) == rid
        assert s.epochs(rid) == [] and s.get_run(rid)["status"] == "running"


@POSIX
def test_sigkill_during_busy_writes_leaves_consistent_file(tmp_path):
    """Killed at an arbitrary point of a stream of commits, the file has only whole epochs."""
    db = tmp_path / "runs.db"
    child = run_child(
        f"""
        from dendritic.store import RunStore
        s = RunStore({str(db)!r})
        rid = s.start_run({cfg()!r})
        print(rid, flush=True)
        e = 0
        while True:
            e += 1
            s.log_epoch(rid, e, train_loss=1.0 / e, val_loss=2.0 / e, blob=list(range(200)))
        """
    )
    rid = int(wait_for_line(child))
    deadline = time.monotonic() + 30
    with RunStore(db) as s:
        while s.get_run(rid)["epochs_run"] < 30 and time.monotonic() < deadline:
            time.sleep(0.01)
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=30)
    with RunStore(db) as s:
        assert s.integrity_check() == ["ok"]
        eps = s.epochs(rid)
        n = len(eps)
        assert n >= 30
        assert [e["epoch"] for e in eps] == list(range(1, n + 1))  # no gaps, no partial rows
        assert all(len(e["blob"]) == 200 for e in eps)
        run = s.get_run(rid)
        assert run["epochs_run"] == n  # updated in the same transaction as the epoch row
        assert run["status"] == "interrupted"


@POSIX
@pytest.mark.parametrize("style", ["handler", "record"])
def test_sigint_child_ends_interrupted(tmp_path, style):
    db = tmp_path / "runs.db"
    if style == "handler":
        body = f"""
        rid = s.start_run({cfg()!r})
        try:
            s.log_epoch(rid, 1, train_loss=1.0)
            print(rid, flush=True)
            time.sleep(60)
        except KeyboardInterrupt as exc:
            s.fail_run(rid, exc, status="interrupted")
            raise SystemExit(130)
        """
    else:
        body = f"""
        try:
            with s.record({cfg()!r}) as run:
                run.log_epoch(1, train_loss=1.0)
                print(run.id, flush=True)
                time.sleep(60)
        except KeyboardInterrupt:
            raise SystemExit(130)
        """
    code = textwrap.dedent(
        f"""
        import signal, time
        from dendritic.store import RunStore
        signal.signal(signal.SIGINT, signal.default_int_handler)  # even if SIGINT was ignored
        s = RunStore({str(db)!r})
        """
    ) + textwrap.dedent(body)
    child = run_child(code)
    rid = int(wait_for_line(child))
    child.send_signal(signal.SIGINT)
    child.wait(timeout=30)
    assert child.returncode == 130, child.stderr.read()
    with RunStore(db) as s:
        run = s.get_run(rid)
        assert run["stored_status"] == "interrupted" and run["status"] == "interrupted"
        assert "KeyboardInterrupt" in run["error"]
        assert [e["epoch"] for e in s.epochs(rid)] == [1]
        assert s.integrity_check() == ["ok"]


def test_reap_stale_by_heartbeat_for_other_hosts(store):
    rid = store.start_run(cfg(), meta={"host": "elsewhere", "pid": 4242})
    assert store.get_run(rid)["status"] == "running"  # cannot check a pid on another host
    assert store.reap_stale() == []
    old = "2000-01-01T00:00:00.000+00:00"
    with sqlite3.connect(store.path) as raw:
        raw.execute("UPDATE runs SET heartbeat_at = ? WHERE id = ?", (old, rid))
    assert store.reap_stale(older_than=3600) == [rid]
    assert store.get_run(rid)["status"] == "interrupted"


def test_reused_pid_counts_as_dead(store):
    rid = store.start_run(cfg())
    with sqlite3.connect(store.path) as raw:  # our pid, but "started" at another time
        raw.execute("UPDATE runs SET pid = ?, pid_start = '1' WHERE id = ?", (os.getppid(), rid))
    if Path(f"/proc/{os.getppid()}/stat").exists():
        assert store.get_run(rid)["status"] == "interrupted"


# --------------------------------------------------------------------------- concurrency


def test_readers_do_not_wait_for_an_open_write_transaction(store):
    rid = store.start_run(cfg())
    store.log_epoch(rid, 1, train_loss=1.0)
    writer = sqlite3.connect(store.path, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")
    writer.execute("INSERT INTO epochs (run_id, epoch, train_loss) VALUES (?, 2, 0.5)", (rid,))
    try:
        with RunStore(store.path, timeout=0.5) as reader:
            t0 = time.monotonic()
            assert [e["epoch"] for e in reader.epochs(rid)] == [1]  # uncommitted row not seen
            assert reader.get_run(rid)["status"] == "running"
            assert time.monotonic() - t0 < 0.5
            with pytest.raises(StoreError, match="busy"):  # a second writer times out cleanly
                reader.log_epoch(rid, 3, train_loss=0.1)
    finally:
        writer.execute("COMMIT")
        writer.close()
    assert [e["epoch"] for e in store.epochs(rid)] == [1, 2]


def test_concurrent_readers_while_writing(tmp_path):
    db = tmp_path / "runs.db"
    n_epochs = 150
    with RunStore(db) as w:
        rid = w.start_run(cfg())
    errors: list[BaseException] = []
    done = threading.Event()

    def write():
        try:
            with RunStore(db) as w:
                for e in range(1, n_epochs + 1):
                    w.log_epoch(rid, e, train_loss=1.0 / e)
                w.finish_run(rid, test_accuracy=0.9)
        except BaseException as exc:
            errors.append(exc)
        finally:
            done.set()

    def read():
        try:
            with RunStore(db, readonly=True) as r:
                seen = 0
                while not done.is_set():
                    eps = r.epochs(rid)
                    assert [e["epoch"] for e in eps] == list(range(1, len(eps) + 1))
                    assert len(eps) >= seen
                    seen = len(eps)
                    assert r.get_run(rid)["status"] in ("running", "finished")
                    r.list_runs(model="dANN-R")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write)] + [threading.Thread(target=read) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    with RunStore(db) as s:
        assert len(s.epochs(rid)) == n_epochs and s.get_run(rid)["status"] == "finished"


def test_one_store_shared_by_threads(store):
    ids = [store.start_run(cfg(seed=i)) for i in range(4)]
    errors: list[BaseException] = []

    def work(rid):
        try:
            for e in range(1, 21):
                store.log_epoch(rid, e, train_loss=float(e))
            store.finish_run(rid)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(rid,)) for rid in ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    assert all(store.get_run(r)["epochs_run"] == 20 for r in ids)


# --------------------------------------------------------------------------- opening errors


def test_corrupt_file_raises_one_line_store_error(tmp_path):
    bad = tmp_path / "runs.db"
    bad.write_bytes(os.urandom(8192))
    with pytest.raises(StoreError) as info:
        RunStore(bad)
    msg = str(info.value)
    assert "\n" not in msg and str(bad) in msg and "not a SQLite run store" in msg
    assert isinstance(info.value, ValueError)


def test_other_sqlite_database_is_refused(tmp_path):
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as raw:
        raw.execute("CREATE TABLE t (x)")
    with pytest.raises(StoreError, match="not a run store"):
        RunStore(other)


def test_newer_schema_is_refused(tmp_path):
    db = tmp_path / "runs.db"
    RunStore(db).close()
    with sqlite3.connect(db) as raw:
        raw.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(StoreError, match="newer") as info:
        RunStore(db)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("where", ["under_file", "missing_parent"])
def test_unwritable_path_raises_store_error(tmp_path, where):
    afile = tmp_path / "afile"
    afile.write_text("x")
    path = afile / "runs.db" if where == "under_file" else tmp_path / "nope" / "deeper" / "runs.db"
    with pytest.raises(StoreError) as info:
        RunStore(path)
    msg = str(info.value)
    assert "\n" not in msg and str(path) in msg


def test_readonly_store(tmp_path):
    db = tmp_path / "runs.db"
    with pytest.raises(StoreError, match="no such file"):
        RunStore(db, readonly=True)
    with RunStore(db) as s:
        rid = s.start_run(cfg())
    with RunStore(db, readonly=True) as r:
        assert r.get_run(rid)["config"] == cfg()
        with pytest.raises(StoreError, match="read-only"):
            r.finish_run(rid)


def _old_store(path, version):
    """A store as an older dendritic wrote it: schema ``version`` with one finished run."""
    from dendritic.store.schema import _SCHEMA_V1, APPLICATION_ID, MIGRATIONS

    with sqlite3.connect(path) as raw:
        raw.executescript(_SCHEMA_V1)
        for v in range(1, version):
            MIGRATIONS[v](raw)
        raw.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        raw.execute(f"PRAGMA user_version = {version}")
        raw.execute(
            "INSERT INTO runs (key, config, model, dataset, status, created_at, test_accuracy) "
            "VALUES (?, ?, 'dANN-R', 'fmnist', 'finished', '2025-01-01T00:00:00+00:00', 0.875)",
            (config_key(cfg()), json.dumps(cfg())),
        )
        raw.execute("INSERT INTO epochs (run_id, epoch, val_loss) VALUES (1, 1, 0.5)")
    raw.close()


@pytest.mark.parametrize("version", [1, 2])
def test_older_stores_are_migrated_and_keep_their_runs(tmp_path, version):
    db = tmp_path / "runs.db"
    _old_store(db, version)
    with RunStore(db, readonly=True) as old:  # read-only: read as it is, never migrated
        (run,) = old.list_runs()
        assert old.schema_version == version and run["experiment"] is None and run["test_accuracy"] == 0.875
        old.export_runs(tmp_path / "old.csv")
    with sqlite3.connect(db) as raw:
        assert raw.execute("PRAGMA user_version").fetchone()[0] == version
    raw.close()
    with RunStore(db) as s:  # writable: migrated to the current schema in one transaction
        assert s.schema_version == SCHEMA_VERSION
        (run,) = s.list_runs(status="finished")
        assert run["config"] == cfg() and run["experiment"] is None and run["data"] is None
        assert s.epochs(run["id"])[0]["val_loss"] == 0.5
        assert s.finished_keys() == {config_key(cfg())}
        rid = s.start_run(cfg(seed=5), meta={"experiment": "noise"})
        assert s.list_runs(experiment="noise")[0]["id"] == rid
    with sqlite3.connect(db) as raw:
        assert raw.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert "experiment" in {r[1] for r in raw.execute("PRAGMA table_info(runs)")}
    raw.close()


def test_runs_record_and_filter_by_experiment(store, tmp_path):
    a = store.start_run(cfg(seed=1), meta={"experiment": "main"})
    b = store.start_run(cfg(seed=2), meta={"experiment": "depth"})
    c = store.start_run(cfg(seed=3))
    assert [r["id"] for r in store.list_runs(experiment="main")] == [a]
    assert [r["id"] for r in store.list_runs(experiment=["main", "depth"])] == [a, b]
    assert store.get_run(c)["experiment"] is None
    out = store.export_runs(tmp_path / "runs.csv")
    assert "experiment" in out.read_text().splitlines()[0].split(",")


def test_closed_store_raises(tmp_path):
    s = RunStore(tmp_path / "runs.db")
    s.close()
    s.close()
    with pytest.raises(StoreError, match="closed"):
        s.list_runs()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_forked_child_opens_its_own_connection(store):
    rid = store.start_run(cfg())
    pid = os.fork()
    if pid == 0:  # child: must not reuse the parent's SQLite connection
        code = 1
        try:
            store.log_epoch(rid, 1, train_loss=0.5)
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert store.epochs(rid)[0]["train_loss"] == 0.5


# --------------------------------------------------------------------------- export


def _filled(store):
    a = store.start_run(cfg(seed=0), meta={"device": "cpu"})
    store.log_epoch(a, 1, train_loss=1.0, val_loss=0.8, val_accuracy=0.5, lr=0.1)
    store.log_epoch(a, 2, train_loss=0.5, val_loss=0.6, val_accuracy=0.7)
    store.finish_run(a, test_accuracy=0.75, extra={"acc": [[1.0]]})
    b = store.start_run(cfg(seed=1, model="vANN", device="cuda"))  # "device" clashes with a column
    store.log_epoch(b, 1, train_loss=2.0)
    store.fail_run(b, "diverged")
    return a, b


def test_export_runs_csv(store, tmp_path):
    a, b = _filled(store)
    out = store.export_runs(tmp_path / "runs.csv")
    with open(out, newline="") as fh:
        rows = list(csv.DictReader(fh))
    header = list(rows[0])
    assert header[:8] == ["id", "key", "status", "model", "dataset", "dendrites", "somata", "seed"]
    for col in ("layers", "lr", "optim.name", "optim.betas", "config.device", "test_accuracy",
                "best_epoch", "epochs_run", "error", "extra"):  # fmt: skip
        assert col in header, col
    assert "config" not in header
    ra, rb = rows
    assert (ra["id"], ra["status"], ra["model"], ra["seed"]) == (str(a), "finished", "dANN-R", "0")
    assert ra["key"] == config_key(cfg(seed=0))
    assert float(ra["test_accuracy"]) == 0.75 and ra["best_epoch"] == "2" and ra["epochs_run"] == "2"
    assert float(ra["lr"]) == 1e-3 and ra["optim.name"] == "adam"
    assert json.loads(ra["optim.betas"]) == [0.9, 0.999]
    assert json.loads(ra["extra"]) == {"acc": [[1.0]]}
    assert ra["device"] == "cpu" and ra["config.device"] == ""
    assert (rb["status"], rb["model"], rb["error"], rb["test_accuracy"]) == (
        "failed",
        "vANN",
        "diverged",
        "",
    )
    assert rb["config.device"] == "cuda"
    # Filters pass through to list_runs.
    store.export_runs(tmp_path / "fin.csv", status="finished")
    with open(tmp_path / "fin.csv", newline="") as fh:
        assert [r["id"] for r in csv.DictReader(fh)] == [str(a)]


def test_export_epochs_csv_and_json(store, tmp_path):
    a, b = _filled(store)
    out = store.export_epochs(tmp_path / "epochs.csv", config_columns=["lr", "optim.name"])
    with open(out, newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader)
        body = list(reader)
    assert header[:16] == [
        "run_id", "key", "status", "model", "dataset", "dendrites", "somata", "seed", "config.lr",
        "optim.name", "epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy",
        "seconds",
    ]  # fmt: skip
    assert header[16:] == ["lr"]  # the extra per-epoch metric; the config's lr is config.lr
    assert len(body) == 3
    first = dict(zip(header, body[0], strict=True))
    assert first["run_id"] == str(a) and first["epoch"] == "1" and first["model"] == "dANN-R"
    assert float(first["val_loss"]) == 0.8 and float(first["config.lr"]) == 1e-3
    assert float(first["lr"]) == 0.1 and first["optim.name"] == "adam"
    last = dict(zip(header, body[2], strict=True))
    assert (last["run_id"], last["status"], last["train_loss"]) == (str(b), "failed", "2.0")

    out = store.export_epochs(tmp_path / "epochs.json")  # format from the suffix
    records = json.loads(out.read_text())
    assert [r["epoch"] for r in records] == [1, 2, 1]
    assert records[0]["lr"] == 0.1 and records[1]["lr"] is None

    runs = json.loads(store.export_runs(tmp_path / "runs.json").read_text())
    assert runs[0]["optim.betas"] == [0.9, 0.999] and runs[0]["extra"] == {"acc": [[1.0]]}
    assert runs[1]["status"] == "failed"


def test_export_parquet_if_available(store, tmp_path):
    pq = pytest.importorskip("pyarrow.parquet")
    a, _ = _filled(store)
    table = pq.read_table(store.export_runs(tmp_path / "runs.parquet", format="parquet"))
    rows = table.to_pylist()
    assert rows[0]["id"] == a and rows[0]["test_accuracy"] == 0.75
    assert json.loads(rows[0]["optim.betas"]) == [0.9, 0.999]
    ep = pq.read_table(store.export_epochs(tmp_path / "epochs.parquet")).to_pylist()
    assert [r["epoch"] for r in ep] == [1, 2, 1]


def test_export_parquet_without_engine_says_what_to_install(store, tmp_path, monkeypatch):
    _filled(store)
    for name in ("pyarrow", "pyarrow.parquet", "pandas"):
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(StoreError, match="pip install pyarrow"):
        store.export_runs(tmp_path / "runs.parquet")
    assert not (tmp_path / "runs.parquet").exists()
    assert list(tmp_path.glob(".runs.parquet.tmp*")) == []


def test_export_bad_format_and_directory(store, tmp_path):
    with pytest.raises(StoreError, match="unknown export format"):
        store.export_runs(tmp_path / "x.csv", format="xlsx")
    with pytest.raises(StoreError, match="does not exist"):
        store.export_runs(tmp_path / "missing" / "x.csv")


def test_statuses_constant():
    assert RUN_STATUSES == ("running", "finished", "failed", "interrupted")
