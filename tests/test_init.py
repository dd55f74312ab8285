"""The initial weights' rule (``init``): the paper's Glorot-uniform over each stage's dense shape,
or He-uniform over each unit's real fan-in; the ``depth-init`` grid and its place in the depth
study's rows, figure and logs."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from dendritic.cli import main
from dendritic.layers.sparse import INITS, MaskedLinear, SparseLinear, glorot_limit
from dendritic.models import DendriticNet, build_model
from dendritic.models.checkpoint import load, save
from dendritic.models.spec import ModelSpec, options_label
from dendritic.nn import DendriticLayer
from dendritic.store import config_key
from dendritic.sweeps.coordinator import summary_line
from dendritic.sweeps.grids import REFERENCE, expand, get_experiment
from dendritic.training import TrainConfig
from dendritic.wiring.connectivity import Connectivity

MNIST = (28, 28, 1)


def _fan_in(layer: SparseLinear) -> torch.Tensor:
    """Each weight's unit's number of connections, in the weight's layout."""
    if layer.kernel == "dense":
        return torch.full_like(layer.weight, float(layer.in_features))
    counts = torch.diff(torch.cat([layer.offsets, torch.tensor([layer.weight.numel()])]))
    return torch.repeat_interleave(counts, counts).to(layer.weight.dtype)


@pytest.mark.parametrize("wiring", ["sparse", "uneven", "dense"])
def test_he_weights_are_the_papers_draw_rescaled_per_unit(wiring):
    rng = np.random.default_rng(0)
    if wiring == "dense":
        conn = None
    elif wiring == "sparse":
        conn = Connectivity.from_table(
            np.stack([rng.choice(300, 12, replace=False) for _ in range(200)]), 300
        )
    else:  # units with 1 … 40 inputs
        mask = np.zeros((300, 200), dtype=bool)
        for unit in range(200):
            mask[rng.choice(300, size=1 + unit % 40, replace=False), unit] = True
        conn = Connectivity.from_mask(mask)
    paper = SparseLinear(300, 200, conn, generator=torch.Generator().manual_seed(3))
    he = SparseLinear(300, 200, conn, init="he-fan-in", generator=torch.Generator().manual_seed(3))
    fan_in = _fan_in(he)
    bound = torch.sqrt(6.0 / fan_in)
    # The same numbers drawn: one seed, the same weights up to each unit's factor.
    torch.testing.assert_close(he.weight, paper.weight * bound / glorot_limit(300, 200))
    assert bool((he.weight.abs() <= bound * (1 + 1e-6)).all())
    # He's variance 2 / fan-in (uniform on ±bound has variance bound² / 3).
    assert float((he.weight.detach().square() / (2.0 / fan_in)).mean()) == pytest.approx(1.0, rel=0.05)
    assert "init=he-fan-in" in repr(he) and "init" not in repr(paper)
    if conn is not None:
        mask = torch.from_numpy(conn.to_mask(np.float32).T)
        again = SparseLinear.from_mask(mask, init="he-fan-in", generator=torch.Generator().manual_seed(3))
        torch.testing.assert_close(again.weight, he.weight)
    wide = SparseLinear.random(300, 200, 12, seed=1, init="he-fan-in")
    assert glorot_limit(300, 200) < float(wide.weight.detach().abs().max()) <= math.sqrt(6.0 / 12)


def test_the_oracle_draws_the_same_rule():
    rng = np.random.default_rng(1)
    conn = Connectivity.from_table(np.stack([rng.choice(50, 5, replace=False) for _ in range(40)]), 50)
    masked = MaskedLinear(conn, init="he-fan-in", generator=torch.Generator().manual_seed(0))
    live = masked.weight[masked.mask.bool()]
    fan_in = masked.mask.sum(dim=1, keepdim=True).expand_as(masked.mask)[masked.mask.bool()]
    assert bool((live.abs() <= torch.sqrt(6.0 / fan_in)).all())
    assert float(live.detach().abs().max()) > glorot_limit(50, 40)  # wider than the paper's bound


@pytest.mark.parametrize("kw", [{}, {"branches": 2}, {"cable_weights": "positive"}])
def test_a_he_layer_matches_the_masked_oracle(kw):
    args = dict(input_shape=(2, 6, 6), somata=4, dendrites=3, synapses=3, seed=5, init="he-fan-in", **kw)
    fast, slow = DendriticLayer(**args).double(), DendriticLayer(**args, oracle=True).double()
    with torch.no_grad():
        for name in ("branch_linear", "dendrite_linear", "soma_linear"):
            a, b = getattr(fast, name, None), getattr(slow, name, None)
            if a is None:
                continue
            if hasattr(a, "parametrizations"):
                b.parametrizations.weight.original.fill_(-5.0)
                rows, cols = (torch.from_numpy(v) for v in a.connectivity.pairs())
                b.parametrizations.weight.original[rows, cols] = a.parametrizations.weight.original
            else:
                b.weight.copy_(a.dense_weight())
    x = torch.rand(5, 2, 6, 6, dtype=torch.float64)
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    fast(xa).square().sum().backward()
    slow(xb).square().sum().backward()
    torch.testing.assert_close(fast(x), slow(x))
    torch.testing.assert_close(xa.grad, xb.grad)
    assert "init=he-fan-in" in repr(fast)


