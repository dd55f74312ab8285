"""Issue 23, sparse controls: the Erdős–Rényi MLP, linear dendrites, lottery tickets (pruning,
rewinding, Adam), the ``sparse-controls`` grid, its statistics and its figure."""

from __future__ import annotations

import dataclasses
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from dendritic.analysis.controls import control_rows
from dendritic.cli import main
from dendritic.layers.sparse import MaskedLinear, SparseLinear
from dendritic.models import DendriticNet, build_model, count_parameters, get_model, list_models
from dendritic.models.spec import ModelSpec
from dendritic.sweeps.estimate import run_seconds
from dendritic.sweeps.grids import expand, experiment_of, get_experiment, in_main_grid
from dendritic.sweeps.sparse_controls import CONTROLS, control_label
from dendritic.training import TrainConfig, fit
from dendritic.training.lottery import (
    _masks_of,
    _schedule,
    dense_state,
    magnitude_masks,
    pruned_network,
    target_nonzeros,
    train_ticket,
)
from dendritic.training.optim import make_optimizer

FMNIST = (28, 28, 1)
SMALL = (8, 8, 1)


def _stages(net):
    return [s for layer in net.layers for s in (layer.dendrite_linear, layer.soma_linear)]


def _data(n=96, shape=SMALL, classes=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, int(np.prod(shape)), generator=g)
    y = torch.randint(0, classes, (n,), generator=g)
    return SimpleNamespace(
        x_train=x[: n - 32], y_train=y[: n - 32], x_val=x[n - 32 :], y_val=y[n - 32 :],
        x_test=x[n - 32 :], y_test=y[n - 32 :], input_shape=shape, n_classes=classes, provenance=None,
    )  # fmt: skip


def _lottery(**kw):
    base = dict(
        model="vANN", dendrites=2, somata=8, synapses=4, epochs=1, seed=3, batch_size=16, lottery="rewind"
    )
    return TrainConfig(**{**base, **kw})


# ---------------------------------------------------------------- Erdős–Rényi MLP


def test_er_mlp_has_the_danns_nonzeros_per_layer_on_sparse_kernels():
    assert "ER-MLP" in list_models() and "ER-MLP" not in __import__("dendritic").MODEL_NAMES
    er = get_model("ER-MLP", dendrites=4, somata=32, seed=1)
    dann = build_model("dANN-LRF", FMNIST, 10, 4, 32, seed=1)
    assert count_parameters(er) == count_parameters(dann)
    assert count_parameters(er) == ModelSpec("ER-MLP", 4, 32).trainable_parameters(FMNIST, 10)
    for mine, theirs in zip(_stages(er), _stages(dann), strict=True):
        assert isinstance(mine, SparseLinear) and not isinstance(mine, MaskedLinear)
        assert mine.indices is not None  # a gathered sparse kernel, not a masked dense matrix
        assert mine.n_connections == theirs.n_connections
    fan_in = er.layers[0].dendrite_linear.connectivity.fan_in
    assert (
        fan_in.sum() == 4 * 32 * 16 and fan_in.min() < 16 < fan_in.max()
    )  # every weight kept alike: fan-in varies
    fan_out = np.bincount(er.layers[0].soma_linear.connectivity.indices, minlength=4 * 32)
    assert fan_out.max() > 1  # cables placed over the whole matrix, not one per dendrite
    assert in_main_grid({**TrainConfig(model="ER-MLP", dendrites=4, somata=32).to_dict()}) is False


# ---------------------------------------------------------------- linear dendrites


