"""Progress on a terminal: a tqdm bar over a training run's batches (a ``fit`` callback).

The library reports progress through ``fit`` callbacks and ``logging``; drawing a bar is the
command line's business, so the bar lives here.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from dendritic.training.fit import Callback, EpochMetrics, FitResult, FitState

__all__ = ["ProgressBar", "RunsBar", "TqdmHandler", "progress_callbacks"]


class ProgressBar(Callback):
    """A live bar of batches over the whole run, with the running loss and accuracy."""

    def __init__(self) -> None:
        self.bar: Any = None
        self.done = 0

    def on_fit_start(self, state: FitState) -> None:
        from tqdm.auto import tqdm

        self.bar = tqdm(
            total=state.epochs * state.batches_per_epoch,
            unit="batch",
            file=sys.stderr,
            dynamic_ncols=True,
            leave=False,
        )

    def on_batches(self, state: FitState, epoch: int, done: int, loss: float, accuracy: float) -> None:
        assert self.bar is not None
        total = (epoch - 1) * state.batches_per_epoch + done
        self.bar.update(total - self.done)
        self.done = total
        self.bar.set_description(f"epoch {epoch}/{state.epochs}", refresh=False)
        self.bar.set_postfix(loss=f"{loss:.4f}", acc=f"{accuracy:.4f}", refresh=False)

    def on_epoch_end(self, state: FitState, metrics: EpochMetrics) -> None:
        self.bar.refresh()

    def _close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def on_fit_end(self, state: FitState, result: FitResult) -> None:
        self._close()

    def on_fit_error(self, state: FitState | None, error: BaseException) -> None:
        self._close()


def progress_callbacks(quiet: bool) -> list[Callback]:
    """A bar when stderr is a terminal and not ``--quiet``; epoch lines come from the logs."""
    return [] if quiet or not sys.stderr.isatty() else [ProgressBar()]


class RunsBar:
    """A sweep's bar: runs ended of all runs, with an ETA (``run_sweep(progress=...)``)."""

    def __init__(self) -> None:
        self.bar: Any = None

    def __call__(self, done: int, total: int) -> None:
        from tqdm.auto import tqdm

        if self.bar is None:
            self.bar = tqdm(
                total=total, initial=done, unit="run", desc="sweep", file=sys.stderr, dynamic_ncols=True
            )
        else:
            self.bar.update(done - self.bar.n)

    def __enter__(self) -> RunsBar:
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.bar is not None:
            self.bar.close()


class TqdmHandler(logging.Handler):
    """Log lines on stderr that never tear a live progress bar (written above it)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            from tqdm.auto import tqdm

            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:  # a log line must never break the command
            self.handleError(record)
