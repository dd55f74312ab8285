"""`dendritic` command line: a thin shell over the library (every command is also a Python call).

One module per command family (``train``, ``runs``, ``sweep``, ``figures`` for analyze/figures/
report, ``continual``), their shared argument types in :mod:`dendritic.cli.args`. Only this
package prints; the library logs (``logging``), and :func:`main` shows its INFO lines on stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
from collections.abc import Sequence

from dendritic.cli.args import PROG, ArgumentParser, in_flag_terms
from dendritic.errors import DendriticError, Terminated, one_line, sigterm_interrupts

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    from dendritic._version import __version__
    from dendritic.cli.continual import add_continual_parser
    from dendritic.cli.figures import add_figure_parsers
    from dendritic.cli.rl import add_rl_parser
    from dendritic.cli.runs import add_runs_parser
    from dendritic.cli.sweep import add_sweep_parser
    from dendritic.cli.tabular import add_tabular_parser
    from dendritic.cli.train import add_demo_parser, add_train_parser

    parser = ArgumentParser(
        prog=PROG,
        description="Dendritic ANNs (Chavlis & Poirazi 2025): train, sweep and analyse the paper's models.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for add in (add_train_parser, add_runs_parser, add_demo_parser, add_sweep_parser, add_figure_parsers,
                add_continual_parser, add_rl_parser, add_tabular_parser):  # fmt: skip
        add(sub)
    return parser


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    if isinstance(exc, KeyError) and text.startswith("'") and text.endswith("'"):
        text = text[1:-1]
    return one_line(text)


def _show_logs(quiet: bool) -> logging.Handler:
    """The library's INFO lines (epochs, sweep runs, figures written) on stderr, plain text."""
    from dendritic.cli.progress import TqdmHandler

    handler = TqdmHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    handler.setLevel(logging.WARNING if quiet else logging.INFO)
    logger = logging.getLogger("dendritic")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    return handler


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = _show_logs(bool(getattr(args, "quiet", False)))
    try:
        with sigterm_interrupts():
            return int(args.func(args) or 0)
    except Terminated:
        print(f"{PROG}: terminated (SIGTERM)", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `dendritic runs show 1 | head`: the reader has all it wanted
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except (DendriticError, ValueError, OSError, LookupError, FloatingPointError) as exc:
        print(f"{PROG}: error: {in_flag_terms(_one_line(exc), args)}", file=sys.stderr)
        return 1
    except MemoryError:
        print(
            f"{PROG}: error: out of memory (try a smaller model, --limit or fewer --workers)", file=sys.stderr
        )
        return 1
    finally:
        logging.getLogger("dendritic").removeHandler(handler)
