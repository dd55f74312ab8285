"""Selectivity (issue 23, item 1): the class-selectivity regulariser, class-specific somata, what a
run reached, the engine's fallback for a regularised loss, the options' errors and the sweep."""

import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dendritic.analysis.activity import activity_stats
from dendritic.models import ModelSpec, build_model
from dendritic.models.spec import trainable_parameters
from dendritic.nn import DendriticLayer, class_readout, soma_classes
from dendritic.training import TrainConfig, fit
from dendritic.training.engine import StepEngine, WholeStepEngine, select_engine
from dendritic.training.optim import Adam
from dendritic.training.selectivity import (
    SelectivityRegularizer,
    class_means,
    node_activity,
    selectivity_index,
)

sys.path.insert(0, str(Path(__file__).parent))
from fakedata import learnable_images, write_dataset  # noqa: E402

torch.set_num_threads(1)


def _data(n=256, k=10, seed=0):
    x, y = learnable_images(n, k, seed)
    return torch.tensor(x, dtype=torch.float32).reshape(n, 28, 28, 1) / 255.0, torch.tensor(
        y, dtype=torch.long
    )


# ---------------------------------------------------------------------------- the index


def test_index_is_one_for_one_hot_class_responses_and_zero_for_equal_ones():
    k = 4
    labels = torch.arange(k).repeat_interleave(3)  # 3 samples per class
    one_hot = F.one_hot(labels, k).double() * 2.5  # node j answers class j only
    assert torch.allclose(
        selectivity_index(one_hot, labels, k), torch.ones(k, dtype=torch.float64), atol=1e-6
    )
    equal = torch.full((len(labels), 5), 0.7, dtype=torch.float64)
    assert torch.allclose(
        selectivity_index(equal, labels, k), torch.zeros(5, dtype=torch.float64), atol=1e-12
    )
    dead = torch.zeros(len(labels), 2, dtype=torch.float64)
    assert torch.equal(selectivity_index(dead, labels, k), torch.zeros(2, dtype=torch.float64))
    # negative (leaky-ReLU) responses are clipped at 0: the index stays in [0, 1]
    leaky = torch.where(one_hot > 0, one_hot, torch.tensor(-0.3, dtype=torch.float64))
    assert torch.allclose(selectivity_index(leaky, labels, k), torch.ones(k, dtype=torch.float64), atol=1e-6)


def test_index_by_hand_and_with_classes_absent_from_the_batch():
    labels = torch.tensor([0, 0, 1, 1])  # classes 2 and 3 absent
    acts = torch.tensor([[3.0], [1.0], [1.0], [1.0]], dtype=torch.float64)  # means: 2, 1
    # (2 - 1) / (2 + 1): only the classes present count
    assert selectivity_index(acts, labels, 4).item() == pytest.approx(1 / 3, abs=1e-6)
    # a remembered mean for class 2 (4.0) joins; class 3 is still unknown
    memory = torch.tensor([[9.0], [9.0], [4.0], [9.0]], dtype=torch.float64)
    known = torch.tensor([True, True, True, False])
    # means 2, 1, 4: (4 - 1.5) / (4 + 1.5)
    got = selectivity_index(acts, labels, 4, memory=memory, known=known).item()
    assert got == pytest.approx(2.5 / 5.5, abs=1e-6)
    # one class only: no index (0) and no gradient
    single = torch.ones(3, 2, dtype=torch.float64, requires_grad=True)
    out = selectivity_index(single, torch.zeros(3, dtype=torch.long), 4)
    out.sum().backward()
    assert torch.equal(out.detach(), torch.zeros(2, dtype=torch.float64))
    assert torch.equal(single.grad, torch.zeros_like(single))


def test_class_means_checks_its_input_in_one_line():
    with pytest.raises(ValueError, match="labels must lie in"):
        class_means(torch.ones(2, 3), torch.tensor([0, 7]), 4)
    with pytest.raises(ValueError, match="integer class indices"):
        class_means(torch.ones(2, 3), torch.tensor([0.0, 1.0]), 4)
    with pytest.raises(ValueError, match="2-D"):
        class_means(torch.ones(2), torch.tensor([0, 1]), 4)


