"""The paper's figures and tables (SPEC §8), drawn from runs and analyses, never from a store.

:data:`FIGURES` is the table of figures (label, caption, sweeps needed, drawing function);
:mod:`dendritic.figures.paper` holds each figure as a function of configuration groups or
analysis dicts; :func:`table1` / :func:`table2` compute the paper's tables. Gathering the inputs
from a store and writing files is :func:`dendritic.report.make_figures`. matplotlib is imported
only when drawing.
"""

from dendritic.figures.specs import FIGURES, FigureInputs, FigureSpec, Skip, skip_note
from dendritic.figures.tables import Table, table1, table2

__all__ = ["FIGURES", "FigureInputs", "FigureSpec", "Skip", "Table", "skip_note", "table1", "table2"]