def test_linear_dendrite_dann_is_one_sparse_linear_map_then_the_soma_nonlinearity():
    torch.manual_seed(0)
    net = build_model("dANN-LRF", SMALL, 5, 3, 6, synapses=4, seed=2, linear_dendrites=True)
    layer = net.layers[0]
    assert isinstance(layer.dendrite_activation, nn.Identity) and isinstance(
        layer.soma_activation, nn.LeakyReLU
    )
    assert not layer.fusable and net.fused_plan() is None
    w_d, b_d = layer.dendrite_linear.dense_weight().double(), layer.dendrite_linear.bias.detach().double()
    w_s, b_s = layer.soma_linear.dense_weight().double(), layer.soma_linear.bias.detach().double()
    w, b = w_s @ w_d, w_s @ b_d + b_s  # one (somata × inputs) map
    assert int((w != 0).sum()) <= 6 * 3 * 4  # at most the dendrites' synapses
    x = torch.rand(7, 64, dtype=torch.float64)
    somata = torch.nn.functional.leaky_relu(x @ w.T + b, 0.1)
    expected = somata @ net.output.weight.detach().double().T + net.output.bias.detach().double()
    assert torch.allclose(net(x.float()).double(), expected, atol=1e-5)
    plain = build_model("dANN-LRF", SMALL, 5, 3, 6, synapses=4, seed=2)
    assert isinstance(plain.layers[0].dendrite_activation, nn.LeakyReLU)
    assert count_parameters(plain) == count_parameters(net)
    assert not torch.allclose(plain(x.float()), net(x.float()))
    # the option reaches the network's config (checkpoints) and its spec round-trips
    assert net.config["linear_dendrites"] is True and "linear_dendrites" not in plain.config
    assert ModelSpec.from_network_config(net.config).linear_dendrites is True


# ---------------------------------------------------------------- pruning


def test_magnitude_pruning_keeps_exactly_the_requested_nonzeros():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(20, 30, generator=g)
    w[0, :10] = 0.5  # ties
    mask = torch.ones(20, 30, dtype=torch.bool)
    for k in (1, 7, 77, 599, 600):
        (kept,) = magnitude_masks([w], [mask], [k])
        assert int(kept.sum()) == k
        assert w.abs()[kept].min() >= w.abs()[~kept].max() if k < 600 else True
    half = torch.rand(20, 30, generator=g) < 0.5
    (kept,) = magnitude_masks([w], [half], [50])
    assert int(kept.sum()) == 50 and not bool((kept & ~half).any())  # never revives a pruned weight
    with pytest.raises(ValueError, match="cannot keep"):
        magnitude_masks([w], [half], [int(half.sum()) + 1])
    rounds = _schedule([1000, 100], [20, 10], 4)
    assert rounds[-1] == [20, 10] and all(
        a >= b for a, b in zip(rounds, rounds[1:], strict=False) for a, b in zip(a, b, strict=True)
    )


@pytest.mark.parametrize("form", ["adam-keras", "adam-torch"])
def test_pruned_weights_stay_exactly_zero_through_adam(form):
    parent = DendriticNet(ModelSpec("vANN", 2, 8, 4), SMALL, 4, seed=1)
    targets = target_nonzeros(parent, 4)
    assert targets == [2 * 8 * 4, 2 * 8]
    state = dense_state(parent)
    masks = magnitude_masks([s.weight for s in state[:-1]], _masks_of(parent), targets)
    child = pruned_network(parent, masks, state)
    assert [s.n_connections for s in _stages(child)] == targets
    assert count_parameters(child) == ModelSpec("dANN-LRF", 2, 8, 4).trainable_parameters(SMALL, 4)
    before = [s.dense_weight().clone() for s in _stages(child)]
    for stage, mask, saved in zip(_stages(child), masks, state[:-1], strict=True):
        assert torch.equal(stage.dense_weight(), saved.weight * mask)  # the parent's values where kept
    data = _data()
    optimizer = make_optimizer(child, 1e-2, form)
    fit(child, (data.x_train, data.y_train), epochs=3, optimizer=optimizer, batch_size=16, seed=0)
    for stage, mask, old in zip(_stages(child), masks, before, strict=True):
        now = stage.dense_weight()
        assert torch.count_nonzero(now[~mask]) == 0  # exactly zero, after Adam's moments moved the rest
        assert not torch.equal(now[mask], old[mask])
        assert stage.n_connections == int(mask.sum())
    for moments in optimizer.state.values():  # the optimizer holds moments of the kept weights only
        for value in moments.values():
            if isinstance(value, torch.Tensor) and value.dim() > 0:
                assert value.numel() in {p.numel() for p in child.parameters()}


