"""Beyond the paper (issue 16): branching dendrites, cable-weight modes, residual stacks, the
``depth-deep`` and ``morphology`` grids, their figures, tables and report sections."""

from __future__ import annotations

import dataclasses
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from dendritic.cli import main
from dendritic.models import DendriticNet, build_model, count_parameters
from dendritic.models.checkpoint import load, save
from dendritic.models.spec import ModelSpec, matched_somata
from dendritic.nn import DendriticLayer
from dendritic.nn.layer import seeded
from dendritic.store import RunStore, config_key
from dendritic.sweeps.grids import REFERENCE, expand, get_experiment
from dendritic.training import GradientNorms, TrainConfig, fit
from dendritic.wiring.geometry import InputGeometry
from dendritic.wiring.rules import make_receptive_fields

sys.path.insert(0, str(Path(__file__).parent))
from browser import assert_renders  # noqa: E402

MNIST = (28, 28, 1)

# ---------------------------------------------------------------- branching dendrites


def test_branches_are_placed_by_the_rule_and_each_dendrite_sums_its_own():
    layer = DendriticLayer((1, 10, 10), somata=5, dendrites=3, synapses=4, branches=2, seed=11)
    inputs, tree, cables = layer.wiring
    # The receptive-field rule placed S·D·B branches, from the same generator as a layer's dendrites.
    rng, _ = seeded(11)
    expected = make_receptive_fields("local", rng, InputGeometry((1, 10, 10)), 5, 6, 4)
    assert inputs == expected and inputs.n_out == 30 and inputs.uniform_fan_in == 4
    assert tree.is_blocks and (tree.n_in, tree.n_out, tree.uniform_fan_in) == (30, 15, 2)
    assert cables.is_blocks and (cables.n_in, cables.n_out, cables.uniform_fan_in) == (15, 5, 3)
    assert layer.n_dendrites == 15 and layer.branches == 2 and layer.dendrites_per_soma == 3
    # One branch per dendrite is the paper's layer, exactly.
    plain = DendriticLayer((1, 10, 10), somata=5, dendrites=3, synapses=4, branches=1, seed=11)
    paper = DendriticLayer((1, 10, 10), somata=5, dendrites=3, synapses=4, seed=11)
    assert plain.branch_linear is None and len(plain.wiring) == 2
    x = torch.rand(4, 1, 10, 10)
    assert torch.equal(plain(x), paper(x))


def _dense(module):
    """The compact weights of a SparseLinear as the oracle's dense (out, in) layout."""
    outputs, inputs = module.connectivity.pairs()
    return torch.from_numpy(outputs), torch.from_numpy(inputs)


def _oracle_pair(**kw):
    args = dict(input_shape=(2, 6, 6), somata=4, dendrites=3, synapses=3, seed=5, **kw)
    fast, slow = DendriticLayer(**args), DendriticLayer(**args, oracle=True)
    parts = (
        ["branch_linear", "dendrite_linear", "soma_linear"]
        if fast.branch_linear is not None
        else ["dendrite_linear", "soma_linear"]
    )
    with torch.no_grad():
        for name in parts:
            a, b = getattr(fast, name), getattr(slow, name)
            rows, cols = _dense(a)
            if name == "soma_linear" and kw.get("cable_weights") == "positive":
                orig_a = a.parametrizations.weight.original
                orig_b = b.parametrizations.weight.original
                orig_b.fill_(-5.0)
                orig_b[rows, cols] = orig_a
            elif name == "soma_linear" and kw.get("cable_weights") == "ones":
                assert torch.equal(b.weight[rows, cols], a.weight)  # the same fixed values
            else:
                b.weight.copy_(a.dense_weight())  # (fixed random weights: the same draw in both)
            b.bias.copy_(torch.randn_like(b.bias) * 0.1)
            a.bias.copy_(b.bias)
    return fast, slow