def test_index_gradient_matches_finite_differences():
    gen = torch.Generator().manual_seed(0)
    labels = torch.tensor([0, 1, 2, 0, 1, 2, 1, 0])
    acts = (torch.rand(8, 5, generator=gen, dtype=torch.float64) + 0.05).requires_grad_()
    memory = torch.rand(4, 5, generator=gen, dtype=torch.float64)
    known = torch.tensor([False, False, False, True])
    assert torch.autograd.gradcheck(lambda a: selectivity_index(a, labels, 4), (acts,))
    assert torch.autograd.gradcheck(
        lambda a: selectivity_index(a, labels, 4, memory=memory, known=known), (acts,)
    )


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("batch", [13, 64])
def test_feature_major_class_sums_equal_the_batch_major_reference(dtype, batch):
    """The paper's networks' layout runs a C++ pass each way (``dendritic::class_sums_t``): the
    class means and their gradient equal relu(a) @ one_hot(y) on the transposed activations, with
    a class absent from the batch, a batch that is not a multiple of the vector width, and zeros."""
    from dendritic.layers.functional import class_sums_t

    gen = torch.Generator().manual_seed(batch)
    acts = torch.randn(37, batch, generator=gen, dtype=dtype)
    acts[3, :5] = 0.0
    labels = torch.randint(0, 4, (batch,), generator=gen)
    labels[labels == 2] = 1  # class 2 absent
    k = 5
    fm = acts.clone().requires_grad_()
    bm = acts.t().clone().requires_grad_()
    means_fm, counts_fm = class_means(fm, labels, k, feature_major=True)
    means_bm, counts_bm = class_means(bm, labels, k)
    tol = {"rtol": 1e-5, "atol": 1e-6} if dtype == torch.float32 else {"rtol": 1e-12, "atol": 1e-12}
    torch.testing.assert_close(means_fm, means_bm, **tol)
    assert torch.equal(counts_fm, counts_bm) and counts_fm[2] == 0
    weights = torch.randn(k, 37, generator=gen, dtype=dtype)
    (means_fm * weights).sum().backward()
    (means_bm * weights).sum().backward()
    torch.testing.assert_close(fm.grad, bm.grad.t(), **tol)
    assert torch.all(fm.grad[acts <= 0] == 0)  # relu's subgradient, zeros included
    if dtype == torch.float64:
        a = (torch.rand(6, 11, generator=gen, dtype=dtype) - 0.3).requires_grad_()
        assert torch.autograd.gradcheck(lambda t: class_sums_t(t, labels[:11], 5), (a,))
    with pytest.raises(ValueError, match="one label per sample"):
        class_means(fm, labels[:-1], k, feature_major=True)


