"""``sparse_matmul_t`` against ``embedding_bag`` and a dense oracle, on every backend.

The C++ backend is built once per process (the first test that needs it pays the compile, ~20 s
on 2 cores, or well under a second from the on-disk cache); the ``cpp`` fixture skips those tests
where it cannot be built, so the suite also passes without a compiler.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dendritic.layers import kernels
from dendritic.layers.kernels import available_kernels, kernel_backend, sparse_matmul_t


@pytest.fixture(scope="module")
def cpp() -> None:
    """Build (or load) the C++ kernels once for this module; skip if this machine cannot."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if "cpp" not in available_kernels():
            pytest.skip(f"C++ kernels unavailable: {kernels._STATE.error}")


def wiring(n_in: int, n_out: int, fan_in: int | None, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """CSR wiring: ``fan_in`` sorted distinct inputs per output, or 0–9 random ones (some empty)."""
    rng = np.random.default_rng(seed)
    counts = np.full(n_out, fan_in) if fan_in is not None else rng.integers(0, 10, size=n_out)
    if fan_in is None:
        counts[:3] = [0, 9, 0]  # empty outputs at the start, and the last output empty too
        counts[-1] = 0
    rows = [np.sort(rng.choice(n_in, size=min(c, n_in), replace=False)) for c in counts]
    indices = torch.from_numpy(np.concatenate(rows).astype(np.int64))
    offsets = torch.from_numpy(np.concatenate([[0], np.cumsum([len(r) for r in rows])[:-1]]).astype(np.int64))
    return indices, offsets


def dense(weight: torch.Tensor, indices: torch.Tensor, offsets: torch.Tensor, n_in: int) -> torch.Tensor:
    """The (n_out, n_in) matrix of the wiring, built from scratch."""
    n_out = offsets.numel()
    counts = torch.diff(offsets, append=torch.tensor([indices.numel()]))
    owner = torch.repeat_interleave(torch.arange(n_out), counts)
    matrix = torch.zeros(n_out, n_in, dtype=weight.dtype)
    return matrix.index_put((owner, indices), weight, accumulate=True)


def run(backend: str, h, weight, indices, offsets, grad_out, input_grad: bool, fan_in=None):
    h = h.clone().requires_grad_(input_grad)
    weight = weight.clone().requires_grad_(True)
    out = sparse_matmul_t(h, weight, indices, offsets, offsets.numel(), fan_in, backend=backend)
    out.backward(grad_out)
    return out.detach(), weight.grad, h.grad


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-30))


@pytest.mark.parametrize("fan_in", [16, None], ids=["uniform", "irregular"])
@pytest.mark.parametrize("batch", [1, 4, 7, 13, 128])
@pytest.mark.parametrize("input_grad", [False, True], ids=["w-grad", "w+h-grad"])
def test_cpp_matches_bag_and_dense(cpp, fan_in, batch, input_grad):
    n_in, n_out = 53, 300
    indices, offsets = wiring(n_in, n_out, fan_in, seed=batch)
    gen = torch.Generator().manual_seed(batch)
    h = torch.randn(n_in, batch, generator=gen)
    weight = torch.randn(indices.numel(), generator=gen)
    grad_out = torch.randn(n_out, batch, generator=gen)

    out, grad_w, grad_h = run("cpp", h, weight, indices, offsets, grad_out, input_grad, fan_in)
    ref_out, ref_w, ref_h = run("bag", h, weight, indices, offsets, grad_out, input_grad)
    matrix = dense(weight, indices, offsets, n_in)
    owner = torch.repeat_interleave(
        torch.arange(n_out), torch.diff(offsets, append=torch.tensor([indices.numel()]))
    )
    for ref in (ref_out, matrix @ h):
        assert rel_err(out, ref) < 1e-5
    for ref in (ref_w, (grad_out @ h.t())[owner, indices]):
        assert rel_err(grad_w, ref) < 1e-5
    if input_grad:
        for ref in (ref_h, matrix.t() @ grad_out):
            assert rel_err(grad_h, ref) < 1e-5
    else:
        assert grad_h is None
    with torch.no_grad():  # the path without autograd bookkeeping
        assert torch.equal(sparse_matmul_t(h, weight, indices, offsets, n_out, fan_in, backend="cpp"), out)
    if fan_in is None:  # empty outputs are exactly zero
        assert not out[0].any() and not out[2].any() and not out[-1].any()


