"""Sweeps: named grids, filters, dry runs, parallel resumable execution, killed processes, Ray."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dendritic.cli import main
from dendritic.store import RunStore, config_key
from dendritic.sweeps import (
    EXPERIMENTS,
    LocalBackend,
    estimate_seconds,
    expand,
    get_experiment,
    run_sweep,
)
from dendritic.sweeps.estimate import DEFAULT_COST, features, measured_epoch_seconds
from dendritic.training import TrainConfig

sys.path.insert(0, str(Path(__file__).parent))
from fakedata import write_dataset  # noqa: E402


@pytest.fixture(autouse=True)
def _isolated(isolated_cache, monkeypatch):
    # Sweeps do not depend on the sparse kernel; the portable one never compiles anything, so
    # worker processes start in a known time.
    monkeypatch.setenv("DENDRITIC_KERNEL", "bag")


@pytest.fixture
def data_dir(tmp_path):
    return write_dataset(tmp_path / "mnist", "mnist", n_train=700, n_test=200)


@pytest.fixture(scope="module")
def pool():
    """One pool of two worker processes for the in-process tests: a worker costs seconds to start
    (torch and its optimiser imports), and a backend passed to run_sweep stays open."""
    backend = LocalBackend(2)
    yield backend
    backend.close()


def tiny(models=("dANN-LRF", "vANN"), dendrites=(1, 4), epochs=2, **kw):
    """A few fast runs of the main grid on the fake MNIST."""
    filters = {
        "dataset": ["mnist"],
        "models": list(models),
        "dendrites": list(dendrites),
        "somata": [32],
        "trials": [1],
    }
    return expand("main", filters, epochs=epochs, **kw)


# ---------------------------------------------------------------- grids and filters
def test_named_grids_expand_to_the_documented_run_counts():
    expected = {
        "main": 2100,
        "noise": 3500,
        "sequential": 875,
        "dropout": 525,
        "lr": 1750,
        "early-stop": 875,
        "depth": 800,
        "depth-deep": 112,  # 7 depths x plain/residual x 4 models x 2 trials
        "depth-init": 28,  # 7 depths x (dANN-LRF, vANN) x 2 trials
        "morphology": 66,  # 11 morphologies x 3 noise levels x 2 trials
        "sparse-controls": 120,  # 3 sizes x 8 controls x 5 trials
        # 4 models x (7 alphas + class-specific + 2 noise x 4 + sequential x 4) x 3 trials
        "selectivity": 240,
    }
    assert {name: e.size() for name, e in EXPERIMENTS.items()} == expected
    for name, n in expected.items():
        configs = expand(name)
        assert len(configs) == n
        assert len({config_key(c.to_dict()) for c in configs}) == n, f"{name} has duplicate runs"
        assert {c.dataset for c in configs} == {"fmnist"}
    main_grid = expand("main")
    assert len({c.model for c in main_grid}) == 12
    assert {(c.dendrites, c.somata) for c in main_grid} == {
        (d, s) for d in (1, 2, 4, 8, 16, 32, 64) for s in (32, 64, 128, 256, 512)
    }
    assert {c.seed for c in main_grid} == {1, 2, 3, 4, 5}
    assert {c.resolved_epochs() for c in main_grid} == {25}
    assert [c.seed for c in main_grid[:420]] == [1] * 420  # seed-major: trial 1 of everything first
    assert len(expand("main", {"dataset": ["mnist", "fmnist", "cifar10"]})) == 3 * 2100

    noise = expand("noise")
    assert sorted({c.sigma for c in noise}) == [0.25, 0.5, 0.75, 1.0]
    assert {c.model for c in noise} == {"dANN-R", "dANN-LRF", "dANN-GRF", "pdANN", "vANN"}
    seq = expand("sequential")
    assert all(c.sequential and c.resolved_epochs() == 50 for c in seq)
    drop = expand("dropout")
    assert {(c.model, c.dropout) for c in drop} == {("vANN-0.2", 0.2), ("vANN-0.5", 0.5), ("vANN-0.8", 0.8)}
    assert sorted({c.lr for c in expand("lr")}) == [1e-4, 0.01]
    assert all(c.early_stop and c.resolved_epochs() == 100 for c in expand("early-stop"))
    depth = expand("depth")
    assert {c.layers for c in depth} == {1, 2, 3, 4}
    assert {c.dendrites for c in depth} == {8, 16, 32, 64} and {c.somata for c in depth} == {256, 512}


def test_filters_shrink_the_grid_and_override_epochs():
    configs = expand(
        "main",
        {"models": "vann, dANN-LRF", "dendrites": [16, 1, 4], "somata": "32,128", "trials": ["1"]},
        epochs=3,
        limit=500,
    )
    assert len(configs) == 2 * 3 * 2
    assert [c.model for c in configs[:6]] == ["dANN-LRF"] * 6  # the grid's order, not the filter's
    assert [c.dendrites for c in configs[:3]] == [1, 4, 16]
    assert all(c.epochs == 3 and c.limit == 500 for c in configs)
    assert len(expand("noise", {"sigma": ["0.5"], "models": ["vANN"], "trials": [2]})) == 35
    assert len(expand("depth", {"layers": "2,3", "somata": "256"})) == 2 * 4 * 5 * 5
    assert len(expand("lr", {"lr": ["1e-4"]})) == 875


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (
            ["main", "--dendrites", "3"],
            "--dendrites 3 is not in the main grid; valid values: 1, 2, 4, 8, 16, 32, 64",
        ),
        (["main", "--models", "dANN-XYZ"], "valid values: dANN-R, dANN-LRF"),
        (["main", "--sigma", "0.5"], "--sigma 0.5 is not in the main grid; valid values: 0"),
        (["depth", "--somata", "32"], "valid values: 256, 512"),
        (["noise", "--dataset", "mnist"], "valid values: fmnist"),
        (["main", "--trials", "one"], "--trials expects an integer"),
        (["main", "--dendrites", ","], "--dendrites names no value"),
        (["mian"], "unknown experiment 'mian'; valid experiments: main, noise"),
    ],
)
def test_bad_filters_are_one_line_errors(argv, fragment, tmp_path, capsys):
    assert main(["sweep", *argv, "--dry-run", "--store", str(tmp_path / "runs.db")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("dendritic: error: ")
    assert fragment in err
    assert not (tmp_path / "runs.db").exists()


def test_dry_run_prints_table_count_finished_and_estimate(tmp_path, capsys):
    store_path = tmp_path / "runs.db"
    argv = [
        "sweep",
        "main",
        "--models",
        "dANN-LRF",
        "--somata",
        "32",
        "--trials",
        "1",
        "--store",
        str(store_path),
    ]
    assert main([*argv, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "7 runs in main, 0 already finished" in out and "estimated time:" in out
    assert out.count("to run") == 8  # 7 rows and the count line
    # Runs finished in the store are counted, and their measured time replaces the cost model.
    config = expand("main", {"models": ["dANN-LRF"], "somata": [32], "trials": [1], "dendrites": [1]})[0]
    twin = TrainConfig(**{**config.to_dict(), "seed": 2})
    with RunStore(store_path) as store:
        for cfg in (config, twin):
            run_id = store.start_run(cfg.to_dict())
            store.finish_run(run_id, test_accuracy=0.8, test_loss=0.5, epochs_run=25, wall_seconds=2500.0)
    assert main([*argv, "--dry-run", "--workers", "2"]) == 0
    out = capsys.readouterr().out
    assert "7 runs in main, 1 already finished" in out and "6 to run" in out
    assert "2 worker(s) x 1 thread(s)" in out
    assert "est. min" in out.splitlines()[0] and " 41.7 " in out  # 100 s per epoch × 25 epochs, measured here
    assert "1 timed from finished runs of this machine" in out
    # --max-minutes leaves out what is estimated to take longer, and says so.
    assert main([*argv, "--dry-run", "--max-minutes", "30"]) == 0
    captured = capsys.readouterr()
    assert "6 runs in main, 0 already finished" in captured.out
    assert "--max-minutes 30: 1 of 7 runs are estimated to take longer and are left out" in captured.err
    # A huge grid prints its first and last rows only.
    assert main(["sweep", "main", "--dry-run", "--store", str(store_path)]) == 0
    out = capsys.readouterr().out
    assert "2100 runs in main" in out and "..." in out and len(out.splitlines()) < 30
    assert "days" in out


def test_estimate_uses_the_cost_model_or_measured_runs():
    small, big = (
        TrainConfig(model="dANN-LRF", dendrites=1, somata=32),
        TrainConfig(model="vANN", dendrites=64, somata=512),
    )
    assert features(big)["dense"] == 784 * 64 * 512 + 64 * 512 * 512 + 512 * 10
    assert DEFAULT_COST.epoch_seconds(big) > 100 * DEFAULT_COST.epoch_seconds(small)
    wall1, total, timed = estimate_seconds([small, big])
    wall2, _, _ = estimate_seconds([small, big], workers=2)
    assert timed == 0 and wall1 == total and wall2 == pytest.approx(total / 2)
    run = {"status": "finished", "wall_seconds": 50.0, "epochs_run": 25, "config": small.to_dict()}
    measured = measured_epoch_seconds([run])
    _, total, timed = estimate_seconds([small], measured=measured)
    assert timed == 1 and total == pytest.approx(2.0 * 25)
    # A run of another morphology or stack times nothing but itself.
    for other in (
        TrainConfig(model="dANN-LRF", dendrites=1, somata=32, residual=True, layers=2),
        TrainConfig(model="dANN-LRF", dendrites=1, somata=32, branches=2, synapses=8),
        TrainConfig(model="dANN-LRF", dendrites=1, somata=32, cable_weights="ones"),
        TrainConfig(model="dANN-LRF", dendrites=1, somata=32, synapses=4),
    ):
        _, _, timed = estimate_seconds([other], measured=measured)
        assert timed == 0, other


# ---------------------------------------------------------------- running, resuming, failures
def test_sweep_runs_records_and_resumes(tmp_path, data_dir, pool, caplog):
    configs = tiny()
    caplog.set_level("INFO", logger="dendritic.sweeps")
    progress: list[tuple[int, int]] = []
    with RunStore(tmp_path / "runs.db") as store:
        report = run_sweep(
            configs,
            store,
            backend=pool,
            threads=1,
            data_dir=data_dir,
            checkpoints=tmp_path / "ckpt",
            progress=lambda done, total: progress.append((done, total)),
        )
        assert (report.done, report.failed, report.skipped) == (4, [], 0)
        runs = store.list_runs()
        assert len(runs) == 4 and {r["status"] for r in runs} == {"finished"}
        for run in runs:
            assert [e["epoch"] for e in store.epochs(run["id"])] == [1, 2]
            assert run["trainable_params"] > 0 and run["test_accuracy"] is not None
            assert Path(run["checkpoint"]).exists()
            assert run["pid"] == os.getpid()  # rows carry the coordinator's pid
            assert run["extra"]["denormals"] == "flushed"  # the worker's fit setting
        lines = [r.getMessage() for r in caplog.records if r.name == "dendritic.sweeps"]
        assert sum("acc" in line and "params" in line for line in lines) == 4
        assert lines[-1].startswith("sweep: 4 done, 0 failed, 0 skipped")
        assert progress[0] == (0, 4) and progress[-1] == (4, 4)
        # Re-running skips everything and trains nothing.
        again = run_sweep(configs, store, backend=LocalBackend(2), data_dir=data_dir)
        assert (again.done, again.skipped) == (0, 4)
        assert len(store) == 4


def test_lottery_runs_of_one_seed_share_their_dense_parent(tmp_path, data_dir, pool, monkeypatch):
    """The fine-tune ticket waits for the rewind ticket of its seed and loads its parent from the
    sweep's cache (removed at the end); its result is the one it gets training the parent itself."""
    import dendritic.sweeps.coordinator as coordinator

    made: list[str] = []
    mkdtemp = coordinator.tempfile.mkdtemp
    monkeypatch.setattr(coordinator.tempfile, "mkdtemp", lambda **kw: made.append(mkdtemp(**kw)) or made[-1])
    base = dict(model="vANN", dendrites=2, somata=8, synapses=4, epochs=1, parent_epochs=2, dataset="mnist")
    rewind = TrainConfig(**base, lottery="rewind")
    finetune = TrainConfig(**base, lottery="finetune")
    with RunStore(tmp_path / "runs.db") as store:
        report = run_sweep([rewind, finetune], store, backend=pool, threads=1, data_dir=data_dir)
        assert (report.done, report.failed) == (2, [])
        runs = {r["config"]["lottery"]: r for r in store.list_runs()}
    made = [m for m in made if "dendritic-lottery-parents" in m]  # multiprocessing makes its own too
    assert len(made) == 1 and not Path(made[0]).exists()
    shared = runs["finetune"]["extra"]["lottery"]
    assert not runs["rewind"]["extra"]["lottery"]["parent_cached"] and shared["parent_cached"]
    assert shared["parent_seconds"] == runs["rewind"]["extra"]["lottery"]["parent_seconds"]
    with RunStore(tmp_path / "alone.db") as store:
        run_sweep([finetune], store, backend=pool, threads=1, data_dir=data_dir)
        (alone,) = store.list_runs()
    assert not alone["extra"]["lottery"]["parent_cached"]
    assert alone["test_accuracy"] == runs["finetune"]["test_accuracy"]
    assert alone["test_loss"] == runs["finetune"]["test_loss"]


