"""Receptive fields that scale to large inputs (issue 22, defect #7).

The first samplers tabulated the Chebyshev distances between all P sites of the grid (P × P
int32 plus int64 temporaries), so ``DendriticLayer((1, 100, 100), somata=4, dendrites=2,
synapses=4)`` took 12 s and 2.6 GB and ``(1, 200, 200)`` was killed at ~24 GB. The samplers now
work per centre, in closed form and on the box of the patch's radius, and must draw *exactly*
the wiring of before for every shape and seed:

- ``tests/data/wiring-digests.json`` holds SHA-256 digests of wiring drawn by the code of commit
  f59b9a9 (the last with the distance table): the rules "local", "global", "random" and
  "scattered" on the paper's shapes at D = 16, S = 256 and on small 1-D, 2-D and 3-D grids, and
  the paper's models (``build_model``) as the committed results drew them. It was written with
  ``PYTHONPATH=<that commit's src> python tests/test_wiring_scale.py --write``; rewrite it only
  from code known to draw the paper's wiring.
- :func:`_reference_patches` is the old algorithm itself, run on small grids of 1 to 3
  dimensions against the new one.

Wall time is never asserted; memory is, through ``tracemalloc`` (deterministic: it counts
numpy's allocations, not the machine's).
"""

from __future__ import annotations

import hashlib
import json
import math
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

import dendritic
from dendritic.nn import DendriticLayer
from dendritic.wiring import sampling
from dendritic.wiring.connectivity import Connectivity
from dendritic.wiring.geometry import InputGeometry
from dendritic.wiring.rules import make_receptive_fields

DIGESTS = Path(__file__).parent / "data" / "wiring-digests.json"

#: (input shape, channels_last, rule, somata, dendrites, synapses, seeds)
RULE_CASES: list[tuple[tuple[int, ...], bool, str, int, int, int, tuple[int, ...]]] = [
    # The paper's inputs at the paper's size, as its models see them (channels last) and as
    # torchvision gives them (channels first).
    *[
        (shape, last, rule, 256, 16, 16, (0, 1, 2))
        for shape, last in (
            ((28, 28, 1), True),
            ((32, 32, 3), True),
            ((1, 28, 28), False),
            ((3, 32, 32), False),
        )
        for rule in ("local", "global", "random")
    ],
    *[((28, 28, 1), True, "scattered", 256, 16, 16, (0,))],
    # Small sizes on grids of 1 to 3 dimensions, deeper layers' near-square grids, odd shapes.
    *[
        (shape, last, rule, s, d, k, (0, 1, 2))
        for shape, last in (
            ((1, 8, 4), False),
            ((16, 16, 1), True),
            ((32, 16, 1), True),
            ((157, 1, 1), True),
            ((5, 5, 2), True),
            ((784,), False),
            ((2, 50), False),
            ((2, 6, 7, 8), False),
            ((3, 3, 9, 4), False),
        )
        for rule in ("local", "global", "random")
        for s, d, k in ((4, 2, 4), (8, 9, 9), (3, 16, 16), (5, 1, 1), (2, 25, 25))
        if max(d, k) <= InputGeometry.from_shape(shape, channels_last=last).sites
        # "random" draws 75 of 324 inputs there by rejection, thousands of rounds per row: slow
        and (shape, rule, k) != ((3, 3, 9, 4), "random", 25)
    ],
]

#: (paper model, input shape, dendrites, somata, layers, seeds): the committed results' wiring.
MODEL_CASES: list[tuple[str, tuple[int, ...], int, int, int, tuple[int, ...]]] = [
    *[(name, (28, 28, 1), 16, 256, 1, (1, 2, 3, 4, 5)) for name in ("dANN-LRF", "dANN-GRF", "dANN-R")],
    *[(name, (32, 32, 3), 16, 256, 1, (1, 2)) for name in ("dANN-LRF", "dANN-GRF", "dANN-R")],
    *[(name, (28, 28, 1), 64, 512, 1, (1,)) for name in ("dANN-LRF", "dANN-GRF")],
    *[(name, (28, 28, 1), 16, 256, 2, (1,)) for name in ("dANN-LRF", "dANN-GRF", "sANN-LRF")],
    ("dANN-LRF", (28, 28, 1), 16, 157, 2, (1,)),
    ("dANN-GRF", (28, 28, 1), 4, 87, 3, (1,)),
]