def test_cpp_gradcheck_float64(cpp):
    indices, offsets = wiring(6, 5, None, seed=3)
    gen = torch.Generator().manual_seed(0)
    h = torch.randn(6, 3, dtype=torch.float64, generator=gen, requires_grad=True)
    weight = torch.randn(indices.numel(), dtype=torch.float64, generator=gen, requires_grad=True)

    def f(h, weight):
        return sparse_matmul_t(h, weight, indices, offsets, 5, backend="cpp")

    assert torch.autograd.gradcheck(f, (h, weight))


@pytest.mark.parametrize("fan_in", [16, None], ids=["uniform", "irregular"])
def test_cpp_threads_agree(cpp, fan_in):
    """Each output / input row is summed by one thread in a fixed order, whatever the thread count."""
    n_in, n_out = 784, 4096
    indices, offsets = wiring(n_in, n_out, fan_in, seed=0)
    gen = torch.Generator().manual_seed(0)
    h, weight = torch.randn(n_in, 128, generator=gen), torch.randn(indices.numel(), generator=gen)
    grad_out = torch.randn(n_out, 128, generator=gen)
    assert_same_on_1_and_2_threads(lambda: run("cpp", h, weight, indices, offsets, grad_out, True, fan_in))


def assert_same_on_1_and_2_threads(compute) -> None:
    """``compute()`` (a list of tensors) gives bit-identical results on one and two threads."""
    threads = torch.get_num_threads()
    results = []
    try:
        for n in (1, 2):
            torch.set_num_threads(n)
            results.append(compute())
    finally:
        torch.set_num_threads(threads)
    for a, b in zip(*results, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_cpp_plan_tracks_in_place_changes(cpp):
    """The cached wiring tables follow in-place edits of the indices (e.g. ``load_state_dict``)."""
    indices, offsets = wiring(20, 30, 4, seed=1)
    h = torch.randn(20, 5, requires_grad=True)
    weight = torch.randn(indices.numel())
    sparse_matmul_t(h, weight, indices, offsets, 30, backend="cpp").sum().backward()
    indices.copy_(torch.flip(indices, [0]).view(30, 4).sort(dim=1).values.reshape(-1))
    h.grad = None
    out = sparse_matmul_t(h, weight, indices, offsets, 30, backend="cpp")
    out.sum().backward()
    ref_h = h.detach().clone().requires_grad_(True)
    F.embedding_bag(indices, ref_h, offsets, mode="sum", per_sample_weights=weight).sum().backward()
    torch.testing.assert_close(h.grad, ref_h.grad)


def test_cpp_rejects_bad_wiring(cpp):
    indices, offsets = wiring(10, 4, 3, seed=0)
    h, weight = torch.randn(10, 2), torch.randn(12)
    with pytest.raises(IndexError):
        sparse_matmul_t(h, weight, indices + 10, offsets, 4, backend="cpp")
    with pytest.raises(ValueError):
        sparse_matmul_t(h, weight, indices, offsets, 4, fan_in=2, backend="cpp")
    with pytest.raises(ValueError):
        sparse_matmul_t(h, weight, indices, offsets + 1, 4, backend="cpp")


def test_env_var_selects_bag(monkeypatch):
    monkeypatch.setenv(kernels.ENV_VAR, "bag")
    assert kernel_backend() == "bag"
    indices, offsets = wiring(9, 11, None, seed=2)
    h, weight = torch.randn(9, 4), torch.randn(indices.numel())
    out = sparse_matmul_t(h, weight, indices, offsets, 11)
    torch.testing.assert_close(out, dense(weight, indices, offsets, 9) @ h)
    monkeypatch.setenv(kernels.ENV_VAR, "nonsense")
    with pytest.raises(ValueError):
        kernel_backend()


def test_build_failure_falls_back_with_one_warning(monkeypatch, tmp_path):
    """No compiler / no ninja / a compile error: one RuntimeWarning, then embedding_bag, no crash."""
    import torch.utils.cpp_extension as cpp_extension

    def broken(*args, **kwargs):
        raise RuntimeError("Ninja is required to load C++ extensions")

    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path))  # an empty cache: must build
    monkeypatch.setattr(kernels, "_STATE", kernels._LoadState())
    monkeypatch.setattr(kernels, "_ops_loaded", lambda: False)
    monkeypatch.setattr(cpp_extension, "load", broken)
    monkeypatch.setenv(kernels.ENV_VAR, "cpp")
    indices, offsets = wiring(9, 11, None, seed=2)
    h = torch.randn(9, 4, requires_grad=True)
    weight = torch.randn(indices.numel(), requires_grad=True)
    with pytest.warns(RuntimeWarning, match="embedding_bag") as record:
        out = sparse_matmul_t(h, weight, indices, offsets, 11)
        out.sum().backward()
        assert kernel_backend() == "bag"
        assert available_kernels() == ["bag"]
    assert len([w for w in record if issubclass(w.category, RuntimeWarning)]) == 1
    torch.testing.assert_close(out, dense(weight.detach(), indices, offsets, 9) @ h.detach())
    assert not list(tmp_path.rglob("*.so"))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_uses_bag():
    indices, offsets = wiring(9, 11, None, seed=2)
    h, weight = torch.randn(9, 4), torch.randn(indices.numel())
    out = sparse_matmul_t(h.cuda(), weight.cuda(), indices.cuda(), offsets.cuda(), 11)
    torch.testing.assert_close(out.cpu(), dense(weight, indices, offsets, 9) @ h)


