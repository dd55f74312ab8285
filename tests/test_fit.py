"""``fit``: one training loop for any nn.Module, its callbacks, and a user's own model recorded in
the results store and shown by ``dendritic runs list`` and ``dendritic report``."""

from __future__ import annotations

import math
import os
import signal

import pytest
import torch
from torch import nn

from dendritic.cli import main
from dendritic.errors import Terminated
from dendritic.layers.kernels import kernel_backend
from dendritic.models.checkpoint import load_state
from dendritic.nn import DendriticLayer
from dendritic.store import RunStore
from dendritic.training import Callback, RecordRun, SaveCheckpoint, fit


class DigitsNet(nn.Module):
    """A user's model, built from no paper name: a conv stem, then a dendritic layer on its
    (C, H, W) feature maps with local receptive fields, then a linear read-out."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.stem = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU())
        self.dendrites = DendriticLayer((4, 8, 8), somata=16, dendrites=4, synapses=8, seed=seed)
        self.readout = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.readout(self.dendrites(self.stem(x)))


def digits(n_train: int = 1200):
    """scikit-learn's bundled 8x8 digits (real data, no download) as (N, 1, 8, 8) in [0, 1]."""
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    x = torch.tensor(x, dtype=torch.float32).reshape(-1, 1, 8, 8) / 16.0
    y = torch.tensor(y)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    x, y = x[order], y[order]
    return (x[:n_train], y[:n_train]), (x[n_train:1500], y[n_train:1500]), (x[1500:], y[1500:])


class Record(Callback):
    def __init__(self) -> None:
        self.calls: list[str] = []

    def on_fit_start(self, state):
        self.calls.append("start")

    def on_batches(self, state, epoch, done, loss, accuracy):
        self.calls.append("batches")

    def on_epoch_end(self, state, metrics):
        self.calls.append(f"epoch{metrics.epoch}")

    def on_fit_end(self, state, result):
        self.calls.append("end")

    def on_fit_error(self, state, error):
        self.calls.append(f"error:{type(error).__name__}")


def test_a_users_model_is_trained_recorded_listed_and_reported(tmp_path, capsys):
    pytest.importorskip("sklearn")
    train, val, test = digits()
    db = tmp_path / "runs.db"
    config = {"model": "digits-cnn", "dataset": "digits", "seed": 1, "epochs": 3}
    with RunStore(db) as store:
        record = RecordRun(store, config, experiment="my-study")
        result = fit(
            DigitsNet(seed=1),
            train,
            val=val,
            test=test,
            epochs=3,
            seed=1,
            lr=1e-2,
            batch_size=64,
            callbacks=[SaveCheckpoint(tmp_path / "ck" / "digits"), record],
        )
        run = store.get_run(record.id)
        epochs = store.epochs(record.id)
    assert result.test_accuracy > 0.7, result  # it learned (10 classes, chance is 0.1; 0.89 here)
    assert run["status"] == "finished" and run["experiment"] == "my-study" and run["model"] == "digits-cnn"
    assert run["test_accuracy"] == pytest.approx(result.test_accuracy)
    assert run["trainable_params"] == sum(p.numel() for p in DigitsNet().parameters())
    assert run["checkpoint"] == result.checkpoint and run["epochs_run"] == 3
    assert [e["epoch"] for e in epochs] == [1, 2, 3]
    assert epochs[-1]["val_accuracy"] == pytest.approx(result.history[-1].val_accuracy)

    # The checkpoint loads back into a model built the same way and gives the same answers.
    again = DigitsNet(seed=99)
    assert load_state(again, tmp_path / "ck" / "digits") == {"run_id": record.id}
    trained = DigitsNet(seed=1)
    load_state(trained, result.checkpoint)
    with torch.no_grad():
        assert torch.equal(again(test[0]), trained(test[0]))

    assert main(["runs", "list", "--store", str(db), "--experiment", "my-study"]) == 0
    listing = capsys.readouterr().out.splitlines()
    assert len(listing) == 2 and "experiment" in listing[0]
    assert listing[1].split()[:4] == [str(record.id), "finished", "my-study", "digits-cnn"]

    html = tmp_path / "report.html"
    assert main(["report", "--store", str(db), "--out", str(html), "--quiet"]) == 0
    page = html.read_text()
    table = page[page.index('id="other-runs"') :]
    table = table[: table.index("</table>")]
    assert "digits-cnn" in table and "my-study" in table and f"{100 * result.test_accuracy:.2f}" in table


