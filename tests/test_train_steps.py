"""Whole training steps in one C++ call (``training.engine.WholeStepEngine``) against the
step-by-step path: the same parameters bit for bit, the same running loss and count, the same optimizer state,
and a fallback for everything it does not cover."""

from __future__ import annotations

import warnings

import pytest
import torch

from dendritic import build_model
from dendritic.layers.kernels import available_kernels, train_steps_t
from dendritic.training.engine import StepEngine, WholeStepEngine, select_engine
from dendritic.training.loop import make_optimizer, train_step, train_steps


@pytest.fixture(scope="module", autouse=True)
def cpp() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if "cpp" not in available_kernels():
            pytest.skip("C++ kernels unavailable")


def _data(n: int, dtype: torch.dtype, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(n, 784, generator=gen, dtype=dtype), torch.randint(0, 10, (n,), generator=gen)


def _pair(name: str, dendrites: int, somata: int, dtype: torch.dtype = torch.float32, **kw):
    models = [build_model(name, (28, 28, 1), 10, dendrites, somata, seed=3, **kw).to(dtype) for _ in range(2)]
    return models, [make_optimizer(m, 1e-2) for m in models]


def _step_by_step(model, opt, x, y, order, batch, loss_sum, correct) -> None:
    for start in range(0, len(order), batch):
        train_step(model, opt, x, y, order[start : start + batch], loss_sum, correct)


def _assert_same_parameters(a: torch.nn.Module, b: torch.nn.Module) -> None:
    for (name, p), q in zip(a.named_parameters(), b.parameters(), strict=True):
        assert torch.equal(p, q), name


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(
    "name,dendrites,somata", [("dANN-LRF", 16, 12), ("dANN-GRF", 4, 7), ("dANN-R", 1, 5)]
)
def test_fused_steps_match_step_by_step_bit_for_bit(name, dendrites, somata, dtype):
    n, batch = 300, 64  # 4 full batches and a tail of 44
    x, y = _data(n, dtype)
    (a, b), (opt_a, opt_b) = _pair(name, dendrites, somata, dtype)
    assert isinstance(select_engine(b, opt_b, x, y), WholeStepEngine)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(1))
    sums = [torch.zeros((), dtype=dtype) for _ in range(2)]
    hits = [torch.zeros((), dtype=torch.long) for _ in range(2)]
    for _ in range(2):  # two epochs: the second starts from moments and a step count > 0
        _step_by_step(a, opt_a, x, y, order, batch, sums[0], hits[0])
        train_steps(b, opt_b, x, y, order, batch, sums[1], hits[1])
    _assert_same_parameters(a, b)
    assert int(hits[0]) == int(hits[1])
    torch.testing.assert_close(sums[0], sums[1], rtol=1e-6, atol=0)
    state_a, state_b = opt_a.state_dict(), opt_b.state_dict()
    for k, sa in state_a["state"].items():
        sb = state_b["state"][k]
        assert float(sa["step"]) == float(sb["step"]) == 10.0
        assert torch.equal(sa["exp_avg"], sb["exp_avg"]) and torch.equal(sa["exp_avg_sq"], sb["exp_avg_sq"])


def test_fused_steps_hand_over_to_the_optimizers_own_step():
    """Steps in C++, then ordinary steps (the optimizer's count continues), then C++ again."""
    x, y = _data(256, torch.float32)
    (a, b), (opt_a, opt_b) = _pair("dANN-LRF", 4, 8)
    order = torch.randperm(256, generator=torch.Generator().manual_seed(2))
    sums, hits = torch.zeros(()), torch.zeros((), dtype=torch.long)
    _step_by_step(a, opt_a, x, y, order, 32, sums, hits)
    train_steps(b, opt_b, x, y, order[:96], 32, sums, hits)
    _step_by_step(b, opt_b, x, y, order[96:160], 32, sums, hits)
    train_steps(b, opt_b, x, y, order[160:], 32, sums, hits)
    _assert_same_parameters(a, b)
    assert opt_b._steps == 8


def test_fused_steps_give_the_same_results_on_one_and_two_threads():
    x, y = _data(200, torch.float32)
    results = []
    threads = torch.get_num_threads()
    try:
        for n in (1, 2):
            torch.set_num_threads(n)
            (model, _), (opt, _) = _pair("dANN-GRF", 16, 16)
            train_steps(
                model, opt, x, y, torch.arange(200), 50, torch.zeros(()), torch.zeros((), dtype=torch.long)
            )
            results.append([p.detach().clone() for p in model.parameters()])
    finally:
        torch.set_num_threads(threads)
    for p, q in zip(*results, strict=True):
        assert torch.equal(p, q)


