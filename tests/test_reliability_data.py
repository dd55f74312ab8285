"""Issue 22, defects 3, 8, 9, 11 and 12: a cluster address that does not answer, empty splits,
fractional labels, an unwritable checkpoint folder, and what ``--limit`` limits.

Each test uses the issue's inputs and fails on the code before the fix: one line on stderr, a
non-zero exit, no traceback, and the results store byte-identical where one was at stake.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import pickle
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from dendritic.cli import build_parser, main
from dendritic.data import CorruptDatasetError, EmptySplitError, load, prepare, read_cifar_batch
from dendritic.errors import PathError
from dendritic.store import RunStore, config_key

sys.path.insert(0, str(Path(__file__).parent))
from fakedata import write_dataset  # noqa: E402

SRC = Path(__file__).parents[1] / "src"


@pytest.fixture(autouse=True)
def _workspace(isolated_cache, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def data_dir(tmp_path):
    return write_dataset(tmp_path / "data", "mnist", n_train=300, n_test=100)


@pytest.fixture
def store(tmp_path):
    """runs.db in the working folder (every command's default) with one finished run."""
    path = tmp_path / "runs.db"
    with RunStore(path) as s:
        rid = s.start_run({"model": "dANN-R", "dataset": "mnist", "dendrites": 2, "somata": 8, "seed": 1})
        s.log_epoch(rid, 1, train_loss=1.0, val_loss=1.1, val_accuracy=0.5)
        s.finish_run(rid, test_accuracy=0.5, test_loss=1.0)
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


# ---------------------------------------------------------------- 3. a cluster that does not answer

SWEEP = ["sweep", "main", "--dataset", "mnist", "--models", "vANN", "--dendrites", "1", "--somata", "32",
         "--trials", "1", "--epochs", "1", "--limit", "60", "--quiet", "--backend", "ray"]  # fmt: skip


def _descendants(pid: int) -> set[int]:
    """Every live process below ``pid`` (read from /proc: Ray's daemons would show up here)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
    found, todo = set(), [pid]
    while todo:
        below = todo.pop()
        children = {p for p, parent in parents.items() if parent == below}
        todo.extend(children - found)
        found |= children
    return found


@pytest.mark.parametrize("address", ["127.0.0.1:1", "ray://127.0.0.1:1"])
def test_a_cluster_address_nobody_listens_on_is_one_line_at_once(
    data_dir, store, capsys, monkeypatch, address
):
    """Issue 22 #3: ``127.0.0.1:1`` retried for over 200 s, ``ray://127.0.0.1:1`` failed after 33 s."""
    pytest.importorskip("ray")
    import ray

    monkeypatch.setenv("DENDRITIC_RAY_CONNECT_TIMEOUT", "20")
    before, digest = _descendants(os.getpid()), _digest(store)
    started = time.monotonic()
    line = _fails_in_one_line(
        capsys,
        [*SWEEP, "--data-dir", str(data_dir), "--address", address],
        code=1,
        expect="Connection refused",
    )
    assert time.monotonic() - started < 20  # refused at once: no waiting for the timeout, nor Ray's retries
    assert line.startswith(f"dendritic: error: cannot connect to the Ray cluster at {address}:")
    assert not ray.is_initialized()
    assert _descendants(os.getpid()) <= before  # no Ray process started or left behind
    assert _digest(store) == digest


@pytest.mark.parametrize("scheme", ["", "ray://"])
def test_a_silent_cluster_address_fails_after_the_timeout(scheme):
    """Issue 22 #3: a port that accepts connections but never answers is an error after the
    configured timeout (here 2 s), not after Ray's minutes of retries."""
    pytest.importorskip("ray")
    from dendritic.sweeps.backends import BackendError, RayBackend

    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(4)
        address = f"{scheme}127.0.0.1:{silent.getsockname()[1]}"
        started = time.monotonic()
        with pytest.raises(BackendError, match=r"no answer within 2 s \(--connect-timeout") as exc:
            RayBackend(address, connect_timeout=2)
        assert 2 <= time.monotonic() - started < 15
    assert str(exc.value).startswith(f"cannot connect to the Ray cluster at {address}:")
    assert "\n" not in str(exc.value)


def test_a_server_that_is_not_ray_is_refused_within_the_timeout(data_dir, tmp_path):
    """Issue 22 #3: something that answers (a gRPC server) but is not Ray: ``ray.init`` is
    interrupted at ``--connect-timeout``, the sweep ends in one last line, and the CLI process
    leaves nothing running."""
    pytest.importorskip("ray")
    grpc = pytest.importorskip("grpc")
    from concurrent import futures

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
    port = server.add_insecure_port("0.0.0.0:0")  # Ray dials this machine's own address
    server.start()
    try:
        address = f"127.0.0.1:{port}"
        process = subprocess.Popen(
            [sys.executable, "-m", "dendritic.cli", *SWEEP, "--data-dir", str(data_dir),
             "--store", str(tmp_path / "runs.db"), "--address", address, "--connect-timeout", "3"],
            env={**os.environ, "PYTHONPATH": str(SRC)},
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )  # fmt: skip
        try:
            err = process.communicate(timeout=180)[1]
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
    finally:
        server.stop(None)
    assert process.returncode == 1, err
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"dendritic: error: cannot connect to the Ray cluster at {address}: no Ray cluster "
                           "answered there within 3 s"), last  # fmt: skip
    with pytest.raises(ProcessLookupError):
        os.killpg(process.pid, 0)  # the whole session ended with the command: no Ray daemons