def test_a_raising_worker_marks_its_run_failed_and_the_sweep_goes_on(tmp_path, data_dir, pool):
    good = tiny(models=("dANN-R",), dendrites=(1, 2))
    bad = TrainConfig(**{**good[0].to_dict(), "synapses": 1000})  # more synapses than the 784 inputs
    with RunStore(tmp_path / "runs.db") as store:
        report = run_sweep(
            [good[0], bad, good[1]],
            store,
            workers=1,
            threads=1,
            data_dir=data_dir,
        )
        assert report.done == 2 and len(report.failed) == 1
        assert "larger than the input" in report.failed[0][1]
        failed = store.find(bad.to_dict())
        assert failed["status"] == "failed" and "ValueError" in failed["error"]
        # The next invocation retries only the failed run, in the same row.
        report = run_sweep(
            [good[0], bad, good[1]],
            store,
            workers=1,
            threads=1,
            data_dir=data_dir,
        )
        assert (report.done, len(report.failed), report.skipped) == (0, 1, 2)
        assert store.find(bad.to_dict())["attempts"] == 2 and len(store) == 3


# ---------------------------------------------------------------- killed processes
KILL_EPOCHS = 6  # with 3,000 fake images: about a second per run, so kills land mid-run


def _sweep_cmd(tmp_path, data_dir, *extra):
    return [
        sys.executable, "-m", "dendritic.cli", "sweep", "main", "--dataset", "mnist",
        "--models", "dANN-LRF,dANN-R,vANN", "--dendrites", "1,4", "--somata", "32", "--trials", "1",
        "--epochs", str(KILL_EPOCHS), "--data-dir", str(data_dir), "--store", str(tmp_path / "runs.db"),
        "--threads", "1", "--quiet", *extra,
    ]  # fmt: skip