def test_regularised_loss_gradient_matches_finite_differences():
    """The whole loss, through the hooks, of a float64 model: d(CE − α·SI)/d(input)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3)).double()
    x = torch.randn(12, 6, dtype=torch.float64, requires_grad=True)
    y = torch.arange(12) % 3
    with SelectivityRegularizer(model, alpha=2.0, layers=["1"]) as loss:

        def objective(inputs):
            return loss(model(inputs), y)

        assert torch.autograd.gradcheck(objective, (x,))
        # and it is CE − α·SI: the same number by hand
        hidden = torch.relu(model[0](x))
        expected = F.cross_entropy(model(x), y) - 2.0 * selectivity_index(hidden, y, 3).mean()
        loss._memory.clear()
        assert objective(x).item() == pytest.approx(expected.item(), rel=1e-12)


def test_regularised_loss_of_a_dendritic_net_matches_finite_differences():
    model = build_model("dANN-R", 64, 3, dendrites=2, somata=6, synapses=4, seed=3).double()
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(9, 64, generator=gen, dtype=torch.float64).requires_grad_()
    y = torch.arange(9) % 3
    with SelectivityRegularizer(model, alpha=-1.5, layers="dendrites+somata") as loss:
        assert loss.layers == ["dendrites_1", "somata_1"]
        assert torch.autograd.gradcheck(lambda inputs: loss(model(inputs), y), (x,))
    assert model.layers[0].fused  # given back


def test_regulariser_reads_dendrites_and_somata_of_a_dendritic_net():
    model = build_model("dANN-LRF", (28, 28), 10, dendrites=4, somata=16, seed=1)
    x, y = _data(64)
    with SelectivityRegularizer(model, alpha=1.0, layers=("dendrites", "somata")) as loss:
        value = loss(model(x), y)
        _, acts = model(x, return_activations=True)
        expected = torch.stack(
            [selectivity_index(acts[name], y, 10).mean() for name in ("dendrites_1", "somata_1")]
        ).mean()
        assert loss.last_index == pytest.approx(float(expected.detach()), rel=1e-5)
        assert value.item() == pytest.approx((F.cross_entropy(model(x), y) - expected).item(), rel=1e-5)
        model.eval()  # validation and test: the base loss only
        with torch.no_grad():
            assert loss(model(x), y).item() == pytest.approx(F.cross_entropy(model(x), y).item(), rel=1e-6)


def test_activation_hooks_see_every_layer_and_come_off():
    model = build_model("dANN-LRF", (28, 28), 10, dendrites=3, somata=12, synapses=4, layers=2, seed=1)
    x, _ = _data(16)
    seen: dict[str, torch.Tensor] = {}
    handle = model.register_activation_hook(lambda m, name, a: seen.__setitem__(name, a))
    logits, acts = model(x, return_activations=True)
    assert sorted(seen) == sorted(acts) == ["dendrites_1", "dendrites_2", "somata_1", "somata_2"]
    for name, a in seen.items():
        assert torch.equal(a.t(), acts[name]) and a.requires_grad  # feature-major, differentiable
    handle.remove()
    seen.clear()
    model(x)
    assert not seen


def test_regulariser_on_the_fused_layers_equals_the_part_by_part_computation():
    """A DendriticNet keeps its fused C++ layers under the regulariser: the loss and every
    gradient equal those of the same network run part by part (``unfused``), over batches that
    use the memory of absent classes too."""
    from dendritic.nn import unfused

    x, y = _data(48)
    grads = []
    for fused in (True, False):
        model = build_model("dANN-LRF", (28, 28), 10, dendrites=4, somata=16, layers=2, seed=2).double()
        run = contextlib.nullcontext() if fused else unfused(model)
        with run, SelectivityRegularizer(model, alpha=0.7, layers="dendrites+somata") as loss:
            assert all(layer.fused for layer in model.layers) == fused
            got = []
            for batch in (slice(0, 48), slice(0, 12)):  # the second batch lacks classes
                model.zero_grad()
                value = loss(model(x[batch].double()), y[batch])
                value.backward()
                got.append((value.detach(), [p.grad.clone() for p in model.parameters()]))
        grads.append(got)
    for (v1, g1), (v2, g2) in zip(*grads, strict=True):
        torch.testing.assert_close(v1, v2, rtol=1e-12, atol=1e-12)
        for a, b in zip(g1, g2, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_regulariser_options_are_one_line_errors():
    model = build_model("dANN-R", 64, 3, dendrites=2, somata=6, synapses=4, seed=3)
    with pytest.raises(ValueError, match="unknown selectivity layer 'axons'"):
        SelectivityRegularizer(model, 1.0, layers=["axons"])
    with pytest.raises(ValueError, match="selectivity alpha must be"):
        SelectivityRegularizer(model, float("nan"))
    with pytest.raises(ValueError, match="no submodule"):
        SelectivityRegularizer(nn.Sequential(nn.Linear(2, 2)), 1.0, layers=["7"])
    with pytest.raises(RuntimeError, match="not attached"):
        model.train()
        SelectivityRegularizer(model, 1.0)(model(torch.rand(4, 64)), torch.tensor([0, 1, 2, 0]))


# ---------------------------------------------------------------------------- training with it


def test_a_regularised_loss_never_takes_the_whole_step_cross_entropy_path():
    """The bug of the first attempt: the fused C++ step trains plain CE whatever the loss."""
    model = build_model("dANN-LRF", (28, 28), 10, dendrites=4, somata=16, seed=1)
    x, y = _data(64)
    optimizer = Adam(model.parameters())
    plain = select_engine(model, optimizer, x, y)
    if model.fused_plan() is not None:  # the C++ extension is built
        assert isinstance(plain, WholeStepEngine)
    custom = select_engine(model, optimizer, x, y, loss=lambda out, t: F.cross_entropy(out, t) * 2.0)
    assert type(custom) is StepEngine
    with SelectivityRegularizer(model, 1.0) as loss:
        engine = select_engine(model, optimizer, x, y, loss=loss)
        assert type(engine) is StepEngine and engine.batch_loss is None


def _fit_index(alpha, layers="somata", epochs=4):
    model = build_model("dANN-LRF", (28, 28), 10, dendrites=4, somata=32, seed=2)
    x, y = _data(512)
    with SelectivityRegularizer(model, alpha, layers) as loss:
        fit(model, (x, y), epochs=epochs, batch_size=64, seed=1, loss=loss)
    activity = node_activity(model, x, y)
    return model, activity[f"{layers}_1"]["index_mean"]


def test_alpha_moves_the_selectivity_reached_in_the_direction_its_sign_says():
    _, low = _fit_index(-5.0)
    _, zero = _fit_index(0.0)
    _, high = _fit_index(5.0)
    assert low < zero < high
    assert high - low > 0.1


def test_alpha_zero_trains_as_the_plain_loss():
    """The regulariser at α = 0 (plain autograd steps) gives the plain cross-entropy's weights."""
    regularised, _ = _fit_index(0.0, epochs=1)
    model = build_model("dANN-LRF", (28, 28), 10, dendrites=4, somata=32, seed=2)
    x, y = _data(512)
    fit(model, (x, y), epochs=1, batch_size=64, seed=1, fused=False)
    for a, b in zip(regularised.parameters(), model.parameters(), strict=True):
        assert torch.allclose(a, b, atol=1e-5)