def test_callbacks_see_the_fit_in_order_and_early_stopping_restores_the_best_weights():
    torch.manual_seed(0)
    x = torch.randn(256, 5)
    y = (x[:, 0] > 0).long()
    model = nn.Sequential(nn.Linear(5, 32), nn.ReLU(), nn.Linear(32, 2))
    seen = Record()
    snapshots = {}

    class Keep(Callback):
        def on_epoch_end(self, state, metrics):
            snapshots[metrics.epoch] = {k: v.clone() for k, v in state.model.state_dict().items()}

    # Validation on labels that disagree with training: val loss rises, training stops early.
    result = fit(
        model,
        (x, y),
        val=(x[:64], 1 - y[:64]),
        epochs=50,
        lr=0.05,
        batch_size=64,
        patience=3,
        seed=0,
        callbacks=[seen, Keep()],
    )
    assert result.stopped_early and result.epochs_run < 50
    assert result.epochs_run == result.best_epoch + 3
    assert seen.calls[0] == "start" and seen.calls[-1] == "end"
    assert [c for c in seen.calls if c.startswith("epoch")] == [
        f"epoch{i}" for i in range(1, result.epochs_run + 1)
    ]
    assert seen.calls.count("batches") >= result.epochs_run
    best = snapshots[result.best_epoch]
    assert all(torch.equal(best[k], v) for k, v in model.state_dict().items())
    assert math.isnan(result.test_accuracy)  # no test set given


def test_the_same_seed_gives_the_same_fit():
    x = torch.randn(300, 6, generator=torch.Generator().manual_seed(1))
    y = (x.sum(1) > 0).long()

    def once():
        torch.manual_seed(5)
        model = nn.Sequential(DendriticLayer(6, somata=8, dendrites=2, synapses=3, receptive_field="random", seed=3),
                              nn.Dropout(0.2), nn.Linear(8, 2))  # fmt: skip
        return [m.train_loss for m in fit(model, (x, y), epochs=3, seed=7, batch_size=32).history]

    assert once() == once()


@pytest.mark.parametrize("how", ["ctrl-c", "sigterm"])
def test_an_interrupted_fit_is_recorded_as_interrupted(tmp_path, how):
    x = torch.randn(200, 4)
    y = (x[:, 1] > 0).long()
    seen = Record()

    class Stop(Callback):
        def on_epoch_end(self, state, metrics):
            if metrics.epoch == 2:
                if how == "ctrl-c":
                    raise KeyboardInterrupt
                os.kill(os.getpid(), signal.SIGTERM)  # what `kill` or a scheduler's time limit sends

    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    with RunStore(tmp_path / "runs.db") as store:
        record = RecordRun(store, {"model": "mlp", "seed": 1})
        with pytest.raises(KeyboardInterrupt) as info:
            fit(nn.Linear(4, 2), (x, y), val=(x, y), epochs=10, callbacks=[record, seen, Stop()])
        run = store.get_run(record.id)
        assert run["status"] == "interrupted" and run["test_accuracy"] is None
        assert [e["epoch"] for e in store.epochs(record.id)] == [1, 2]  # nothing lost, nothing made up
    assert isinstance(info.value, Terminated) == (how == "sigterm")
    assert seen.calls[-1] in ("error:KeyboardInterrupt", "error:Terminated")
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the process's own action is back


def test_a_failing_fit_is_recorded_as_failed_and_a_finished_run_is_kept(tmp_path):
    x = torch.randn(64, 3)
    y = torch.zeros(64, dtype=torch.long)
    with RunStore(tmp_path / "runs.db") as store:
        first = RecordRun(store, {"model": "lin"})
        fit(nn.Linear(3, 2), (x, y), epochs=1, test=(x, y), callbacks=[first])
        kept = store.get_run(first.id)

        class Boom(Callback):
            def on_epoch_end(self, state, metrics):
                raise RuntimeError("disk on fire")

        again = RecordRun(store, {"model": "lin"}, replace=True)
        with pytest.raises(RuntimeError, match="disk on fire"):
            fit(nn.Linear(3, 2), (x, y), epochs=2, callbacks=[again, Boom()])
        (finished,) = store.list_runs(status="finished")
        assert finished["id"] == kept["id"] and finished["test_accuracy"] == kept["test_accuracy"]
        assert "disk on fire" in store.get_run(again.id)["error"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"train": (torch.randn(10, 3), torch.zeros(9, dtype=torch.long))}, "10 inputs but 9 labels"),
        ({"train": (torch.randn(10, 3), torch.zeros(10))}, "labels must be a 1-D tensor of class indices"),
        ({"train": (torch.randn(0, 3), torch.zeros(0, dtype=torch.long))}, "train: no samples"),
        ({"val": (torch.randn(4, 3),)}, "val must be a pair"),
        ({"epochs": 0}, "epochs must be an integer >= 1"),
        ({"batch_size": 2.5}, "batch_size must be an integer >= 1"),
        ({"patience": 2}, "early stopping (patience) needs a validation set"),
        ({"optimizer": "sgd"}, "unknown optimizer 'sgd'"),
        ({"model": "not a module"}, "model must be a torch.nn.Module"),
        ({"flush_denormals": "no"}, "flush_denormals must be True or False, got 'no'"),
    ],
)
def test_bad_arguments_are_one_line_errors_before_training(kwargs, message):
    args = {
        "model": nn.Linear(3, 2),
        "train": (torch.randn(10, 3), torch.zeros(10, dtype=torch.long)),
        "epochs": 1,
    }
    args.update(kwargs)
    seen = Record()
    with pytest.raises((ValueError, TypeError)) as info:
        fit(args.pop("model"), args.pop("train"), callbacks=[seen], **args)
    assert message in str(info.value) and "\n" not in str(info.value)
    assert "start" not in seen.calls


