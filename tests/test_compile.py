"""The C++ operators under ``torch.compile`` and ``torch.export`` (issue 13): no graph breaks on
them, compiled outputs and gradients equal to eager, an exportable graph."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import dendritic
from dendritic.layers.kernels import kernel_backend
from dendritic.nn import DendriticLayer, SparseLinear

pytestmark = pytest.mark.skipif(kernel_backend() != "cpp", reason="the C++ operators are not built")


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    """Each test compiles new module instances of the same code: start from an empty cache, or
    dynamo's recompile limit (8 per code object) is reached within this file."""
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def _user_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        DendriticLayer((1, 12, 12), somata=16, dendrites=4, synapses=8, seed=1),
        nn.Dropout(0.0),
        SparseLinear.random(16, 16, fan_in=4, seed=2),
        nn.ReLU(),
        nn.Linear(16, 10),
    )


def _paper_model() -> nn.Module:
    return dendritic.build_model("dANN-LRF", (12, 12, 1), 10, dendrites=4, somata=16, synapses=8, seed=1)


def _deep_paper_model() -> nn.Module:
    return dendritic.build_model(
        "dANN-GRF", (12, 12, 1), 10, dendrites=2, somata=16, synapses=4, layers=2, seed=1
    )


MODELS = {
    "user": (_user_model, (1, 12, 12)),
    "paper": (_paper_model, (144,)),
    "deep": (_deep_paper_model, (144,)),
}


def _our_ops(explanation) -> set[str]:
    return {
        str(node.target)
        for graph in explanation.graphs
        for node in graph.graph.nodes
        if node.op == "call_function" and "dendritic" in str(node.target)
    }


@pytest.mark.parametrize("name", MODELS)
def test_no_graph_break_and_our_operators_are_in_the_graph(name):
    make, shape = MODELS[name]
    explanation = torch._dynamo.explain(make())(torch.rand(8, *shape))
    assert explanation.graph_break_count == 0, explanation.break_reasons
    assert explanation.graph_count == 1
    ops = _our_ops(explanation)
    assert any("sparse_linear_t" in op or "dendritic_layer_t" in op for op in ops), ops


@pytest.mark.parametrize("backend", ["aot_eager", "inductor"])
@pytest.mark.parametrize("name", MODELS)
def test_compiled_outputs_and_gradients_equal_eager(name, backend):
    make, shape = MODELS[name]
    eager = make()
    compiled_model = copy.deepcopy(eager)
    compiled = torch.compile(compiled_model, backend=backend, fullgraph=True)
    gen = torch.Generator().manual_seed(3)
    for batch in (8, 5):  # a second batch size: recompilation (or dynamic shapes) handled
        x = torch.rand(batch, *shape, generator=gen)
        y = torch.randint(0, 10, (batch,), generator=gen)
        xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
        la, lb = F.cross_entropy(eager(xa), y), F.cross_entropy(compiled(xb), y)
        la.backward()
        lb.backward()
        torch.testing.assert_close(la, lb, atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(xa.grad, xb.grad, atol=1e-6, rtol=1e-5)
        for (n, a), (_, b) in zip(eager.named_parameters(), compiled_model.named_parameters(), strict=True):
            torch.testing.assert_close(a.grad, b.grad, atol=1e-6, rtol=1e-5, msg=n)
        eager.zero_grad()
        compiled_model.zero_grad()
    with torch.no_grad():
        x = torch.rand(4, *shape, generator=gen)
        torch.testing.assert_close(eager(x), compiled(x), atol=1e-6, rtol=1e-5)


def test_a_compiled_dann_trains_like_the_eager_one():
    eager = _paper_model()
    compiled_model = copy.deepcopy(eager)
    compiled = torch.compile(compiled_model, fullgraph=True)
    opt_a = torch.optim.Adam(eager.parameters(), lr=0.01)
    opt_b = torch.optim.Adam(compiled_model.parameters(), lr=0.01)
    gen = torch.Generator().manual_seed(0)
    for _ in range(5):
        x, y = torch.rand(16, 144, generator=gen), torch.randint(0, 10, (16,), generator=gen)
        for model, opt in ((eager, opt_a), (compiled, opt_b)):
            opt.zero_grad()
            F.cross_entropy(model(x), y).backward()
            opt.step()
    for (n, a), (_, b) in zip(eager.named_parameters(), compiled_model.named_parameters(), strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4, msg=n)


def test_export_gives_a_graph_of_our_operators_that_runs():
    model = _user_model().eval()
    x = torch.rand(3, 1, 12, 12)
    exported = torch.export.export(model, (x,))
    code = exported.graph_module.code
    assert "torch.ops.dendritic.dendritic_layer_t" in code and "torch.ops.dendritic.sparse_linear_t" in code
    torch.testing.assert_close(exported.module()(x), model(x))
