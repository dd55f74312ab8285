"""The paper's colours and plot defaults, shared by the demo, the figures and the report."""

from __future__ import annotations

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
}


def colour(model: str) -> str:
    return MODEL_COLOURS.get(model, "#444444")


def use_headless_backend() -> None:
    """Figures are written to files; never try to open a window (CI and servers have no screen)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
