"""The eager fast path of small-batch training (issue 24): a ``DendriticLayer`` or ``SparseLinear``
runs as one C++ operator each way (``dendritic::dendritic_layer_ad``, ``sparse_linear_ad``) whose
backward the C++ autograd engine runs. Its gradients equal the masked-dense oracle's at batches
1 to 64; it is taken in eager mode, not while ``torch.compile`` traces; switching it off
(:func:`dendritic.nn.functional.set_fast_autograd`) gives the same numbers through the Python
formulas. No timing here: ``benchmarks/bench_small_batch.py`` measures."""

from __future__ import annotations

import copy
from collections.abc import Iterator

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import dendritic
from dendritic.layers import functional as DF
from dendritic.layers.kernels import kernel_backend
from dendritic.nn import DendriticLayer, SparseLinear

pytestmark = pytest.mark.skipif(kernel_backend() != "cpp", reason="the C++ operators are not built")

BATCHES = [1, 2, 7, 64]


@pytest.fixture
def slow_path() -> Iterator[None]:
    """The Python-formula path for the test's duration."""
    before = DF.set_fast_autograd(False)
    yield
    DF.set_fast_autograd(before)


def _nodes(t: torch.Tensor) -> set[str]:
    """Names of every autograd node behind ``t``."""
    seen: set[str] = set()
    stack = [t.grad_fn]
    while stack:
        node = stack.pop()
        if node is None or node.name() in seen:
            continue
        seen.add(node.name())
        stack.extend(next_node for next_node, _ in node.next_functions)
    return seen


def _fast(t: torch.Tensor, which: tuple[str, ...] = ("LayerFunction", "SparseFunction")) -> bool:
    """Whether ``t`` was computed by a C++-autograd operator (``which`` of them)."""
    return any(w in n for n in _nodes(t) for w in which)


def _oracle_pair(shape, rule: str, dtype: torch.dtype, **kw) -> tuple[DendriticLayer, DendriticLayer]:
    """A layer and its masked-dense oracle with the same wiring and weights (random biases)."""
    sizes = {"somata": 6, "dendrites": 4, "synapses": 3, "receptive_field": rule, "seed": 7, **kw}
    fast = DendriticLayer(shape, **sizes)
    slow = DendriticLayer(shape, oracle=True, **sizes)
    with torch.no_grad():
        for a, b in ((fast.dendrite_linear, slow.dendrite_linear), (fast.soma_linear, slow.soma_linear)):
            b.weight.copy_(a.dense_weight())
            b.bias.copy_(torch.randn_like(b.bias) * 0.1)
            a.bias.copy_(b.bias)
    return fast.to(dtype), slow.to(dtype)


def _tol(dtype: torch.dtype) -> dict[str, float]:
    return {"atol": 1e-5, "rtol": 1e-4} if dtype == torch.float32 else {"atol": 1e-12, "rtol": 1e-10}


def _dense_grad(part, oracle_part) -> torch.Tensor:
    """The sparse part's weight gradient scattered into the oracle's dense matrix."""
    outputs, inputs = part.connectivity.pairs()
    dense = torch.zeros_like(oracle_part.weight)
    dense[torch.from_numpy(outputs), torch.from_numpy(inputs)] = part.weight.grad
    return dense


@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape,rule", [((5,), "random"), ((1, 7, 7), "local"), ((2, 15), "random")])
def test_layer_gradients_match_the_masked_oracle(batch, dtype, shape, rule):
    fast, slow = _oracle_pair(shape, rule, dtype)
    assert fast.fusable
    x = torch.rand(batch, *shape, dtype=dtype)
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    oa, ob = fast(xa), slow(xb)
    assert _fast(oa) and not _fast(ob)
    assert oa.shape == ob.shape == (batch, 6)
    torch.testing.assert_close(oa, ob, **_tol(dtype))
    target = torch.randn_like(oa)
    ((oa - target).square().sum()).backward()
    ((ob - target).square().sum()).backward()
    torch.testing.assert_close(xa.grad, xb.grad, **_tol(dtype))
    for a, b in ((fast.dendrite_linear, slow.dendrite_linear), (fast.soma_linear, slow.soma_linear)):
        mask = b.mask.bool()
        torch.testing.assert_close(_dense_grad(a, b)[mask], b.weight.grad[mask], **_tol(dtype))
        torch.testing.assert_close(a.bias.grad, b.bias.grad, **_tol(dtype))