def _start(cmd, tmp_path, **env):
    env = dict(os.environ, PYTHONUNBUFFERED="1", XDG_CACHE_HOME=str(tmp_path / "xdg"), **env)
    return subprocess.Popen(
        cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )


def _finished(path):
    if not path.exists():
        return 0
    try:
        with RunStore(path, readonly=True) as store:
            return store.counts()["finished"]
    except Exception:
        return 0


def _check_complete(path, n):
    """Every run finished exactly once, with all of its epochs."""
    with RunStore(path, readonly=True) as store:
        assert store.integrity_check() == ["ok"]
        runs = store.list_runs()
        assert len(runs) == n and len({r["key"] for r in runs}) == n
        assert {r["status"] for r in runs} == {"finished"}
        for run in runs:
            assert [e["epoch"] for e in store.epochs(run["id"])] == list(range(1, KILL_EPOCHS + 1))
            assert run["epochs_run"] == KILL_EPOCHS and run["test_accuracy"] is not None
        return runs


@pytest.fixture
def big_data_dir(tmp_path):
    """Enough images that a run takes about a second, so kills land mid-run."""
    return write_dataset(tmp_path / "mnist", "mnist", n_train=3000, n_test=200)


def test_sigkilled_coordinator_resumes_without_loss_or_duplicates(tmp_path, big_data_dir):
    db = tmp_path / "runs.db"
    proc = _start(_sweep_cmd(tmp_path, big_data_dir, "--workers", "2"), tmp_path)
    try:
        deadline = time.time() + 120
        while _finished(db) < 1:
            assert proc.poll() is None, proc.communicate()[1]
            assert time.time() < deadline, "no run finished"
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    with RunStore(db, readonly=True) as store:
        before = {r["key"]: r for r in store.list_runs(status="finished")}
        assert 1 <= len(before) < 6  # killed mid-way
    done = subprocess.run(
        _sweep_cmd(tmp_path, big_data_dir, "--workers", "2"), capture_output=True, text=True, timeout=180
    )
    assert done.returncode == 0, done.stderr
    assert f"{len(before)} skipped" in done.stderr
    runs = _check_complete(db, 6)
    for run in runs:  # what was recorded before the kill is untouched
        if run["key"] in before:
            assert run["test_accuracy"] == before[run["key"]]["test_accuracy"]
            assert run["attempts"] == before[run["key"]]["attempts"]