# ---------------------------------------------------------------- lottery tickets, end to end


def _trained_parent(config, data, epochs):
    parent = DendriticNet(config.model_spec(), data.input_shape, data.n_classes, seed=config.seed)
    if epochs:
        fit(parent, (data.x_train, data.y_train), val=(data.x_val, data.y_val), epochs=epochs,
            optimizer=make_optimizer(parent, config.lr, config.optimizer), batch_size=config.batch_size,
            seed=config.seed)  # fmt: skip
    return dense_state(parent)


@pytest.mark.parametrize("rewind_epoch", [0, 1])
def test_rewinding_restores_the_saved_early_weights(rewind_epoch):
    torch.set_num_threads(1)
    data = _data()
    config = _lottery(parent_epochs=2, rewind_epoch=rewind_epoch)
    ticket = train_ticket(config, data, torch.device("cpu"))
    early = _trained_parent(config, data, rewind_epoch)  # the parent's weights after that epoch
    for stage, saved in zip([*_stages(ticket.model), ticket.model.output], early, strict=True):
        kept = stage.dense_weight() != 0
        assert torch.equal(stage.dense_weight()[kept], saved.weight[kept])
        assert torch.equal(stage.bias.detach(), saved.bias)
    assert ticket.info["kept_connections"] == [2 * 8 * 4, 2 * 8]
    assert ticket.info["parent_epochs"] == 2 and ticket.info["rewind_epoch"] == rewind_epoch


@pytest.mark.parametrize("layers", [1, 2])
def test_stage_counts_from_the_config_match_the_built_parent(layers):
    from dendritic.training.lottery import prune_schedule, stage_counts

    config = _lottery(layers=layers, prune_rounds=3, synapses=5)
    parent = DendriticNet(config.model_spec(), FMNIST, 10, seed=1)
    dense, targets = stage_counts(config, FMNIST)
    assert dense == [int(m.sum()) for m in _masks_of(parent)]
    assert targets == target_nonzeros(parent, config.synapses)
    schedule = prune_schedule(config, FMNIST)
    assert len(schedule) == 3 and schedule[-1] == targets
    assert all(a > b for a, b in zip(schedule[0], schedule[1], strict=True))


def test_finetune_keeps_the_trained_weights_and_rounds_reach_the_target():
    torch.set_num_threads(1)
    data = _data()
    config = _lottery(lottery="finetune", parent_epochs=2)
    ticket = train_ticket(config, data, torch.device("cpu"))
    trained = _trained_parent(config, data, 2)
    for stage, saved in zip([*_stages(ticket.model), ticket.model.output], trained, strict=True):
        kept = stage.dense_weight() != 0
        assert torch.equal(stage.dense_weight()[kept], saved.weight[kept])
    iterative = train_ticket(_lottery(prune_rounds=3, parent_epochs=1), data, torch.device("cpu"))
    assert iterative.info["kept_connections"] == [64, 16] and len(iterative.info["round_val_accuracy"]) == 2
    assert [s.n_connections for s in _stages(iterative.model)] == [64, 16]


def _weights(net):
    return [t.detach().clone() for t in net.state_dict().values() if t.is_floating_point()]