def test_a_config_that_is_not_json_fails_before_training(tmp_path):
    with RunStore(tmp_path / "runs.db") as store:
        with pytest.raises(ValueError):
            RecordRun(store, {"model": object()})
        assert len(store) == 0


def test_fit_takes_a_loss_regression_and_a_function():
    """``loss="mse"`` trains a regressor (float targets, accuracy NaN); any function of
    (output, target) is an objective; an unknown name is one line."""
    torch.manual_seed(0)
    x = torch.randn(256, 6)
    y = x @ torch.randn(6) + 0.1 * torch.randn(256)
    model = nn.Sequential(DendriticLayer(6, somata=8, dendrites=2, synapses=3, seed=1), nn.Linear(8, 1))
    result = fit(model, (x, y), val=(x, y), test=(x, y), epochs=30, lr=1e-2, loss="mse", seed=1)
    first, last = result.history[0], result.history[-1]
    assert last.train_loss < 0.5 * first.train_loss and math.isnan(last.train_accuracy)
    assert math.isnan(result.test_accuracy) and result.test_loss == pytest.approx(last.val_loss, rel=0.2)
    calls = []

    def weighted(output, target):
        calls.append(len(target))
        return nn.functional.cross_entropy(output, target, weight=torch.tensor([1.0, 2.0]))

    labels = (x[:, 0] > 0).long()
    fitted = fit(nn.Linear(6, 2), (x, labels), epochs=1, batch_size=64, loss=weighted)
    assert calls == [64] * 4 and 0 <= fitted.history[0].train_accuracy <= 1
    with pytest.raises(ValueError, match="unknown loss 'l1'; choose one of cross_entropy, mse"):
        fit(nn.Linear(6, 2), (x, labels), epochs=1, loss="l1")
    with pytest.raises(ValueError, match="labels must be a 1-D tensor of class indices"):
        fit(nn.Linear(6, 1), (x, y), epochs=1)  # float targets need a regression loss


def _denormal_survivors(n: int = 1 << 21) -> int:
    """Nonzero results of a product of denormals, large enough for every torch thread to take a
    part: all of them when denormals are kept, none when they are flushed."""
    return int((torch.full((n,), 1e-39) * 1.0).count_nonzero())


@pytest.mark.skipif(
    kernel_backend() != "cpp",
    reason="every thread is set by the C++ library (without it, the calling thread only)",
)
def test_fit_flushes_denormals_on_every_thread_and_restores_the_setting():
    """Denormals are flushed while ``fit`` trains (as TensorFlow, the paper's framework, does;
    they made class-sequential epochs several times slower), on every torch thread, and kept
    again after it; ``flush_denormals=False`` keeps them throughout."""
    from dendritic.layers.kernels import flush_denormals

    class Probe(Callback):
        def __init__(self) -> None:
            self.survivors: list[int] = []

        def on_epoch_end(self, state, metrics) -> None:
            self.survivors.append(_denormal_survivors())

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        assert _denormal_survivors() == 1 << 21
        x, y = torch.rand(64, 6), torch.randint(0, 3, (64,))
        for flush, expected in ((True, 0), (False, 1 << 21)):
            probe = Probe()
            model = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))
            fit(model, (x, y), epochs=2, batch_size=16, seed=0, callbacks=[probe], flush_denormals=flush)
            assert probe.survivors == [expected, expected]
            assert _denormal_survivors() == 1 << 21  # restored after the fit
        # the switch itself: previous setting returned, every thread set, then unset
        assert flush_denormals(True) is False
        assert _denormal_survivors() == 0
        assert flush_denormals(False) is True
        assert _denormal_survivors() == 1 << 21
    finally:
        flush_denormals(False)
        torch.set_num_threads(before)