def _start_one_worker_sweep(tmp_path, data_dir):
    """A one-worker sweep, returned once its second run is dispatched: (process, worker pid, run id)."""
    pids = tmp_path / "worker-pids"
    proc = _start(
        _sweep_cmd(tmp_path, data_dir, "--workers", "1"), tmp_path, DENDRITIC_SWEEP_WORKER_PIDS=str(pids)
    )
    try:
        deadline = time.time() + 120
        while not (pids.exists() and len(pids.read_text().splitlines()) >= 2):
            assert proc.poll() is None, proc.communicate()[1]
            assert time.time() < deadline, "the second run never started"
            time.sleep(0.02)
    except BaseException:
        os.killpg(proc.pid, signal.SIGKILL)
        raise
    worker, run_id = map(int, pids.read_text().splitlines()[1].split())
    return proc, worker, run_id


def test_sigkilled_worker_fails_only_its_run_and_the_sweep_goes_on(tmp_path, big_data_dir):
    db = tmp_path / "runs.db"
    proc, pid, victim = _start_one_worker_sweep(tmp_path, big_data_dir)
    try:
        os.kill(pid, signal.SIGKILL)
        _, stderr = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 1, stderr  # the sweep finished the rest and reports the failure
    assert "5 done, 1 failed" in stderr
    with RunStore(db, readonly=True) as store:
        run = store.get_run(victim)
        assert run["status"] == "failed" and "killed by SIGKILL" in run["error"]
        assert store.counts()["finished"] == 5
    done = subprocess.run(
        _sweep_cmd(tmp_path, big_data_dir, "--workers", "1"), capture_output=True, text=True, timeout=180
    )
    assert done.returncode == 0, done.stderr
    assert "1 done, 0 failed, 5 skipped" in done.stderr
    runs = _check_complete(db, 6)
    assert {r["id"]: r["attempts"] for r in runs}[victim] == 2


