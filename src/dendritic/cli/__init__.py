"""`dendritic` command line (see :mod:`dendritic.cli.main`).

Before anything loads torch, the command line asks OpenMP to let waiting threads sleep
(``OMP_WAIT_POLICY=PASSIVE``) unless the user chose a policy or a spin count: threads that spin
on a busy machine lose their time slices to the other jobs, and a training epoch slowed several
times over beside one 2-thread job (``benchmarks/bench_contention.py``, ``docs/performance.md``).
"""

import os
import sys

if "torch" not in sys.modules and not {"OMP_WAIT_POLICY", "GOMP_SPINCOUNT"} & set(os.environ):
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"

from dendritic.cli.main import build_parser, main  # noqa: E402  (after the environment is set)

__all__ = ["build_parser", "main"]
