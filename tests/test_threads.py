"""Torch threads that make room for the machine's other jobs (issue 22: a default ``dendritic
train`` beside a competing job). The decision is tested on simulated CPU accounts; the speed it
buys is measured in ``benchmarks/bench_contention.py`` (docs/performance.md)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest
import torch
from torch import nn

from dendritic.training import fit
from dendritic.training import threads as threads_module
from dendritic.training.fit import FitState
from dendritic.training.threads import AdaptiveThreads, busy_cpu_seconds

sys.path.insert(0, str(Path(__file__).parent))
from fakedata import write_dataset  # noqa: E402


class _Clock:
    """A machine whose other processes use ``others`` cores while this one uses ``ours``."""

    def __init__(self, monkeypatch, cpus: int) -> None:
        self.wall = self.busy = self.own = 0.0
        self.others, self.ours = 0.0, 1.0
        monkeypatch.setattr(threads_module.time, "monotonic", lambda: self.wall)
        monkeypatch.setattr(threads_module.time, "process_time", lambda: self.own)
        monkeypatch.setattr(threads_module, "busy_cpu_seconds", lambda: self.busy)
        self.cpus = cpus

    def advance(self, seconds: float) -> None:
        self.wall += seconds
        self.own += self.ours * seconds
        self.busy += (self.ours + self.others) * seconds


@pytest.fixture
def restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_threads_follow_the_cores_other_processes_leave_free(monkeypatch, restore_threads):
    clock = _Clock(monkeypatch, cpus=4)
    torch.set_num_threads(4)
    adaptive = AdaptiveThreads(every=1.0)
    adaptive.cpus = 4
    state = FitState(nn.Linear(2, 2), torch.optim.SGD(nn.Linear(2, 2).parameters(), lr=0.1), 1, 1)
    adaptive.on_fit_start(state)

    def after(seconds: float, others: float) -> int:
        clock.others = others
        clock.advance(seconds)
        adaptive.on_batches(state, 1, 1, 0.0, 0.0)
        return torch.get_num_threads()

    assert after(1.5, others=0.0) == 4  # alone: every core
    assert after(1.5, others=2.0) == 2  # a 2-thread job beside it: the two cores left
    assert after(0.3, others=4.0) == 2  # checked at most once a second
    assert after(1.0, others=3.8) == 1  # a busy machine: one thread, never none
    assert after(1.2, others=0.1) == 4  # the job is gone: all of them again
    adaptive.on_fit_end(state, None)
    assert torch.get_num_threads() == 4


def test_the_thread_count_of_before_comes_back_even_when_the_fit_fails(monkeypatch, restore_threads):
    clock = _Clock(monkeypatch, cpus=2)
    torch.set_num_threads(2)
    adaptive = AdaptiveThreads(every=0.0)
    adaptive.cpus = 2

    class Busy(nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = nn.Linear(3, 2)

        def forward(self, x):
            clock.others = 2.0
            clock.advance(0.5)
            return self.linear(x)

    class Boom(threads_module.Callback):
        def on_epoch_end(self, state, metrics):
            assert torch.get_num_threads() == 1  # the other job took the cores
            raise RuntimeError("stop")

    with pytest.raises(RuntimeError, match="stop"):
        fit(Busy(), (torch.randn(64, 3), torch.zeros(64, dtype=torch.long)), epochs=2, batch_size=8,
            callbacks=[adaptive, Boom()])  # fmt: skip
    assert torch.get_num_threads() == 2


def test_busy_cpu_seconds_reads_the_machine():
    first = busy_cpu_seconds()
    if first is None:
        pytest.skip("no /proc/stat here")
    # /proc/stat counts in clock ticks (10 ms): work for well over one tick, however fast the CPU
    x = torch.randn(300, 300)
    start = time.perf_counter()
    while time.perf_counter() - start < 0.3:
        x = torch.tanh(x @ x)
    assert busy_cpu_seconds() > first


def test_train_adapts_only_when_no_thread_count_was_given(tmp_path, monkeypatch, restore_threads):
    from dendritic.training import TrainConfig, loop

    made = []

    class Recording(AdaptiveThreads):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            made.append(self)

    monkeypatch.setattr(loop, "AdaptiveThreads", Recording)
    data_dir = write_dataset(tmp_path / "mnist", "mnist", n_train=300, n_test=100)
    config = TrainConfig(model="dANN-LRF", dataset="mnist", dendrites=2, somata=8, epochs=1)
    loop.train(config, data_dir=data_dir)
    assert len(made) == 1
    loop.train(config, data_dir=data_dir, threads=1)
    assert len(made) == 1 and torch.get_num_threads() == 1