@pytest.mark.parametrize(
    "kw",
    [
        {"branches": 2},
        {"branches": 3, "receptive_field": "global"},
        {"cable_weights": "ones"},
        {"cable_weights": "random"},
        {"cable_weights": "positive"},
        {"branches": 2, "cable_weights": "positive"},
    ],
    ids=lambda kw: "-".join(f"{k}={v}" for k, v in kw.items()),
)
def test_outputs_and_gradients_match_the_masked_oracle(kw):
    fast, slow = _oracle_pair(**kw)
    fast, slow = fast.double(), slow.double()
    x = torch.rand(7, 2, 6, 6, dtype=torch.float64)
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    (oa, da), (ob, db) = fast(xa, return_dendrites=True), slow(xb, return_dendrites=True)
    torch.testing.assert_close(oa, ob)
    torch.testing.assert_close(da, db)
    (oa.square().sum() + da.sum()).backward()
    (ob.square().sum() + db.sum()).backward()
    torch.testing.assert_close(xa.grad, xb.grad)
    for name in ("branch_linear", "dendrite_linear", "soma_linear"):
        a, b = getattr(fast, name, None), getattr(slow, name, None)
        if a is None:
            continue
        rows, cols = _dense(a)
        if a.weight.requires_grad and not hasattr(a, "parametrizations"):
            torch.testing.assert_close(a.weight.grad, b.weight.grad[rows, cols])
        torch.testing.assert_close(a.bias.grad, b.bias.grad)
    if kw.get("cable_weights") == "positive":
        ga = fast.soma_linear.parametrizations.weight.original.grad
        gb = slow.soma_linear.parametrizations.weight.original.grad
        torch.testing.assert_close(ga, gb[_dense(fast.soma_linear)])


def test_the_fused_branched_layer_equals_part_by_part():
    layer = DendriticLayer((1, 12, 12), somata=8, dendrites=4, synapses=3, branches=2, seed=3)
    assert layer.fusable
    x = torch.rand(16, 1, 12, 12)
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    fused = layer(xa)
    fused.square().sum().backward()
    grads = [p.grad.clone() for p in layer.parameters()]
    layer.zero_grad()
    layer.fused = False  # part by part
    slow = layer(xb)
    slow.square().sum().backward()
    torch.testing.assert_close(fused, slow)
    torch.testing.assert_close(xa.grad, xb.grad)
    for g, p in zip(grads, layer.parameters(), strict=True):
        torch.testing.assert_close(g, p.grad)


def test_cable_weight_modes_train_as_named():
    x, y = torch.rand(256, 64), torch.randint(0, 3, (256,))
    for mode in ("ones", "random", "positive", "learned"):
        layer = DendriticLayer(
            64, somata=6, dendrites=4, synapses=5, receptive_field="random", cable_weights=mode, seed=2
        )
        model = nn.Sequential(layer, nn.Linear(6, 3))
        before = layer.soma_linear.weight.detach().clone()
        fit(model, (x, y), epochs=2, batch_size=32, lr=1e-2, seed=1)
        after = layer.soma_linear.weight.detach()
        if mode == "ones":
            assert torch.equal(after, torch.ones_like(after))
        if mode == "random":
            assert torch.equal(after, before) and bool((after > 0).all())
        if mode in ("positive", "learned"):
            assert not torch.equal(after, before)
        if mode == "positive":
            assert bool((after > 0).all())


# ---------------------------------------------------------------- residual stacks


