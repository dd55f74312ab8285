"""The paper's sampling algorithms (SPEC §3): receptive fields on a grid of sites, random sampling.

Receptive fields work on any grid of 1 to 3 dimensions (a signal, an image, a volume; see
:class:`~dendritic.wiring.geometry.InputGeometry`); on the paper's 2-D images the distances, and
so every draw, are exactly those of the 2-D algorithm.

Every function takes a ``numpy.random.Generator`` and draws all its randomness from it, so one
seeded generator reproduces a whole model's wiring bit for bit. The work is vectorised over
dendrites: building the (64, 512) dANN-LRF wiring (32,768 dendrites) takes milliseconds. Nothing
is tabulated over the whole grid, so memory and time grow with the connections drawn, not with
the number of sites: a 224 × 224 × 3 image is wired as fast as a 28 × 28 one.
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
    "pool_width",
    "box_size",
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
    """``(P, P)`` chessboard distances between all P = H·W pixels (row-major).

    O(P²) memory: a helper for tests and small grids; the samplers never build it.
    """
    rows, cols = np.divmod(np.arange(height * width), width)
    distances: np.ndarray = np.maximum(
        np.abs(rows[:, None] - rows[None, :]), np.abs(cols[:, None] - cols[None, :])
    )
    return distances.astype(np.int32)


def grid_distances(grid: tuple[int, ...]) -> np.ndarray:
    """``(P, P)`` chessboard distances between all P sites of a grid of any dimension (row-major);
    for ``(H, W)`` the same as :func:`chebyshev_distances`. O(P²) memory, like it."""
    coords = np.unravel_index(np.arange(math.prod(grid)), grid)
    dist = np.zeros((len(coords[0]), len(coords[0])), dtype=np.int64)
    for axis in coords:
        np.maximum(dist, np.abs(axis[:, None] - axis[None, :]), out=dist)
    return dist.astype(np.int32)


# --------------------------------------------------------------------- the synapse-patch rule
#
# A patch is defined by counts of sites within a Chebyshev radius of its centre, clipped to the
# grid. Such a count is a product over axes (the clipped window along each axis), so every
# quantity of the rule comes in closed form per centre, and a centre's candidate sites come from
# the box of its radius around it: memory and time grow with the sites drawn, not with the grid.
# The draws are those of the first implementation, which tabulated all P × P distances: the same
# random keys (one row of ``pool width`` keys per centre, the width being the largest pool
# anywhere on the grid), the same pool order (ascending site index), the same selection.

#: Work on at most about this many (centre, candidate site) pairs at a time.
_CHUNK_PAIRS = 1 << 18


def _within(coords: tuple[np.ndarray, ...], grid: tuple[int, ...], radius: int | np.ndarray) -> np.ndarray:
    """Number of grid sites at Chebyshev distance <= ``radius`` of each site ``coords``."""
    count = np.ones(np.shape(coords[0]), dtype=np.int64)
    for x, size in zip(coords, grid, strict=True):
        count *= np.minimum(x, radius) + np.minimum(size - 1 - x, radius) + 1
    return count


def _plan(
    coords: tuple[np.ndarray, ...], grid: tuple[int, ...], n: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per centre: sites in its 3×3 square, whether the square alone is the pool (``big``), how
    many pool sites are drawn, and the patch radius (1 for a big square; else the smallest
    R >= 2 whose rings 2..R hold the shortfall ``n − square``, i.e. ``within(R) >= n``)."""
    square = _within(coords, grid, 1)
    big = square >= n
    draw = np.where(big, n, n - square)
    lo = np.full(square.shape, 2, dtype=np.int64)
    hi = np.full(square.shape, max(max(grid) - 1, 2), dtype=np.int64)  # everything is within it
    while np.any(lo < hi):  # binary search: within() grows with the radius
        mid = (lo + hi) // 2
        enough = _within(coords, grid, mid) >= n
        hi = np.where(enough, mid, hi)
        lo = np.where(enough, lo, mid + 1)
    return square, big, draw, np.where(big, 1, lo)


