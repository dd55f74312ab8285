"""The paper's sampling algorithms (SPEC §3): receptive fields on a grid of sites, random sampling.

Receptive fields work on any grid of 1 to 3 dimensions (a signal, an image, a volume; see
:class:`~dendritic.wiring.geometry.InputGeometry`); on the paper's 2-D images the distances, and
so every draw, are exactly those of the 2-D algorithm.

Every function takes a ``numpy.random.Generator`` and draws all its randomness from it, so one
seeded generator reproduces a whole model's wiring bit for bit. The work is vectorised over
dendrites: building the (64, 512) dANN-LRF wiring (32,768 dendrites) takes milliseconds.
"""

from __future__ import annotations

import math

import numpy as np

from dendritic.wiring.connectivity import Connectivity
from dendritic.wiring.geometry import InputGeometry

__all__ = [
    "near_square_grid",
    "chebyshev_distances",
    "grid_distances",
    "patch_radius",
    "sample_patches",
    "random_inputs",
    "scattered_inputs",
    "local_rf_inputs",
    "global_rf_inputs",
    "structured_somata",
    "random_somata",
]


def near_square_grid(n: int) -> tuple[int, int]:
    """Lay ``n`` units on an (H, W) grid with H >= W as close to square as divisors allow.

    This is how a deeper layer sees the previous layer's somata: 32 → 8×4, 64 → 8×8,
    128 → 16×8, 256 → 16×16, 512 → 32×16.
    """
    if n <= 0:
        raise ValueError(f"grid size must be positive, got {n}")
    width = max(w for w in range(1, math.isqrt(n) + 1) if n % w == 0)
    return n // width, width


def chebyshev_distances(height: int, width: int) -> np.ndarray:
    """``(P, P)`` chessboard distances between all P = H·W pixels (row-major)."""
    rows, cols = np.divmod(np.arange(height * width), width)
    distances: np.ndarray = np.maximum(
        np.abs(rows[:, None] - rows[None, :]), np.abs(cols[:, None] - cols[None, :])
    )
    return distances.astype(np.int32)


def grid_distances(grid: tuple[int, ...]) -> np.ndarray:
    """``(P, P)`` chessboard distances between all P sites of a grid of any dimension (row-major);
    for ``(H, W)`` the same as :func:`chebyshev_distances`."""
    coords = np.unravel_index(np.arange(math.prod(grid)), grid)
    dist = np.zeros((len(coords[0]), len(coords[0])), dtype=np.int64)
    for axis in coords:
        np.maximum(dist, np.abs(axis[:, None] - axis[None, :]), out=dist)
    return dist.astype(np.int32)


def _padded_rows(mask: np.ndarray) -> np.ndarray:
    """Column indices of the True entries of each row, left-aligned and padded with -1."""
    width = max(int(mask.sum(axis=1).max()), 1)
    out = np.full((mask.shape[0], width), -1, dtype=np.int64)
    rows, cols = np.nonzero(mask)
    position = np.arange(len(rows)) - np.searchsorted(rows, rows)
    out[rows, position] = cols
    return out