def test_a_residual_stack_adds_each_layer_to_its_normalised_input():
    model = build_model("dANN-LRF", MNIST, 10, 4, 36, layers=3, residual=True, seed=4)
    x = torch.rand(5, 784)
    h = model.layers[0](x)
    for index in (1, 2):
        h = h + model.layers[index](torch.nn.functional.layer_norm(h, (36,)) * 1.0)
    expected = model.output(torch.nn.functional.layer_norm(h, (36,)))
    torch.testing.assert_close(model(x), expected, atol=1e-5, rtol=1e-4)
    # The norms are LayerNorm over the units: train their gains away from 1 and compare again.
    with torch.no_grad():
        for norm in (*model.norms, model.final_norm):
            norm.weight.uniform_(0.5, 1.5)
            norm.bias.uniform_(-0.1, 0.1)
    ln = [nn.LayerNorm(36) for _ in range(3)]
    for target, source in zip(ln, (*model.norms, model.final_norm), strict=True):
        target.load_state_dict({"weight": source.weight.detach(), "bias": source.bias.detach()})
    h = model.layers[0](x)
    for index in (1, 2):
        h = h + model.layers[index](ln[index - 1](h))
    torch.testing.assert_close(model(x), model.output(ln[2](h)), atol=1e-5, rtol=1e-4)


def test_residual_connections_keep_the_first_layers_gradient_alive():
    x, y = torch.rand(256, 784), torch.randint(0, 10, (256,))
    norms = {}
    for residual in (False, True):
        model = build_model("dANN-LRF", MNIST, 10, 4, 64, layers=8, residual=residual, seed=1)
        probe = GradientNorms(x, y, epochs=1)
        fit(model, (x, y), epochs=1, seed=1, callbacks=[probe])
        assert probe.names == [f"layer_{i}" for i in range(1, 9)] + ["output"]
        norms[residual] = probe.history[0]
    assert norms[True][0] > 100 * norms[False][0]


# ---------------------------------------------------------------- counts, options, checkpoints

SPECS = [
    ModelSpec("dANN-LRF", 4, 32),
    ModelSpec("dANN-GRF", 4, 32, branches=3, synapses=5),
    ModelSpec("dANN-R", 2, 16, cable_weights="ones"),
    ModelSpec("sANN", 3, 16, cable_weights="random", layers=2),
    ModelSpec("vANN", 2, 16, cable_weights="ones", layers=2),
    ModelSpec("pdANN", 2, 16, cable_weights="positive"),
    ModelSpec("dANN-LRF", 4, 36, layers=4, residual=True),
    ModelSpec("vANN", 1, 25, layers=3, residual=True, branches=2),
    ModelSpec("dANN-LRF", 8, 16, branches=2, synapses=8, cable_weights="positive", layers=2, residual=True),
    ModelSpec("dANN-R", 4, 16, layers=3, residual=True, cable_weights="random", init="he-fan-in"),
]


@pytest.mark.parametrize(
    "spec", SPECS, ids=lambda s: f"{s.model}-B{s.branches}-{s.cable_weights}-L{s.layers}-r{int(s.residual)}"
)
def test_parameter_counts_in_closed_form(spec):
    model = DendriticNet(spec, MNIST, 10, seed=1)
    assert count_parameters(model) == spec.trainable_parameters(MNIST, 10)


@pytest.mark.parametrize(
    "spec", SPECS[1:], ids=lambda s: f"{s.model}-B{s.branches}-{s.cable_weights}-L{s.layers}"
)
def test_checkpoints_keep_every_option(tmp_path, spec):
    model = DendriticNet(spec, MNIST, 10, seed=3)
    x = torch.rand(6, *MNIST)
    json_path = save(model, tmp_path / "ck")
    again = load(tmp_path / "ck")
    assert torch.equal(model(x), again(x))
    assert (again.residual, again.cable_weights, again.init) == (spec.residual, spec.cable_weights, spec.init)
    assert [len(p) for p in again.wiring] == [2 if spec.branches == 1 else 3] * spec.layers
    assert count_parameters(again) == count_parameters(model)
    assert '"format_version": 4' in json_path.read_text()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"branches": 0}, "branches must be a positive integer"),
        (
            {"cable_weights": "tied"},
            "unknown cable_weights 'tied'; choose one of learned, ones, random, positive",
        ),
        ({"residual": "yes"}, "residual must be True or False"),
    ],
)
def test_bad_options_are_one_line_errors(kwargs, message):
    for make in (
        lambda: build_model("dANN-LRF", MNIST, 10, 4, 16, seed=1, **kwargs),
        lambda: TrainConfig(**kwargs),
    ):
        with pytest.raises(ValueError) as info:
            make()
        assert "\n" not in str(info.value)
        if "positive integer" not in message or "branches" in str(info.value):
            assert message.split(" must")[0] in str(info.value)
    if "cable_weights" in kwargs:
        with pytest.raises(ValueError, match="unknown cable_weights"):
            DendriticLayer(64, somata=4, **kwargs)


