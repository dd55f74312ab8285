"""A module's state is its buffers and parameters (issue 21): a state loaded into a layer or a
network built with *another* wiring trains exactly like its source — forward, input gradients,
parameter gradients, masks and dense views — and the usual PyTorch round trips (deepcopy,
pickling, ``.to()``, the meta device + ``to_empty`` + ``reset_parameters``) keep everything."""

from __future__ import annotations

import copy
import io
import pickle

import numpy as np
import pytest
import torch
from torch import nn

import dendritic
from dendritic.layers.sparse import MaskedLinear, SparseLinear
from dendritic.nn import DendriticLayer, DendriticSpec, WiringMismatchError
from dendritic.wiring.sampling import random_inputs


def _layer_pair(kind: str) -> tuple[nn.Module, nn.Module, tuple[int, ...]]:
    """(source, target): the same sizes, different wiring; and the per-sample input shape."""
    if kind == "sparse":
        return SparseLinear.random(30, 4, 3, seed=1), SparseLinear.random(30, 4, 3, seed=2), (30,)
    if kind == "masked":
        conn = [random_inputs(np.random.default_rng(s), 30, 4, 3) for s in (1, 2)]
        return MaskedLinear(conn[0]), MaskedLinear(conn[1]), (30,)
    options = {
        "local": {},
        "global": {"receptive_field": "global"},
        "branches": {"branches": 2, "synapses": 3},
        "random-cables": {"receptive_field": "random", "cables": "random"},
        "positive": {"cable_weights": "positive"},
    }[kind]
    args = {"somata": 6, "dendrites": 3, "synapses": 4, **options}
    shape = (2, 8, 8)
    return DendriticLayer(shape, **args, seed=1), DendriticLayer(shape, **args, seed=2), shape


def _outputs_and_gradients(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, list]:
    model.zero_grad()
    x = x.clone().requires_grad_()
    out = model(x)
    (out.square().sum() + out.sum()).backward()
    grads = [(name, p.grad.clone()) for name, p in model.named_parameters() if p.grad is not None]
    return out.detach(), x.grad, grads


def _assert_same_training(a: nn.Module, b: nn.Module, x: torch.Tensor, *, exact: bool = True) -> None:
    """The same outputs and gradients: bit for bit (``exact``), or to float rounding (another
    order of the same sums, e.g. the fused path against part by part)."""
    tol = {"rtol": 0, "atol": 0} if exact else {}
    out_a, gx_a, grads_a = _outputs_and_gradients(a, x)
    out_b, gx_b, grads_b = _outputs_and_gradients(b, x)
    torch.testing.assert_close(out_a, out_b, **tol)
    torch.testing.assert_close(gx_a, gx_b, **tol)  # the input gradient: not stale
    assert [n for n, _ in grads_a] == [n for n, _ in grads_b]
    for (name, ga), (_, gb) in zip(grads_a, grads_b, strict=True):
        torch.testing.assert_close(ga, gb, **tol, msg=name)


def _views(model: nn.Module) -> list[np.ndarray]:
    """Masks and dense weights: what a user inspects."""
    if isinstance(model, (SparseLinear, MaskedLinear)):
        return [model.connectivity.to_mask(), model.dense_weight().numpy()]
    parts = [p for p in model.modules() if isinstance(p, (SparseLinear, MaskedLinear))]
    return [*model.masks(), *(p.dense_weight().numpy() for p in parts)]


@pytest.mark.parametrize(
    "kind", ["sparse", "masked", "local", "global", "branches", "random-cables", "positive"]
)
def test_a_state_loaded_across_wirings_trains_like_its_source(kind):
    source, target, shape = _layer_pair(kind)
    assert not all(np.array_equal(m, n) for m, n in zip(_views(source), _views(target), strict=True))
    target.load_state_dict(source.state_dict())
    x = torch.rand(5, *shape)
    _assert_same_training(source, target, x)
    for m, n in zip(_views(source), _views(target), strict=True):
        assert np.array_equal(m, n)
    if isinstance(source, DendriticLayer):
        assert target.wiring == source.wiring and target.fusable == source.fusable
        # the fused path and the part-by-part path of the loaded layer agree too
        target.fused = False
        _assert_same_training(source, target, x, exact=False)