@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("bias", [True, False])
def test_sparse_linear_gradients_match_the_dense_product(batch, bias):
    layer = SparseLinear.random(20, 12, fan_in=5, seed=3, bias=bias, dtype=torch.float64)
    if bias:
        with torch.no_grad():
            layer.bias.normal_()
    x = torch.randn(batch, 20, dtype=torch.float64, requires_grad=True)
    dense = layer.dense_weight().requires_grad_()
    ref_bias = layer.bias.detach().clone().requires_grad_() if bias else None
    x_ref = x.detach().clone().requires_grad_()
    out, ref = layer(x), F.linear(x_ref, dense, ref_bias)
    assert _fast(out)
    torch.testing.assert_close(out, ref)
    target = torch.randn_like(ref)
    (out * target).sum().backward()
    (ref * target).sum().backward()
    torch.testing.assert_close(x.grad, x_ref.grad)
    outputs, inputs = layer.connectivity.pairs()
    torch.testing.assert_close(
        layer.weight.grad, dense.grad[torch.from_numpy(outputs), torch.from_numpy(inputs)]
    )
    if bias:
        torch.testing.assert_close(layer.bias.grad, ref_bias.grad)


def test_sparse_linear_keeps_leading_dimensions_and_its_output_can_be_changed_in_place():
    layer = SparseLinear.random(10, 8, fan_in=3, seed=1)
    x = torch.randn(3, 4, 10, requires_grad=True)
    out = layer(x)
    assert out.shape == (3, 4, 8) and _fast(out)
    one = layer(torch.randn(1, 10))
    F.leaky_relu(one, 0.1, inplace=True).sum().backward()  # not a view made inside the function
    assert layer.weight.grad is not None