def test_the_cli_takes_the_options_and_refuses_bad_ones(capsys):
    with pytest.raises(SystemExit) as info:
        main(["train", "--branches", "0"])
    assert info.value.code == 2
    assert "--branches" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["train", "--cable-weights", "tied"])
    assert "invalid choice: 'tied'" in capsys.readouterr().err


def test_the_papers_configs_keep_their_store_keys():
    """Options left at the paper's values are not part of a config's dict: runs stored before
    the options existed are found again (the key below is the one the earlier code gave)."""
    config = TrainConfig(model="dann-lrf", dendrites=4, somata=32, lr=1)
    assert config_key(config.to_dict()) == "44fdf86ec9b0ca98"
    assert not {"branches", "cable_weights", "residual", "init"} & set(config.to_dict())
    other = dataclasses.replace(config, branches=2)
    assert other.to_dict()["branches"] == 2 and config_key(other.to_dict()) != config_key(config.to_dict())


# ---------------------------------------------------------------- the grids


def test_the_grids_are_matched_and_list_with_estimates(capsys, tmp_path):
    reference = REFERENCE.trainable_parameters(MNIST, 10)
    morphology = expand("morphology")
    assert len(morphology) == 66 and len({config_key(c.to_dict()) for c in morphology}) == 66
    for config in morphology:
        params = config.model_spec().trainable_parameters(MNIST, 10)
        assert abs(params - reference) / reference < 0.003, config
        assert config.dendrites * config.synapses * config.branches in (256, 128, 64) or config.branches > 1
    deep = expand("depth-deep")
    assert {c.layers for c in deep} == {1, 2, 4, 8, 12, 16, 20} and {c.residual for c in deep} == {
        False,
        True,
    }
    for config in deep:
        if config.model == "vANN":
            target = dataclasses.replace(REFERENCE, layers=config.layers, residual=config.residual)
            t = target.trainable_parameters(MNIST, 10)
            assert abs(config.model_spec().trainable_parameters(MNIST, 10) - t) / t < 0.02
    assert get_experiment("depth-deep").size() == 112
    assert matched_somata(dataclasses.replace(REFERENCE, cable_weights="ones"), reference, MNIST, 10) == 270

    store = str(tmp_path / "none.db")
    assert main(["sweep", "morphology", "--dry-run", "--store", store, "--trials", "1", "--sigma", "0"]) == 0
    out = capsys.readouterr().out
    assert "11 runs in morphology" in out and "options" in out and "B=4" in out and "cables=ones" in out
    assert "estimated time" in out
    assert (
        main(["sweep", "depth-deep", "--dry-run", "--store", store, "--models", "vANN", "--trials", "1"]) == 0
    )
    out = capsys.readouterr().out
    assert "14 runs in depth-deep" in out and "residual" in out


# ---------------------------------------------------------------- figures, tables, report


def _add(store, rng, config, acc, params, epochs=3, layers_norms=None):
    key = config.to_dict()
    run = store.start_run(key, meta={"trainable_params": params, "experiment": "x"})
    for e in range(1, epochs + 1):
        extra = {}
        if layers_norms is not None and e == 1:
            extra = {"grad_norms_init": layers_norms, "grad_norms": [v * 0.5 for v in layers_norms]}
        store.log_epoch(run, e, train_loss=1.0 - acc, train_accuracy=acc + 0.02, val_loss=1.1 - acc,
                        val_accuracy=acc - 0.01 + rng.normal(0, 0.002), **extra)  # fmt: skip
    store.finish_run(run, test_accuracy=acc, test_loss=1.2 - acc)