def test_a_cached_parent_gives_the_ticket_that_training_it_would(tmp_path, caplog):
    """The fine-tune ticket of a seed loads the parent its rewind ticket trained: same weights as
    when it trains the parent itself; another seed's parent, or a damaged file, is not used."""
    torch.set_num_threads(1)
    data, cpu = _data(), torch.device("cpu")
    rewind, finetune = _lottery(parent_epochs=2), _lottery(lottery="finetune", parent_epochs=2)
    first = train_ticket(rewind, data, cpu, parent_cache=tmp_path)
    (entry,) = tmp_path.glob("parent-*.safetensors")
    second = train_ticket(finetune, data, cpu, parent_cache=tmp_path)
    assert not first.info["parent_cached"] and second.info["parent_cached"]
    assert second.info["parent_seconds"] == first.info["parent_seconds"] > 0
    assert second.info["parent_val_accuracy"] == first.info["parent_val_accuracy"]
    for cached, fresh in [
        (first, train_ticket(rewind, data, cpu)),
        (second, train_ticket(finetune, data, cpu)),
    ]:
        assert all(
            torch.equal(a, b) for a, b in zip(_weights(cached.model), _weights(fresh.model), strict=True)
        )
        assert cached.info["kept_connections"] == fresh.info["kept_connections"]
    other = train_ticket(
        _lottery(lottery="finetune", parent_epochs=2, seed=4), data, cpu, parent_cache=tmp_path
    )
    assert not other.info["parent_cached"] and len(list(tmp_path.glob("parent-*.safetensors"))) == 2
    entry.write_bytes(b"not a safetensors file")
    caplog.set_level("WARNING", logger="dendritic.training")
    again = train_ticket(finetune, data, cpu, parent_cache=tmp_path)
    assert not again.info["parent_cached"] and "unreadable cached parent" in caplog.text
    assert all(torch.equal(a, b) for a, b in zip(_weights(again.model), _weights(second.model), strict=True))


def test_a_lottery_run_trains_the_ticket_and_records_both_epoch_counts(tmp_path):
    from dendritic.store import RunStore
    from dendritic.training import train

    torch.set_num_threads(1)
    config = _lottery(epochs=2, parent_epochs=1, dataset="mnist")
    with RunStore(tmp_path / "runs.db") as store:
        result = train(config, data=_data(), threads=1, store=store)
        (run,) = store.list_runs()
    extra = run["extra"] if isinstance(run["extra"], dict) else __import__("json").loads(run["extra"])
    assert extra["lottery"]["kept_connections"] == [64, 16] and extra["lottery"]["parent_epochs"] == 1
    assert extra["lottery"]["seconds"] > 0 and run["config"]["parent_epochs"] == 1
    assert result.trainable_params == ModelSpec("dANN-LRF", 2, 8, 4).trainable_parameters(SMALL, 4)
    assert result.epochs_run == 2 and result.paper_params is None
    key = config.to_dict()
    assert key["parent_epochs"] == 1 and key["epochs"] == 2 and key["lottery"] == "rewind"
    assert (
        "parent_epochs" in _lottery(epochs=4).to_dict() and _lottery(epochs=4).to_dict()["parent_epochs"] == 4
    )
    plain = TrainConfig().to_dict()
    assert not {"lottery", "prune_rounds", "rewind_epoch", "parent_epochs"} & set(plain)  # old keys unchanged
    assert experiment_of(key) is None and experiment_of(plain) == "main"


def test_a_parent_cache_that_is_not_a_folder_is_a_one_line_error(tmp_path):
    from dendritic.errors import PathError
    from dendritic.training import train

    config = _lottery(parent_epochs=1, dataset="mnist")
    with pytest.raises(PathError, match=r"^parent_cache .*missing does not exist$"):
        train(config, data=_data(), threads=1, parent_cache=tmp_path / "missing")
    (tmp_path / "file").write_text("x")
    with pytest.raises(PathError, match="is a file, not a folder"):
        train(config, data=_data(), threads=1, parent_cache=tmp_path / "file")


