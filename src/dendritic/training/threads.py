"""Torch threads that make room for the machine's other jobs.

OpenMP's threads wait for each other at every parallel region, spinning a while before they
sleep. Alone on the machine that is the fastest way to wait; beside another job, a spinning
thread burns the time slice its partner needs, and a training epoch slowed 3.4× beside one
2-thread PyTorch job (``benchmarks/bench_contention.py``). Letting the threads sleep at once
(``OMP_WAIT_POLICY=PASSIVE``) cost 18 % alone, one thread 39 %. :class:`AdaptiveThreads` keeps
OpenMP's default and watches instead: about once a second it reads how much CPU the *other*
processes used (``/proc/stat`` less this process's own time) and runs on the cores they leave
free, all of them again when they are gone. The kernels write every row in one thread in a fixed
order, so the numbers do not depend on the thread count.
"""

from __future__ import annotations

import logging
import math
import os
import time
from typing import Any

import torch

from dendritic.training.fit import Callback, FitResult, FitState

__all__ = ["AdaptiveThreads", "busy_cpu_seconds"]

log = logging.getLogger("dendritic.training")


def busy_cpu_seconds() -> float | None:
    """CPU seconds all processes have spent busy since boot (``/proc/stat``), or None where the
    file is not there (not Linux)."""
    try:
        with open("/proc/stat", encoding="ascii") as handle:
            fields = handle.readline().split()
    except OSError:
        return None
    if not fields or fields[0] != "cpu":
        return None
    values = [int(v) for v in fields[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
    steal = values[7] if len(values) > 7 else 0  # taken by the hypervisor: not ours to use either
    guest = sum(values[8:10]) if len(values) > 9 else 0  # already counted in user and nice
    return (sum(values) - idle - guest - steal) / os.sysconf("SC_CLK_TCK")


class AdaptiveThreads(Callback):
    """During a fit, use as many torch threads as the other processes leave cores free (at least
    one, at most ``threads``, default torch's count at the start), checked every ``every``
    seconds; the thread count of before comes back at the end."""

    def __init__(self, threads: int | None = None, *, every: float = 1.0) -> None:
        self.most = threads
        self.every = every
        self.cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        self._before = torch.get_num_threads()
        self._last: tuple[float, float, float] | None = None  # (wall, all busy CPU s, ours)

    def _sample(self) -> tuple[float, float, float] | None:
        busy = busy_cpu_seconds()
        return None if busy is None else (time.monotonic(), busy, time.process_time())

    def on_fit_start(self, state: FitState) -> None:
        self._before = torch.get_num_threads()
        self.most = self.most or self._before
        self._last = self._sample()

    def on_batches(self, state: FitState, epoch: int, done: int, loss: float, accuracy: float) -> None:
        if self._last is None or time.monotonic() - self._last[0] < self.every:
            return
        now = self._sample()
        if now is None:
            return
        wall = now[0] - self._last[0]
        others = max(0.0, (now[1] - self._last[1]) - (now[2] - self._last[2])) / wall  # cores
        self._last = now
        free = self.cpus - others
        threads = max(1, min(int(self.most or 1), math.floor(free + 0.5)))
        if threads != torch.get_num_threads():
            log.debug("other processes use %.1f cores: %d torch thread(s)", others, threads)
            torch.set_num_threads(threads)

    def _restore(self) -> None:
        if torch.get_num_threads() != self._before:
            torch.set_num_threads(self._before)

    def on_fit_end(self, state: FitState, result: FitResult) -> None:
        self._restore()

    def on_fit_error(self, state: FitState | None, error: BaseException) -> None:
        self._restore()

    def __getstate__(self) -> dict[str, Any]:
        return dict(self.__dict__, _last=None)