@pytest.fixture
def beyond_store(tmp_path):
    rng = np.random.default_rng(0)
    db = tmp_path / "runs.db"
    with RunStore(db) as store:
        for config in expand("depth-deep", {"layers": [1, 2, 4]}):
            depth = config.layers
            drop = 0.01 * depth * (0 if config.residual else 1)
            norms = [10.0 ** (-(depth - i) * (0 if config.residual else 1)) for i in range(depth)] + [1.0]
            _add(store, rng, config, 0.88 - drop + rng.normal(0, 0.002), 70_000 * depth, layers_norms=norms)
        for config in expand("depth-init", {"layers": [1, 2, 4]}):
            norms = [1.0] * config.layers + [1.0]
            _add(store, rng, config, 0.80 + rng.normal(0, 0.002), 70_000 * config.layers, layers_norms=norms)
        for config in expand("morphology"):
            if store.find(config.to_dict()):
                continue  # the reference is also the depth grid's L = 1 dANN-LRF: one run serves both
            acc = 0.87 + 0.005 * (config.branches > 1) - 0.05 * config.sigma + rng.normal(0, 0.002)
            _add(store, rng, config, acc, config.model_spec().trainable_parameters(MNIST, 10))
        store_runs = store.list_runs()
    # The sweeps tag their runs; these hand-made ones carry another tag and are found by their configs.
    assert {r["experiment"] for r in store_runs} == {"x"}
    return db


def test_beyond_figures_tables_and_report(beyond_store, tmp_path):
    pytest.importorskip("matplotlib")
    from dendritic.report import build_report, make_figures

    out = tmp_path / "figures"
    with RunStore(beyond_store, readonly=True) as store:
        result = make_figures(
            store, out, formats=("png",), only=["beyond-depth", "beyond-morphology"], download=False
        )
        assert set(result.figures) == {"beyond-depth", "beyond-morphology"}, result.skipped
        assert result.panels == {"beyond-depth": 6, "beyond-morphology": 4}
        depth = (out / "beyond-depth.md").read_text()
        assert (
            "| dANN-LRF | False | glorot-dense | 4 |" in depth
            and "| vANN | True | glorot-dense | 2 |" in depth
        )
        assert "| dANN-LRF | False | he-fan-in | 4 |" in depth and "| vANN | True | he-fan-in |" not in depth
        assert len((out / "beyond-depth.csv").read_text().splitlines()) == 1 + 4 * 2 * 3 + 2 * 3
        morph = (out / "beyond-morphology.csv").read_text().splitlines()
        assert len(morph) == 1 + 33  # 11 morphologies x 3 noise levels
        assert "B=2 (8 syn.)" in (out / "beyond-morphology.md").read_text()
        report = build_report(store, tmp_path / "report.html", figures_dir=out)
    page = report.read_text()
    assert "Beyond the paper: depth to 20 layers" in page and "Beyond the paper: dendritic morphology" in page
    assert_renders(report, images=2)