# ---------------------------------------------------------------- one-line errors


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"lottery": "sometimes"}, "unknown lottery 'sometimes'; choose one of none, rewind, finetune"),
        ({"prune_rounds": 0}, "prune_rounds must be an integer"),
        ({"rewind_epoch": -1}, "rewind_epoch must be an integer"),
        ({"parent_epochs": 0}, "parent_epochs must be an integer"),
        ({"parent_epochs": 2, "rewind_epoch": 3}, "rewind_epoch=3 is after the parent's last epoch (2)"),
        ({"model": "dANN-LRF"}, "model must be vANN"),
        ({"early_stop": True}, "early_stop is not supported"),
        ({"lottery": "none", "prune_rounds": 3}, "prune_rounds only applies to a lottery run"),
        ({"linear_dendrites": True}, "the plain vANN"),
    ],
)
def test_bad_lottery_settings_are_one_line_errors(changes, message):
    with pytest.raises(ValueError) as info:
        _lottery(**changes)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_bad_model_options_are_one_line_errors():
    for bad in ("yes", 1, None):
        with pytest.raises(ValueError, match=r"^linear_dendrites must be True or False, got") as info:
            ModelSpec("dANN-LRF", linear_dendrites=bad)
        assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match="unknown model 'ER-MPL'; valid models: .*ER-MLP"):
        ModelSpec("ER-MPL")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--lottery", "maybe"], "invalid choice: 'maybe'"),
        (["--prune-rounds", "0"], "--prune-rounds"),
        (["--rewind-epoch", "-2"], "--rewind-epoch"),
        (["--parent-epochs", "x"], "--parent-epochs"),
        (["--model", "ER-MPL"], "unknown model 'ER-MPL'"),
        (["--model", "dANN-LRF", "--lottery", "rewind"], "model must be vANN"),
        (
            ["--model", "vANN", "--lottery", "rewind", "--parent-epochs", "2", "--rewind-epoch", "5"],
            "--rewind-epoch 5 is after the parent's last epoch (2)",
        ),
        (
            ["--model", "vANN", "--lottery", "finetune", "--rewind-epoch", "0"],
            "--rewind-epoch only applies to --lottery rewind (",
        ),
        (
            ["--model", "vANN", "--prune-rounds", "3"],
            "--prune-rounds only applies to a lottery run (--lottery",
        ),
    ],
)
def test_bad_options_are_one_line_errors_from_the_cli(argv, message, capsys, tmp_path):
    try:
        code = main(["train", "--no-store", "--data-dir", str(tmp_path), *argv])
    except SystemExit as exc:
        code = exc.code
    err = capsys.readouterr().err.strip()
    assert code != 0 and message in err and len(err.splitlines()) <= 2  # argparse adds its usage line
    assert len([line for line in err.splitlines() if "error" in line]) == 1


def test_cli_options_reach_the_config(monkeypatch, tmp_path):
    import dendritic.training

    seen = {}

    def fake_train(config, **kw):
        seen["config"] = config
        raise SystemExit(0)

    monkeypatch.setattr(dendritic.training, "train", fake_train)
    monkeypatch.chdir(tmp_path)
    argv = ["train", "--no-store", "--model", "vANN", "--lottery", "rewind", "--prune-rounds", "3",
            "--rewind-epoch", "0", "--parent-epochs", "4", "--dendrites", "2", "--somata", "8"]  # fmt: skip
    with pytest.raises(SystemExit):
        main(argv)
    config = seen["config"]
    assert (config.lottery, config.prune_rounds, config.rewind_epoch, config.parent_epochs) == (
        "rewind",
        3,
        0,
        4,
    )
    with pytest.raises(SystemExit):
        main(["train", "--no-store", "--model", "dANN-LRF", "--linear-dendrites"])
    assert seen["config"].linear_dendrites is True


# ---------------------------------------------------------------- the grid