def _update(digest: hashlib._Hash, conn: Connectivity) -> None:
    digest.update(str((conn.n_in, conn.n_out, conn.is_all_to_all)).encode())
    for array in (conn.indptr, conn.indices, conn.centres):
        if array is not None:
            digest.update(np.ascontiguousarray(array, dtype=np.int64).tobytes())


def rule_digest(shape: tuple[int, ...], last: bool, rule: str, s: int, d: int, k: int, seed: int) -> str:
    geometry = InputGeometry.from_shape(shape, channels_last=last)
    conn = make_receptive_fields(rule, np.random.default_rng(seed), geometry, s, d, k)
    digest = hashlib.sha256()
    _update(digest, conn)
    return digest.hexdigest()


def model_digest(name: str, shape: tuple[int, ...], d: int, s: int, layers: int, seed: int) -> str:
    model = dendritic.build_model(name, shape, 10, d, s, layers=layers, seed=seed)
    digest = hashlib.sha256()
    for pair in model.wiring:
        for conn in pair:
            _update(digest, conn)
    return digest.hexdigest()


def _rule_key(shape, last, rule, s, d, k, seed) -> str:
    return f"rule {'x'.join(map(str, shape))}{' last' if last else ''} {rule} S={s} D={d} k={k} seed={seed}"


def _model_key(name, shape, d, s, layers, seed) -> str:
    return f"model {name} {'x'.join(map(str, shape))} D={d} S={s} L={layers} seed={seed}"


def all_digests() -> dict[str, str]:
    out = {}
    for shape, last, rule, s, d, k, seeds in RULE_CASES:
        for seed in seeds:
            out[_rule_key(shape, last, rule, s, d, k, seed)] = rule_digest(shape, last, rule, s, d, k, seed)
    for name, shape, d, s, layers, seeds in MODEL_CASES:
        for seed in seeds:
            out[_model_key(name, shape, d, s, layers, seed)] = model_digest(name, shape, d, s, layers, seed)
    return out


# ------------------------------------------------------------------------ the same wiring as before


def test_wiring_digests_are_those_of_the_distance_table_code():
    """Every stored case (paper shapes and models, 1-D/2-D/3-D grids) draws the same wiring."""
    stored = json.loads(DIGESTS.read_text())["digests"]
    got = all_digests()
    assert set(got) == set(stored)
    changed = [key for key in stored if got[key] != stored[key]]
    assert not changed, f"{len(changed)} wiring(s) changed, e.g. {changed[:3]}"


def _reference_patches(
    rng: np.random.Generator, grid: tuple[int, ...], centres: np.ndarray, n: int
) -> np.ndarray:
    """The old sampler (commit f59b9a9), distance table and all: only for small grids."""
    coords = np.unravel_index(np.arange(math.prod(grid)), grid)
    dist = np.zeros((len(coords[0]), len(coords[0])), dtype=np.int64)
    for axis in coords:
        np.maximum(dist, np.abs(axis[:, None] - axis[None, :]), out=dist)

    def padded(mask: np.ndarray) -> np.ndarray:
        width = max(int(mask.sum(axis=1).max()), 1)
        out = np.full((mask.shape[0], width), -1, dtype=np.int64)
        rows, cols = np.nonzero(mask)
        out[rows, np.arange(len(rows)) - np.searchsorted(rows, rows)] = cols
        return out

    square = dist <= 1
    in_square = square.sum(axis=1)
    big = in_square >= n
    draw = np.where(big, n, n - in_square)
    within = np.stack([(dist <= r).sum(axis=1) for r in range(max(int(dist.max()), 2) + 1)], axis=1)
    in_rings = within - in_square[:, None]
    in_rings[:, :2] = -1
    radius = np.argmax(in_rings >= draw[:, None], axis=1)
    pool = padded(np.where(big[:, None], square, (dist >= 2) & (dist <= radius[:, None])))[centres]
    taken = padded(square & ~big[:, None])[centres]
    keys = rng.random(pool.shape)
    keys[pool < 0] = 2.0
    shuffled = np.take_along_axis(pool, np.argsort(keys, axis=1), axis=1)
    chosen = np.arange(shuffled.shape[1]) < draw[centres][:, None]
    candidates = np.concatenate([taken, shuffled], axis=1)
    valid = np.concatenate([taken >= 0, chosen], axis=1)
    return np.sort(candidates[valid].reshape(len(centres), n), axis=1)


