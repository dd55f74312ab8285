"""What every command shares: argument types with ranges, one-line usage errors, path checks.

Every number a command takes has a range and every path is checked before any work starts, so
bad input ends in one line and a non-zero exit (docs/training.md).
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

from dendritic.errors import one_line
from dendritic.files import check_input_dir, nonempty_path, sqlite_files

__all__ = [
    "MAX_COUNT",
    "PROG",
    "ArgumentParser",
    "add_data_dir",
    "add_model_options",
    "check_data_dir",
    "epochs_int",
    "float_in",
    "in_flag_terms",
    "int_in",
    "layers_int",
    "lr_float",
    "model_options_of",
    "no_store_conflicts",
    "non_negative_int",
    "open_store",
    "add_optimizer",
    "add_selectivity_options",
    "positive_int",
    "run_id_int",
    "seed_int",
    "sigma_float",
    "store_files",
    "store_path",
    "threads_int",
    "workers_int",
    "writing_store",
]

PROG = "dendritic"

#: Upper bound of plain counts (epochs, sizes, images...): far above any real use, and every
#: number the CLI takes has a range, so no value can overflow SQLite or numpy further down.
MAX_COUNT = 2**31 - 1


# ---------------------------------------------------------------------------- argument types
# Shared by the sub-command modules (sweeps, figures, continual): one wording for every bad number.
def int_in(low: int, high: int, *, kind: str | None = None):
    """An argparse type for integers in [low, high]."""
    kind = kind or {0: "a non-negative integer", 1: "a positive integer"}.get(low, "an integer")

    def parse(text: str) -> int:
        try:
            value = int(text.strip())
        except ValueError:
            value = None
        if value is None or not low <= value <= high:
            raise argparse.ArgumentTypeError(f"expected {kind} in [{low}, {high}], got {text!r}")
        return value

    parse.__name__ = "integer"  # argparse names the type in some messages
    parse.bounds = (low, high)  # type: ignore[attr-defined]  # read by the fuzz tests
    return parse


positive_int = int_in(1, MAX_COUNT)
non_negative_int = int_in(0, MAX_COUNT)


#: Trial seeds (numpy's and torch's generators take 32-bit seeds; models.network.MAX_SEED).
seed_int = int_in(0, 2**32 - 1, kind="a seed")
#: Run ids are SQLite integers.
run_id_int = int_in(1, 2**63 - 1, kind="a run id")
#: Torch CPU threads (OpenMP crashes the process when asked for tens of thousands;
#: training.loop.MAX_THREADS).
threads_int = int_in(1, 1024)
#: Epochs of one run (training.config.MAX_EPOCHS).
epochs_int = int_in(1, 100_000)
#: Local worker processes, each a Python process with torch loaded (~300 MB)
#: (sweeps.backends.MAX_WORKERS).
workers_int = int_in(1, 256)
#: Dendro-somatic layers of one network (models.network.MAX_LAYERS).
layers_int = int_in(1, 1000)


def float_in(low: float, high: float | None, *, low_open: bool = False, high_open: bool = False):
    """An argparse type for finite numbers in a range (``high`` None: no upper bound)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        ok = math.isfinite(value) and (value > low if low_open else value >= low)
        if high is not None:
            ok = ok and (value < high if high_open else value <= high)
        if not ok:
            left = "(" if low_open else "["
            right = "inf)" if high is None else f"{high:g}" + (")" if high_open else "]")
            raise argparse.ArgumentTypeError(
                f"expected a finite number in {left}{low:g}, {right}, got {text!r}"
            )
        return value

    parse.__name__ = "number"
    parse.bounds = (low, high, low_open, high_open)  # type: ignore[attr-defined]
    return parse


#: A learning rate or a noise level beyond these is a typo, not an experiment (pixels are in [0, 1]).
lr_float = float_in(0, 1000, low_open=True)
sigma_float = float_in(0, 100)