@pytest.mark.parametrize(
    "name,kw",
    [
        ("vANN", {}),  # dense dendrites: not a fused layer
        ("pdANN", {}),  # sparse dendrites, dense somata
        ("dANN-LRF", {"layers": 2}),  # deeper nets run step by step
        ("dANN-LRF", {"dropout": 0.2}),
    ],
)
def test_other_models_fall_back_to_step_by_step(name, kw):
    x, y = _data(200, torch.float32)
    (a, b), (opt_a, opt_b) = _pair(name, 4, 32, **kw)
    assert type(select_engine(b, opt_b, x, y)) is StepEngine
    torch.manual_seed(0)
    _step_by_step(a, opt_a, x, y, torch.arange(200), 64, torch.zeros(()), torch.zeros((), dtype=torch.long))
    torch.manual_seed(0)
    train_steps(b, opt_b, x, y, torch.arange(200), 64, torch.zeros(()), torch.zeros((), dtype=torch.long))
    _assert_same_parameters(a, b)


def test_fused_steps_are_skipped_when_turned_off_or_not_applicable(monkeypatch):
    x, y = _data(64, torch.float32)
    (model, _), (opt, _) = _pair("dANN-LRF", 4, 6)

    def plain(optimizer, labels=y):  # the engine fit would choose: plain steps, not whole C++ steps
        return type(select_engine(model, optimizer, x, labels)) is StepEngine

    assert not plain(opt)
    assert plain(torch.optim.Adam(model.parameters()))  # torch's Adam lends no moments
    assert plain(opt, y.to(torch.int32))
    assert plain(opt, y) is False and not plain(opt)
    model.layers[0].soma_linear.bias.requires_grad_(False)  # a frozen parameter
    assert plain(opt)
    model.layers[0].soma_linear.bias.requires_grad_(True)
    engine = select_engine(model, opt, x, y)
    model.eval()  # evaluation mode: the whole-step engine takes plain steps (dropout etc. as the model says)
    steps = opt._steps
    engine.train(x, y, torch.arange(64), 32, torch.zeros(()), torch.zeros((), dtype=torch.long))
    assert opt._steps == steps + 2
    model.train()
    monkeypatch.setenv("DENDRITIC_FUSED", "0")
    assert plain(opt) and model.fused_plan() is None


def test_bad_sample_indices_are_refused_before_any_step():
    x, y = _data(64, torch.float32)
    (model, _), (opt, _) = _pair("dANN-LRF", 4, 6)
    before = [p.detach().clone() for p in model.parameters()]
    sums, hits = torch.zeros(()), torch.zeros((), dtype=torch.long)
    with pytest.raises(RuntimeError, match=r"sample 64 not in \[0, 64\)"):
        train_steps(model, opt, x, y, torch.tensor([0, 1, 64]), 2, sums, hits)
    with pytest.raises(TypeError, match="int64"):
        train_steps(model, opt, x, y, torch.tensor([0, 1], dtype=torch.int32), 2, sums, hits)
    for p, q in zip(model.parameters(), before, strict=True):
        assert torch.equal(p, q)
    assert opt._steps == 0 and float(sums) == 0.0


def test_train_steps_t_checks_its_arguments():
    x, y = _data(16, torch.float32)
    (model, _), (opt, _) = _pair("dANN-LRF", 4, 6)
    layer = model.layers[0]
    dann = model.fused_plan()
    m, v, step, _group = opt.fused_state(dann.params)
    params = dann.params
    good = dict(
        params=params,
        indices=layer.dendrite_linear.indices,
        offsets=layer.dendrite_linear.offsets,
        per_soma=4,
        slope=0.1,
        exp_avgs=m,
        exp_avg_sqs=v,
        step=step,
        lr=1e-3,
        betas=(0.9, 0.999),
        eps=1e-7,
        loss_sum=torch.zeros(()),
        correct=torch.zeros((), dtype=torch.long),
    )
    for change, error, message in (
        ({"params": params[:5]}, ValueError, "six parameters"),
        ({"loss_sum": torch.zeros((), dtype=torch.float64)}, RuntimeError, "loss_sum"),
        ({"per_soma": 3}, RuntimeError, "layer sizes disagree"),
    ):
        with pytest.raises(error, match=message):
            train_steps_t(x, y, torch.arange(16), 8, **{**good, **change})


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_whole_set_evaluation_in_cpp_matches_the_model_forward(dtype, monkeypatch):
    from dendritic.training.loop import evaluate

    x, y = _data(700, dtype)  # two full batches of 256 and a tail
    (model, _), (opt, _) = _pair("dANN-LRF", 16, 12, dtype)
    train_steps(
        model,
        opt,
        x,
        y,
        torch.arange(700),
        100,
        torch.zeros((), dtype=dtype),
        torch.zeros((), dtype=torch.long),
    )
    assert model.fused_plan() is not None
    fused = evaluate(model, x, y)
    assert model.training  # evaluation leaves the mode as it was
    monkeypatch.setenv("DENDRITIC_FUSED", "0")  # model(x) batch by batch, torch's loss
    assert model.fused_plan() is None
    plain = evaluate(model, x, y)
    assert fused[0] == pytest.approx(plain[0], rel=1e-5)
    assert abs(fused[1] - plain[1]) <= 1 / 700
    assert evaluate(model, x[:0], y[:0]) == (0.0, 0.0)