@pytest.mark.parametrize("name", ["dANN-LRF", "dANN-R", "sANN", "vANN-LRF"])
def test_a_three_layer_network_loaded_across_wirings_trains_like_its_source(name):
    source = dendritic.build_model(name, (12, 12, 1), 5, 3, 16, synapses=4, layers=3, seed=1)
    target = dendritic.build_model(name, (12, 12, 1), 5, 3, 16, synapses=4, layers=3, seed=2)
    target.load_state_dict(source.state_dict())
    _assert_same_training(source, target, torch.rand(7, 144))
    assert target.wiring == source.wiring
    for m, n in zip(source.masks(), target.masks(), strict=True):
        assert np.array_equal(m, n)


def test_a_wiring_that_does_not_fit_is_a_one_line_error():
    state = SparseLinear.random(30, 4, 3, seed=1).state_dict()
    for target, message in [
        (SparseLinear.random(30, 4, 2, seed=1), "the state has 4 outputs and 12 connections"),
        (SparseLinear.random(30, 5, 3, seed=1), "the state has 4 outputs"),
    ]:
        with pytest.raises(WiringMismatchError, match=message) as caught:
            target.load_state_dict(state)
        assert "\n" not in str(caught.value)
    small = SparseLinear.random(10, 4, 3, seed=1)
    bad = {**state, "indices": state["indices"] % 10 + 20}  # inputs the layer does not have
    with pytest.raises(WiringMismatchError, match=r"outside 0\.\.9"):
        small.load_state_dict(bad)
    unsorted = {**state, "indices": state["indices"].flip(0)}
    with pytest.raises(WiringMismatchError, match="sorted and distinct"):
        SparseLinear.random(30, 4, 3, seed=1).load_state_dict(unsorted)
    layer = DendriticLayer((1, 8, 8), somata=4, dendrites=2, synapses=4, seed=1)
    other = DendriticLayer((1, 8, 8), somata=4, dendrites=2, synapses=3, seed=1).state_dict()
    with pytest.raises(WiringMismatchError, match="dendrite_linear: cannot load its wiring"):
        layer.load_state_dict(other)


def test_deepcopy_pickle_and_to_keep_forward_and_gradients():
    source, target, shape = _layer_pair("local")
    target.load_state_dict(source.state_dict())  # a loaded layer: nothing derived may be stale
    buffer = io.BytesIO()
    torch.save(target, buffer)
    buffer.seek(0)
    copies = [
        copy.deepcopy(target),
        pickle.loads(pickle.dumps(target)),
        torch.load(buffer, weights_only=False),  # our own file: trusted
        copy.deepcopy(target).double().float(),
    ]
    x = torch.rand(4, *shape)
    for other in copies:
        _assert_same_training(source, other, x)
    net = dendritic.build_model("dANN-GRF", (8, 8, 1), 3, 2, 9, synapses=3, layers=2, seed=4)
    _assert_same_training(net, copy.deepcopy(net), torch.rand(3, 64))
    _assert_same_training(net, pickle.loads(pickle.dumps(net)), torch.rand(3, 64))