@pytest.mark.parametrize(
    "grid",
    [
        (1,),
        (6,),
        (40,),
        (1, 1),
        (2, 2),
        (7, 1),
        (3, 5),
        (8, 4),
        (28, 28),
        (9, 30),
        (2, 2, 2),
        (3, 4, 5),
        (1, 9, 9),
        (6, 6, 6),
    ],
)
def test_patches_match_the_old_sampler_on_every_grid(grid):
    """Many sizes n (inside and beyond the 3×3 square), seeds and centre sets, every site."""
    sites = math.prod(grid)
    picker = np.random.default_rng(len(grid) * 1000 + sites)
    for n in (1, 2, 4, 8, 9, 10, 16, 25, 27, 30, 64, 100):
        if n > sites:
            continue
        assert np.array_equal(sampling.patch_radius(grid, n), _reference_radius(grid, n))
        for seed in range(3):
            centres = np.arange(sites) if seed == 0 else picker.integers(0, sites, size=2 * sites + 3)
            old, new = np.random.default_rng(seed), np.random.default_rng(seed)
            want = _reference_patches(old, grid, centres, n)
            got = sampling.sample_patches(new, grid, centres, n)
            assert np.array_equal(got, want), (grid, n, seed)
            assert old.random() == new.random()  # the generator is left where it was, too


def _reference_radius(grid: tuple[int, ...], n: int) -> np.ndarray:
    """Old patch radius: 1 for a big square, else the smallest R >= 2 with ``n`` sites within R."""
    coords = np.unravel_index(np.arange(math.prod(grid)), grid)
    dist = np.zeros((len(coords[0]), len(coords[0])), dtype=np.int64)
    for axis in coords:
        np.maximum(dist, np.abs(axis[:, None] - axis[None, :]), out=dist)
    radius = np.ones(dist.shape[0], dtype=np.int64)
    for site in range(dist.shape[0]):
        if (dist[site] <= 1).sum() < n:
            radius[site] = next(r for r in range(2, 10**6) if (dist[site] <= r).sum() >= n)
    return radius


def test_chunked_sampling_draws_the_same(monkeypatch):
    """Large layers are sampled a chunk of centres at a time; the draws do not depend on it."""
    centres = np.random.default_rng(0).integers(0, 784, size=3000)
    whole = sampling.sample_patches(np.random.default_rng(1), (28, 28), centres, 16)
    monkeypatch.setattr(sampling, "_CHUNK_PAIRS", 100)
    assert np.array_equal(sampling.sample_patches(np.random.default_rng(1), (28, 28), centres, 16), whole)


# ------------------------------------------------------------------------------ large grids


