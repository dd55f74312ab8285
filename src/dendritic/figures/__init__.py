"""The paper's figures and tables (SPEC §8) from a results store.

``make_figures(store, out)`` draws every figure whose sweep has runs (PNG + PDF) and writes
Tables 1–2 (CSV + Markdown); each figure function in :mod:`dendritic.figures.paper` also works on
its own from configuration groups or analysis dicts. matplotlib is imported only when drawing.
"""

from dendritic.figures.driver import FIGURES, FigureInfo, FiguresResult, make_figures, primary_dataset
from dendritic.figures.experiments import EXPERIMENTS, experiments_of, is_experiment, load_runs
from dendritic.figures.tables import Table, table1, table2

__all__ = [
    "EXPERIMENTS",
    "FIGURES",
    "FigureInfo",
    "FiguresResult",
    "Table",
    "experiments_of",
    "is_experiment",
    "load_runs",
    "make_figures",
    "primary_dataset",
    "table1",
    "table2",
]