def test_he_keeps_a_deep_plain_stacks_activity_and_the_papers_rule_loses_it():
    x = torch.rand(128, 784)
    spread = {}
    for init in INITS:
        model = build_model("dANN-LRF", MNIST, 10, 16, 64, layers=12, seed=1, init=init)
        with torch.no_grad():
            _, acts = model(x, return_activations=True)
        spread[init] = [float(acts[f"somata_{i}"].std()) for i in range(1, 13)]
    assert spread["glorot-dense"][-1] < 1e-20 * spread["glorot-dense"][0]
    he = spread["he-fan-in"]
    assert all(0.1 < s / he[0] < 10 for s in he)


def test_the_option_reaches_the_model_config_checkpoint_and_store_key(tmp_path):
    model = build_model("dANN-GRF", MNIST, 10, 4, 32, layers=2, seed=2, init="he-fan-in")
    assert model.config["init"] == "he-fan-in" and model.init == "he-fan-in"
    assert all(layer.init == "he-fan-in" for layer in model.layers)
    assert model.output.init == "glorot-dense"  # the read-out keeps Glorot's rule
    assert "init" not in build_model("dANN-GRF", MNIST, 10, 4, 32, seed=2).config
    save(model, tmp_path / "ck")
    again = load(tmp_path / "ck")
    x = torch.rand(3, *MNIST)
    assert torch.equal(model(x), again(x)) and again.init == "he-fan-in"
    spec = ModelSpec("dANN-LRF", 4, 32, init="he-fan-in")
    assert DendriticNet(spec, MNIST, 10, seed=1).config["init"] == "he-fan-in"
    paper = TrainConfig(model="dann-lrf", dendrites=4, somata=32, lr=1)
    assert config_key(paper.to_dict()) == "44fdf86ec9b0ca98"  # the key before the option existed
    he = TrainConfig(model="dann-lrf", dendrites=4, somata=32, lr=1, init="he-fan-in")
    assert he.to_dict()["init"] == "he-fan-in" and config_key(he.to_dict()) != config_key(paper.to_dict())


def test_a_bad_init_is_a_one_line_error(capsys):
    for make in (
        lambda: build_model("dANN-LRF", MNIST, 10, 4, 16, seed=1, init="xavier"),
        lambda: TrainConfig(init="xavier"),
        lambda: DendriticLayer(64, somata=4, init="xavier"),
        lambda: SparseLinear(8, 4, init="xavier"),
    ):
        with pytest.raises(ValueError) as info:
            make()
        assert str(info.value) == "unknown init 'xavier'; choose one of glorot-dense, he-fan-in"
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--init", "xavier"])
    assert exit_info.value.code == 2
    assert "argument --init: invalid choice: 'xavier'" in capsys.readouterr().err


def test_the_depth_init_grid(capsys, tmp_path):
    grid = expand("depth-init")
    assert get_experiment("depth-init").size() == len(grid) == 28
    assert {c.init for c in grid} == {"he-fan-in"} and not any(c.residual for c in grid)
    assert {c.layers for c in grid} == {1, 2, 4, 8, 12, 16, 20}
    assert {c.model for c in grid} == {"dANN-LRF", "vANN"}
    deep = {config_key(c.to_dict()): c for c in expand("depth-deep")}
    for config in grid:
        assert config_key(config.to_dict()) not in deep  # never mistaken for the paper's init
        paper = TrainConfig(**{**config.to_dict(), "init": "glorot-dense"})
        assert config_key(paper.to_dict()) in deep  # the same point of depth-deep otherwise
        if config.model == "vANN":
            target = dataclasses.replace(REFERENCE, layers=config.layers)
            t = target.trainable_parameters(MNIST, 10)
            assert abs(config.model_spec().trainable_parameters(MNIST, 10) - t) / t < 0.02
    assert main(["sweep", "depth-init", "--dry-run", "--store", str(tmp_path / "n.db"), "--trials", "1"]) == 0
    out = capsys.readouterr().out
    assert "14 runs in depth-init" in out and "init=he-fan-in" in out


def test_a_sweeps_log_line_names_the_options():
    config = TrainConfig(model="dANN-LRF", layers=4, residual=True, init="he-fan-in", synapses=8)
    line = summary_line(
        config,
        {"ok": True, "test_accuracy": 0.9, "test_loss": 0.3, "trainable_params": 10, "seconds": 1.0},
        7,
    )
    assert line.startswith("run 7 dANN-LRF D=16 S=256 seed=1 syn=8 L=4 residual init=he-fan-in: acc 90.00 %")
    assert options_label(TrainConfig().to_dict()) == ""
