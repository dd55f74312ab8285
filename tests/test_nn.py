"""``dendritic.nn``: the dendritic layer as a drop-in ``torch.nn`` module (issue 13)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dendritic.nn import (
    Connectivity,
    DendriticLayer,
    InputGeometry,
    SparseLinear,
    receptive_fields,
    register_receptive_field,
    unfused,
)
from dendritic.wiring import sampling

SHAPES = [(20,), (3, 20), (2, 8, 8), (2, 4, 5, 6)]


def _inputs_of(layer: DendriticLayer) -> list[np.ndarray]:
    conn = layer.wiring[0]
    return [conn.indices[conn.indptr[o] : conn.indptr[o + 1]] for o in range(conn.n_out)]


# ---------------------------------------------------------------- shapes


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("rule", ["local", "global", "random"])
def test_any_input_shape_and_leading_dimensions(shape, rule):
    layer = DendriticLayer(shape, somata=6, dendrites=3, synapses=4, receptive_field=rule, seed=1)
    x = torch.rand(5, *shape)
    out = layer(x)
    assert out.shape == (5, 6)
    flat = layer(x.reshape(5, -1))  # (*, in_features) works too
    assert torch.equal(out, flat)
    more = layer(x.reshape(1, 5, *shape).expand(2, 5, *shape))  # extra leading dimensions
    assert more.shape == (2, 5, 6) and torch.allclose(more[1], out)
    single = layer(x[0])  # no batch dimension at all
    assert single.shape == (6,) and torch.allclose(single, out[0], atol=1e-6)
    assert layer.in_features == int(np.prod(shape)) and layer.input_shape == shape


def test_wrong_shapes_and_arguments_are_one_clear_error():
    layer = DendriticLayer((1, 8, 8), somata=4, dendrites=2, synapses=4, seed=1)
    with pytest.raises(ValueError, match=r"expected input of shape \(\*, 1, 8, 8\) or \(\*, 64\)"):
        layer(torch.rand(3, 8, 9))
    with pytest.raises(
        ValueError, match="unknown receptive-field rule 'ring'; choose one of all, global, local"
    ):
        DendriticLayer(64, somata=4, receptive_field="ring")
    with pytest.raises(ValueError, match="unknown cable rule 'tree'"):
        DendriticLayer(64, somata=4, cables="tree")
    with pytest.raises(ValueError, match="synapses=100 is larger than the input"):
        DendriticLayer(64, somata=4, synapses=100)
    with pytest.raises(ValueError, match=r"somata must be an integer in \[1, "):
        DendriticLayer(64, somata=0)
    with pytest.raises(ValueError, match="input_shape must be"):
        DendriticLayer((1, 2, 3, 4, 5), somata=4)


# ---------------------------------------------------------------- wiring of every rule


@pytest.mark.parametrize("shape", [(3, 12), (2, 9, 9), (1, 5, 6, 7)], ids=["1d", "2d", "3d"])
def test_local_fields_are_compact_patches_shared_by_all_channels(shape):
    layer = DendriticLayer(shape, somata=10, dendrites=4, synapses=6, receptive_field="local", seed=2)
    geometry = layer.geometry
    radius = sampling.patch_radius(geometry.grid, 6)
    centres = layer.wiring[0].centres
    for inputs, centre in zip(_inputs_of(layer), centres, strict=True):
        assert len(inputs) == 6 * geometry.channels
        channel, site = np.divmod(inputs, geometry.sites)  # channels-first: ch·P + site
        per_channel = [set(site[channel == c]) for c in range(geometry.channels)]
        assert all(s == per_channel[0] for s in per_channel) and len(per_channel[0]) == 6
        coords = np.array(np.unravel_index(np.array(sorted(per_channel[0])), geometry.grid))
        centre_xy = np.array(np.unravel_index(centre, geometry.grid))[:, None]
        assert np.abs(coords - centre_xy).max() <= radius[centre]


def test_global_fields_keep_a_somas_dendrites_together():
    layer = DendriticLayer((1, 16, 16), somata=8, dendrites=4, synapses=4, receptive_field="global", seed=3)
    centres = layer.wiring[0].centres.reshape(8, 4)
    rows, cols = np.divmod(centres, 16)
    # The four dendrite centres of a soma lie within a 4-site patch around the soma's centre.
    assert (rows.max(1) - rows.min(1)).max() <= 3 and (cols.max(1) - cols.min(1)).max() <= 3


def test_random_fields_draw_distinct_inputs_and_channels_last_matches_the_paper():
    layer = DendriticLayer(50, somata=5, dendrites=2, synapses=7, receptive_field="random", seed=4)
    assert all(len(set(i)) == 7 for i in _inputs_of(layer))
    scattered = DendriticLayer(
        (2, 40), somata=20, dendrites=2, synapses=7, receptive_field="scattered", seed=4
    )
    fan_in = [len(i) for i in _inputs_of(scattered)]
    assert sum(fan_in) == 40 * 14 and len(set(fan_in)) > 1  # the reference's: fan-in varies
    # channels_last=True is the paper's (H, W, C) layout: the same wiring as build_model's layer.
    import dendritic

    model = dendritic.build_model("dANN-LRF", (8, 8, 3), 10, 2, 4, synapses=4, seed=5)
    ours = DendriticLayer.from_wiring((8, 8, 3), *model.wiring[0], channels_last=True)
    assert ours.input_shape == (8, 8, 3) and ours.wiring == model.wiring[0]


def test_cable_rules():
    structured = DendriticLayer(30, somata=5, dendrites=3, synapses=2, cables="structured", seed=1)
    assert structured.wiring[1].is_blocks and structured.dendrites_per_soma == 3
    random = DendriticLayer(30, somata=5, dendrites=3, synapses=2, cables="random", seed=1)
    assert random.wiring[1].n_connections == 15 and not random.wiring[1].is_blocks
    dense = DendriticLayer(30, somata=5, dendrites=3, synapses=2, cables="all", seed=1)
    assert dense.wiring[1].is_all_to_all and dense.soma_linear.kernel == "dense"


def test_a_user_rule_is_one_function():
    @register_receptive_field("first-k", replace=True)
    def first_k(rng, geometry, somata, dendrites, synapses):
        return geometry.expand(np.tile(np.arange(synapses), (somata * dendrites, 1)))

    assert "first-k" in receptive_fields()
    layer = DendriticLayer((2, 10), somata=3, dendrites=2, synapses=3, receptive_field="first-k", seed=0)
    assert all(sorted(i) == [0, 1, 2, 10, 11, 12] for i in _inputs_of(layer))
    with pytest.raises(ValueError, match="exists; pass replace=True"):
        register_receptive_field("first-k", first_k)

    def wrong(rng, geometry, somata, dendrites, synapses):
        return np.arange(synapses)[None, :]  # one dendrite instead of six

    with pytest.raises(
        ValueError, match="connects 20 inputs to 1 dendrites; the layer has 20 inputs and 3 somata"
    ):
        DendriticLayer((2, 10), somata=3, dendrites=2, synapses=3, receptive_field=wrong)
    explicit = Connectivity.from_table(np.arange(12).reshape(6, 2), 20)
    layer = DendriticLayer((2, 10), somata=3, dendrites=2, receptive_field=explicit)
    assert layer.wiring[0] == explicit


# ---------------------------------------------------------------- against the masked-dense oracle


def _oracle_pair(shape, rule, cables, **kw):
    fast = DendriticLayer(
        shape, somata=6, dendrites=4, synapses=3, receptive_field=rule, cables=cables, seed=7, **kw
    )
    slow = DendriticLayer(
        shape,
        somata=6,
        dendrites=4,
        synapses=3,
        receptive_field=rule,
        cables=cables,
        seed=7,
        oracle=True,
        **kw,
    )
    with torch.no_grad():
        for a, b in ((fast.dendrite_linear, slow.dendrite_linear), (fast.soma_linear, slow.soma_linear)):
            b.weight.copy_(a.dense_weight())
            b.bias.copy_(torch.randn_like(b.bias) * 0.1)
            a.bias.copy_(b.bias)
    return fast, slow


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape,rule,cables", [
    ((1, 7, 7), "local", "structured"),
    ((3, 6, 6), "global", "structured"),
    ((2, 15), "random", "random"),
    ((40,), "all", "structured"),
    ((2, 3, 4, 4), "local", "all"),
])  # fmt: skip
def test_outputs_and_gradients_match_the_masked_oracle(shape, rule, cables, dtype):
    fast, slow = _oracle_pair(shape, rule, cables)
    fast, slow = fast.to(dtype), slow.to(dtype)
    x = torch.rand(9, *shape, dtype=dtype)
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    (oa, da), (ob, db) = fast(xa, return_dendrites=True), slow(xb, return_dendrites=True)
    tol = {"atol": 1e-5, "rtol": 1e-4} if dtype == torch.float32 else {"atol": 1e-12, "rtol": 1e-10}
    torch.testing.assert_close(oa, ob, **tol)
    torch.testing.assert_close(da, db, **tol)
    (oa.square().sum() + da.sum()).backward()
    (ob.square().sum() + db.sum()).backward()
    torch.testing.assert_close(xa.grad, xb.grad, **tol)
    for a, b in ((fast.dendrite_linear, slow.dendrite_linear), (fast.soma_linear, slow.soma_linear)):
        mask = b.mask.bool()
        dense_grad = torch.zeros_like(b.weight)
        if a.kernel == "dense":
            dense_grad = a.weight.grad
        else:
            outputs, inputs = a.connectivity.pairs()
            dense_grad[torch.from_numpy(outputs), torch.from_numpy(inputs)] = a.weight.grad
        torch.testing.assert_close(dense_grad[mask], b.weight.grad[mask], **tol)
        torch.testing.assert_close(a.bias.grad, b.bias.grad, **tol)


def test_fused_and_part_by_part_give_the_same_numbers(monkeypatch):
    layer = DendriticLayer((1, 12, 12), somata=16, dendrites=4, synapses=8, seed=3)
    assert layer.fusable
    x = torch.rand(33, 1, 12, 12, requires_grad=True)
    fused = layer(x)
    fused.sum().backward()
    grads = [p.grad.clone() for p in layer.parameters()] + [x.grad.clone()]
    monkeypatch.setenv("DENDRITIC_FUSED", "0")
    assert not layer.fusable
    layer.zero_grad()
    x.grad = None
    plain = layer(x)
    plain.sum().backward()
    torch.testing.assert_close(fused, plain, atol=1e-6, rtol=1e-5)
    for a, b in zip(grads, [p.grad for p in layer.parameters()] + [x.grad], strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


# ---------------------------------------------------------------- activations, hooks, dropout


def test_hooks_see_the_dendrites_and_any_activation_works():
    layer = DendriticLayer((1, 10, 10), somata=5, dendrites=3, synapses=4, seed=1)
    x = torch.rand(4, 1, 10, 10)
    plain = layer(x)
    with torch.no_grad():
        _, dendrites = layer(x, return_dendrites=True)
    seen = []
    handle = layer.dendrite_activation.register_forward_hook(lambda m, i, o: seen.append(o.detach().clone()))
    assert layer.fusable and torch.equal(layer(x), plain) and seen == []  # the fast path calls no part
    with unfused(layer):  # part by part: every part is called
        assert not layer.fused and not layer.fusable
        hooked = layer(x)
    assert layer.fused
    layer.fused = False
    layer(x)
    layer.fused = True
    handle.remove()
    assert len(seen) == 2 and seen[0].shape == (4, 15) and torch.equal(seen[0], seen[1])
    torch.testing.assert_close(seen[0], dendrites)
    torch.testing.assert_close(hooked, plain)
    assert dendrites.min() < 0  # leaky: negative values pass at slope 0.1

    tanh = DendriticLayer((1, 10, 10), somata=5, dendrites=3, synapses=4, seed=1, activation=nn.Tanh())
    assert not tanh.fusable and isinstance(tanh.dendrite_activation, nn.Tanh)
    out, dend = tanh(x, return_dendrites=True)
    assert dend.abs().max() < 1 and out.abs().max() < 1
    mixed = DendriticLayer(100, somata=5, dendrites=3, synapses=4, seed=1, soma_activation=nn.Sigmoid())
    assert mixed(torch.rand(2, 100)).min() > 0


def test_gradients_flow_through_returned_dendrites():
    layer = DendriticLayer(64, somata=4, dendrites=2, synapses=8, seed=1)
    _, dendrites = layer(torch.rand(3, 64), return_dendrites=True)
    dendrites.sum().backward()  # an activity penalty on the dendrites trains their synapses
    assert layer.dendrite_linear.weight.grad.abs().sum() > 0 and layer.soma_linear.weight.grad is None


def test_dendritic_dropout_is_active_in_training_only():
    layer = DendriticLayer(64, somata=4, dendrites=8, synapses=8, seed=1, dropout=0.5)
    assert not layer.fusable
    x = torch.rand(16, 64)
    layer.eval()
    assert torch.equal(layer(x), layer(x))
    layer.train()
    torch.manual_seed(0)
    a = layer(x)
    torch.manual_seed(1)
    assert not torch.equal(a, layer(x))


def test_state_dict_round_trip_and_repr():
    a = DendriticLayer((1, 8, 8), somata=4, dendrites=2, synapses=4, seed=1)
    b = DendriticLayer((1, 8, 8), somata=4, dendrites=2, synapses=4, seed=1)
    assert set(a.state_dict()) == {
        "dendrite_linear.weight", "dendrite_linear.bias", "dendrite_linear.indices", "dendrite_linear.offsets",
        "dendrite_linear.centres", "soma_linear.weight", "soma_linear.bias", "soma_linear.indices",
        "soma_linear.offsets",
    }  # fmt: skip
    b.load_state_dict(a.state_dict())
    x = torch.rand(2, 64)
    assert torch.equal(a(x), b(x))
    assert "somata=4, dendrites=2, synapses=4" in repr(a)
    assert str(InputGeometry.from_shape((3, 8, 8))) == "8×8 grid × 3 channels"


# ---------------------------------------------------------------- inside users' models


def test_a_cnn_head_and_a_deep_stack_train():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.ReLU(),
        DendriticLayer((4, 8, 8), somata=16, dendrites=4, synapses=6, seed=1),
        DendriticLayer(16, somata=8, dendrites=2, synapses=4, seed=2),
        nn.Linear(8, 3),
    )
    x = torch.rand(64, 1, 8, 8)
    y = x[:, 0, :6].reshape(64, 3, 16).mean(2).argmax(1)  # which band of rows is brightest
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    first = None
    for _ in range(150):
        loss = F.cross_entropy(model(x), y)
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.5 * first
    assert model[0].weight.grad is not None  # gradients reach the convolution through the layer


# ---------------------------------------------------------------- SparseLinear


def test_sparse_linear_behaves_like_linear():
    layer = SparseLinear.random(30, 12, fan_in=5, seed=3)
    assert layer.n_connections == 60 and all(len(set(i)) == 5 for i in layer.connectivity.table())
    x = torch.rand(2, 7, 30)
    torch.testing.assert_close(layer(x), F.linear(x, layer.dense_weight(), layer.bias))
    mask = torch.zeros(4, 6)
    mask[0, 1] = mask[3, 5] = mask[3, 0] = 1
    masked = SparseLinear.from_mask(mask, bias=False)
    assert masked.bias is None and masked.n_connections == 3
    torch.testing.assert_close(masked.dense_weight() != 0, mask.bool())
    dense = SparseLinear(6, 4)
    assert dense.kernel == "dense" and dense.weight.shape == (4, 6)
    with pytest.raises(ValueError, match=r"expected input of shape \(\*, 30\)"):
        layer(torch.rand(3, 29))
    with pytest.raises(ValueError, match="joins 30 inputs to 12 outputs, not 31 to 12"):
        SparseLinear(31, 12, layer.connectivity)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_the_layer_and_the_paper_models_run_on_cuda():
    """CUDA runs the plain-PyTorch path: the same numbers as the CPU's C++ operators."""
    import copy

    import dendritic

    layer = DendriticLayer((1, 12, 12), somata=8, dendrites=4, synapses=4, seed=1)
    x = torch.rand(6, 1, 12, 12)
    gpu = copy.deepcopy(layer).cuda()
    torch.testing.assert_close(gpu(x.cuda()).cpu(), layer(x), atol=1e-5, rtol=1e-4)
    gpu(x.cuda()).sum().backward()
    assert gpu.dendrite_linear.weight.grad.is_cuda
    model = dendritic.get_model("dANN-LRF", dendrites=2, somata=8, seed=1)
    twin = copy.deepcopy(model).cuda()
    images = torch.rand(4, 784)
    torch.testing.assert_close(twin(images.cuda()).cpu(), model(images), atol=1e-5, rtol=1e-4)
    F.cross_entropy(twin(images.cuda()), torch.zeros(4, dtype=torch.long, device="cuda")).backward()
