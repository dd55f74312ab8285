"""Issue 22, defect 1: a checkpoint belongs to one run.

Two runs given the same ``--checkpoint`` path used to overwrite each other silently, and
``analyze`` then reported the second run's model under the first run's label (the checkpoint's
own run id was never compared with the run analysed). Now ``train`` refuses, before any
training, a path whose checkpoint (or whose store record) is another run's, in one line naming
the owner and a free name; ``analyze`` and ``load(path, run=...)`` refuse a checkpoint whose run
id or training config is not the run's; the same config still overwrites its own checkpoint
(retries, ``--replace``, resumed sweeps).
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import sys
from pathlib import Path

import pytest

from dendritic.cli import main
from dendritic.models import DendriticNet
from dendritic.models.checkpoint import CheckpointOwnerError, check_run, load, save
from dendritic.store import RunStore
from dendritic.training import Callback, TrainConfig, train

sys.path.insert(0, str(Path(__file__).parent))
from fakedata import write_dataset  # noqa: E402


@pytest.fixture(autouse=True)
def _workspace(isolated_cache, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def data_dir(tmp_path):
    return write_dataset(tmp_path / "data", "mnist", n_train=300, n_test=100)


def _digest(path: Path | str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _digests(*paths: str) -> dict[str, str]:
    return {p: _digest(p) for p in paths}


def _fails_in_one_line(capsys, argv: list[str], *, code: int, expect: str) -> str:
    """Run the CLI in-process; it must exit ``code`` with one stderr line and no traceback."""
    rc = main(argv)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert rc == code, (argv, rc, err)
    assert "Traceback" not in err
    assert len(lines) == 1, (argv, err)
    assert expect in lines[0], (expect, lines[0])
    return lines[0]


def _train(data_dir, model: str, *extra: str) -> list[str]:
    """The issue's command: `train --model MODEL ... --checkpoint X` (tiny and fast)."""
    return ["train", "--model", model, "--dataset", "mnist", "--dendrites", "2", "--somata", "8",
            "--epochs", "1", "--data-dir", str(data_dir), "--quiet", *extra]  # fmt: skip


def _config(model: str, **kw) -> TrainConfig:
    """The config `_train` records for ``model``."""
    return TrainConfig(model=model, dataset="mnist", dendrites=2, somata=8, epochs=1, **kw)


CKPT = ("runs.db", "X.json", "X.safetensors")


# ---------------------------------------------------------------- train refuses another run's path


def test_a_second_run_cannot_overwrite_the_first_runs_checkpoint(data_dir, capsys):
    """The issue's inputs: dANN-LRF then vANN with one --checkpoint; then analyze 1."""
    pytest.importorskip("sklearn")
    assert main(_train(data_dir, "dANN-LRF", "--checkpoint", "X")) == 0
    before = _digests(*CKPT)
    capsys.readouterr()
    line = _fails_in_one_line(capsys, _train(data_dir, "vANN", "--checkpoint", "X"), code=1,
                              expect="--checkpoint X holds the checkpoint of run 1 (dANN-LRF on mnist")  # fmt: skip
    assert "give a free name such as X-2" in line
    assert _digests(*CKPT) == before  # nothing written: store, tensors and JSON byte-identical
    assert not Path("X-2.json").exists()
    with RunStore("runs.db", readonly=True) as store:
        assert [r["model"] for r in store.list_runs()] == ["dANN-LRF"]
        stored = store.get_run(1)["test_accuracy"]
    # The suggested name is free: the second run trains there.
    assert main(_train(data_dir, "vANN", "--checkpoint", "X-2")) == 0
    assert main(["analyze", "1", "--tsne-samples", "0", "--data-dir", str(data_dir)]) == 0
    result = json.loads(Path("analysis/run-1/analysis.json").read_text())
    assert result["run"]["model"] == "dANN-LRF"
    assert result["test"]["accuracy"] == pytest.approx(stored)  # computed on run 1's own model
    assert not any("differs from the stored" in note for note in result["notes"])