def _pool_sizes(coords: tuple[np.ndarray, ...], grid: tuple[int, ...], n: int) -> np.ndarray:
    square, big, _, radius = _plan(coords, grid, n)
    return np.where(big, square, _within(coords, grid, radius) - square)


def _check_patch(grid: tuple[int, ...], n: int) -> None:
    if n > math.prod(grid):
        raise ValueError(f"cannot sample {n} distinct sites from a {'×'.join(map(str, grid))} grid")


def _max_radius(grid: tuple[int, ...], n: int) -> int:
    """The largest patch radius on the grid: a corner's (a corner has the fewest sites within
    any radius, so it needs the widest patch)."""
    corner = tuple(np.zeros(1, dtype=np.int64) for _ in grid)
    return int(_plan(corner, grid, n)[3][0])


def pool_width(grid: tuple[int, ...], n: int) -> int:
    """The largest pool of any site of ``grid`` for ``n``-site patches: the number of random keys
    drawn per centre. Computed on a few representative sites: along an axis, sites farther than
    the largest radius from both ends all see the same clipped windows."""
    grid = tuple(int(v) for v in grid)
    _check_patch(grid, n)
    reach = _max_radius(grid, n)
    axes = [
        np.unique(
            np.concatenate([np.arange(min(reach + 1, size)), np.arange(max(size - 1 - reach, 0), size)])
        )
        for size in grid
    ]
    coords = tuple(axis.reshape(-1) for axis in np.meshgrid(*axes, indexing="ij"))
    return max(int(_pool_sizes(coords, grid, n).max()), 1)


def patch_radius(grid: tuple[int, ...], n: int) -> np.ndarray:
    """Chebyshev radius of an ``n``-pixel patch around each pixel of ``grid`` (the RF bound).

    1 when the 3×3 square suffices (n <= 9 inside the image); for n = 16 on 28×28: 2 inside,
    3 at the corners.
    """
    grid = tuple(int(v) for v in grid)
    _check_patch(grid, n)
    coords = np.unravel_index(np.arange(math.prod(grid), dtype=np.int64), grid)
    return _plan(tuple(coords), grid, n)[3]


def box_size(grid: tuple[int, ...], n: int) -> int:
    """Candidate sites examined per centre at most: the box of the largest patch radius."""
    grid = tuple(int(v) for v in grid)
    _check_patch(grid, n)
    reach = _max_radius(grid, n)
    return math.prod(2 * min(reach, size - 1) + 1 for size in grid)


def _box(grid: tuple[int, ...], radius: int) -> tuple[np.ndarray, np.ndarray]:
    """Offsets of the box of ``radius`` (clipped per axis to the grid's extent), in row-major
    order, ``(K, dims)``, and their Chebyshev lengths ``(K,)``."""
    spans = [np.arange(-min(radius, size - 1), min(radius, size - 1) + 1) for size in grid]
    offsets = np.stack([axis.reshape(-1) for axis in np.meshgrid(*spans, indexing="ij")], axis=1)
    return offsets, np.abs(offsets).max(axis=1)


def _candidates(
    coords: np.ndarray, grid: tuple[int, ...], offsets: np.ndarray, keep: np.ndarray, width: int
) -> np.ndarray:
    """For centres ``coords`` ``(m, dims)``: the sites at ``offsets`` where ``keep`` holds and
    which lie inside the grid, as flat indices in ascending order, left-aligned in an
    ``(m, width)`` table padded with -1."""
    m = coords.shape[0]
    offsets = offsets[keep]
    flat = np.zeros((m, offsets.shape[0]), dtype=np.int64)
    inside = np.ones((m, offsets.shape[0]), dtype=bool)
    for axis, size in enumerate(grid):
        x = coords[:, axis, None] + offsets[None, :, axis]
        inside &= (x >= 0) & (x < size)
        flat *= size
        flat += x
    out = np.full((m, width), -1, dtype=np.int64)
    # Row-major offsets visit a centre's sites in ascending flat order; keep that order.
    position = np.cumsum(inside, axis=1) - 1
    rows = np.broadcast_to(np.arange(m)[:, None], inside.shape)
    out[rows[inside], position[inside]] = flat[inside]
    return out


