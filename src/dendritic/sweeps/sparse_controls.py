"""The points of ``dendritic sweep sparse-controls`` (issue 23): dANN-LRF against the sparse
networks a sparse-training researcher would name, at the dANN's trainable parameters.

At three sizes of dANN-LRF (D4×S128: 10,634 parameters, the public benchmark's ≈ 10.6 k;
D16×S256: 76,554; D64×S512: 595,466), each with:

* ``dANN-LRF`` itself, and with **linear dendrites** (``linear_dendrites``: no dendritic
  nonlinearity, the paper's missing control);
* ``sANN`` and ``sANN-LRF`` (random dendrite → soma cables), and the **Erdős–Rényi MLP**
  ``ER-MLP`` (every weight of both hidden layers placed uniformly at random, fan-in varies): the
  dANN's widths and nonzeros per layer, so exactly its trainable parameters;
* ``pdANN`` (**dense fan-in**: each dendrite sees every input) at the dANN's D with the number
  of somata that comes closest to the dANN's parameters (3, 6 and 12 somata: a dense fan-in at
  this budget leaves few somata);
* **lottery tickets**: the vANN with the dANN's widths, pruned by magnitude to the dANN's
  nonzeros per layer and rewound to its weights after epoch 1, or fine-tuned instead
  (``dendritic.training.lottery``). At the two smaller sizes: 5 rounds of iterative magnitude
  pruning, the parent and every round trained for the run's epochs. At D64×S512 the dense parent
  has 42.5 M weights (over two hours a run here): one-shot pruning from a parent trained for
  3 epochs only.

All on the paper's protocol (Fashion-MNIST, Keras Adam, lr 1e-3, batch 128, 25 epochs), 5 trials.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from dendritic.models.spec import BEYOND_PAPER, ModelSpec, matched_somata, options_label

__all__ = [
    "CONTROLS",
    "LOTTERY_ROUNDS",
    "ONE_SHOT_PARENT_EPOCHS",
    "SIZES",
    "control_label",
    "sparse_control_points",
]

#: (D, S) of the three dANN-LRF sizes.
SIZES: tuple[tuple[int, int], ...] = ((4, 128), (16, 256), (64, 512))
#: Rounds of iterative magnitude pruning at the two smaller sizes.
LOTTERY_ROUNDS = 5
#: The largest size's shortened parent (one-shot pruning).
ONE_SHOT_PARENT_EPOCHS = 3
#: The controls, in the order the tables and figures show them (the first is the reference).
CONTROLS: tuple[str, ...] = (
    "dANN-LRF",
    "dANN-LRF, linear dendrites",
    "sANN",
    "sANN-LRF",
    "ER-MLP",
    "pdANN (dense fan-in)",
    "lottery ticket (rewind)",
    "lottery ticket (fine-tune)",
)

_SHAPE, _CLASSES = (28, 28, 1), 10


def _point(spec: ModelSpec, **extra: Any) -> dict[str, Any]:
    fields = ("model", "dendrites", "somata", "synapses", "layers", *BEYOND_PAPER)
    return {**spec.paper_dict({f: getattr(spec, f) for f in fields}), **extra}


def sparse_control_points(sizes: tuple[tuple[int, int], ...] = SIZES) -> list[dict[str, Any]]:
    """Every point of the grid, size by size (the TrainConfig fields of each)."""
    points: list[dict[str, Any]] = []
    for index, (dendrites, somata) in enumerate(sizes):
        reference = ModelSpec("dANN-LRF", dendrites=dendrites, somata=somata, synapses=16)
        target = reference.trainable_parameters(_SHAPE, _CLASSES)
        pdann = replace(reference, model="pdANN")
        pdann = replace(pdann, somata=matched_somata(pdann, target, _SHAPE, _CLASSES))
        largest = index == len(sizes) - 1 and dendrites * somata >= 32768
        lottery: dict[str, Any] = (
            {"prune_rounds": 1, "rewind_epoch": 1, "parent_epochs": ONE_SHOT_PARENT_EPOCHS}
            if largest
            else {"prune_rounds": LOTTERY_ROUNDS, "rewind_epoch": 1}
        )
        vann = replace(reference, model="vANN")
        points += [
            _point(reference),
            _point(replace(reference, linear_dendrites=True)),
            _point(replace(reference, model="sANN")),
            _point(replace(reference, model="sANN-LRF")),
            _point(replace(reference, model="ER-MLP")),
            _point(pdann),
            _point(vann, lottery="rewind", **lottery),
            _point(vann, lottery="finetune", **lottery),
        ]
    return points


def control_label(config: Mapping[str, Any]) -> str:
    """Which control of :data:`CONTROLS` a run's config (a dict) is; a label outside them (e.g.
    ``vANN``, ``sANN B=2``) for a run that is none."""
    model = str(config.get("model"))
    options = options_label(config)
    lottery = config.get("lottery", "none") or "none"
    if options and options != "linear dendrites":
        return f"{model} {options}"
    if lottery == "rewind" and not options:
        return "lottery ticket (rewind)"
    if lottery == "finetune" and not options:
        return "lottery ticket (fine-tune)"
    if options:
        return f"{model}, linear dendrites"
    if model == "pdANN":
        return "pdANN (dense fan-in)"
    return model
