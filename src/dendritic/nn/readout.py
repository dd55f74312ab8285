"""Read-outs of a layer of somata: the paper's dense one, and class-specific somata by construction.

Why: the paper credits *mixed selectivity* (somata that help many classes) for the dANNs' gains.
A class-specific read-out removes it by construction: the somata are split into one group per
class and each group reaches only its class's output unit, so a soma can only ever vote for one
class. Groups are interleaved (soma ``i`` belongs to class ``i mod K``), not contiguous: somata
are numbered in the order their receptive fields were placed, and a contiguous block could tie a
class to one region of the image.
"""

from __future__ import annotations

import numpy as np
import torch

from dendritic.layers.sparse import SparseLinear
from dendritic.nn.spec import check_choice, check_int
from dendritic.wiring.connectivity import Connectivity

__all__ = ["READOUTS", "check_soma_classes", "class_readout", "class_readout_wiring", "soma_classes"]

#: The read-outs a model may have: every soma to every class (the paper's), or one class per soma.
READOUTS: tuple[str, ...] = ("dense", "class-specific")


def soma_classes(somata: int, classes: int) -> np.ndarray:
    """The class each soma reads out to: ``i mod classes`` (int64, shape ``(somata,)``); a
    one-line error unless every class gets at least one soma."""
    somata, classes = check_soma_classes(somata, classes)
    return np.arange(somata, dtype=np.int64) % classes


def check_soma_classes(somata: int, classes: int) -> tuple[int, int]:
    """:func:`soma_classes`' checks without building its array (a config's check must not
    allocate what the network's memory check has not yet seen: 2e9 somata are 32 GB)."""
    somata = check_int("somata", somata)
    classes = check_int("classes", classes)
    if somata < classes:
        raise ValueError(
            f"a class-specific read-out needs at least one soma per class: {somata} somata for {classes} classes"
        )
    return somata, classes


def class_readout_wiring(somata: int, classes: int) -> Connectivity:
    """The wiring somata → class outputs of a class-specific read-out (each soma to one output)."""
    owner = soma_classes(somata, classes)
    return Connectivity.from_pairs(owner, np.arange(somata), somata, classes)


def class_readout(
    somata: int,
    classes: int,
    *,
    generator: torch.Generator | None = None,
    init: str = "glorot-dense",
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> SparseLinear:
    """A :class:`SparseLinear` ``somata → classes`` in which each soma reaches exactly one class's
    output (:func:`soma_classes`): one weight per soma and a bias per class. Use it after a
    :class:`~dendritic.nn.DendriticLayer` in place of ``nn.Linear(somata, classes)``."""
    return SparseLinear(
        somata,
        classes,
        class_readout_wiring(somata, classes),
        init=init,
        generator=generator,
        device=device,
        dtype=dtype,
    )


def check_readout(value: object) -> str:
    """``value`` if it names one of :data:`READOUTS`, else a one-line ValueError."""
    return check_choice("readout", value, READOUTS)