def test_the_store_names_the_owner_of_a_deleted_checkpoint(data_dir, capsys):
    """The checkpoint files are gone, but the store still records them as run 1's."""
    assert main(_train(data_dir, "dANN-LRF", "--checkpoint", "X")) == 0
    for path in ("X.json", "X.safetensors"):
        Path(path).unlink()
    before = _digest("runs.db")
    capsys.readouterr()
    line = _fails_in_one_line(capsys, _train(data_dir, "vANN", "--checkpoint", "X.json"), code=1,
                              expect="is the checkpoint of run 1 of runs.db (dANN-LRF")  # fmt: skip
    assert "differs in model" in line and "X-2" in line
    assert _digest("runs.db") == before and not Path("X.json").exists()
    with RunStore("runs.db", readonly=True) as store:
        assert len(store) == 1


def test_the_python_api_refuses_before_training(data_dir):
    """`dendritic.training.train` checks too (not only the CLI), before the data is even read."""
    assert main(_train(data_dir, "dANN-LRF", "--checkpoint", "X")) == 0
    before = _digests(*CKPT)

    class NoEpoch(Callback):
        def on_fit_start(self, state):
            raise AssertionError("training started")

    with pytest.raises(CheckpointOwnerError, match="holds the checkpoint of run 1"):
        train(_config("vANN"), data_dir="nowhere", checkpoint="X", callbacks=[NoEpoch()])
    with RunStore("runs.db") as store, pytest.raises(CheckpointOwnerError):
        train(_config("vANN"), store=store, data_dir=data_dir, checkpoint="X", callbacks=[NoEpoch()])
    assert _digests(*CKPT) == before


def test_a_checkpoint_that_appears_while_training_is_saved_under_a_free_name(data_dir, caplog):
    """Two runs started together with one path: the later one to finish never overwrites the
    other's checkpoint; it saves under the next free name and the store records that name."""
    other = _config("dANN-LRF")

    class OtherRunFinishes(Callback):  # the other run writes X while this one trains
        def on_epoch_end(self, state, metrics):
            model = DendriticNet(other.model_spec(), (1, 28, 28), 10, seed=1)
            save(model, "X", extra={"run_id": 99, "train_config": other.to_dict()})

    caplog.set_level(logging.WARNING, logger="dendritic")
    with RunStore("runs.db") as store:
        result = train(_config("vANN"), store=store, data_dir=data_dir, checkpoint="X",
                       callbacks=[OtherRunFinishes()])  # fmt: skip
        run = store.get_run(result.run_id)
    assert run["checkpoint"] == str(Path("X-2.json").resolve()) == result.checkpoint
    assert json.loads(Path("X.json").read_text())["extra"]["run_id"] == 99  # the other's, kept
    assert json.loads(Path("X-2.json").read_text())["extra"]["run_id"] == result.run_id
    assert any("saving this run's checkpoint as X-2" in r.getMessage() for r in caplog.records)
    check_run("X-2", run)  # and it is the run's own


# ---------------------------------------------------------------- the same run may overwrite its own


def test_replace_and_retries_overwrite_their_own_checkpoint(data_dir, capsys):
    pytest.importorskip("sklearn")
    assert main(_train(data_dir, "dANN-LRF", "--checkpoint", "X")) == 0
    assert main(_train(data_dir, "dANN-LRF", "--checkpoint", "X", "--replace")) == 0
    with RunStore("runs.db", readonly=True) as store:
        (run,) = store.list_runs()
    assert run["id"] != 1 and run["attempts"] == 2  # the replacement's row took the old one's place
    assert json.loads(Path("X.json").read_text())["extra"]["run_id"] == run["id"]
    assert main(["analyze", str(run["id"]), "--tsne-samples", "0", "--data-dir", str(data_dir)]) == 0
    # The same config without a store writes a checkpoint with no run id: it still analyses
    # (matched by its training config).
    assert main(_train(data_dir, "dANN-LRF", "--checkpoint", "X", "--no-store")) == 0
    assert "run_id" not in json.loads(Path("X.json").read_text())["extra"]
    assert main(["analyze", str(run["id"]), "--tsne-samples", "0", "--data-dir", str(data_dir)]) == 0


# ---------------------------------------------------------------- analyze and load check the run