def test_the_connect_timeout_is_an_option_and_a_variable(data_dir, capsys, monkeypatch):
    """Issue 22 #3: the bound is documented in --help and checked like every number."""
    help_text = build_parser()._subparsers._group_actions[0].choices["sweep"].format_help()
    assert "--connect-timeout SECONDS" in help_text and "DENDRITIC_RAY_CONNECT_TIMEOUT" in help_text
    _fails_in_one_line(capsys, [*SWEEP, "--address", "127.0.0.1:1", "--connect-timeout", "0"], code=2)
    _fails_in_one_line(
        capsys, [*SWEEP, "--data-dir", str(data_dir), "--connect-timeout", "5"], code=1, expect="--address"
    )
    from dendritic.sweeps.backends import BackendError, ray_connect_timeout

    assert ray_connect_timeout() == 30.0
    monkeypatch.setenv("DENDRITIC_RAY_CONNECT_TIMEOUT", "4.5")
    assert ray_connect_timeout() == 4.5 and ray_connect_timeout(2) == 2.0
    monkeypatch.setenv("DENDRITIC_RAY_CONNECT_TIMEOUT", "soon")
    with pytest.raises(BackendError, match=r"\$DENDRITIC_RAY_CONNECT_TIMEOUT must be a number"):
        ray_connect_timeout()


# ---------------------------------------------------------------- 8. empty splits


def test_limit_1_names_the_cause_in_one_line(data_dir, store, capsys):
    """Issue 22 #8: ``--limit 1`` failed with "cannot reshape array of size 0 ..."."""
    digest = _digest(store)
    line = _fails_in_one_line(
        capsys, _train(data_dir, "--limit", "1"), code=1, expect="no image left to train on"
    )
    assert "limit 1 keeps 1 image(s)" in line and "use a limit of at least 2" in line
    assert "reshape" not in line
    assert _digest(store) == digest  # nothing recorded
    with pytest.raises(EmptySplitError, match="use a limit of at least 2"):
        prepare("mnist", seed=1, limit=1, data_dir=data_dir)
    assert len(prepare("mnist", seed=1, limit=2, data_dir=data_dir).x_train) == 1


@pytest.mark.parametrize(
    "split,name", [("train", "train-images-idx3-ubyte"), ("test", "t10k-images-idx3-ubyte")]
)
def test_zero_item_idx_files_are_named(tmp_path, store, capsys, split, name):
    """Issue 22 #8: valid IDX files with zero items failed with the same reshape message."""
    sizes = {"n_train": 300, "n_test": 100, f"n_{split}": 0}
    empty = write_dataset(tmp_path / "empty", "mnist", **sizes)
    digest = _digest(store)
    line = _fails_in_one_line(capsys, _train(empty), code=1, expect=f"{name}.gz holds no images")
    assert str(empty) in line and "reshape" not in line
    assert _digest(store) == digest
    with pytest.raises(CorruptDatasetError, match=f"{name}.gz holds no images"):
        load("mnist", data_dir=empty)


# ---------------------------------------------------------------- 9. fractional CIFAR labels


def _cifar_batch(labels: list, n: int = 100) -> bytes:
    images = np.random.default_rng(0).integers(0, 256, size=(n, 3072), dtype=np.uint8)
    # Protocol 2 as the real files; an empty array needs 3+ (2 rebuilds empty bytes by a call).
    return pickle.dumps({b"batch_label": b"fake", b"labels": labels, b"data": images}, protocol=2 if n else 4)


def _cifar_dir(folder: Path, bad: bytes, where: str = "data_batch_2") -> Path:
    folder.mkdir(parents=True)
    for i, name in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
        good = _cifar_batch([int(v) for v in np.random.default_rng(i).integers(0, 10, 100)])
        (folder / name).write_bytes(bad if name == where else good)
    return folder


