"""The paper's colours and plot defaults, shared by the demo, the figures and the report."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dendritic.files import atomic_path

if TYPE_CHECKING:  # matplotlib is an optional dependency (the ``analysis`` extra)
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

MODEL_COLOURS: dict[str, str] = {
    "dANN-R": "#8de5a1",
    "dANN-LRF": "#ff9f9b",
    "dANN-GRF": "#a1c9f4",
    "pdANN": "#d0bbff",
    "vANN": "#8d8d8d",
    # not fixed by the paper; chosen to stay distinguishable from the five above
    "sANN": "#c4ad66",
    "vANN-R": "#3d9e57",
    "vANN-LRF": "#d9534f",
    "vANN-GRF": "#3b7dc4",
    "sANN-LRF": "#b07aa1",
    "sANN-GRF": "#59a89c",
    "psANN": "#7a5195",
    # vANN with dropout: darker greys the higher the rate
    "vANN-0.2": "#5e5e5e",
    "vANN-0.5": "#3a3a3a",
    "vANN-0.8": "#1a1a1a",
}

#: Order in which models appear in legends, bars and tables (the paper's, then the controls).
MODEL_ORDER: tuple[str, ...] = (
    "dANN-R",
    "dANN-LRF",
    "dANN-GRF",
    "pdANN",
    "vANN",
    "vANN-R",
    "vANN-LRF",
    "vANN-GRF",
    "sANN",
    "sANN-LRF",
    "sANN-GRF",
    "psANN",
    "vANN-0.2",
    "vANN-0.5",
    "vANN-0.8",
)

#: The five models of the paper's main figures (Figs 2, 3, 5, 6, 7).
PAPER_MODELS: tuple[str, ...] = ("dANN-R", "dANN-LRF", "dANN-GRF", "pdANN", "vANN")

#: Pretty dataset names for titles.
DATASET_LABELS: dict[str, str] = {
    "mnist": "MNIST",
    "fmnist": "Fashion-MNIST",
    "kmnist": "KMNIST",
    "emnist": "EMNIST",
    "cifar10": "CIFAR-10",
}

#: Order of datasets in multi-dataset figures and tables (the paper's).
DATASET_ORDER: tuple[str, ...] = ("mnist", "fmnist", "kmnist", "emnist", "cifar10")

#: Label of a hidden layer name from ``DendriticNet.hidden_layers()``.
LAYER_LABELS: dict[str, str] = {"dendrites_1": "dendritic", "somata_1": "somatic", "output": "output"}

_RC: dict[str, Any] = {
    "font.size": 8,
    "axes.titlesize": 9,
    "axes.labelsize": 8,
    "legend.fontsize": 7,
    "xtick.labelsize": 7,
    "ytick.labelsize": 7,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "legend.frameon": False,
    "savefig.dpi": 150,
    "pdf.fonttype": 42,  # embed TrueType so text stays editable in the PDF
    "svg.fonttype": "none",
}


def colour(model: str) -> str:
    return MODEL_COLOURS.get(model, "#444444")


def model_sort_key(model: str) -> tuple[int, str]:
    """Paper order first, unknown labels after, alphabetically."""
    try:
        return (MODEL_ORDER.index(model), model)
    except ValueError:
        return (len(MODEL_ORDER), model)


def order_models(models: Iterable[str]) -> list[str]:
    return sorted(set(models), key=model_sort_key)


def order_datasets(datasets: Iterable[str]) -> list[str]:
    def key(name: str) -> tuple[int, str]:
        return (DATASET_ORDER.index(name), name) if name in DATASET_ORDER else (len(DATASET_ORDER), name)

    return sorted(set(datasets), key=key)


def dataset_label(name: str) -> str:
    return DATASET_LABELS.get(name, name)


def layer_label(name: str) -> str:
    """``dendrites_2`` → ``dendritic 2``; layer 1 drops its number."""
    if name in LAYER_LABELS:
        return LAYER_LABELS[name]
    kind, _, index = name.partition("_")
    base = {"dendrites": "dendritic", "somata": "somatic"}.get(kind, kind)
    return f"{base} {index}" if index else base


def use_headless_backend() -> None:
    """Figures are written to files; never try to open a window (CI and servers have no screen)."""
    import matplotlib

    matplotlib.use("Agg", force=True)


@contextlib.contextmanager
def paper_style() -> Iterator[None]:
    """Small fonts, no top/right spines, tight PDFs: applied only inside the block."""
    import matplotlib

    with matplotlib.rc_context(_RC):  # type: ignore[arg-type]
        yield


def new_figure(
    nrows: int, ncols: int, *, panel: tuple[float, float] = (2.6, 2.2), **kw: Any
) -> tuple[Figure, Any]:
    """A pyplot-free Figure with an nrows × ncols grid (no global state, nothing to close).

    Returns ``(fig, axes)`` with ``axes`` always a 2-D numpy array.
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=(panel[0] * ncols, panel[1] * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False, **kw)
    return fig, axes


def panel_axes(fig: Figure) -> list[Axes]:
    """The figure's panels: its axes without colorbars (what a reader counts as panels)."""
    return [ax for ax in fig.axes if ax.get_label() != "<colorbar>" and not hasattr(ax, "_colorbar")]


def label_panels(axes: Iterable[Axes]) -> None:
    """Bold a, b, c, … at the top left of each panel, as in the paper."""
    for i, ax in enumerate(axes):
        letter = chr(ord("a") + i) if i < 26 else f"a{i - 25}"
        ax.annotate(
            letter,
            (0, 1),
            xycoords="axes fraction",
            xytext=(-18, 6),
            textcoords="offset points",
            fontweight="bold",
            fontsize=10,
            va="bottom",
            ha="right",
        )


def save_figure(fig: Figure, stem: str | Path, formats: Iterable[str] = ("png", "pdf")) -> list[Path]:
    """Write ``stem.png`` and ``stem.pdf`` (creating the folder); returns the paths written."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    written = []
    with paper_style():
        for fmt in formats:
            path = stem.with_name(f"{stem.name}.{fmt}")
            with atomic_path(path) as tmp:
                fig.savefig(tmp, format=fmt)
            written.append(path)
    return written
