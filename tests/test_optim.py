"""Adam in Keras's form (the paper's) and torch's, fused and unfused, against hand-written
references of each update rule (issue 14)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from dendritic.layers.kernels import kernel_backend
from dendritic.training.config import TrainConfig
from dendritic.training.optim import Adam, form_of, optimizer_of

LR, B1, B2, EPS = 3e-3, 0.9, 0.999, 1e-7


def reference(form: str, params: list[np.ndarray], grads: list[list[np.ndarray]]) -> list[np.ndarray]:
    """The two update rules exactly as written (float64 numpy), step by step from t = 1."""
    params = [p.astype(np.float64).copy() for p in params]
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    for t, step_grads in enumerate(grads, start=1):
        for i, g in enumerate(step_grads):
            g = g.astype(np.float64)
            m[i] = B1 * m[i] + (1 - B1) * g
            v[i] = B2 * v[i] + (1 - B2) * g * g
            if form == "keras":  # Keras 3: alpha = lr·√(1−β2ᵗ)/(1−β1ᵗ); w -= alpha·m / (√v + ε)
                alpha = LR * math.sqrt(1 - B2**t) / (1 - B1**t)
                params[i] -= alpha * m[i] / (np.sqrt(v[i]) + EPS)
            else:  # torch: w -= lr/(1−β1ᵗ) · m / (√v / √(1−β2ᵗ) + ε)
                params[i] -= LR / (1 - B1**t) * m[i] / (np.sqrt(v[i]) / math.sqrt(1 - B2**t) + EPS)
    return params


def _run(
    form: str, dtype: torch.dtype, fused: bool, steps: int = 6
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    gen = torch.Generator().manual_seed(7)
    shapes = [(37,), (5, 9), (3,)]
    start = [torch.randn(s, generator=gen, dtype=torch.float64) for s in shapes]
    # Gradients at the scale of a late training step, where ε matters: tiny for one parameter.
    grads = [[torch.randn(s, generator=gen, dtype=torch.float64) * scale for s, scale in zip(shapes, (1e-6, 1e-2, 1.0), strict=True)]
             for _ in range(steps)]  # fmt: skip
    params = [torch.nn.Parameter(p.to(dtype).clone()) for p in start]
    opt = Adam(params, lr=LR, betas=(B1, B2), eps=EPS, form=form)
    if not fused:
        opt._static_ok = False  # the plain-PyTorch step of the same form
    for step_grads in grads:
        for p, g in zip(params, step_grads, strict=True):
            p.grad = g.to(dtype).clone()
        opt.step()
    expected = reference(form, [p.numpy() for p in start], [[g.numpy() for g in s] for s in grads])
    return [p.detach().double().numpy() for p in params], expected


@pytest.mark.parametrize("form", ["keras", "torch"])
@pytest.mark.parametrize("fused", [True, False], ids=["fused", "unfused"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_both_forms_match_their_reference(form, fused, dtype):
    if fused and kernel_backend() != "cpp":
        pytest.skip("the C++ kernels are not built")
    got, want = _run(form, dtype, fused)
    tol = 1e-12 if dtype == torch.float64 else 2e-6
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, w, rtol=tol, atol=tol)


def test_the_forms_differ_where_the_paper_says():
    """At step 1 Keras's ε is ε/√(1−β2) ≈ 3.2e-6: tiny gradients move far less than torch's."""
    keras, _ = _run("keras", torch.float64, fused=False, steps=1)
    torch_, _ = _run("torch", torch.float64, fused=False, steps=1)
    start = _run("keras", torch.float64, fused=False, steps=0)[0]
    moved_keras = np.abs(keras[0] - start[0]).max()
    moved_torch = np.abs(torch_[0] - start[0]).max()
    assert moved_keras < 0.5 * moved_torch  # gradients of 1e-6: ε dominates Keras's denominator
    np.testing.assert_allclose(keras[2], torch_[2], rtol=1e-4)  # gradients of 1: ε is negligible


def test_torch_form_is_torchs_adam():
    gen = torch.Generator().manual_seed(0)
    a = [torch.nn.Parameter(torch.randn(20, generator=gen)) for _ in range(2)]
    b = [torch.nn.Parameter(p.detach().clone()) for p in a]
    ours = Adam(a, lr=LR, eps=EPS, form="torch")
    theirs = torch.optim.Adam(b, lr=LR, eps=EPS)
    for _ in range(5):
        grads = [torch.randn(20, generator=gen) for _ in a]
        for pa, pb, g in zip(a, b, grads, strict=True):
            pa.grad, pb.grad = g.clone(), g.clone()
        ours.step()
        theirs.step()
    for pa, pb in zip(a, b, strict=True):
        torch.testing.assert_close(pa, pb, rtol=1e-6, atol=1e-7)


def test_state_dict_keeps_the_form_and_resumes_the_step_count():
    params = [torch.nn.Parameter(torch.ones(4))]
    opt = Adam(params, lr=LR, form="keras")
    for _ in range(3):
        params[0].grad = torch.full((4,), 0.5)
        opt.step()
    state = opt.state_dict()
    assert state["param_groups"][0]["form"] == "keras" and float(state["state"][0]["step"]) == 3
    again = Adam([torch.nn.Parameter(params[0].detach().clone())], lr=LR, form="torch")
    again.load_state_dict(state)
    assert again.param_groups[0]["form"] == "keras"


def test_optimizer_names_and_stored_runs():
    assert form_of("adam-keras") == "keras" and form_of("adam-torch") == "torch"
    with pytest.raises(
        ValueError, match="unknown optimizer 'sgd'; valid optimizers: adam-keras .*adam-torch"
    ) as exc:
        TrainConfig(optimizer="sgd")
    assert "\n" not in str(exc.value)
    assert TrainConfig().optimizer == "adam-keras" and TrainConfig().to_dict()["optimizer"] == "adam-keras"
    old = TrainConfig().to_dict()
    del old["optimizer"]  # a run recorded before the field existed trained with torch's Adam
    assert optimizer_of(old) == "adam-torch" and TrainConfig.from_dict(old).optimizer == "adam-torch"
    with pytest.raises(ValueError, match="unknown Adam form"):
        Adam([torch.nn.Parameter(torch.ones(1))], form="sgd")