@pytest.mark.slow
def test_two_processes_build_at_once(tmp_path):
    """Two fresh processes building into one empty cache both succeed; one compiles, one waits."""
    script = textwrap.dedent(
        """
        import warnings
        warnings.simplefilter("error")
        from dendritic.layers.kernels import available_kernels
        assert available_kernels() == ["bag", "cpp"], available_kernels()
        """
    )
    env = {**os.environ, "TORCH_EXTENSIONS_DIR": str(tmp_path)}
    procs = [subprocess.Popen([sys.executable, "-c", script], env=env) for _ in range(2)]
    assert [p.wait(timeout=600) for p in procs] == [0, 0]


# ------------------------------------------------------------------ fused dendro-somatic layer
def _model_pass(name, dendrites, somata, layers, batch, dtype, fused, monkeypatch, *, train=True):
    """Logits, activations and parameter gradients of one forward/backward, fused or layer by layer."""
    from dendritic import build_model

    monkeypatch.setenv("DENDRITIC_FUSED", "1" if fused else "0")
    model = build_model(name, (28, 28, 1), 10, dendrites, somata, layers=layers, seed=3).to(dtype)
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(batch, 784, generator=gen, dtype=dtype)
    y = torch.randint(0, 10, (batch,), generator=gen)
    with torch.no_grad():
        logits, acts = model(x, return_activations=True)
    F.cross_entropy(model(x), y).backward()
    return logits, acts, {n: p.grad for n, p in model.named_parameters()}


@pytest.mark.parametrize(
    "name, dendrites, somata, layers, batch",
    [
        ("dANN-LRF", 16, 32, 1, 128),
        ("dANN-R", 4, 16, 2, 37),  # two layers: the input gradient of layer 2; batch tails
        ("dANN-GRF", 1, 7, 1, 5),  # one dendrite per soma; batch below one vector
        ("dANN-LRF", 3, 25, 3, 70),
    ],
)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
def test_fused_layer_matches_layer_by_layer(cpp, monkeypatch, name, dendrites, somata, layers, batch, dtype):
    """Same sums in the same order: the fused forward equals the layer-by-layer one (to rounding
    of a fused multiply-add at most) and the gradients agree to float tolerance."""
    fused = _model_pass(name, dendrites, somata, layers, batch, dtype, True, monkeypatch)
    plain = _model_pass(name, dendrites, somata, layers, batch, dtype, False, monkeypatch)
    tol = 1e-6 if dtype == torch.float32 else 1e-13
    assert rel_err(fused[0], plain[0]) <= tol
    assert fused[1].keys() == plain[1].keys() and len(fused[1]) == 2 * layers
    for key in plain[1]:
        assert fused[1][key].shape == plain[1][key].shape
        assert rel_err(fused[1][key], plain[1][key]) <= tol, key
    assert fused[2].keys() == plain[2].keys()
    for key in plain[2]:
        assert rel_err(fused[2][key], plain[2][key]) <= 20 * tol, key