def sample_patches(
    rng: np.random.Generator, grid: tuple[int, ...], centres: np.ndarray, n: int
) -> np.ndarray:
    """``n`` distinct sites around each centre (the synapse-patch rule of SPEC §3).

    Returns an ``(len(centres), n)`` array of flat site indices (row-major, e.g. row·W + col),
    sorted per row. Around centre ``c`` the 3×3 square is taken whole when it has fewer than
    ``n`` sites, and the shortfall is drawn without replacement from rings 2, 3, … pooled until
    the pool is large enough; a square of ``n`` or more sites is itself the pool. Memory and
    time are linear in ``len(centres) · n`` (times a small factor, the patch's box), whatever
    the grid's size.
    """
    grid = tuple(int(v) for v in grid)
    _check_patch(grid, n)
    centres = np.asarray(centres, dtype=np.int64).reshape(-1)
    if centres.size and (centres.min() < 0 or centres.max() >= math.prod(grid)):
        raise ValueError(f"patch centres must be sites of the {'×'.join(map(str, grid))} grid")
    width = pool_width(grid, n)
    out = np.empty((centres.size, n), dtype=np.int64)
    step = max(1, _CHUNK_PAIRS // max(box_size(grid, n), width))
    for start in range(0, centres.size, step):
        chunk = centres[start : start + step]
        out[start : start + chunk.size] = _sample_chunk(rng, grid, chunk, n, width)
    return out


def _sample_chunk(
    rng: np.random.Generator, grid: tuple[int, ...], centres: np.ndarray, n: int, width: int
) -> np.ndarray:
    """:func:`sample_patches` for one run of centres; draws ``(len(centres), width)`` keys."""
    coords = np.stack(np.unravel_index(centres, grid), axis=1).astype(np.int64)
    _, big, draw, radius = _plan(tuple(coords.T), grid, n)
    pool = np.full((centres.size, width), -1, dtype=np.int64)
    taken = np.full((centres.size, 3 ** len(grid)), -1, dtype=np.int64)
    for r in np.unique(radius):
        rows = np.nonzero(radius == r)[0]
        offsets, length = _box(grid, int(r))
        if r == 1:  # big squares: the square is the pool, nothing is taken outright
            pool[rows] = _candidates(coords[rows], grid, offsets, length <= 1, width)
        else:
            pool[rows] = _candidates(coords[rows], grid, offsets, length >= 2, width)
            taken[rows] = _candidates(coords[rows], grid, offsets, length <= 1, taken.shape[1])
    # Draw `draw` pool sites per row without replacement: order the pool by random keys.
    keys = rng.random(pool.shape)
    keys[pool < 0] = 2.0
    shuffled = np.take_along_axis(pool, np.argsort(keys, axis=1), axis=1)
    chosen = np.arange(width) < draw[:, None]
    candidates = np.concatenate([taken, shuffled], axis=1)
    valid = np.concatenate([taken >= 0, chosen], axis=1)
    return np.sort(candidates[valid].reshape(centres.size, n), axis=1)


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
    if k * k > 20 * n_in:
        # A row of k draws repeats an input with probability ~1 - exp(-k²/2n) (> 1 - 5e-5 here):
        # redrawing would take tens of thousands of rounds. Draw each row without replacement.
        rows = [rng.choice(n_in, size=k, replace=False) for _ in range(n_outputs)]
        return Connectivity.from_table(np.sort(np.stack(rows), axis=1), n_in)
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