def test_sparse_controls_grid_matches_the_danns_parameters(capsys, tmp_path):
    experiment = get_experiment("sparse-controls")
    configs = expand(experiment)
    assert experiment.size() == len(configs) == 3 * 8 * 5
    assert {c.seed for c in configs} == {1, 2, 3, 4, 5}
    by_size = {}
    for c in configs:
        if c.model == "dANN-LRF" and not c.linear_dendrites:
            by_size[c.dendrites] = c.model_spec().trainable_parameters(FMNIST, 10)
    assert by_size == {4: 10_634, 16: 76_554, 64: 595_466}
    labels = {control_label(c.to_dict()) for c in configs}
    assert labels == set(CONTROLS)
    for other in (
        {"model": "sANN", "linear_dendrites": True},
        {"model": "dANN-LRF", "branches": 2},
        {"model": "vANN"},
    ):
        assert control_label(other) not in CONTROLS
    for c in configs:
        target = by_size[c.dendrites]
        if c.lottery != "none":  # the ticket has exactly the dANN's nonzeros and biases
            spec = dataclasses.replace(c.model_spec(), model="dANN-LRF")
            assert spec.trainable_parameters(FMNIST, 10) == target
            if c.dendrites == 64:
                assert (c.prune_rounds, c.parent_epochs) == (1, 3)
            else:
                assert (
                    c.prune_rounds == 5
                    and c.parent_epochs is None
                    and c.to_dict()["parent_epochs"] == c.resolved_epochs()
                )
        elif c.model == "pdANN":
            assert abs(c.model_spec().trainable_parameters(FMNIST, 10) - target) / target < 0.15
        else:
            assert c.model_spec().trainable_parameters(FMNIST, 10) == target, c
    # a lottery run costs its parent: more than the ticket's own epochs
    lottery = next(c for c in configs if c.lottery == "rewind" and c.dendrites == 16)
    sparse = dataclasses.replace(lottery, model="sANN", lottery="none", prune_rounds=1, parent_epochs=None)
    assert run_seconds(lottery)[0] > 5 * run_seconds(sparse)[0]
    # ... unless another run of the sweep trains it: the rounds and the ticket remain, the
    # rounds priced at the connections each kept (the first is far denser than the ticket)
    shared = run_seconds(lottery, shared_parent=True)[0]
    one_round = dataclasses.replace(lottery, prune_rounds=1)
    ticket_only = run_seconds(one_round, shared_parent=True)[0]
    assert ticket_only == pytest.approx(run_seconds(sparse)[0])
    assert 4 * ticket_only < shared < run_seconds(lottery)[0]

    store = str(tmp_path / "none.db")
    assert main(["sweep", "sparse-controls", "--dry-run", "--store", store, "--trials", "1"]) == 0
    out = capsys.readouterr().out
    assert "24 runs in sparse-controls" in out and "estimated time" in out
    assert "ER-MLP" in out and "linear dendrites" in out
    # the fine-tune ticket is priced without the parent its rewind twin trains
    rows = [line.split() for line in out.splitlines() if "lottery" in line]
    rewind = [float(r[-3]) for r in rows if "rewind" in r]
    tuned = [float(r[-3]) for r in rows if "fine-tuned," in r]
    assert len(rewind) == len(tuned) == 3 and all(t < r for t, r in zip(tuned, rewind, strict=True))


# ---------------------------------------------------------------- statistics and figure


def _run(model, d, acc, loss, seed, **extra):
    config = {"model": model, "dendrites": d, "somata": 256, "seed": seed, **extra}
    return {
        "config": config,
        "model": model,
        "test_accuracy": acc,
        "test_loss": loss,
        "trainable_params": 1000 * d,
    }


def test_control_rows_give_means_differences_and_welch_tests():
    from scipy import stats

    ref_acc, er_acc = [0.86, 0.87, 0.865, 0.868, 0.862], [0.85, 0.852, 0.849, 0.851, 0.853]
    runs = [_run("dANN-LRF", 16, a, 0.4 - 0.002 * s, s) for s, a in enumerate(ref_acc)]
    runs += [_run("ER-MLP", 16, a, 0.45 + 0.001 * s, s) for s, a in enumerate(er_acc)]
    runs += [_run("vANN", 16, 0.86, 0.41, 1, lottery="rewind")]  # one trial: no test
    runs += [_run("vANN", 16, 0.9, 0.3, 1)]  # not a control: left out
    rows = control_rows(runs)
    assert [r["control"] for r in rows] == ["dANN-LRF", "ER-MLP", "lottery ticket (rewind)"]
    ref, er, ticket = rows
    assert ref["trials"] == 5 and math.isclose(ref["acc_mean"], np.mean(ref_acc))
    assert math.isclose(ref["acc_sd"], np.std(ref_acc, ddof=1)) and math.isnan(ref["p_acc"])
    assert math.isclose(er["acc_diff"], 100 * (np.mean(er_acc) - np.mean(ref_acc)))
    expected = stats.ttest_ind(er_acc, ref_acc, equal_var=False)
    assert math.isclose(er["p_acc"], expected.pvalue) and math.isclose(er["t_acc"], expected.statistic)
    assert er["p_acc"] < 0.001
    assert math.isclose(er["p_acc_bonferroni"], min(1.0, 2 * er["p_acc"]))  # 2 tests: accuracy and loss
    assert math.isnan(ticket["p_acc"]) and ticket["trials"] == 1