# ---------------------------------------------------------------------------- what a run reached


def test_node_activity_agrees_with_the_fig5_analyses():
    model = build_model("dANN-LRF", (28, 28), 10, dendrites=4, somata=16, seed=1)
    x, y = _data(300)
    measured = node_activity(model, x, y, batch=64)
    with torch.no_grad():
        _, acts = model(x, return_activations=True)
    for name in ("dendrites_1", "somata_1"):
        stats = activity_stats(acts[name].numpy(), y.numpy(), 10)
        live = ~stats.dead
        assert measured[name]["entropy_mean"] == pytest.approx(float(stats.entropy[live].mean()), rel=1e-9)
        assert measured[name]["entropy_median"] == pytest.approx(
            float(np.median(stats.entropy[live])), rel=1e-9
        )
        assert measured[name]["classes_mean"] == pytest.approx(
            float(stats.selectivity[live].mean()), rel=1e-9
        )
        assert measured[name]["dead_fraction"] == pytest.approx(float(stats.dead.mean()))
        index = selectivity_index(acts[name].double(), y, 10).numpy()
        assert measured[name]["index_mean"] == pytest.approx(float(index[live].mean()), rel=1e-6)


def test_train_records_what_the_run_reached_in_its_extra(tmp_path):
    from dendritic.store import RunStore
    from dendritic.training import train

    data_dir = write_dataset(tmp_path / "data", "fmnist", n_train=300, n_test=100)
    config = TrainConfig(
        model="dANN-LRF", dendrites=2, somata=10, epochs=1, dataset="fmnist",
        selectivity_alpha=-2.0, selectivity_layers="dendrites+somata",
    )  # fmt: skip
    with RunStore(tmp_path / "runs.db") as store:
        result = train(config, store=store, data_dir=data_dir, threads=1, experiment="selectivity")
        run = store.get_run(result.run_id)
    activity = run["extra"]["activity"]
    assert set(activity) == {"dendrites_1", "somata_1"}
    assert 0.0 <= activity["somata_1"]["entropy_mean"] <= np.log2(11)
    assert result.extra["activity"] == activity
    assert run["config"]["selectivity_alpha"] == -2.0


# ---------------------------------------------------------------------------- class-specific somata


@pytest.mark.parametrize("somata,classes", [(10, 10), (25, 10), (32, 3)])
def test_class_readout_wires_each_soma_to_exactly_one_class(somata, classes):
    readout = class_readout(somata, classes, generator=torch.Generator().manual_seed(0))
    mask = readout.dense_weight() != 0
    assert mask.shape == (classes, somata)
    assert torch.equal(mask.sum(dim=0), torch.ones(somata, dtype=torch.long))  # each soma: one output
    assert bool((mask.sum(dim=1) >= 1).all())  # every class: at least one soma
    owner = torch.tensor(soma_classes(somata, classes))
    assert torch.equal(mask.float().argmax(dim=0), owner)
    assert readout.n_connections == somata
    # a soma's activity moves its own class's logit only
    h = torch.zeros(1, somata)
    h[0, 1] = 1.0
    moved = (readout(h) - readout(torch.zeros(1, somata)))[0] != 0
    assert moved.nonzero().flatten().tolist() == [int(owner[1])]


def test_class_readout_needs_a_soma_per_class():
    with pytest.raises(ValueError, match="at least one soma per class: 4 somata for 10 classes"):
        class_readout(4, 10)


