"""``torch.library.opcheck`` over every operator of ``TORCH_LIBRARY(dendritic, …)`` (issue 21):
the schema (mutations annotated), the fake kernel (shapes, dtypes, strides match the real one),
the autograd registration, and tracing by AOTAutograd with dynamic shapes — on representative
inputs drawn from a real layer's wiring."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from dendritic.layers import kernels
from dendritic.nn import DendriticLayer

pytestmark = pytest.mark.skipif(kernels.kernel_backend() != "cpp", reason="the C++ operators are not built")

SOURCE = Path(kernels.SOURCE)
B = 6  # batch


def _wiring():
    layer = DendriticLayer((1, 6, 6), somata=4, dendrites=3, synapses=4, seed=1)
    d = layer.dendrite_linear
    return d.indices, d.offsets, d.tables, 36, 12, 4, 3  # indices, offsets, tables, n_in, n_dend, S, D


def _cases() -> dict[str, list[tuple]]:
    torch.manual_seed(0)
    idx, off, tables, n_in, n_dend, S, D = _wiring()
    nnz = idx.numel()
    ops = torch.ops.dendritic

    def t(*shape, grad=False, dtype=torch.float32):
        return torch.randn(*shape, dtype=dtype, requires_grad=grad)

    x = t(n_in, B)
    out, dend = ops.dendritic_layer_t(
        x, t(nnz), idx, off, *tables, 1, t(n_dend), t(n_dend), t(S), D, 0.1, True
    )
    n_blocks = kernels.n_blocks(n_dend, n_in, nnz)
    x_rows = torch.rand(10, n_in)
    y = torch.randint(0, 3, (10,))
    params = [t(nnz), t(n_dend), t(n_dend), t(S), t(3, S), t(3)]
    moments = lambda: [torch.zeros_like(p) for p in params]  # noqa: E731
    return {
        "spmm_t": [(x, t(nnz), idx, off, n_dend), (t(n_in, 1, dtype=torch.float64), t(nnz, dtype=torch.float64), idx, off, n_dend)],
        "sddmm_t": [(t(n_dend, B), x, idx, off)],
        "transpose_blocked": [(idx, off, n_in, 512), (idx, off, n_in, 5)],
        "spmm_t_transposed": [(t(n_dend, B), t(nnz), *tables, n_in, n_blocks)],
        "sparse_linear_t": [
            (t(n_in, B, grad=True), t(nnz, grad=True), idx, off, *tables, n_dend, n_blocks),
            (x, t(nnz), idx, off, *tables, n_dend, n_blocks),
        ],
        "dendritic_layer": [(x, t(nnz), idx, off, t(n_dend), t(n_dend), t(S), D, 0.1, keep) for keep in (False, True)],
        "dendritic_layer_t": [
            (t(n_in, B, grad=True), t(nnz, grad=True), idx, off, *tables, n_blocks, t(n_dend, grad=True),
             t(n_dend, grad=True), t(S, grad=True), D, 0.1, True),
            (x, t(nnz), idx, off, *tables, n_blocks, t(n_dend), t(n_dend), t(S), D, 0.2, False),
        ],
        # The C++-autograd composites of the eager fast path (issue 24), batch- and feature-major.
        "dendritic_layer_ad": [
            (t(B, n_in, grad=True), t(nnz, grad=True), t(n_dend, grad=True), t(n_dend, grad=True), t(S, grad=True),
             idx, off, *tables, n_blocks, D, 0.1, True),
            (t(n_in, 1, grad=True), t(nnz, grad=True), t(n_dend), t(n_dend, grad=True), t(S), idx, off, *tables,
             n_blocks, D, 0.2, False),
            (t(B, n_in), t(nnz), t(n_dend), t(n_dend), t(S), idx, off, *tables, n_blocks, D, 0.1, True),
        ],
        "sparse_linear_ad": [
            (t(B, n_in, grad=True), t(nnz, grad=True), t(n_dend, grad=True), idx, off, *tables, n_dend, n_blocks, True),
            (t(n_in, B), t(nnz, grad=True), None, idx, off, *tables, n_dend, n_blocks, False),
            (t(1, n_in), t(nnz), t(n_dend), idx, off, *tables, n_dend, n_blocks, True),
        ],
        "dendritic_layer_backward": [
            (t(S, B), out.detach(), dend.detach(), x, t(nnz), idx, off, t(n_dend), D, 0.1, need)
            for need in (False, True)
        ] + [(t(S, B), out.detach(), dend.detach(), x, t(nnz), idx, off, t(n_dend), D, 0.1, True, t(n_dend, B)),
             # a batch of one has its own loop
             (t(S, 1), out[:, :1].detach().contiguous(), dend[:, :1].detach().contiguous(), x[:, :1].contiguous(),
              t(nnz), idx, off, t(n_dend), D, 0.1, True, t(n_dend, 1))],
        "transpose_2d": [(t(7, 5),), (t(300, 129, dtype=torch.float64),)],
        # the selectivity regulariser's class sums (issue 23): a batch not a multiple of 8, a class absent
        "class_sums_t": [(t(n_dend, 13, grad=True), torch.tensor([0, 2, 2, 1, 0, 0, 2, 1, 1, 2, 0, 2, 2]), 4),
                         (t(5, B, dtype=torch.float64, grad=True), torch.zeros(B, dtype=torch.long), 1)],
        "class_sums_t_backward": [(t(4, n_dend), t(n_dend, 13), torch.tensor([0, 2, 2, 1, 0, 0, 2, 1, 1, 2, 0, 2, 2]))],
        "head_forward": [(t(S, B), t(3, S), t(3), torch.randint(0, 3, (B,)))],
        "head_backward": [(torch.tensor(1.0), torch.softmax(t(3, B), 0), t(S, B), t(3, S), torch.randint(0, 3, (B,)), need)
                          for need in (False, True)],
        "adam_step_": [([t(5), t(2, 3)], [t(5), t(2, 3)], [torch.zeros(5), torch.zeros(2, 3)],
                        [torch.zeros(5), torch.zeros(2, 3)], 1, 1e-3, 0.9, 0.999, 1e-7, keras) for keras in (False, True)],
        "train_steps": [(x_rows, y, torch.randperm(10), 4, [p.detach().clone() for p in params], moments(), moments(),
                         idx, off, D, 0.1, 0, 1e-3, 0.9, 0.999, 1e-7, True, torch.zeros(()),
                         torch.zeros((), dtype=torch.int64))],
        "evaluate_dann": [(x_rows, y, 4, params, idx, off, D, 0.1)],
    }  # fmt: skip


def _registered() -> list[str]:
    """The operators the C++ library defines (its TORCH_LIBRARY block), read from the source."""
    block = SOURCE.read_text().split("TORCH_LIBRARY(dendritic, m)")[1].split("TORCH_LIBRARY_IMPL")[0]
    return sorted(set(re.findall(r'"\s*([a-z_0-9]+)\(', block)))


CASES = _cases()


def test_every_registered_operator_is_checked():
    assert _registered() == sorted(CASES)


@pytest.mark.parametrize("name", sorted(CASES))
def test_opcheck(name):
    op = getattr(torch.ops.dendritic, name).default
    for args in CASES[name]:
        torch.library.opcheck(op, args)


def test_fake_kernels_state_what_they_check():
    """A wrong shape is an error while tracing too (``torch._check`` in the fake kernels)."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    idx, off, tables, n_in, n_dend, S, D = _wiring()
    with FakeTensorMode() as mode:
        fake = [mode.from_tensor(v) for v in (torch.rand(n_in, B), torch.rand(idx.numel() + 1), idx, off)]
        with pytest.raises(Exception, match="one entry each per connection"):
            torch.ops.dendritic.spmm_t(*fake, n_dend)