def test_built_on_the_meta_device_then_materialised_it_is_the_layer_as_built():
    args = {"somata": 6, "dendrites": 3, "synapses": 4, "seed": 3}
    with torch.device("meta"):
        lazy = DendriticLayer((2, 8, 8), **args)
    assert all(p.is_meta for p in lazy.parameters())
    assert not lazy.dendrite_linear.indices.is_meta  # the wiring is data: it keeps its values
    lazy.to_empty(device="cpu")
    lazy.reset_parameters()
    built = DendriticLayer((2, 8, 8), **args)
    for (name, a), b in zip(built.state_dict().items(), lazy.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    _assert_same_training(built, lazy, torch.rand(3, 2, 8, 8))
    # the factory argument, and a whole network under the device context
    sparse = SparseLinear.random(20, 5, 4, seed=2, device="meta")
    assert sparse.weight.is_meta
    sparse.to_empty(device="cpu")
    sparse.reset_parameters(torch.Generator().manual_seed(0))
    assert torch.equal(sparse.dense_weight() != 0, SparseLinear.random(20, 5, 4, seed=2).dense_weight() != 0)
    with torch.device("meta"):
        lazy_net = dendritic.build_model("dANN-LRF", (8, 8, 1), 3, 2, 9, synapses=3, layers=2, seed=5)
    lazy_net.to_empty(device="cpu")
    lazy_net.reset_parameters()
    net = dendritic.build_model("dANN-LRF", (8, 8, 1), 3, 2, 9, synapses=3, layers=2, seed=5)
    _assert_same_training(net, lazy_net, torch.rand(4, 64))


def test_reset_parameters_gives_back_the_initial_weights():
    layer = DendriticLayer((1, 8, 8), somata=4, dendrites=2, synapses=4, cable_weights="positive", seed=6)
    initial = {k: v.clone() for k, v in layer.state_dict().items()}
    optimizer = torch.optim.SGD(layer.parameters(), lr=0.5)
    layer(torch.rand(8, 64)).sum().backward()
    optimizer.step()
    assert not all(torch.equal(initial[k], v) for k, v in layer.state_dict().items())
    layer.reset_parameters()
    for k, v in layer.state_dict().items():
        assert torch.equal(initial[k], v), k
    ones = DendriticLayer(64, somata=4, dendrites=2, synapses=4, cable_weights="ones", seed=1)
    ones.reset_parameters(torch.Generator().manual_seed(9))
    assert torch.equal(ones.soma_linear.weight, torch.ones(8)) and not ones.soma_linear.weight.requires_grad


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.bfloat16])
def test_factory_dtype_and_every_float_dtype_runs(dtype):
    args = {"somata": 4, "dendrites": 2, "synapses": 4, "init": "he-fan-in", "seed": 1}
    layer = DendriticLayer((1, 8, 8), **args, dtype=dtype)
    assert all(p.dtype == dtype for p in layer.parameters())
    reference = DendriticLayer((1, 8, 8), **args, dtype=torch.float64)
    with torch.no_grad():  # every unit well above the kink: rounding flips no sign
        for model in (layer, reference):
            model.soma_linear.weight.abs_()
            for part in (model.dendrite_linear, model.soma_linear):
                part.bias.fill_(10.0)
    x = torch.rand(5, 1, 8, 8, dtype=torch.float64)
    xa = x.clone().to(dtype).requires_grad_()
    out = layer(xa)
    out.sum().backward()
    xb = x.clone().requires_grad_()
    expected = reference(xb)
    expected.sum().backward()
    tol = {torch.float64: 1e-12, torch.float16: 2e-2, torch.bfloat16: 6e-2}[dtype]
    torch.testing.assert_close(out.double(), expected, rtol=tol, atol=tol)
    torch.testing.assert_close(xa.grad.double(), xb.grad, rtol=tol, atol=tol)
    with torch.no_grad():  # inference: the fused path where the dtype has one, plain PyTorch elsewhere
        torch.testing.assert_close(layer(x.to(dtype)).double(), expected.detach(), rtol=tol, atol=tol)
        net = dendritic.build_model("dANN-LRF", (8, 8, 1), 3, 2, 9, synapses=3, layers=2, seed=1).to(dtype)
        assert net(torch.rand(4, 64, dtype=dtype)).dtype == dtype


def test_state_dicts_from_before_the_parts_were_renamed_load():
    net = dendritic.build_model("dANN-LRF", (8, 8, 1), 3, 2, 9, synapses=3, branches=2, seed=1)
    old_names = {
        k.replace(".dendrite_linear.", ".dendrites.")
        .replace(".soma_linear.", ".somata.")
        .replace(".branch_linear.", ".branches."): v
        for k, v in net.state_dict().items()
    }
    assert any(".somata." in k for k in old_names)
    other = dendritic.build_model("dANN-LRF", (8, 8, 1), 3, 2, 9, synapses=3, branches=2, seed=2)
    other.load_state_dict(old_names)
    _assert_same_training(net, other, torch.rand(3, 64))


def test_names_match_what_they_are():
    layer = DendriticLayer((3, 8, 8), somata=5, dendrites=4, synapses=2, branches=3, seed=1)
    assert (layer.somata, layer.dendrites, layer.synapses, layer.branches) == (5, 4, 2, 3)
    assert isinstance(layer.soma_linear, SparseLinear) and layer.n_dendrites == 20
    assert layer.spec == DendriticSpec(somata=5, dendrites=4, synapses=2, branches=3)
    assert DendriticLayer.from_spec((3, 8, 8), layer.spec, seed=1).wiring == layer.wiring


def test_a_subclass_gets_its_own_init_from_from_wiring():
    class Tagged(DendriticLayer):
        def __init__(self, *args, tag: str = "none", **kwargs):
            super().__init__(*args, **kwargs)
            self.tag = tag

    base = DendriticLayer((1, 6, 6), somata=3, dendrites=2, synapses=3, seed=2)
    made = Tagged.from_wiring((1, 6, 6), *base.wiring, tag="mine", generator=torch.Generator().manual_seed(0))
    assert isinstance(made, Tagged) and made.tag == "mine" and made.wiring == base.wiring