def test_fused_layer_is_used_only_where_it_applies(cpp, monkeypatch):
    from dendritic import build_model

    monkeypatch.setenv("DENDRITIC_FUSED", "1")
    assert kernels.fused_layers_enabled(torch.zeros(2, 2))
    assert not kernels.fused_layers_enabled(torch.zeros(2, 2, dtype=torch.float16))
    assert all(layer.fusable for layer in build_model("dANN-LRF", (28, 28, 1), 10, 4, 16, layers=2).layers)
    for name in ("sANN", "vANN", "pdANN", "vANN-LRF"):
        assert not build_model(name, (28, 28, 1), 10, 4, 8).layers[0].fusable, name
    assert not build_model("dANN-R", 784, 10, 4, 8, dropout=0.5).layers[0].fusable
    assert not build_model("dANN-R", 784, 10, 4, 8, oracle=True).layers[0].fusable
    monkeypatch.setenv("DENDRITIC_FUSED", "0")
    assert not kernels.fused_layers_enabled(torch.zeros(2, 2))


def test_fused_layer_gradcheck_and_threads(cpp):
    indices, offsets = wiring(12, 6, None, seed=4)  # irregular fan-in, empty dendrites included
    gen = torch.Generator().manual_seed(0)
    args = [
        torch.randn(12, 9, dtype=torch.float64, generator=gen),  # h
        torch.randn(indices.numel(), dtype=torch.float64, generator=gen),  # synapses
        torch.randn(6, dtype=torch.float64, generator=gen),  # dendrite biases
        torch.randn(6, dtype=torch.float64, generator=gen),  # dendrite → soma weights
        torch.randn(3, dtype=torch.float64, generator=gen),  # soma biases
    ]
    args = [a.requires_grad_(True) for a in args]

    def f(h, w, bd, v, bs):
        return kernels.dendritic_layer_t(h, w, bd, indices, offsets, v, bs, 2, 0.1)[0]

    assert torch.autograd.gradcheck(f, tuple(args))
    # thread count does not change any number (each soma is one thread's work)
    n_in, n_dend = 784, 4096
    indices, offsets = wiring(n_in, n_dend, 16, seed=0)
    big = [torch.randn(n_in, 128), torch.randn(indices.numel()), torch.randn(n_dend), torch.randn(n_dend)]
    big += [torch.randn(256)]
    big = [a.requires_grad_(True) for a in big]

    def compute():
        for a in big:
            a.grad = None
        out, _ = kernels.dendritic_layer_t(big[0], big[1], big[2], indices, offsets, big[3], big[4], 16, 0.1)
        out.backward(torch.ones_like(out))
        return [out.detach(), *(a.grad for a in big)]

    assert_same_on_1_and_2_threads(compute)