def test_fractional_cifar_labels_are_refused(tmp_path, store, capsys):
    """Issue 22 #9: labels ``[0.5]*100`` were accepted and truncated to class 0."""
    with pytest.raises(
        CorruptDatasetError, match=r"batch: labels must be class numbers \(integers\), found float 0.5"
    ):
        read_cifar_batch(_cifar_batch([0.5] * 100), origin="batch")
    for odd, shown in (
        ([True] * 100, "bool True"),
        (["3"] * 100, "str '3'"),
        ([2**70] * 100, "beyond 64 bits"),
    ):
        with pytest.raises(CorruptDatasetError, match=shown):
            read_cifar_batch(_cifar_batch(odd))
    folder = _cifar_dir(tmp_path / "cifar", _cifar_batch([0.5] * 100))
    digest = _digest(store)
    line = _fails_in_one_line(
        capsys,
        ["train", "--model", "vANN", "--dataset", "cifar10", "--somata", "8", "--epochs", "1",
         "--data-dir", str(folder), "--quiet"],
        code=1,
        expect=f"{folder / 'data_batch_2'}: labels must be class numbers (integers), found float 0.5",
    )  # fmt: skip
    assert line
    assert _digest(store) == digest
    # Integer labels of any integer dtype still load; an empty batch is named like an empty IDX file.
    raw = load(
        "cifar10", data_dir=_cifar_dir(tmp_path / "ok", _cifar_batch(np.arange(100, dtype=np.uint8) % 10))
    )
    assert raw.y_train.dtype == np.int64 and len(raw.y_train) == 500
    with pytest.raises(CorruptDatasetError, match="test_batch holds no images"):
        load("cifar10", data_dir=_cifar_dir(tmp_path / "e", _cifar_batch([], n=0), where="test_batch"))


# ---------------------------------------------------------------- 11. a checkpoint folder nobody can write


@pytest.mark.parametrize("target", ["/proc/ck", "/sys/ck"])
def test_a_checkpoint_on_a_special_filesystem_fails_before_training(data_dir, capsys, target):
    """Issue 22 #11: ``--checkpoint /proc/ck`` passed the early check (root passes os.access)
    and failed after training."""
    if not Path(target).parent.is_dir():
        pytest.skip(f"no {Path(target).parent} here")
    _fails_in_one_line(capsys, _train(data_dir, "--checkpoint", target), code=1, expect="is not writable")
    assert not Path("runs.db").exists()  # refused before the store is even opened: nothing trained


def test_the_write_probe_creates_a_file_and_leaves_none(tmp_path, monkeypatch):
    """Issue 22 #11: the early check really creates (and removes) a file in the target's folder,
    so a folder whose permission bits look fine but refuses files is caught before training."""
    import tempfile

    from dendritic.files import check_output_dir, check_output_file

    folder = tmp_path / "shelf"
    folder.mkdir()
    check_output_file(folder / "ck.json", option="--checkpoint")
    check_output_dir(folder / "new" / "deeper", option="--out")
    assert list(folder.iterdir()) == []  # the probe file is gone, no folder created early
    made: list[str] = []
    real = tempfile.mkstemp

    def refuse(*args, **kwargs):
        made.append(kwargs.get("dir"))
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    with pytest.raises(PathError, match=r"folder .*shelf is not writable \(creating a file there fails"):
        check_output_file(folder / "ck.json", option="--checkpoint")
    assert made == [folder]
    monkeypatch.setattr(tempfile, "mkstemp", real)


# ---------------------------------------------------------------- 12. --limit limits training images


def test_limit_shrinks_the_training_images_not_the_test_set(data_dir):
    """Issue 22 #12: ``--limit 9`` gave test accuracy over 9 images; --help says it limits
    training images. Same inputs through the path ``dendritic train`` takes (``data_for``)."""
    from dendritic.training import TrainConfig
    from dendritic.training.loop import data_for

    config = TrainConfig(model="dANN-R", dataset="mnist", dendrites=2, somata=8, epochs=1, limit=9)
    data = data_for(config, data_dir)
    assert len(data.x_train) + len(data.x_val) == 9 and len(data.x_val) == 1
    assert len(data.x_test) == len(data.y_test) == 100  # the whole test set
    full = prepare("mnist", seed=1, data_dir=data_dir)
    assert (data.x_test == full.x_test).all() and (data.y_test == full.y_test).all()
    # A smaller test set is still there for whoever asks for it explicitly, stratified.
    small = prepare("mnist", seed=1, limit=9, test_limit=20, data_dir=data_dir)
    assert len(small.x_test) == 20 and np.bincount(small.y_test.numpy()).tolist() == [2] * 10
    help_text = " ".join(build_parser()._subparsers._group_actions[0].choices["train"].format_help().split())
    assert "at most this many training images" in help_text and "the test set stays whole" in help_text


def test_runs_without_a_limit_keep_their_store_keys():
    """Issue 22 #12: runs without a limit keep their store keys byte-for-byte."""
    from dendritic.training import TrainConfig

    assert config_key(TrainConfig().to_dict()) == "e346fdf2b599e9de"
    small = TrainConfig(model="dANN-R", dataset="mnist", dendrites=2, somata=8, epochs=1)
    assert config_key(small.to_dict()) == "a320e0de09f0174c"