def _step_grads(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> list[torch.Tensor]:
    model.zero_grad(set_to_none=True)
    F.cross_entropy(model(x), y).backward()
    return [p.grad.clone() for p in model.parameters()]


@pytest.mark.parametrize("batch", [1, 8, 64])
def test_fast_and_python_paths_give_the_same_numbers(batch, slow_path):
    model = nn.Sequential(
        DendriticLayer(16, 12, 4, 3, receptive_field="random", seed=2),
        SparseLinear.random(12, 10, fan_in=4, seed=3),
        nn.LeakyReLU(0.1),
        nn.Linear(10, 3),
    )
    x, y = torch.randn(batch, 16, requires_grad=True), torch.randint(0, 3, (batch,))
    slow_out = model(x)
    slow = _step_grads(model, x, y) + [torch.autograd.grad(model(x).sum(), x)[0]]
    assert not _fast(slow_out)
    DF.set_fast_autograd(True)
    fast_out = model(x)
    assert _fast(fast_out)
    fast = _step_grads(model, x, y) + [torch.autograd.grad(model(x).sum(), x)[0]]
    # The same kernels; only the dense head may sum in another order (its input's strides differ).
    torch.testing.assert_close(fast_out, slow_out, rtol=1e-6, atol=1e-7)
    for a, b in zip(fast, slow, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)


def test_the_fast_path_is_skipped_where_it_does_not_apply(monkeypatch):
    layer = DendriticLayer(8, 4, 2, 2, receptive_field="random", seed=0)
    x = torch.randn(3, 8, requires_grad=True)
    assert _fast(layer(x))
    fused = ("LayerFunction",)
    assert _fast(layer(x), fused)
    # Returned dendrites need the part-by-part graph (each part a sparse_linear_ad).
    out, dendrites = layer(x, return_dendrites=True)
    assert not _fast(out, fused) and _fast(out) and dendrites.requires_grad
    layer.fused = False
    assert not _fast(layer(x), fused)
    layer.fused = True
    monkeypatch.setenv("DENDRITIC_FUSED", "0")
    assert not _fast(layer(x), fused)
    monkeypatch.delenv("DENDRITIC_FUSED")
    half = copy.deepcopy(layer).to(torch.bfloat16)
    assert half(x.detach().to(torch.bfloat16)).dtype == torch.bfloat16  # plain PyTorch, no error
    relu = DendriticLayer(8, 4, 2, 2, receptive_field="random", seed=0, activation=nn.ReLU())
    assert not _fast(relu(x), fused)


def test_no_grad_and_inference_mode_record_nothing():
    layer = DendriticLayer(8, 4, 2, 2, receptive_field="random", seed=0)
    x = torch.randn(5, 8)
    with torch.no_grad():
        a = layer(x)
    with torch.inference_mode():
        b = layer(x)
    assert a.grad_fn is None and not a.requires_grad
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(a, layer(x).detach())


def test_layers_with_branches_use_the_fast_operators_too(slow_path):
    layer = DendriticLayer(12, 4, 2, 3, branches=2, receptive_field="random", seed=5)
    x = torch.randn(6, 12, requires_grad=True)
    slow = torch.autograd.grad(layer(x).square().sum(), [x, *layer.parameters()])
    DF.set_fast_autograd(True)
    out = layer(x)
    assert _fast(out)
    fast = torch.autograd.grad(out.square().sum(), [x, *layer.parameters()])
    for a, b in zip(fast, slow, strict=True):
        torch.testing.assert_close(a, b)


def test_a_paper_network_trains_the_same_on_both_paths():
    """``DendriticNet`` calls ``forward_t``: the functional ``*_t`` functions take the fast path."""

    def one_step(fast: bool) -> list[torch.Tensor]:
        before = DF.set_fast_autograd(fast)
        try:
            model = dendritic.build_model("dANN-R", (6, 6, 1), 3, dendrites=2, somata=5, synapses=3, seed=1)
            torch.manual_seed(0)
            x, y = torch.rand(4, 36), torch.randint(0, 3, (4,))
            return _step_grads(model, x, y)
        finally:
            DF.set_fast_autograd(before)

    for a, b in zip(one_step(True), one_step(False), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)


def test_loaded_wiring_gives_the_right_input_gradients():
    """``load_state_dict`` from a layer of another wiring: the fast path reads the loaded wiring
    (indices, offsets and the transposed tables rebuilt from them)."""
    source, _ = _oracle_pair((1, 7, 7), "local", torch.float64)
    target = DendriticLayer((1, 7, 7), somata=6, dendrites=4, synapses=3, receptive_field="random", seed=99)
    target = target.to(torch.float64)
    target.load_state_dict(source.state_dict())
    x = torch.rand(3, 1, 7, 7, dtype=torch.float64)
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    oa, ob = source(xa), target(xb)
    assert _fast(ob)
    oa.square().sum().backward()
    ob.square().sum().backward()
    torch.testing.assert_close(ob, oa)
    torch.testing.assert_close(xb.grad, xa.grad)


def test_compile_traces_the_python_formula_operators_and_matches_eager():
    torch._dynamo.reset()
    model = nn.Sequential(
        DendriticLayer(16, 8, 4, 3, receptive_field="random", seed=1),
        SparseLinear.random(8, 6, fan_in=3, seed=2),
        nn.Linear(6, 3),
    )
    x = torch.randn(5, 16)
    explanation = torch._dynamo.explain(model)(x)
    targets = {str(node.target) for graph in explanation.graphs for node in graph.graph.nodes}
    assert explanation.graph_break_count == 0
    assert any("dendritic_layer_t" in t for t in targets) and any("sparse_linear_t" in t for t in targets)
    assert not any("_ad" in t for t in targets)
    compiled = torch.compile(copy.deepcopy(model), backend="aot_eager")
    eager_grads = torch.autograd.grad(model(x).square().sum(), list(model.parameters()))
    compiled_grads = torch.autograd.grad(compiled(x).square().sum(), list(compiled.parameters()))
    for a, b in zip(compiled_grads, eager_grads, strict=True):
        torch.testing.assert_close(a, b)
    torch._dynamo.reset()


def test_the_cached_arguments_follow_swapped_copied_and_moved_tensors():
    """The fast path keeps its call arguments between calls, keyed by the tensors' identities:
    ``torch.func.functional_call`` (which swaps ``_parameters`` entries), a deep copy changed
    afterwards and ``.to(float64)`` each see their own tensors."""
    layer = DendriticLayer(8, 4, 2, 2, receptive_field="random", seed=0)
    x = torch.randn(3, 8)
    before = layer(x).detach()
    doubled = {k: 2 * v.detach() for k, v in layer.named_parameters()}
    swapped = torch.func.functional_call(layer, doubled, (x,))
    reference = copy.deepcopy(layer)
    with torch.no_grad():
        for name, p in reference.named_parameters():
            p.copy_(doubled[name])
    DF.set_fast_autograd(False)
    try:
        expected = reference(x)
    finally:
        DF.set_fast_autograd(True)
    torch.testing.assert_close(swapped, expected)
    torch.testing.assert_close(layer(x), before)  # the layer's own tensors again
    torch.testing.assert_close(reference(x), expected)  # the copy has its own arguments
    wide = copy.deepcopy(layer).to(torch.float64)
    out = wide(x.double())
    assert out.dtype == torch.float64 and _fast(out, ("LayerFunction",))
    torch.testing.assert_close(out.float(), before)


def test_unbatched_and_multi_dimensional_batches():
    layer = DendriticLayer((2, 5), 3, 2, 2, receptive_field="random", seed=4)
    x = torch.randn(4, 6, 2, 5)
    DF.set_fast_autograd(False)
    try:
        expected, single = layer(x), layer(x[0, 0])
    finally:
        DF.set_fast_autograd(True)
    out = layer(x)
    assert out.shape == (4, 6, 3) and _fast(out)
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(layer(x[0, 0]), single)
    assert single.shape == (3,)


def _backward_of_columns(layer, cols, g, out, dend, x, g_dend):
    """``dendritic_layer_backward`` of ``layer`` (4 dendrites per soma, slope 0.1) on the samples
    ``cols`` of the forward's saved tensors (and of the dendrites' gradient, if any)."""
    d, s = layer.dendrite_linear, layer.soma_linear

    def col(t: torch.Tensor) -> torch.Tensor:
        return t[:, cols].contiguous()

    return torch.ops.dendritic.dendritic_layer_backward(
        col(g), col(out), col(dend), col(x), d.weight, d.indices, d.offsets, s.weight, 4, 0.1, True,
        None if g_dend is None else col(g_dend),
    )  # fmt: skip


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("extra", [False, True])
def test_the_one_sample_backward_is_the_general_one_bit_for_bit(dtype, extra):
    """``dendritic_layer_backward`` has its own loop for a batch of one (every sum one product).
    Its gradients are, bit for bit, those of a batch of two whose second sample carries no
    gradient (the general loops, where that sample adds exact zeros), with and without a gradient
    on the dendrites' activations."""
    layer = DendriticLayer((1, 9, 9), somata=12, dendrites=4, synapses=5, receptive_field="local", seed=3)
    layer = layer.to(dtype)
    d, s = layer.dendrite_linear, layer.soma_linear
    x = torch.randn(81, 2, dtype=dtype)
    with torch.no_grad():
        out, dend = torch.ops.dendritic.dendritic_layer(
            x, d.weight, d.indices, d.offsets, d.bias, s.weight, s.bias, 4, 0.1, True
        )
    g = torch.randn_like(out)
    g[:, 1] = 0
    g_dend = torch.randn_like(dend) if extra else None
    if g_dend is not None:
        g_dend[:, 1] = 0

    one, two = (
        _backward_of_columns(layer, cols, g, out, dend, x, g_dend) for cols in (slice(0, 1), slice(0, 2))
    )
    for a, b in zip(one[:4], two[:4], strict=True):  # weight, dendrite bias, cable, soma bias gradients
        assert torch.equal(a, b)
    assert torch.equal(one[4], two[4][:, :1])  # the dendrites' pre-activation gradient


@pytest.mark.parametrize("batch", [4, 5, 7])
def test_a_few_samples_backward_as_a_padded_vector(batch):
    """4 to 7 float32 samples through a layer of at least 4,096 connections run the backward as
    one vector padded with samples that carry no gradient: bit for bit the gradients of a batch
    of 8 whose last samples carry none (whatever their inputs), and the input-side gradient keeps
    the batch's own width."""
    layer = DendriticLayer(64, somata=128, dendrites=4, synapses=8, receptive_field="random", seed=5)
    d, s = layer.dendrite_linear, layer.soma_linear
    assert d.weight.numel() >= 4096
    x = torch.randn(64, 8)
    with torch.no_grad():
        out, dend = torch.ops.dendritic.dendritic_layer(
            x, d.weight, d.indices, d.offsets, d.bias, s.weight, s.bias, 4, 0.1, True
        )
    g, g_dend = torch.randn_like(out), torch.randn_like(dend)
    g[:, batch:] = 0
    g_dend[:, batch:] = 0

    few, eight = (_backward_of_columns(layer, slice(0, n), g, out, dend, x, g_dend) for n in (batch, 8))
    for a, b in zip(few[:4], eight[:4], strict=True):
        assert torch.equal(a, b)
    assert few[4].shape == (d.offsets.numel(), batch) and torch.equal(few[4], eight[4][:, :batch])


def test_the_benchmark_compares_two_trees(tmp_path):
    """``benchmarks/bench_small_batch.py --old-src``: one round on this tree against itself, for
    the operators and for whole steps, gives a row per (size, D, batch) with every column."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    base = [sys.executable, str(root / "benchmarks" / "bench_small_batch.py"), "--old-src", str(root / "src")]
    base += ["--sizes", "4x32", "--dendrites", "4", "--batches", "1,3", "--repeats", "1", "--steps", "2"]
    base += ["--rounds", "1"]
    for extra, columns in (([], 7), (["--ops"], 9)):
        out = tmp_path / "table.md"
        subprocess.run([*base, *extra, "--out", str(out)], check=True, capture_output=True, timeout=300)
        rows = [line for line in out.read_text().splitlines() if line.startswith("| 4 → 32 ")]
        assert len(rows) == 2, out.read_text()
        for row in rows:
            cells = [c.strip() for c in row.strip("|").split("|")]
            assert len(cells) == columns and all(float(c) > 0 for c in cells[3:]), row