@pytest.mark.parametrize("name,dendrites", [("dANN-LRF", 4), ("vANN", 1), ("sANN", 4), ("dANN-R", 2)])
def test_every_model_takes_a_class_specific_readout(name, dendrites, tmp_path):
    from dendritic.models.checkpoint import load, save

    spec = ModelSpec(name, dendrites=dendrites, somata=20, readout="class-specific")
    model = build_model(name, (28, 28), 10, dendrites, 20, seed=1, readout="class-specific")
    mask = model.output.dense_weight() != 0
    assert torch.equal(mask.sum(dim=0), torch.ones(20, dtype=torch.long))
    assert trainable_parameters(spec, (28, 28), 10) == sum(
        p.numel() for p in model.parameters() if p.requires_grad
    )
    x, y = _data(64)
    fit(model, (x, y), epochs=1, batch_size=32, seed=1)
    assert torch.equal(model.output.dense_weight() != 0, mask)  # still class-specific after training
    path = save(model, tmp_path / "m")
    loaded = load(path)
    assert loaded.spec.readout == "class-specific"
    assert torch.equal(loaded(x), model(x))


def test_dendritic_layer_users_get_the_readout_too():
    layer = DendriticLayer((1, 28, 28), somata=20, dendrites=4, synapses=16, seed=0)
    model = nn.Sequential(layer, class_readout(20, 10))
    assert model(torch.rand(3, 1, 28, 28)).shape == (3, 10)


def test_readout_is_a_one_line_error_and_keeps_the_papers_keys():
    with pytest.raises(ValueError, match="unknown readout 'sparse'; choose one of dense, class-specific"):
        ModelSpec(readout="sparse")
    with pytest.raises(ValueError, match="at least one soma per class"):
        build_model("dANN-LRF", (28, 28), 10, 4, 8, readout="class-specific")
    assert "readout" not in TrainConfig().to_dict()
    assert TrainConfig(readout="class-specific").to_dict()["readout"] == "class-specific"


# ---------------------------------------------------------------------------- config, CLI, sweep


def test_selectivity_config_fields_keys_and_errors():
    from dendritic.sweeps import experiment_of

    plain = TrainConfig().to_dict()
    assert "selectivity_alpha" not in plain and "selectivity_layers" not in plain
    alone = TrainConfig(selectivity_alpha=3)
    assert alone.selectivity_layers == "somata" and alone.selectivity_alpha == 3.0
    zero = TrainConfig(selectivity_alpha=0.0, selectivity_layers="dendrites").to_dict()
    assert zero["selectivity_layers"] == "dendrites" and "selectivity_alpha" not in zero
    assert zero != plain  # α = 0 through the regulariser is a run of its own
    assert experiment_of(plain) == "main"
    assert experiment_of(alone.to_dict()) is None and experiment_of(zero) is None
    assert TrainConfig.from_dict(alone.to_dict()).to_dict() == alone.to_dict()
    for bad, message in (
        ({"selectivity_alpha": "strong"}, "selectivity_alpha must be"),
        ({"selectivity_alpha": float("inf")}, "selectivity_alpha must be"),
        ({"selectivity_alpha": 1e9}, "selectivity_alpha must be"),
        ({"selectivity_layers": "axons"}, "unknown selectivity_layers 'axons'"),
    ):
        with pytest.raises(ValueError, match=message):
            TrainConfig(**bad)


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
        (["--selectivity-alpha", "strong"], "expected a number"),
        (["--selectivity-alpha", "1e9"], "expected a finite number in [-1e+06, 1e+06]"),
        (["--selectivity-layers", "axons"], "invalid choice: 'axons'"),
        (["--readout", "sparse"], "invalid choice: 'sparse'"),
        (["--readout", "class-specific", "--somata", "4"], "at least one soma per class"),
    ],
)
def test_cli_options_are_one_line_errors(args, message, tmp_path):
    data_dir = write_dataset(tmp_path / "data", "mnist", n_train=100, n_test=50)
    result = _run_cli(
        "train",
        "--dataset",
        "mnist",
        "--data-dir",
        str(data_dir),
        "--epochs",
        "1",
        "--no-store",
        *args,
        cwd=tmp_path,
    )
    assert result.returncode != 0 and "Traceback" not in result.stderr
    lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0], result.stderr


