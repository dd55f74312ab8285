"""The ``selectivity`` sweep's points: is mixed selectivity a cause of the dANNs' gains?

Why: the paper explains the dANNs' accuracy and robustness by mixed selectivity, measured on
trained networks only. This grid intervenes on it: a class-selectivity regulariser in a
dose-response over its strength α (``TrainConfig.selectivity_alpha``; α < 0 lowers selectivity,
α > 0 raises it), and class-specific somata by construction (``ModelSpec.readout``), for
dANN-LRF and a vANN of matched trainable parameters at two sizes. Noise robustness and the
class-sequential protocol are run only at the ends of the α range, at α = 0 and for the
class-specific read-out, to keep the grid to a few hours.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from dendritic.models.spec import BEYOND_PAPER, ModelSpec, matched_somata

__all__ = [
    "ALPHAS",
    "NOISE",
    "SELECTIVITY_SIZES",
    "SWEEP_LAYERS",
    "selectivity_points",
]

#: The dose-response: α of the regulariser, chosen by the pilot in docs/sweeps.md: |α| = 0.1
#: already moves the dANN's dendritic entropy by ~0.5-1.9 bits (saturating by 0.3), the vANN
#: needs |α| = 1 to move by ~0.6-0.9 bits; at |α| >= 3 the dANN stopped learning in the pilot.
ALPHAS: tuple[float, ...] = (-1.0, -0.3, -0.1, 0.0, 0.1, 0.3, 1.0)
#: The dANN-LRF sizes (D, S): the paper's reference and its best.
SELECTIVITY_SIZES: tuple[tuple[int, int], ...] = ((16, 256), (64, 512))
#: Whose selectivity the regulariser sets: both hidden stages (Fig. 5 measures both).
SWEEP_LAYERS = "dendrites+somata"
#: Noise levels of the robustness points (the ``noise`` experiment's protocol).
NOISE: tuple[float, ...] = (0.5, 1.0)

_FMNIST_SHAPE, _FMNIST_CLASSES = (28, 28, 1), 10


def _models(dendrites: int, somata: int) -> list[ModelSpec]:
    """dANN-LRF at (D, S) and a vANN (D = 1: an MLP of two hidden layers of S units) whose width
    gives it the dANN's trainable parameters, as the depth sweep matches them."""
    danns = ModelSpec("dANN-LRF", dendrites=dendrites, somata=somata, synapses=16)
    target = danns.trainable_parameters(_FMNIST_SHAPE, _FMNIST_CLASSES)
    vann = ModelSpec("vANN", dendrites=1, somata=1, synapses=16)
    vann = replace(vann, somata=matched_somata(vann, target, _FMNIST_SHAPE, _FMNIST_CLASSES))
    return [danns, vann]


def _model_point(spec: ModelSpec) -> dict[str, Any]:
    fields = ("model", "dendrites", "somata", "synapses", "layers", *BEYOND_PAPER)
    return spec.paper_dict({f: getattr(spec, f) for f in fields})


def selectivity_points(
    alphas: tuple[float, ...] = ALPHAS, layers: str = SWEEP_LAYERS
) -> list[dict[str, Any]]:
    """Every point (TrainConfig fields) of the sweep: per model, every α on the plain protocol
    and the class-specific read-out; then σ in :data:`NOISE` and the class-sequential protocol
    for the two ends of ``alphas``, α = 0 and the class-specific read-out. α = 0 names the layers
    (the regulariser's code path with no pull), so its runs measure what they reached too."""
    ends = sorted({min(alphas), 0.0, max(alphas)})
    points: list[dict[str, Any]] = []
    protocols: list[dict[str, Any]] = [{"sigma": 0.0}]
    protocols += [{"sigma": sigma} for sigma in NOISE]
    protocols.append({"sigma": 0.0, "sequential": True})
    for protocol in protocols:
        plain = protocol == {"sigma": 0.0}
        for dendrites, somata in SELECTIVITY_SIZES:
            for spec in _models(dendrites, somata):
                base = {**_model_point(spec), **protocol}
                for alpha in alphas if plain else ends:
                    points.append({**base, "selectivity_alpha": float(alpha), "selectivity_layers": layers})
                points.append({**_model_point(replace(spec, readout="class-specific")), **protocol})
    return points