class ArgumentParser(argparse.ArgumentParser):
    """argparse whose usage errors are one line too: what is wrong, and where help is."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {one_line(message)} (see {self.prog} --help)\n")

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> Any:
        namespace, extras = super().parse_known_args(args, namespace)
        if not hasattr(namespace, FLAGS_ATTR):  # the (sub)command's own parser finishes first
            flags = {a.dest: a.option_strings[-1] for a in self._actions if a.option_strings}
            setattr(namespace, FLAGS_ATTR, flags)
        return namespace, extras


#: Where a parsed command keeps its options' flags by field name, for :func:`in_flag_terms`.
FLAGS_ATTR = "_dendritic_flags"


def in_flag_terms(message: str, args: argparse.Namespace | None) -> str:
    """A library error as the command line says it: ``rewind_epoch=50`` becomes
    ``--rewind-epoch 50`` and a bare ``prune_rounds`` becomes ``--prune-rounds`` (only names with
    an underscore are rewritten bare, and none whose flag the message already names)."""
    flags: dict[str, str] = getattr(args, FLAGS_ATTR, None) or {}

    def assignment(m: re.Match[str]) -> str:
        value = m.group(3) if m.group(3) is not None else m.group(4)
        return f"{flags[m.group(1)]} {value}"

    names = [n for n in sorted(flags, key=len, reverse=True) if flags[n] not in message]
    if not names:
        return message
    alternatives = "|".join(map(re.escape, names))
    message = re.sub(rf"\b({alternatives})=('([^']*)'|([^\s,;:()']+))", assignment, message)
    bare = "|".join(re.escape(n) for n in names if "_" in n)
    if bare:
        message = re.sub(rf"(?<![\w-])({bare})\b(?!=)", lambda m: flags[m.group(1)], message)
    return message


# ---------------------------------------------------------------------------- paths
def store_path(args: argparse.Namespace, *, default: str = "runs.db") -> Path:
    """``--store``: not empty (an empty path would silently mean ./runs.db)."""
    return nonempty_path(default if args.store is None else args.store, "--store")


def open_store(path: str | os.PathLike[str] | None, *, readonly: bool = False):
    """The results store; read commands open it read-only (read-only media included)."""
    from dendritic.store import RunStore

    return RunStore(nonempty_path(path, "--store"), readonly=readonly)


@contextlib.contextmanager
def writing_store(path: str | os.PathLike[str] | None) -> Iterator[Any]:
    """The store a command records runs in (None for ``--no-store``), closed at the end.

    A command that fails before recording anything leaves no new, empty store behind: a store
    file this command created is removed again if it holds no run when the error arrives.
    """
    if path is None:
        yield None
        return
    new = not Path(path).expanduser().exists()
    store = open_store(path)
    try:
        yield store
    except BaseException:
        try:
            empty = new and len(store) == 0
        except Exception:  # a store that cannot be read now is kept: never lose what it may hold
            empty = False
        store.close()
        if empty:
            for f in sqlite_files(Path(path).expanduser()):
                f.unlink(missing_ok=True)
        raise
    else:
        store.close()


def store_files(path: str | os.PathLike[str] | None) -> list[Path]:
    """The store and SQLite's companion files: no output of a command may replace them."""
    return [] if path is None or not str(path).strip() else sqlite_files(Path(path).expanduser())


def check_data_dir(args: argparse.Namespace) -> None:
    """``--data-dir`` must be an existing folder (never silently replaced by another copy)."""
    if getattr(args, "data_dir", None) is not None:
        check_input_dir(args.data_dir, option="--data-dir")


def no_store_conflicts(args: argparse.Namespace) -> None:
    if args.no_store:
        given = (("--store", args.store is not None), ("--replace", getattr(args, "replace", False)))
        clash = [flag for flag, used in given if used]
        if clash:
            raise ValueError(f"--no-store does not record the run, so {' and '.join(clash)} cannot apply")


def add_data_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir",
        default=None,
        help="folder holding the dataset files, used as given (else $DENDRITIC_DATA, the user cache, "
        "Debian's folder)",
    )


def add_optimizer(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--optimizer",
        choices=("adam-keras", "adam-torch"),
        default="adam-keras",
        help="Adam's form: adam-keras (the paper's code: eps on the uncorrected sqrt(v); default) or "
        "adam-torch (torch's)",
    )


# ---------------------------------------------------------------------------- the model's options
#: The selectivity regulariser's strength (training.selectivity.MAX_ALPHA).
alpha_float = float_in(-1e6, 1e6)


def add_selectivity_options(parser: argparse.ArgumentParser) -> None:
    """``--selectivity-alpha`` and ``--selectivity-layers``: the class-selectivity regulariser."""
    from dendritic.training.selectivity import SELECTIVITY_LAYERS

    group = parser.add_argument_group("class-selectivity regulariser (beyond the paper)")
    group.add_argument(
        "--selectivity-alpha",
        type=alpha_float,
        default=0.0,
        metavar="ALPHA",
        help="loss = cross-entropy - ALPHA x mean selectivity index of the chosen layers' nodes: "
        "ALPHA < 0 lowers selectivity (mixed selectivity), ALPHA > 0 raises it (class-specific); "
        "default 0 (off)",
    )
    group.add_argument(
        "--selectivity-layers",
        choices=SELECTIVITY_LAYERS,
        default=None,
        help="whose selectivity the regulariser sets (default somata when --selectivity-alpha is given; "
        "naming layers with alpha 0 runs the regulariser's code path with no pull)",
    )


def add_model_options(parser: argparse.ArgumentParser) -> None:
    """One option per field of :class:`dendritic.models.ModelSpec` (``--dendrites``,
    ``--cable-weights`` ...), with the help, range or choices its metadata gives; the options
    beyond the paper in their own group. A new field of the spec appears here by itself."""
    from dendritic.models.spec import model_options

    beyond = None
    for name, default, info in model_options():
        target: Any = parser
        if info.beyond_paper:
            beyond = beyond or parser.add_argument_group("beyond the paper (defaults: the paper's model)")
            target = beyond
        flag = "--" + name.replace("_", "-")
        if isinstance(default, bool):
            target.add_argument(flag, action="store_true", help=info.help)
        elif info.choices:
            target.add_argument(flag, choices=info.choices, default=default, help=info.help)
        elif isinstance(default, int):
            assert info.low is not None and info.high is not None
            target.add_argument(
                flag, type=int_in(int(info.low), int(info.high)), default=default, help=info.help
            )
        elif isinstance(default, float):
            assert info.low is not None and info.high is not None
            kind = float_in(info.low, info.high, high_open=info.high_open)
            target.add_argument(flag, type=kind, default=default, help=info.help)
        else:
            target.add_argument(flag, default=default, help=info.help)


def model_options_of(args: argparse.Namespace) -> dict[str, Any]:
    """The ``ModelSpec`` fields :func:`add_model_options` parsed."""
    from dendritic.models.spec import model_options

    return {name: getattr(args, name) for name, _, _ in model_options()}
