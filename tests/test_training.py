"""The training protocol (SPEC §4), checkpoints, and what happens when runs die."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from dendritic import build_model
from dendritic.data import prepare
from dendritic.models.checkpoint import CheckpointError, checkpoint_paths, load, save
from dendritic.store import RunStore
from dendritic.training import TrainConfig, train
from dendritic.training.loop import batch_order

sys.path.insert(0, str(Path(__file__).parent))
from fakedata import write_dataset  # noqa: E402

FMNIST = Path("/usr/share/datasets/fashion-mnist")


pytestmark = pytest.mark.usefixtures("isolated_cache")


@pytest.fixture
def data_dir(tmp_path):
    return write_dataset(tmp_path / "mnist", "mnist", n_train=700, n_test=200)


def small(**kw):
    base = dict(model="dANN-LRF", dataset="mnist", dendrites=4, somata=16, epochs=3, seed=1)
    base.update(kw)
    return TrainConfig(**base)


def test_training_learns_and_reports(data_dir):
    result = train(small(epochs=6, lr=0.01), data_dir=data_dir)
    assert result.epochs_run == 6 and len(result.history) == 6
    assert result.history[-1].val_accuracy > 0.8
    assert result.test_accuracy > 0.8
    assert result.trainable_params == 18 * 64 + 11 * 16 + 10
    assert 1 <= result.best_epoch <= 6
    assert "test accuracy" in result.summary()


def test_same_config_same_metrics(data_dir):
    """Determinism: the same config and seed give identical per-epoch metrics on the CPU."""
    for model in ("dANN-R", "vANN-0.5"):
        a = train(small(model=model), data_dir=data_dir)
        b = train(small(model=model), data_dir=data_dir)
        assert [h.as_dict() | {"seconds": 0} for h in a.history] == [
            h.as_dict() | {"seconds": 0} for h in b.history
        ]
        assert a.test_loss == b.test_loss
    c = train(small(seed=2), data_dir=data_dir)
    assert c.history[0].train_loss != a.history[0].train_loss


def test_epochs_default_to_the_paper(tmp_path):
    assert TrainConfig(dataset="fmnist").resolved_epochs() == 25
    assert TrainConfig(dataset="mnist").resolved_epochs() == 15
    assert TrainConfig(dataset="cifar10").resolved_epochs() == 50
    assert TrainConfig(dataset="fmnist", sequential=True).resolved_epochs() == 50
    assert TrainConfig(dataset="fmnist", early_stop=True).resolved_epochs() == 100
    assert TrainConfig(lr=1).to_dict()["lr"] == TrainConfig(lr=1.0).to_dict()["lr"]


def test_early_stopping_restores_the_best_weights(data_dir):
    # A huge learning rate makes validation loss worsen quickly, so patience 2 stops early.
    cfg = small(model="vANN", dendrites=2, somata=64, epochs=30, early_stop=True, patience=2, lr=0.05)
    result = train(cfg, data_dir=data_dir)
    assert result.epochs_run < 30
    assert result.epochs_run == result.best_epoch + 2
    losses = [h.val_loss for h in result.history]
    assert result.best_epoch == int(np.argmin(losses)) + 1


def test_batch_order_shuffles_every_epoch_but_not_sequential():
    gen = torch.Generator().manual_seed(0)
    a, b = batch_order(10, False, gen), batch_order(10, False, gen)
    assert sorted(a.tolist()) == list(range(10)) and not torch.equal(a, b)
    assert batch_order(10, True, gen).tolist() == list(range(10))


@pytest.mark.skipif(not FMNIST.is_dir(), reason="Debian's dataset-fashion-mnist is not installed")
def test_sequential_protocol_on_fashion_mnist():
    data = prepare("fmnist", seed=1, sequential=True)
    assert np.bincount(data.y_train.numpy()).tolist() == [5376] * 10
    assert np.bincount(data.y_val.numpy()).tolist() == [624] * 10
    order = batch_order(len(data.y_train), True, torch.Generator())
    labels = data.y_train[order].numpy()
    batches = [labels[i : i + 128] for i in range(0, len(labels), 128)]
    assert all(len(set(b)) == 1 for b in batches)  # every batch holds one class
    firsts = [int(b[0]) for b in batches]
    assert firsts == sorted(firsts) and firsts[0] == 0 and firsts[-1] == 9  # classes in order


def test_noise_is_fixed_and_clipped(data_dir):
    a = prepare("mnist", seed=3, sigma=0.5, data_dir=data_dir)
    b = prepare("mnist", seed=3, sigma=0.5, data_dir=data_dir)
    clean = prepare("mnist", seed=3, sigma=0.0, data_dir=data_dir)
    for split in ("x_train", "x_val", "x_test"):
        noisy = getattr(a, split)
        assert torch.equal(noisy, getattr(b, split))  # the same noise every time it is prepared
        assert noisy.min() >= 0 and noisy.max() <= 1
        assert not torch.equal(noisy, getattr(clean, split))
    # The training loop prepares once, so every epoch sees the same noisy images.
    seen = []
    train(small(sigma=0.5, seed=3, epochs=2), data=a, on_epoch=lambda m: seen.append(a.x_train.sum().item()))
    assert seen[0] == seen[1]


def test_store_records_runs_and_epochs(tmp_path, data_dir):
    with RunStore(tmp_path / "runs.db") as store:
        result = train(small(), store=store, data_dir=data_dir, checkpoint=tmp_path / "ckpt" / "run")
        run = store.get_run(result.run_id)
        assert run["status"] == "finished"
        assert run["trainable_params"] == result.trainable_params
        assert run["paper_params"] == 18 * 64 + 11 * 16 + 10
        assert run["test_accuracy"] == pytest.approx(result.test_accuracy)
        assert run["best_epoch"] == result.best_epoch and run["epochs_run"] == 3
        assert run["torch_version"] == torch.__version__
        assert run["extra"]["denormals"] == "flushed"  # fit's setting, recorded with the run
        assert run["config"]["model"] == "dANN-LRF" and run["config"]["epochs"] == 3
        assert [e["epoch"] for e in store.epochs(result.run_id)] == [1, 2, 3]
        assert Path(run["checkpoint"]).is_file()


def test_a_failing_run_is_marked_failed(tmp_path, data_dir):
    with RunStore(tmp_path / "runs.db") as store:

        def boom(metrics):
            raise RuntimeError("disk on fire")

        with pytest.raises(RuntimeError):
            train(small(), store=store, data_dir=data_dir, on_epoch=boom)
        (run,) = store.list_runs()
        assert run["status"] == "failed" and "disk on fire" in run["error"]


# ---------------------------------------------------------------- checkpoints
def test_checkpoint_reloads_to_identical_outputs(tmp_path):
    for name, kw in (
        ("dANN-GRF", {}),
        ("sANN", {"layers": 2}),
        ("vANN-LRF", {}),
        ("dANN-R", {"dropout": 0.2}),
    ):
        model = build_model(name, (28, 28, 1), 10, 4, 16, seed=5, **kw)
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p) * 0.01)  # not the initial weights
        path = save(model, tmp_path / name)
        again = load(path)
        model.eval()
        again.eval()
        x = torch.rand(8, 784)
        assert torch.equal(model(x), again(x))
        assert [a.tobytes() for a in model.masks()] == [b.tobytes() for b in again.masks()]
        assert again.config == model.config
        np.testing.assert_array_equal(model.wiring[0][0].centres, again.wiring[0][0].centres)


def test_tampered_or_truncated_checkpoints_fail_cleanly(tmp_path):
    model = build_model("dANN-LRF", (28, 28), 10, 4, 16, seed=1)
    save(model, tmp_path / "m")
    tensors, meta = checkpoint_paths(tmp_path / "m")
    original = tensors.read_bytes()

    blob = bytearray(original)
    blob[-5] ^= 0xFF  # flip a bit inside a weight
    tensors.write_bytes(bytes(blob))
    with pytest.raises(CheckpointError, match="does not match the digest"):
        load(tmp_path / "m")

    tensors.write_bytes(original[: len(original) // 2])
    with pytest.raises(CheckpointError, match="does not match"):
        load(tmp_path / "m")

    tensors.write_bytes(original)
    document = json.loads(meta.read_text())
    document["format"] = "something-else"
    meta.write_text(json.dumps(document))
    with pytest.raises(CheckpointError, match="not a dendritic checkpoint"):
        load(tmp_path / "m")
    meta.write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load(tmp_path / "m")
    with pytest.raises(CheckpointError, match="no checkpoint"):
        load(tmp_path / "missing")

    # The JSON is covered by its own digest: an edit is caught before anything else.
    save(model, tmp_path / "n")
    tensors_n, meta_n = checkpoint_paths(tmp_path / "n")
    document = json.loads(meta_n.read_text())
    document["wiring"][0][0]["n_out"] = 7
    meta_n.write_text(json.dumps(document))
    with pytest.raises(CheckpointError, match="does not match its own digest"):
        load(tmp_path / "n")


# ---------------------------------------------------------------- killed runs
def _start_cli_run(tmp_path, data_dir):
    env = dict(os.environ, PYTHONUNBUFFERED="1", XDG_CACHE_HOME=str(tmp_path / "xdg"))
    cmd = [
        sys.executable, "-m", "dendritic.cli", "train", "--model", "vANN", "--dataset", "mnist",
        "--dendrites", "8", "--somata", "256", "--epochs", "500", "--data-dir", str(data_dir),
        "--store", str(tmp_path / "runs.db"), "--threads", "1", "--quiet",
    ]  # fmt: skip
    # A shell's background job inherits SIGINT ignored, and Python then never installs its Ctrl-C
    # handler: give the child the default disposition, as a terminal's foreground process has.
    return subprocess.Popen(
        cmd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def _wait_for_epochs(path, n=2, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if path.exists():
            try:
                with RunStore(path, readonly=True) as store:
                    runs = store.list_runs()
                    if runs and (runs[0]["epochs_run"] or 0) >= n:
                        return runs[0]["id"]
            except Exception:
                pass
        time.sleep(0.2)
    raise AssertionError("the run never logged its epochs")


@pytest.mark.parametrize(
    "sig", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL], ids=["SIGINT", "SIGTERM", "SIGKILL"]
)
def test_killed_run_is_never_recorded_as_finished(tmp_path, data_dir, sig):
    proc = _start_cli_run(tmp_path, data_dir)
    try:
        run_id = _wait_for_epochs(tmp_path / "runs.db")
        proc.send_signal(sig)
        _, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    if sig == signal.SIGINT:
        assert proc.returncode == 130
        assert "Traceback" not in stderr and "interrupted" in stderr
    if sig == signal.SIGTERM:  # unwinds like Ctrl-C, with the conventional 128 + 15
        assert proc.returncode == 143
        assert "Traceback" not in stderr and "terminated (SIGTERM)" in stderr
    with RunStore(tmp_path / "runs.db", readonly=True) as store:
        assert store.integrity_check() == ["ok"]
        run = store.get_run(run_id)
        assert run["status"] == "interrupted"
        assert run["test_accuracy"] is None
        assert len(store.epochs(run_id)) >= 2


def test_fused_layers_give_the_same_metrics(data_dir, monkeypatch):
    """The fused C++ dendro-somatic layer (the default on the CPU) against the layer-by-layer
    path it replaced: the same seed gives the same metrics to float tolerance."""
    from dendritic.layers.kernels import available_kernels

    if "cpp" not in available_kernels():
        pytest.skip("C++ kernels unavailable")
    runs = {}
    for fused in ("1", "0"):
        monkeypatch.setenv("DENDRITIC_FUSED", fused)
        runs[fused] = train(small(epochs=4, lr=0.01), data_dir=data_dir)
    a, b = runs["1"], runs["0"]
    for ea, eb in zip(a.history, b.history, strict=True):
        assert ea.train_loss == pytest.approx(eb.train_loss, rel=1e-4)
        assert ea.val_loss == pytest.approx(eb.val_loss, rel=1e-4)
        assert abs(ea.val_accuracy - eb.val_accuracy) <= 1 / 70  # at most one of 70 images flips
    assert a.test_loss == pytest.approx(b.test_loss, rel=1e-4)
    assert abs(a.test_accuracy - b.test_accuracy) <= 1 / 200


def test_adam_matches_torch_and_falls_back():
    """dendritic's CPU Adam in torch's form is torch's formula in one C++ call: same parameters
    after many steps (float rounding), the same state_dict, and torch's own step whenever the fast
    path cannot run. (Keras's form: tests/test_optim.py.)"""
    from dendritic.layers.kernels import available_kernels
    from dendritic.training.optim import Adam

    gen = torch.Generator().manual_seed(0)
    start = [torch.randn(1000, generator=gen), torch.randn(30, 7, generator=gen, dtype=torch.float64)]
    ours = [torch.nn.Parameter(t.clone()) for t in start]
    ref = [torch.nn.Parameter(t.clone()) for t in start]
    a = Adam(ours, lr=1e-2, eps=1e-7, form="torch")
    b = torch.optim.Adam(ref, lr=1e-2, eps=1e-7)
    for step in range(40):
        grads = [torch.randn(t.shape, generator=gen, dtype=t.dtype) for t in start]
        for p, g in zip(ours, grads, strict=True):
            p.grad = g.clone()
        for p, g in zip(ref, grads, strict=True):
            p.grad = g.clone()
        if step == 30:  # one parameter without a gradient: torch's step from here on, seamlessly
            ours[1].grad = ref[1].grad = None
        a.step()
        b.step()
    for p, q in zip(ours, ref, strict=True):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)
    sa, sb = a.state_dict()["state"], b.state_dict()["state"]
    assert float(sa[0]["step"]) == float(sb[0]["step"]) == 40.0
    assert float(sa[1]["step"]) == float(sb[1]["step"]) == 39.0
    torch.testing.assert_close(sa[0]["exp_avg_sq"], sb[0]["exp_avg_sq"], rtol=1e-5, atol=1e-8)
    if "cpp" in available_kernels():
        fresh = [torch.nn.Parameter(torch.ones(4))]
        c = Adam(fresh, lr=0.1, form="torch")
        fresh[0].grad = torch.ones(4)
        c.step()
        assert c._steps == 1  # the C++ path ran
        torch.testing.assert_close(fresh[0].detach(), torch.full((4,), 0.9))  # first step moves by lr
        late = torch.nn.Parameter(torch.ones(2))  # a group added later starts its own step count
        c.add_param_group({"params": [late]})
        fresh[0].grad, late.grad = torch.ones(4), torch.ones(2)
        c.step()
        torch.testing.assert_close(late.detach(), torch.full((2,), 0.9))
        torch.testing.assert_close(fresh[0].detach(), torch.full((4,), 0.8))