def test_beyond_rows_are_the_runs_numbers(beyond_store):
    from dendritic.analysis.beyond import depth_rows, morphology_rows
    from dendritic.report import load_runs
    from dendritic.report.make import _grid_runs

    with RunStore(beyond_store, readonly=True) as store:
        runs = load_runs(store)
        grid = _grid_runs(runs)
        deep, shapes, init = grid("depth-deep"), grid("morphology"), grid("depth-init")
        rows = depth_rows(deep + init, runs.epochs_of)
    assert len(deep) == 3 * 2 * 4 * 2 and len(shapes) == 66 and len(init) == 3 * 2 * 2
    lrf4 = next(
        r
        for r in rows
        if (r["model"], r["residual"], r["init"], r["layers"]) == ("dANN-LRF", False, "glorot-dense", 4)
    )
    he4 = next(
        r
        for r in rows
        if (r["model"], r["residual"], r["init"], r["layers"]) == ("dANN-LRF", False, "he-fan-in", 4)
    )
    assert he4["trials"] == 2 and he4["acc_mean"] == pytest.approx(0.80, abs=0.01)
    members = [
        r
        for r in deep
        if r["model"] == "dANN-LRF" and r["config"]["layers"] == 4 and "residual" not in r["config"]
    ]
    assert lrf4["trials"] == len(members) == 2
    assert lrf4["acc_mean"] == pytest.approx(np.mean([r["test_accuracy"] for r in members]))
    assert lrf4["gap_mean"] == pytest.approx(0.02)  # the last epoch's train accuracy − test accuracy
    assert lrf4["grad_init_first"] == pytest.approx(1e-4) and lrf4["grad_init_last"] == pytest.approx(1e-1)
    assert lrf4["grad_layers_epoch1"] == pytest.approx([0.5e-4, 0.5e-3, 0.5e-2, 0.5e-1])
    morph = morphology_rows(shapes)
    assert len(morph) == 33 and {r["family"] for r in morph} == {
        "reference", "branching", "dendrites x synapses", "cable weights",
    }  # fmt: skip
    assert all(math.isfinite(r["acc_efficiency"]) and r["trials"] == 2 for r in morph)
    best = next(r for r in morph if r["label"] == "B=2 (8 syn.)" and r["sigma"] == 0.5)
    assert best["somata"] == 211 and best["params"] == 76603


def test_every_run_records_its_layers_gradient_norms(tmp_path):
    """Through a sweep worker (no store in the worker: the norms travel with the epochs) and
    through ``train`` with a store."""
    from dendritic.sweeps.worker import Task, run_task
    from dendritic.training import train
    from fakedata import write_dataset

    data = write_dataset(tmp_path / "data", "mnist", n_train=600, n_test=100)
    config = TrainConfig(
        model="dANN-R", dataset="mnist", dendrites=2, somata=16, layers=3, residual=True, epochs=4
    )
    streamed = []
    outcome = run_task(Task(1, config.to_dict(), data_dir=str(data), threads=1), on_epoch=streamed.append)
    assert outcome["ok"], outcome.get("error")
    first, fourth = outcome["history"][0], outcome["history"][3]
    assert first["grad_norm_groups"] == ["layer_1", "layer_2", "layer_3", "output"]
    assert len(first["grad_norms_init"]) == len(first["grad_norms"]) == 4
    assert all(v > 0 for v in first["grad_norms_init"])
    assert "grad_norms" not in fourth  # the first 3 epochs only
    assert streamed[0]["grad_norms"] == first["grad_norms"]
    with RunStore(tmp_path / "runs.db") as store:
        result = train(config, store=store, data_dir=data)
        rows = store.epochs(result.run_id)
    assert rows[0]["grad_norms_init"] == pytest.approx(first["grad_norms_init"])
    assert [("grad_norms" in r) for r in rows] == [True, True, True, False]


@pytest.mark.parametrize("kw", [{"branches": 2}, {"cable_weights": "positive"}, {"cable_weights": "ones"}])
def test_the_new_structures_compile_without_graph_breaks(kw):
    layer = DendriticLayer((1, 12, 12), somata=8, dendrites=4, synapses=3, seed=1, **kw)
    x = torch.rand(8, 1, 12, 12)
    torch._dynamo.reset()
    assert torch._dynamo.explain(layer)(x).graph_break_count == 0
    net = build_model("dANN-LRF", MNIST, 10, 4, 36, layers=3, residual=True, seed=1, **kw)
    xs = torch.rand(4, 784, requires_grad=True)
    compiled = torch.compile(net, backend="aot_eager")
    torch.testing.assert_close(compiled(xs), net(xs))
    compiled(xs).sum().backward()
    assert xs.grad is not None and bool(torch.isfinite(xs.grad).all())