@pytest.mark.parametrize("batch", [1, 2, 3, 4, 5, 6, 7, 9, 12, 15, 39])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
def test_fused_layer_batch_tails_match_the_parts(cpp, batch, dtype):
    """Batches with fewer columns than a vector left over run as scalar sums, four dendrites of
    equal fan-in interleaved: somata and kept dendrites equal the part-by-part layer's, for
    somata whose dendrites have equal fan-in, unequal fan-in and none (empty dendrites)."""
    from dendritic.layers import functional as DF

    n_in, somata, per_soma = 30, 7, 5
    rng = np.random.default_rng(batch)
    counts = np.concatenate(
        [np.full(3 * per_soma, 6), rng.integers(0, 8, size=(somata - 3) * per_soma)]  # equal, then mixed
    )
    counts[-per_soma:] = 0  # a soma without synapses
    rows = [np.sort(rng.choice(n_in, size=c, replace=False)) for c in counts]
    indices = torch.from_numpy(np.concatenate(rows).astype(np.int64))
    offsets = torch.from_numpy(np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64))
    gen = torch.Generator().manual_seed(batch)
    h = torch.randn(n_in, batch, generator=gen, dtype=dtype)
    w = torch.randn(indices.numel(), generator=gen, dtype=dtype)
    bd, v = (
        torch.randn(len(counts), generator=gen, dtype=dtype),
        torch.randn(len(counts), generator=gen, dtype=dtype),
    )
    bs = torch.randn(somata, generator=gen, dtype=dtype)
    with torch.no_grad():
        out, dend = kernels.dendritic_layer_t(
            h, w, bd, indices, offsets, v, bs, per_soma, 0.1, keep_dendrites=True
        )
        parts = F.leaky_relu(DF.sparse_linear_t(h, w, indices, offsets, bd), 0.1)
        summed = (parts.reshape(somata, per_soma, -1) * v.reshape(somata, per_soma, 1)).sum(1)
        expected = F.leaky_relu(summed + bs[:, None], 0.1)
    tol = {"rtol": 1e-6, "atol": 1e-6} if dtype == torch.float32 else {"rtol": 1e-13, "atol": 1e-13}
    torch.testing.assert_close(dend, parts, **tol)
    torch.testing.assert_close(out, expected, **tol)


@pytest.mark.parametrize("batch", [2, 3, 5, 7, 13, 39])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
def test_fused_layer_columns_are_those_of_one_sample_bit_for_bit(cpp, batch, dtype):
    """Whatever path a column takes — whole vectors, a zero-padded vector for a tail of three or
    more, scalar sums for one or two — its somata and kept dendrites are those of the layer run
    on that sample alone (each sum in its connections' order, each multiply-add rounded once):
    bit for bit, in float32 and float64."""
    indices, offsets = wiring(30, 7 * 5, None, seed=batch)  # irregular fan-in, empty dendrites included
    gen = torch.Generator().manual_seed(batch)
    n_dend = offsets.numel()
    h = torch.randn(30, batch, generator=gen, dtype=dtype)
    w = torch.randn(indices.numel(), generator=gen, dtype=dtype)
    bd, v = torch.randn(n_dend, generator=gen, dtype=dtype), torch.randn(n_dend, generator=gen, dtype=dtype)
    bs = torch.randn(7, generator=gen, dtype=dtype)
    layer = torch.ops.dendritic.dendritic_layer
    out, dend = layer(h, w, indices, offsets, bd, v, bs, 5, 0.1, True)
    for j in range(batch):
        one, one_dend = layer(h[:, j : j + 1].contiguous(), w, indices, offsets, bd, v, bs, 5, 0.1, True)
        assert torch.equal(out[:, j : j + 1], one) and torch.equal(dend[:, j : j + 1], one_dend), j


def test_fused_layer_kept_dendrites_are_differentiable(cpp):
    """A loss on the kept dendrites (the selectivity regulariser's) reaches every input through the
    fused layer's one backward pass: gradients equal the part-by-part computation's, gradcheck."""
    from dendritic.layers import functional as DF

    indices, offsets = wiring(12, 6, None, seed=4)  # irregular fan-in, empty dendrites included
    gen = torch.Generator().manual_seed(1)
    args = [
        torch.randn(12, 9, dtype=torch.float64, generator=gen).requires_grad_(),  # h
        torch.randn(indices.numel(), dtype=torch.float64, generator=gen).requires_grad_(),  # synapses
        torch.randn(6, dtype=torch.float64, generator=gen).requires_grad_(),  # dendrite biases
        torch.randn(6, dtype=torch.float64, generator=gen).requires_grad_(),  # dendrite → soma weights
        torch.randn(3, dtype=torch.float64, generator=gen).requires_grad_(),  # soma biases
    ]
    weigh_out, weigh_dend = torch.randn(3, 9, dtype=torch.float64), torch.randn(6, 9, dtype=torch.float64)

    def fused(h, w, bd, v, bs):
        return kernels.dendritic_layer_t(h, w, bd, indices, offsets, v, bs, 2, 0.1, keep_dendrites=True)

    def by_parts(h, w, bd, v, bs):
        dend = F.leaky_relu(DF.sparse_linear_t(h, w, indices, offsets, bd), 0.1)
        return F.leaky_relu((dend.reshape(3, 2, -1) * v.reshape(3, 2, 1)).sum(1) + bs[:, None], 0.1), dend

    grads = []
    for f in (fused, by_parts):
        out, dend = f(*args)
        grads.append(torch.autograd.grad((out * weigh_out).sum() + (dend * weigh_dend).sum(), args))
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    # the dendrites alone (the somata unused) and both together
    assert torch.autograd.gradcheck(lambda *a: fused(*a)[1], tuple(args))
    assert torch.autograd.gradcheck(fused, tuple(args))