def test_analyze_refuses_a_checkpoint_another_run_wrote_over(data_dir, capsys):
    """What the old code left behind: run 1's checkpoint file holds run 2's model."""
    pytest.importorskip("sklearn")
    assert main(_train(data_dir, "dANN-LRF", "--checkpoint", "X")) == 0
    assert main(_train(data_dir, "vANN", "--checkpoint", "Y")) == 0
    for suffix in (".json", ".safetensors"):
        shutil.copyfile("Y" + suffix, "X" + suffix)
    capsys.readouterr()
    line = _fails_in_one_line(
        capsys,
        ["analyze", "1", "--tsne-samples", "0", "--data-dir", str(data_dir)],
        code=1,
        expect="belongs to run 2 (vANN on mnist, D=2 S=8 seed 1), not to run 1 (dANN-LRF on mnist",
    )
    assert "differs in model" in line
    assert not Path("analysis").exists()  # nothing written under run 1's label
    with RunStore("runs.db", readonly=True) as store:
        run1, run2 = store.get_run(1), store.get_run(2)
    with pytest.raises(CheckpointOwnerError, match="belongs to run 2 .* not to run 1"):
        load("X", run=run1)
    assert load("X", run=run2).config["name"] == "vANN"
    # The same config under another run id (another store's run, a killed --replace) is refused too.
    with pytest.raises(CheckpointOwnerError, match="the same config"):
        load("Y", run={**run2, "id": 7})


def test_checkpoints_without_a_run_id_are_matched_by_config(data_dir):
    """Sweep and --no-store checkpoints carry no run id: their training config decides; a plain
    save() carries no training config either: the model's own config decides, with a note."""
    lrf, vann = _config("dANN-LRF"), _config("vANN")
    train(lrf, data_dir=data_dir, checkpoint="S")  # no store, so no run id
    with RunStore("runs.db") as store:
        ids = {}
        for name, cfg in (("lrf", lrf), ("vann", vann), ("seed2", _config("dANN-LRF", seed=2))):
            ids[name] = store.start_run(cfg.to_dict())
            store.finish_run(ids[name], test_accuracy=0.1, test_loss=2.0, checkpoint="S.json")
        runs = {name: store.get_run(i) for name, i in ids.items()}
    assert check_run("S", runs["lrf"]) is None
    assert load("S", run=runs["lrf"]).config["name"] == "dANN-LRF"
    with pytest.raises(
        CheckpointOwnerError, match="belongs to another run .*not to run 2 .*differs in model"
    ):
        check_run("S", runs["vann"])
    save(DendriticNet(lrf.model_spec(), (1, 28, 28), 10, seed=1), "P")  # no run id, no training config
    note = check_run("P", runs["lrf"])
    assert note is not None and "by its model's config only" in note
    with pytest.raises(CheckpointOwnerError, match="differs in seed"):
        load("P", run=runs["seed2"])
    with pytest.raises(CheckpointOwnerError, match="differs in model"):
        check_run("P", runs["vann"])


# ---------------------------------------------------------------- sweeps keep their own names


def test_a_resumed_sweep_rewrites_only_its_own_checkpoints(tmp_path, data_dir, monkeypatch):
    """Each sweep run has its own checkpoint name (config key inside); a run retried on resume
    writes over its own checkpoint, and every checkpoint stays its run's."""
    from dendritic.sweeps import LocalBackend, expand, run_sweep

    monkeypatch.setenv("DENDRITIC_KERNEL", "bag")  # no compile in the worker
    configs = expand("main", {"dataset": ["mnist"], "models": ["dANN-LRF", "vANN"], "dendrites": [1],
                              "somata": [32], "trials": [1]}, epochs=1)  # fmt: skip
    backend = LocalBackend(1)
    try:
        with RunStore("runs.db") as store:
            report = run_sweep(configs, store, backend=backend, data_dir=data_dir, checkpoints="ck")
            assert (report.done, report.failed) == (2, [])
            first = {r["key"]: r["checkpoint"] for r in store.list_runs()}
            victim = store.list_runs()[0]
            store.delete_run(victim["id"])  # as if killed after saving, before being recorded
            again = run_sweep(configs, store, backend=backend, data_dir=data_dir, checkpoints="ck")
            assert (again.done, again.skipped, again.failed) == (1, 1, [])
            runs = store.list_runs()
    finally:
        backend.close()
    assert {r["key"]: r["checkpoint"] for r in runs} == first
    for run in runs:
        assert check_run(run["checkpoint"], run) is None