def _patch_plan(grid: tuple[int, ...], n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per centre pixel: which pixels are always taken, which pool is sampled, and how many.

    Returns ``taken`` (P, T) and ``pool`` (P, Q) pixel indices padded with -1, ``draw`` (P,)
    and the patch ``radius`` (P,): a patch of ``n`` pixels around centre ``c`` is ``taken[c]`` plus ``draw[c]`` pixels
    drawn without replacement from ``pool[c]``. The 3×3 square is taken whole when it has fewer
    than ``n`` pixels; the shortfall comes from rings 2, 3, … pooled until the pool is large
    enough. A square with ``n`` or more pixels is itself the pool.
    """
    if n > math.prod(grid):
        raise ValueError(f"cannot sample {n} distinct sites from a {'×'.join(map(str, grid))} grid")
    dist = chebyshev_distances(*grid) if len(grid) == 2 else grid_distances(grid)
    square = dist <= 1
    in_square = square.sum(axis=1)
    big = in_square >= n
    draw = np.where(big, n, n - in_square)
    # Smallest radius R >= 2 with at least `draw` pixels in rings 2..R.
    max_r = max(int(dist.max()), 2)
    within = np.stack([(dist <= r).sum(axis=1) for r in range(max_r + 1)], axis=1)
    in_rings = within - in_square[:, None]
    in_rings[:, :2] = -1  # rings start at 2
    radius = np.argmax(in_rings >= draw[:, None], axis=1)
    pool = np.where(big[:, None], square, (dist >= 2) & (dist <= radius[:, None]))
    taken = square & ~big[:, None]
    return _padded_rows(taken), _padded_rows(pool), draw, np.where(big, 1, radius)


def patch_radius(grid: tuple[int, ...], n: int) -> np.ndarray:
    """Chebyshev radius of an ``n``-pixel patch around each pixel of ``grid`` (the RF bound).

    1 when the 3×3 square suffices (n <= 9 inside the image); for n = 16 on 28×28: 2 inside,
    3 at the corners.
    """
    return _patch_plan(tuple(grid), n)[3]


def sample_patches(
    rng: np.random.Generator, grid: tuple[int, ...], centres: np.ndarray, n: int
) -> np.ndarray:
    """``n`` distinct sites around each centre (the synapse-patch rule of SPEC §3).

    Returns an ``(len(centres), n)`` array of flat site indices (row-major, e.g. row·W + col),
    sorted per row.
    """
    centres = np.asarray(centres, dtype=np.int64)
    taken, pool, draw, _ = _patch_plan(tuple(grid), n)
    taken_c, pool_c, draw_c = taken[centres], pool[centres], draw[centres]
    # Draw `draw_c` pool pixels per row without replacement: order the pool by random keys.
    keys = rng.random(pool_c.shape)
    keys[pool_c < 0] = 2.0
    shuffled = np.take_along_axis(pool_c, np.argsort(keys, axis=1), axis=1)
    chosen = np.arange(shuffled.shape[1]) < draw_c[:, None]
    candidates = np.concatenate([taken_c, shuffled], axis=1)
    valid = np.concatenate([taken_c >= 0, chosen], axis=1)
    return np.sort(candidates[valid].reshape(len(centres), n), axis=1)


def as_geometry(shape: InputGeometry | tuple[int, ...]) -> InputGeometry:
    """An :class:`InputGeometry`, or the paper's channels-last image shape ``(H, W, C)``."""
    if isinstance(shape, InputGeometry):
        return shape
    if len(shape) != 3 or min(shape) <= 0:
        raise ValueError(f"receptive fields need an image shape (H, W, C) or an InputGeometry, got {shape}")
    return InputGeometry.from_shape(shape, channels_last=True)


def random_inputs(rng: np.random.Generator, n_in: int, n_outputs: int, k: int) -> Connectivity:
    """Every output gets exactly ``k`` distinct inputs, uniformly at random."""
    if not 0 < k <= n_in:
        raise ValueError(f"cannot sample {k} distinct inputs out of {n_in}")
    if k * 4 > n_in:  # dense regime: rank random keys
        table = np.argsort(rng.random((n_outputs, n_in)), axis=1)[:, :k]
        return Connectivity.from_table(table, n_in)
    table = np.sort(rng.integers(0, n_in, size=(n_outputs, k)), axis=1)
    while True:  # redraw the few rows with a repeated input
        bad: np.ndarray | list[int] = (
            np.nonzero(np.any(np.diff(table, axis=1) == 0, axis=1))[0] if k > 1 else []
        )
        if len(bad) == 0:
            return Connectivity.from_table(table, n_in)
        table[bad] = np.sort(rng.integers(0, n_in, size=(len(bad), k)), axis=1)


def scattered_inputs(rng: np.random.Generator, n_in: int, n_outputs: int, k: int) -> Connectivity:
    """The reference's random wiring: ``k·n_outputs`` connections uniform over the whole matrix.

    Fan-in varies from output to output (e.g. 7–27 for k = 16); kept to reproduce the reference.
    """
    total = k * n_outputs
    if total > n_in * n_outputs:
        raise ValueError(f"cannot place {total} connections in a {n_in}×{n_outputs} matrix")
    flat = rng.choice(n_in * n_outputs, size=total, replace=False)
    outputs, inputs = np.divmod(flat, n_in)
    return Connectivity.from_pairs(outputs, inputs, n_in, n_outputs)


def local_rf_inputs(
    rng: np.random.Generator, geometry: InputGeometry | tuple[int, int, int], n_dendrites: int, n_syn: int
) -> Connectivity:
    """LRF: every dendrite has its own uniformly drawn centre and a synapse patch around it."""
    geometry = as_geometry(geometry)
    if n_syn > geometry.sites:
        raise ValueError(f"cannot sample {n_syn} synapses from a {geometry}")
    centres = rng.integers(0, geometry.sites, size=n_dendrites)
    sites = sample_patches(rng, geometry.grid, centres, n_syn)
    conn = Connectivity.from_table(geometry.expand(sites), geometry.n_inputs)
    return conn.with_centres(centres)


def global_rf_inputs(
    rng: np.random.Generator,
    geometry: InputGeometry | tuple[int, int, int],
    n_somata: int,
    dendrites_per_soma: int,
    n_syn: int,
) -> Connectivity:
    """GRF: one centre per soma; its dendrites' centres form a compact patch around it.

    Soma ``j`` owns dendrite rows ``j·D … j·D + D − 1``; each dendrite then samples its own
    synapse patch, so the soma covers one compact region of the image.
    """
    geometry = as_geometry(geometry)
    if n_syn > geometry.sites:
        raise ValueError(f"cannot sample {n_syn} synapses from a {geometry}")
    if dendrites_per_soma > geometry.sites:
        raise ValueError(f"cannot place {dendrites_per_soma} distinct dendrite centres on a {geometry}")
    soma_centres = rng.integers(0, geometry.sites, size=n_somata)
    dendrite_centres = sample_patches(rng, geometry.grid, soma_centres, dendrites_per_soma)
    # Shuffle each soma's dendrite centres so dendrite order carries no spatial bias.
    dendrite_centres = rng.permuted(dendrite_centres, axis=1).reshape(-1)
    sites = sample_patches(rng, geometry.grid, dendrite_centres, n_syn)
    conn = Connectivity.from_table(geometry.expand(sites), geometry.n_inputs)
    return conn.with_centres(dendrite_centres)


def structured_somata(n_somata: int, dendrites_per_soma: int) -> Connectivity:
    """Each soma sums only its own ``D`` dendrites."""
    return Connectivity.blocks(n_somata, dendrites_per_soma)


def random_somata(rng: np.random.Generator, n_somata: int, dendrites_per_soma: int) -> Connectivity:
    """sANN: ``D·S`` dendrite→soma connections placed uniformly in the ``D·S × S`` matrix."""
    n_dendrites = n_somata * dendrites_per_soma
    flat = rng.choice(n_dendrites * n_somata, size=n_dendrites, replace=False)
    somata, dendrites = np.divmod(flat, n_dendrites)
    return Connectivity.from_pairs(somata, dendrites, n_dendrites, n_somata)