def test_sigterm_stops_the_sweep_marks_its_runs_interrupted_and_ends_the_workers(tmp_path, big_data_dir):
    """What a cluster scheduler does at a time limit: SIGTERM to the coordinator alone."""
    db = tmp_path / "runs.db"
    proc, worker, victim = _start_one_worker_sweep(tmp_path, big_data_dir)
    try:
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 143, stderr
    assert "terminated (SIGTERM)" in stderr and "Traceback" not in stderr
    with RunStore(db, readonly=True) as store:
        run = store.get_run(victim)
        assert run["status"] == "interrupted" and "SIGTERM" in run["error"]
    deadline = time.time() + 10
    while time.time() < deadline:  # the worker does not outlive its coordinator
        try:
            os.kill(worker, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        os.kill(worker, signal.SIGKILL)
        raise AssertionError("the worker process outlived the terminated sweep")
    done = subprocess.run(
        _sweep_cmd(tmp_path, big_data_dir, "--workers", "1"), capture_output=True, text=True, timeout=180
    )
    assert done.returncode == 0, done.stderr
    _check_complete(db, 6)


# ---------------------------------------------------------------- Ray
def test_ray_backend_gives_the_same_results_as_local(tmp_path, data_dir, pool):
    pytest.importorskip("ray")
    from dendritic.sweeps import RayBackend

    configs = tiny(models=("dANN-GRF", "vANN-R"), dendrites=(2,), epochs=2)
    results = {}
    for name in ("local", "ray"):
        backend = pool if name == "local" else RayBackend(None, threads=1, num_cpus=2)
        try:
            with RunStore(tmp_path / f"{name}.db") as store:
                report = run_sweep(
                    configs,
                    store,
                    backend=backend,
                    threads=1,
                    data_dir=data_dir,
                )
                assert report.done == 2 and not report.failed
                results[name] = {
                    r["key"]: (r["test_accuracy"], r["test_loss"], _curves(store, r["id"]))
                    for r in store.list_runs()
                }
        finally:
            if backend is not pool:
                backend.close()
    assert results["ray"] == results["local"]


def _curves(store, run_id):
    names = ("train_loss", "train_accuracy", "val_loss", "val_accuracy")
    return [tuple(e[n] for n in names) for e in store.epochs(run_id)]


def test_missing_ray_is_a_one_line_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now raises ImportError
    argv = ["sweep", "main", "--models", "vANN", "--dendrites", "1", "--somata", "32", "--trials", "1"]
    assert main([*argv, "--backend", "ray", "--store", str(tmp_path / "runs.db")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pip install 'dendritic[ray]'" in err
    assert get_experiment("MAIN").name == "main"


def test_an_interrupted_sweep_marks_its_runs_in_flight_interrupted(tmp_path, data_dir, pool):
    """Ctrl-C (here: raised after the first result) leaves in-flight runs 'interrupted', not running."""
    configs = tiny(models=("dANN-R", "dANN-LRF"), epochs=3)

    def stop(config, outcome):
        raise KeyboardInterrupt

    with RunStore(tmp_path / "runs.db") as store:
        with pytest.raises(KeyboardInterrupt):
            run_sweep(
                configs,
                store,
                backend=pool,
                threads=1,
                data_dir=data_dir,
                on_result=stop,
            )
        counts = store.counts()
        assert counts["finished"] == 1 and counts["interrupted"] == 1 and counts["running"] == 0
        assert [r["stored_status"] for r in store.list_runs(status="interrupted")] == ["interrupted"]
        report = run_sweep(configs, store, backend=pool, threads=1, data_dir=data_dir)
        assert (report.done, report.skipped) == (3, 1)
        assert store.counts()["finished"] == 4 and len(store) == 4


def test_runs_of_a_coordinator_on_another_host_are_left_alone_unless_reclaimed(tmp_path, data_dir, pool):
    config = tiny(models=("vANN",), dendrites=(1,))[0]
    with RunStore(tmp_path / "runs.db") as store:
        store.start_run(config.to_dict(), meta={"host": "elsewhere", "pid": 4242})
        common = dict(backend=pool, threads=1, data_dir=data_dir)
        report = run_sweep([config], store, **common)
        assert (report.done, report.busy) == (0, 1)  # may still be alive over there
        assert store.find(config.to_dict())["status"] == "running"
        report = run_sweep([config], store, reclaim=0.0, **common)
        assert report.done == 1
        run = store.find(config.to_dict())
        assert run["status"] == "finished" and run["attempts"] == 2 and run["host"] != "elsewhere"


def test_cost_model_knows_the_whole_step_path_of_one_layer_danns():
    from dendritic.sweeps.estimate import CostModel, fit_runs

    fused = TrainConfig(model="dANN-LRF", dendrites=16, somata=256)
    assert features(fused)["fused"] == 1.0
    for other in (
        TrainConfig(model="vANN", dendrites=1, somata=256),
        TrainConfig(model="sANN", dendrites=16, somata=256),  # random cables: step by step
        TrainConfig(model="pdANN", dendrites=16, somata=256),
        TrainConfig(model="dANN-LRF", dendrites=16, somata=256, layers=2),
        TrainConfig(model="dANN-LRF", dendrites=16, somata=256, dropout=0.2),
    ):
        assert features(other)["fused"] == 0.0, other.model
    # the default constants against the benchmark (docs/benchmarks.md: 1.19 s per epoch, 1 thread)
    assert 0.9 < DEFAULT_COST.epoch_seconds(fused) < 1.6
    # runs made by a known model give its constants back, each kind from its own runs
    truth = CostModel(c0=1e-3, a_dense=2e-10, a_sparse=6e-10, a_unit=1e-11, c0_fused=2e-4, a_fused=4e-10)
    configs = [
        TrainConfig(model=m, dendrites=d, somata=s)
        for m in ("dANN-R", "dANN-GRF", "vANN", "sANN", "pdANN")
        for d, s in ((1, 32), (4, 64), (16, 256))
    ]
    runs = [
        {
            "status": "finished",
            "wall_seconds": 25 * truth.epoch_seconds(c),
            "epochs_run": 25,
            "config": c.to_dict(),
        }
        for c in configs
    ]
    fitted = fit_runs(runs)
    assert fitted.c0_fused == pytest.approx(2e-4, rel=1e-3) and fitted.a_fused == pytest.approx(
        4e-10, rel=1e-3
    )
    assert fitted.c0 == pytest.approx(1e-3, rel=1e-2) and fitted.a_dense == pytest.approx(2e-10, rel=1e-2)
    for config in configs:
        assert fitted.epoch_seconds(config) == pytest.approx(truth.epoch_seconds(config), rel=1e-3)