def test_fused_layer_rejects_bad_shapes(cpp):
    indices, offsets = wiring(10, 6, 2, seed=0)
    h, w = torch.randn(10, 4), torch.randn(12)
    with pytest.raises(ValueError, match="cannot form"):
        kernels.dendritic_layer_t(
            h, w, torch.zeros(6), indices, offsets, torch.ones(6), torch.zeros(4), 2, 0.1
        )
    with pytest.raises(ValueError, match="slope"):
        kernels.dendritic_layer_t(
            h, w, torch.zeros(6), indices, offsets, torch.ones(6), torch.zeros(3), 2, 1.5
        )
    # the operators themselves too: their leaky ReLU is max(z, slope z), F.leaky_relu only in (0, 1)
    for slope in (0.0, 1.0, 1.5, -0.1):
        with pytest.raises(RuntimeError, match="slope in"):
            torch.ops.dendritic.dendritic_layer(
                h, w, indices, offsets, torch.zeros(6), torch.ones(6), torch.zeros(3), 2, slope, True
            )
    out, dend = torch.ops.dendritic.dendritic_layer(
        h, w, indices, offsets, torch.zeros(6), torch.ones(6), torch.zeros(3), 2, 0.1, True
    )
    with pytest.raises(RuntimeError, match="slope in"):
        torch.ops.dendritic.dendritic_layer_backward(
            torch.ones_like(out), out, dend, h, w, indices, offsets, torch.ones(6), 2, 1.0, False, None
        )


@pytest.mark.parametrize("shape", [(128, 784), (1, 5), (7, 1), (2048, 3072), (0, 4)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.uint8])
def test_feature_major_transpose(cpp, shape, dtype):
    x = (torch.rand(shape) * 100).to(dtype)
    out = kernels.feature_major(x)
    assert out.is_contiguous() and torch.equal(out, x.t())


# ------------------------------------------------------------------ output layer + loss
@pytest.mark.parametrize("batch", [1, 7, 128])
def test_head_loss_matches_torch(cpp, batch):
    gen = torch.Generator().manual_seed(batch)
    h = torch.randn(33, batch, generator=gen, requires_grad=True)
    weight = torch.randn(10, 33, generator=gen, requires_grad=True)
    bias = torch.randn(10, generator=gen, requires_grad=True)
    target = torch.randint(0, 10, (batch,), generator=gen)
    loss, correct = kernels.head_loss_t(h, weight, bias, target)
    loss.backward()
    ours = [loss.detach(), h.grad, weight.grad, bias.grad]
    for t in (h, weight, bias):
        t.grad = None
    logits = F.linear(h.t(), weight, bias)
    ref_loss = F.cross_entropy(logits, target)
    ref_loss.backward()
    assert int(correct) == int((logits.argmax(dim=1) == target).sum())
    for a, b in zip(ours, [ref_loss.detach(), h.grad, weight.grad, bias.grad], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_head_loss_gradcheck_and_bad_target(cpp):
    gen = torch.Generator().manual_seed(0)
    args = [
        torch.randn(6, 4, dtype=torch.float64, generator=gen, requires_grad=True),
        torch.randn(3, 6, dtype=torch.float64, generator=gen, requires_grad=True),
        torch.randn(3, dtype=torch.float64, generator=gen, requires_grad=True),
    ]
    target = torch.tensor([0, 2, 1, 2])
    assert torch.autograd.gradcheck(lambda h, w, b: kernels.head_loss_t(h, w, b, target)[0], tuple(args))
    with pytest.raises(RuntimeError, match="not a class"):
        kernels.head_loss_t(args[0], args[1], args[2], torch.tensor([0, 1, 3, 0]))