def test_sparse_controls_figure_and_registration():
    from dendritic.figures.controls import sparse_controls
    from dendritic.figures.specs import FIGURES

    runs = []
    for d in (4, 16):
        for label, model, extra in (
            ("a", "dANN-LRF", {}),
            ("b", "sANN", {}),
            ("c", "vANN", {"lottery": "finetune"}),
        ):
            runs += [
                _run(model, d, 0.8 + 0.01 * s + (label == "a") * 0.01, 0.5, s, **extra) for s in range(3)
            ]
    fig = sparse_controls(control_rows(runs), dataset="Fashion-MNIST")
    assert len(fig.axes) == 3 and fig.axes[0].get_xscale() == "log"
    assert len(fig.axes[0].lines) >= 3
    assert "beyond-sparse-controls" in FIGURES and FIGURES["beyond-sparse-controls"].sweeps == (
        "sparse-controls",
    )
    with pytest.raises(ValueError):
        sparse_controls([])


def test_sparse_controls_figure_table_and_report_from_a_store(tmp_path):
    """Runs of the grid's configs under another tag are found by their configs; the figure, its
    table and the HTML report (rendered in headless Chromium where there is one) show them."""
    import sys
    from pathlib import Path

    pytest.importorskip("matplotlib")
    from dendritic.report import build_report, make_figures
    from dendritic.store import RunStore

    rng = np.random.default_rng(0)
    db = tmp_path / "runs.db"
    with RunStore(db) as store:
        for config in expand("sparse-controls", {"dendrites": [4, 16], "trials": [1, 2, 3]}):
            acc = 0.85 + 0.01 * (config.model == "dANN-LRF") + rng.normal(0, 0.002)
            params = dataclasses.replace(
                config.model_spec(), model="dANN-LRF" if config.lottery != "none" else config.model
            )
            run = store.start_run(
                config.to_dict(),
                meta={"trainable_params": params.trainable_parameters(FMNIST, 10), "experiment": "x"},
            )
            store.log_epoch(run, 1, train_loss=0.5, train_accuracy=acc, val_loss=0.5, val_accuracy=acc)
            store.finish_run(run, test_accuracy=acc, test_loss=1.2 - acc)
    out = tmp_path / "figures"
    with RunStore(db, readonly=True) as store:
        result = make_figures(store, out, formats=("png",), only=["beyond-sparse-controls"], download=False)
        assert set(result.figures) == {"beyond-sparse-controls"}, result.skipped
        table = (out / "beyond-sparse-controls.md").read_text()
        assert len((out / "beyond-sparse-controls.csv").read_text().splitlines()) == 1 + 2 * 8
        assert "| D16xS256 | ER-MLP | 256 | 76,554 | 3 |" in table
        assert "| D4xS128 | pdANN (dense fan-in) | 3 | 9,475 | 3 |" in table
        report = build_report(store, tmp_path / "report.html", figures_dir=out)
    page = report.read_text()
    assert "Beyond the paper: sparse controls at matched parameters" in page
    sys.path.insert(0, str(Path(__file__).parent))
    from browser import assert_renders

    assert_renders(report, images=1)