def test_cli_trains_with_the_regulariser(tmp_path):
    data_dir = write_dataset(tmp_path / "data", "mnist", n_train=200, n_test=50)
    result = _run_cli(
        "train", "--dataset", "mnist", "--data-dir", str(data_dir), "--epochs", "1", "--dendrites", "2",
        "--somata", "10", "--selectivity-alpha", "-3", "--selectivity-layers", "dendrites+somata",
        "--readout", "class-specific", "--quiet", "--threads", "1", cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    shown = _run_cli("runs", "show", "1", cwd=tmp_path)
    run = json.loads(shown.stdout)
    assert run["config"]["selectivity_alpha"] == -3.0 and run["config"]["readout"] == "class-specific"
    assert set(run["extra"]["activity"]) == {"dendrites_1", "somata_1"}


def test_selectivity_sweep_points():
    from dendritic.sweeps import expand, get_experiment
    from dendritic.sweeps.selectivity import ALPHAS

    exp = get_experiment("selectivity")
    configs = expand(exp)
    assert len(configs) == exp.size()
    assert {c.seed for c in configs} == {1, 2, 3}
    trial = [c for c in configs if c.seed == 1]
    models = {(c.model, c.dendrites, c.somata) for c in trial}
    assert ("dANN-LRF", 16, 256) in models and ("dANN-LRF", 64, 512) in models
    vanns = [m for m in models if m[0] == "vANN"]
    assert len(vanns) == 2
    for _, _, s in vanns:  # matched trainable parameters, within one soma's worth
        assert s > 32
    plain = [c for c in trial if c.sigma == 0.0 and not c.sequential and c.readout == "dense"]
    assert sorted({c.selectivity_alpha for c in plain}) == sorted(ALPHAS)
    assert all(c.selectivity_layers is not None for c in plain)
    ends = {min(ALPHAS), 0.0, max(ALPHAS)}
    for sigma in (0.5, 1.0):
        noisy = [c for c in trial if c.sigma == sigma]
        assert {c.selectivity_alpha for c in noisy if c.readout == "dense"} == ends
        assert sum(c.readout == "class-specific" for c in noisy) == 4
    sequential = [c for c in trial if c.sequential]
    assert {c.selectivity_alpha for c in sequential if c.readout == "dense"} == ends
    assert len({c.to_dict()["model"] + json.dumps(c.to_dict(), sort_keys=True) for c in configs}) == len(
        configs
    )
    only_noise = expand(exp, {"sigma": ["1.0"], "trials": ["1"]})
    assert only_noise and all(c.sigma == 1.0 for c in only_noise)


def test_sweep_dry_run_lists_the_selectivity_points_with_times(tmp_path):
    result = _run_cli("sweep", "selectivity", "--dry-run", "--trials", "1", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "selectivity" in result.stdout and "dANN-LRF" in result.stdout
    assert "h" in result.stdout or "min" in result.stdout


# ---------------------------------------------------------------------------- rows, figure, table


def _fake_activity(alpha, class_specific, rng):
    entropy = 2.7 - 0.3 * np.tanh(alpha) + (-0.5 if class_specific else 0.0) + rng.normal(0, 0.01)
    return {
        layer: {
            "entropy_mean": entropy + (0.3 if layer == "somata_1" else 0.0),
            "entropy_median": entropy,
            "classes_mean": 3.0 - alpha,
            "index_mean": 0.4 + 0.1 * np.tanh(alpha),
            "dead_fraction": 0.05,
            "nodes": 100,
        }
        for layer in ("dendrites_1", "somata_1")
    }


@pytest.fixture
def selectivity_store(tmp_path):
    from dendritic.store import RunStore
    from dendritic.sweeps import expand

    rng = np.random.default_rng(0)
    db = tmp_path / "runs.db"
    with RunStore(db) as store:
        for config in expand("selectivity", {"trials": ["1", "2"]}):
            cs = config.readout == "class-specific"
            acc = (
                0.85
                - 0.01 * abs(config.selectivity_alpha)
                - 0.1 * config.sigma
                - 0.02 * cs
                + rng.normal(0, 0.003)
            )
            run = store.start_run(
                config.to_dict(), meta={"trainable_params": 76_554, "experiment": "selectivity"}
            )
            store.log_epoch(run, 1, train_loss=0.5, train_accuracy=acc, val_loss=0.6, val_accuracy=acc)
            activity = _fake_activity(config.selectivity_alpha, cs, rng)
            store.finish_run(run, test_accuracy=acc, test_loss=1.2 - acc, extra={"activity": activity})
    return db


def test_selectivity_rows_aggregate_trials_and_test_against_alpha_zero(selectivity_store):
    from dendritic.analysis.mixed_selectivity import selectivity_rows
    from dendritic.store import RunStore

    with RunStore(selectivity_store, readonly=True) as store:
        runs = store.list_runs(status="finished")
    rows = selectivity_rows(runs)
    assert len(rows) == 240 // 3  # one row per point, 2 trials each
    assert all(r["trials"] == 2 for r in rows)
    base = next(r for r in rows if r["model"] == "dANN-LRF" and r["somata"] == 256 and r["condition"] == "0"
                and r["sigma"] == 0.0 and not r["sequential"])  # fmt: skip
    low = next(r for r in rows if r["model"] == "dANN-LRF" and r["somata"] == 256 and r["alpha"] == min(
        r2["alpha"] for r2 in rows if r2["alpha"] == r2["alpha"]) and r["sigma"] == 0.0 and not r["sequential"])  # fmt: skip
    assert base["somata_entropy_mean"] < low["somata_entropy_mean"]
    assert np.isnan(base["p_vs_alpha0"]) and base["effect_points"] == pytest.approx(0.0)
    assert low["effect_points"] < 0 and 0 <= low["p_vs_alpha0"] <= 1
    cs = [r for r in rows if r["condition"] == "class-specific"]
    assert len(cs) == 4 * 4 and all(np.isnan(r["alpha"]) for r in cs)


def test_selectivity_figure_and_table(selectivity_store, tmp_path):
    pytest.importorskip("matplotlib")
    from browser import assert_renders
    from dendritic.report import build_report, make_figures
    from dendritic.store import RunStore

    out = tmp_path / "figures"
    with RunStore(selectivity_store, readonly=True) as store:
        result = make_figures(store, out, formats=("png",), only=["beyond-selectivity"], download=False)
        report = build_report(store, tmp_path / "report.html", figures_dir=out)
    assert set(result.figures) == {"beyond-selectivity"}, result.skipped
    assert result.panels == {"beyond-selectivity": 6}
    table = (out / "beyond-selectivity.md").read_text()
    assert "class-specific" in table and "somata entropy (bits)" in table
    assert len((out / "beyond-selectivity.csv").read_text().splitlines()) == 1 + 80
    assert "Beyond the paper: is mixed selectivity causal?" in report.read_text()
    assert_renders(report, images=1)


def test_robustness_panel_shows_each_protocol_relative_to_its_own_alpha_zero(selectivity_store):
    pytest.importorskip("matplotlib")
    from dendritic.analysis.mixed_selectivity import selectivity_rows
    from dendritic.figures.selectivity import selectivity
    from dendritic.store import RunStore

    with RunStore(selectivity_store, readonly=True) as store:
        rows = selectivity_rows(store.list_runs(status="finished"))
    fig = selectivity(rows)
    panel = fig.axes[5]
    lines = [c.lines[0] for c in panel.containers]  # one errorbar per network and protocol
    assert len(lines) == 4 * 4  # 4 networks x (no noise, sigma 0.5, sigma 1, sequential)
    for line in lines:  # alpha -1, 0, 1, class-specific: the second is its own reference
        ys = line.get_ydata()
        assert len(ys) == 4 and ys[1] == 0.0
    by_x = {}
    for line in lines:
        for x, y in zip(line.get_xdata(), line.get_ydata(), strict=True):
            by_x.setdefault(x, []).append(y)
    assert sorted(by_x) == [0, 1, 2, 3, 5, 6, 7, 8, 10, 11, 12, 13, 15, 16, 17, 18]
    assert max(by_x[3]) < 0  # the fake class-specific read-out costs 2 points everywhere
    labels = [t.get_text() for t in panel.texts]
    assert labels[:4] == ["σ = 0", "σ = 0.5", "σ = 1", "sequential"]  # then the panel letter


def test_selectivity_figure_skips_without_runs(tmp_path):
    pytest.importorskip("matplotlib")
    from dendritic.report import make_figures
    from dendritic.store import RunStore

    with RunStore(tmp_path / "empty.db") as store:
        result = make_figures(
            store, tmp_path / "out", formats=("png",), only=["beyond-selectivity"], download=False
        )
    assert "beyond-selectivity" not in result.figures
    assert "dendritic sweep selectivity" in " ".join(result.skipped.values())
