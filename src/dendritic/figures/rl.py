"""The RL study's learning curves: evaluation return vs environment steps, the IQM over seeds
and its 95 % bootstrap band, one panel per (algorithm, task), one line per network."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from dendritic.figures.style import label_panels, new_figure, paper_style

__all__ = ["NETWORK_LABELS", "rl_learning_curves"]

NETWORK_LABELS = {
    "mlp": "SB3 default MLP",
    "dendritic": "dendritic",
    "dense": "dense MLP (matched)",
    "sparse": "random-sparse (matched)",
    "mlp-leaky": "SB3 default MLP, leaky ReLU",
    "dendritic-tanh": "dendritic, tanh",
}


def rl_learning_curves(groups: Sequence[Any]) -> Any:
    """``groups``: :class:`dendritic.rl.summary.RLGroup` (or alike: algo, task, network, steps,
    seeds, params, threshold, band())."""
    panels: dict[tuple[str, str], list[Any]] = {}
    for g in groups:
        panels.setdefault((g.algo, g.task), []).append(g)
    with paper_style():
        fig, axes = new_figure(1, max(1, len(panels)), panel=(3.8, 3.0))
        for ax, ((algo, task), members) in zip(axes[0], panels.items(), strict=False):
            _panel(ax, algo, task, members)
        if len(panels) > 1:
            label_panels(axes[0])
    return fig


def _color(network: str) -> str | None:
    """One colour per network in every panel (matplotlib's cycle, in the labels' order)."""
    names = list(NETWORK_LABELS)
    return f"C{names.index(network) % 10}" if network in names else None


def _panel(ax: Any, algo: str, task: str, members: Sequence[Any]) -> None:
    for g in members:
        centre, low, high = g.band()
        label = f"{NETWORK_LABELS.get(g.network, g.network)} ({g.params:,} p., n={len(g.seeds)})"
        (line,) = ax.plot(g.steps, centre, label=label, color=_color(g.network))
        ax.fill_between(g.steps, low, high, color=line.get_color(), alpha=0.2, linewidth=0)
    ax.axhline(members[0].threshold, color="0.5", linestyle=":", linewidth=1)
    ax.set_title(f"{algo.upper()} {task}")
    ax.set_xlabel("environment steps")
    ax.set_ylabel("evaluation return (IQM, 95 % band)")
    ax.legend(fontsize=6, loc="lower right")
