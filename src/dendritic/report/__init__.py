"""From a results store to what a reader sees: the figures and tables, analyses of checkpoints,
and one self-contained HTML page.

- :mod:`.runs`: which finished runs belong to which experiment (the runs' tags).
- :mod:`.checkpoints`: everything SPEC §7 measures on one trained run (``dendritic analyze``).
- :mod:`.make`: :func:`make_figures` draws every figure of :data:`dendritic.figures.FIGURES` the
  runs allow and writes tables, summaries and ``figures.json`` (``dendritic figures``).
- :mod:`.html`: :func:`build_report`, the HTML page (``dendritic report``): figures as base64
  PNGs, inline styles, nothing linked outside the file.
"""

from dendritic.report.checkpoints import analyze_model, analyze_run, format_summary, write_analysis
from dendritic.report.html import build_report, render_report, run_counts
from dendritic.report.make import FiguresResult, make_figures, primary_dataset
from dendritic.report.runs import EXPERIMENTS, StoreRuns, experiment_of_run, is_experiment, load_runs

__all__ = [
    "EXPERIMENTS",
    "FiguresResult",
    "StoreRuns",
    "analyze_model",
    "analyze_run",
    "build_report",
    "experiment_of_run",
    "format_summary",
    "is_experiment",
    "load_runs",
    "make_figures",
    "primary_dataset",
    "render_report",
    "run_counts",
    "write_analysis",
]
