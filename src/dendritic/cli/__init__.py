"""`dendritic` command line (see :mod:`dendritic.cli.main`)."""

from dendritic.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