def _chebyshev(grid: tuple[int, ...], a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.max(np.abs(np.stack(np.unravel_index(a, grid)) - np.stack(np.unravel_index(b, grid))), axis=0)


@pytest.mark.parametrize("rule", ["local", "global"])
def test_a_300_by_300_image_builds_with_compact_patches(rule):
    """Defect #7's failing size and beyond: 90,000 sites (the distance table alone was 32 GB)."""
    layer = DendriticLayer((1, 300, 300), somata=64, dendrites=16, synapses=16, receptive_field=rule, seed=0)
    conn = layer.wiring[0]
    table = conn.table()
    assert table.shape == (64 * 16, 16)
    assert np.all(np.diff(table, axis=1) > 0)  # distinct synapses
    assert conn.centres.min() >= 0 and conn.centres.max() < 300 * 300
    reach = _chebyshev((300, 300), np.repeat(conn.centres, 16), table.reshape(-1)).reshape(-1, 16).max(axis=1)
    radius = sampling.patch_radius((300, 300), 16)[conn.centres]
    assert np.all(reach <= radius) and reach.max() <= 3 and set(np.unique(radius)) <= {2, 3}
    if rule == "global":  # a soma's 16 dendrite centres lie in one compact region (radius <= 3 of its centre)
        centres = conn.centres.reshape(64, 16)
        spread = [
            _chebyshev((300, 300), row[:, None].repeat(16, 1).ravel(), np.tile(row, 16)).max()
            for row in centres
        ]
        assert max(spread) <= 6


def test_large_1d_and_3d_grids_build():
    signal = DendriticLayer((1, 1_000_000), somata=32, dendrites=8, synapses=16, seed=1)
    table = signal.wiring[0].table()
    centres = signal.wiring[0].centres
    assert np.all(
        np.abs(table - centres[:, None]).max(axis=1) <= sampling.patch_radius((1_000_000,), 16)[centres]
    )
    volume = DendriticLayer(
        (2, 60, 60, 60), somata=32, dendrites=8, synapses=16, receptive_field="global", seed=1
    )
    table = volume.wiring[0].table()
    assert table.shape == (256, 32)  # 16 sites × 2 channels
    sites = table[:, :16]  # channels first: channel 0's inputs are the site indices
    conn = volume.wiring[0]
    # 16 <= 27: the 3×3×3 cube is the pool, so every synapse is a neighbour of its centre.
    assert _chebyshev((60, 60, 60), np.repeat(conn.centres, 16), sites.reshape(-1)).max() <= 1


@pytest.mark.parametrize(
    "shape, rule, somata, dendrites, synapses",
    [
        ((1, 300, 300), "local", 64, 16, 16),
        ((3, 224, 224), "global", 512, 16, 16),
        ((1, 28, 28), "local", 256, 16, 16),
        ((1, 100, 100), "local", 4, 2, 4),
        ((2, 40, 40, 40), "local", 64, 16, 30),
        ((1, 500_000), "global", 16, 16, 16),
        ((1, 200_000), "local", 2, 1, 50_000),  # patches wider than the working set
    ],
)
def test_memory_stays_within_the_estimate(shape, rule, somata, dendrites, synapses):
    """What numpy allocates while drawing is linear in the connections (and bounded by the
    guard's estimate), not quadratic in the sites: at (1, 300, 300) the old code allocated
    P² × 12 bytes ≈ 97 GB."""
    geometry = InputGeometry.from_shape(shape)
    connections = somata * dendrites * synapses * geometry.channels
    tracemalloc.start()
    try:
        make_receptive_fields(rule, np.random.default_rng(0), geometry, somata, dendrites, synapses)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak <= 32 * connections + 64 * 2**20  # 32 B per connection and a bounded working set
    estimate = dendritic.wiring.estimate_wiring_bytes(rule, geometry, somata, dendrites, synapses)
    assert estimate is not None and peak <= estimate <= 40 * connections + 128 * 2**20


# ------------------------------------------------------------------------------ the size guard


def test_a_wiring_that_cannot_fit_is_refused_in_one_line(monkeypatch):
    from dendritic.errors import DendriticError
    from dendritic.wiring import budget

    monkeypatch.setattr(budget, "available_memory", lambda: 8 * 10**9)
    with pytest.raises(budget.WiringTooLargeError) as caught:
        DendriticLayer((1, 100, 100), somata=1_000_000, dendrites=1000, synapses=16)
    error = caught.value
    assert isinstance(error, DendriticError) and isinstance(error, ValueError)
    message = str(error)
    assert "\n" not in message
    assert "needs about 520 GB to draw; this machine has 8 GB of memory available" in message
    assert "16,000,000,000 connections" in message
    # The same layer at a size that fits is built as usual.
    assert DendriticLayer((1, 100, 100), somata=4, dendrites=2, synapses=4, seed=0).wiring[0].n_out == 8


def test_the_guard_covers_the_models_and_every_built_in_rule(monkeypatch):
    from dendritic.wiring import budget

    monkeypatch.setattr(budget, "available_memory", lambda: 10**6)  # 1 MB
    geometry = InputGeometry.from_shape((3, 224, 224))
    for rule in ("local", "global", "random", "scattered"):
        with pytest.raises(
            budget.WiringTooLargeError, match=f"'{rule}' receptive-field wiring .* needs about"
        ):
            make_receptive_fields(rule, np.random.default_rng(0), geometry, 512, 16, 16)
    # Dense wiring stores no indices; a user's own rule is not estimated.
    assert make_receptive_fields("all", np.random.default_rng(0), geometry, 4, 2, 4).is_all_to_all
    own = make_receptive_fields(
        lambda rng, g, s, d, k: np.tile(np.arange(k), (s * d, 1)), np.random.default_rng(0), geometry, 4, 2, 4
    )
    assert own.n_out == 8
    monkeypatch.setattr(budget, "available_memory", lambda: None)  # unknown: no refusal
    assert make_receptive_fields("local", np.random.default_rng(0), geometry, 4, 2, 4).n_out == 8


if __name__ == "__main__" and sys.argv[1:] == ["--write"]:
    DIGESTS.parent.mkdir(exist_ok=True)
    document = {
        "about": "SHA-256 of wiring (indptr, indices, centres) per case; see tests/test_wiring_scale.py",
        "digests": all_digests(),
    }
    DIGESTS.write_text(json.dumps(document, indent=1, sort_keys=True) + "\n")
    print(f"wrote {len(document['digests'])} digests to {DIGESTS}")


def test_random_fields_with_many_synapses_on_few_inputs_do_not_hang():
    """``synapses=200`` on 1,000 inputs never finished (a row of 200 draws almost always repeats
    an input, and the rows were redrawn until none did); such rows are now drawn without
    replacement. The paper's sizes keep their draws (the digests above)."""
    import numpy as np

    from dendritic.wiring.sampling import random_inputs

    for k in (150, 200, 250):
        conn = random_inputs(np.random.default_rng(0), 1000, 64, k)
        table = conn.table()
        assert table.shape == (64, k) and all(len(set(row)) == k for row in table)
        assert table.min() >= 0 and table.max() < 1000
    counts = np.bincount(random_inputs(np.random.default_rng(1), 1000, 2000, 200).indices, minlength=1000)
    assert counts.min() > 0.6 * counts.mean() and counts.max() < 1.4 * counts.mean()  # uniform over inputs


# ---------------------------------------------------------------------------- backward tables
def test_the_backward_tables_stay_linear_in_the_wiring():
    """The grad-input kernel's start offsets were n_out/512 · n_in: 12.5 TB for 10 M somata over
    80 M dendrites (a ``DendriticClassifier(somata=10**7)`` died in torch's allocator)."""
    from dendritic.layers import kernels

    n_out, n_in = 10**7, 8 * 10**7  # the soma stage: one cable per dendrite
    assert kernels.transposed_bytes(n_out, n_in, nnz=n_in) <= 8 * (4 + 2 + 1) * n_in + 64
    # the paper's layers keep their tiles
    for n_out, n_in, nnz in ((32768, 784, 32768 * 16), (512, 32768, 32768), (2048, 3072, 2048 * 16)):
        assert kernels.grad_block(n_out, n_in, nnz) == kernels.GRAD_BLOCK


def test_a_larger_tile_gives_the_same_gradients(monkeypatch):
    torch = pytest.importorskip("torch")
    from dendritic.layers import kernels
    from dendritic.nn import SparseLinear

    if not kernels._load_cpp():
        pytest.skip("the C++ operators are not built")
    n_in, n_out, k = 3000, 2000, 2
    gen = torch.Generator().manual_seed(0)
    indices = torch.randint(0, n_in, (n_out * k,), generator=gen)
    offsets = torch.arange(0, n_out * k, k)
    grad_out = torch.randn(n_out, 7, generator=gen, dtype=torch.float64)
    weight = torch.randn(n_out * k, generator=gen, dtype=torch.float64)
    grads = {}
    for block in (kernels.GRAD_BLOCK, 1000, n_out):
        tables = kernels.transposed_wiring(indices, offsets, n_in, block)
        assert tables[0].numel() == -(-n_out // block) * n_in + 1
        grads[block] = torch.ops.dendritic.spmm_t_transposed(
            grad_out, weight, *tables, n_in, -(-n_out // block)
        )
    for g in grads.values():  # the same sums, grouped by other tiles
        torch.testing.assert_close(g, grads[kernels.GRAD_BLOCK], rtol=1e-12, atol=1e-12)
    # a layer whose tables would outgrow its wiring builds them with a larger tile, and trains
    monkeypatch.setattr(kernels, "_STARTS_FLOOR", 0)
    monkeypatch.setattr(kernels, "_STARTS_PER_CONNECTION", 1)
    assert kernels.grad_block(n_out, n_in, n_out * k) == n_out  # 4 tiles · 3,000 inputs > 4,000 connections
    table = (np.arange(n_out)[:, None] * 7 + np.arange(k)) % n_in
    layer = SparseLinear(n_in, n_out, Connectivity.from_table(table, n_in), dtype=torch.float64)
    assert layer.n_blocks == 1
    x = torch.randn(7, n_in, dtype=torch.float64, requires_grad=True)
    layer(x).sum().backward()
    reference = torch.zeros(n_out, n_in, dtype=torch.float64)
    rows = torch.arange(n_out).repeat_interleave(
        torch.diff(torch.cat([layer.offsets, torch.tensor([layer.indices.numel()])]))
    )
    reference[rows, layer.indices] = layer.weight.detach()
    torch.testing.assert_close(x.grad, torch.ones(7, n_out, dtype=torch.float64) @ reference)
