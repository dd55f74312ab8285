"""Where a layer's inputs sit: a grid of sites (pixels, time steps, voxels) times channels.

Receptive fields are drawn on the grid; every channel of a site shares that site's synapses
(an RGB dendrite samples the same 16 pixels in each of the 3 channels). The flat input order
follows the tensor the layer is given: torchvision's channels-first ``(C, H, W)`` by default,
or channels-last ``(H, W, C)`` (the paper's models, whose reference code stores images that way).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["InputGeometry"]


@dataclass(frozen=True)
class InputGeometry:
    """``grid`` (the spatial shape: ``(L,)``, ``(H, W)`` or ``(D, H, W)``) × ``channels``.

    ``shape`` is the per-sample tensor shape the layer accepts, e.g. ``(3, 32, 32)`` or, with
    ``channels_last``, ``(32, 32, 3)``; a plain feature vector is ``(n,)``: a 1-D grid of one
    channel, on which "local" means neighbouring features.
    """

    grid: tuple[int, ...]
    channels: int = 1
    channels_last: bool = False

    def __post_init__(self) -> None:
        if not 1 <= len(self.grid) <= 3 or min(self.grid) <= 0 or self.channels <= 0:
            raise ValueError(
                f"an input grid has 1 to 3 positive sizes and channels >= 1, got grid {self.grid}, "
                f"{self.channels} channels"
            )

    @classmethod
    def from_shape(cls, shape: int | Sequence[int], *, channels_last: bool = False) -> InputGeometry:
        """From a per-sample shape in torchvision's convention: ``n`` or ``(L,)`` (features),
        ``(C, L)`` (1-D signals), ``(C, H, W)`` (images), ``(C, D, H, W)`` (volumes); with
        ``channels_last`` the channel axis comes last instead (``(H, W, C)`` ...)."""
        dims = (int(shape),) if isinstance(shape, (int, np.integer)) else tuple(int(v) for v in shape)
        if not dims or len(dims) > 4 or min(dims) <= 0:
            raise ValueError(
                f"input_shape must be n, (L,), (C, L), (C, H, W) or (C, D, H, W) with positive sizes, got {shape!r}"
            )
        if len(dims) == 1:
            return cls(dims, 1, channels_last)
        if channels_last:
            return cls(dims[:-1], dims[-1], True)
        return cls(dims[1:], dims[0], False)

    @property
    def shape(self) -> tuple[int, ...]:
        """The per-sample tensor shape this geometry describes."""
        if len(self.grid) == 1 and self.channels == 1:
            return self.grid
        return (*self.grid, self.channels) if self.channels_last else (self.channels, *self.grid)

    @property
    def sites(self) -> int:
        return math.prod(self.grid)

    @property
    def n_inputs(self) -> int:
        return self.sites * self.channels

    def expand(self, sites: np.ndarray) -> np.ndarray:
        """A table of grid sites ``(n, k)`` → the flat inputs of all their channels ``(n, k·C)``."""
        sites = np.asarray(sites, dtype=np.int64)
        if self.channels == 1:
            return sites
        ch = np.arange(self.channels, dtype=np.int64)
        if self.channels_last:
            inputs = sites[..., None] * self.channels + ch
        else:
            inputs = ch * self.sites + sites[..., None]
        return inputs.reshape(sites.shape[0], -1)

    def __str__(self) -> str:
        grid = "×".join(map(str, self.grid))
        return f"{grid} grid × {self.channels} channel{'s' if self.channels > 1 else ''}"
