"""Wiring (SPEC §3) and the reference defects it must not repeat (SPEC §10.2–10.4)."""

import numpy as np
import pytest

from dendritic.wiring import Connectivity, near_square_grid
from dendritic.wiring.sampling import (
    chebyshev_distances,
    global_rf_inputs,
    local_rf_inputs,
    patch_radius,
    random_inputs,
    random_somata,
    sample_patches,
    scattered_inputs,
    structured_somata,
)

DIST = chebyshev_distances(28, 28)


def rng(seed=0):
    return np.random.default_rng(seed)


def _assert_exact_fan_in(conn: Connectivity, k: int) -> None:
    table = conn.table()
    assert table.shape == (conn.n_out, k)
    assert np.all(np.diff(table, axis=1) > 0), "inputs of a dendrite must be distinct"


@pytest.mark.parametrize("dendrites", [1, 2, 3, 4, 7, 8, 9, 10, 16, 17, 32, 33, 63, 64])
def test_every_dendrite_gets_exactly_n_syn_distinct_inputs(dendrites):
    somata = 8
    for conn in (
        local_rf_inputs(rng(), (28, 28, 1), dendrites * somata, 16),
        global_rf_inputs(rng(), (28, 28, 1), somata, dendrites, 16),
        random_inputs(rng(), 784, dendrites * somata, 16),
    ):
        _assert_exact_fan_in(conn, 16)


def test_no_dendrite_is_ever_empty_for_any_d_up_to_64():
    for dendrites in range(1, 65):
        conn = global_rf_inputs(rng(dendrites), (28, 28, 1), 4, dendrites, 16)
        assert conn.fan_in.min() == 16


@pytest.mark.parametrize("n_syn", [1, 4, 9, 16, 25])
def test_rf_synapses_lie_within_the_patch_radius_of_their_centre(n_syn):
    conn = local_rf_inputs(rng(3), (28, 28, 1), 4000, n_syn)
    radius = patch_radius((28, 28), n_syn)
    table = conn.table()
    reach = DIST[conn.centres[:, None], table].max(axis=1)
    assert np.all(reach <= radius[conn.centres])
    if n_syn == 16:  # the 3×3 square plus ring 2; ring 3 only at the corners
        assert reach.max() <= 3
        interior = radius[conn.centres] == 2
        assert np.all(reach[interior] <= 2)


def test_patch_takes_the_whole_square_then_samples_rings():
    centre = 14 * 28 + 14
    patch = sample_patches(rng(), (28, 28), np.array([centre]), 16)[0]
    d = DIST[centre, patch]
    assert (d <= 1).sum() == 9 and (d == 2).sum() == 7
    corner = sample_patches(rng(), (28, 28), np.array([0]), 16)[0]
    d = DIST[0, corner]  # 4 in the square, all 5 of ring 2, 7 of the 7 in ring 3
    assert sorted(np.bincount(d, minlength=4)) == sorted([1, 3, 5, 7])


def test_rf_centres_cover_the_image_uniformly():
    """SPEC §10.3: one version put every centre on the diagonal."""
    n = 32768
    conn = local_rf_inputs(rng(1), (28, 28, 1), n, 16)
    rows, cols = np.divmod(conn.centres, 28)
    on_diagonal = np.mean(rows == cols)
    expected = 1 / 28
    sd = np.sqrt(expected * (1 - expected) / n)
    assert abs(on_diagonal - expected) < 5 * sd
    # every row and column is used, roughly equally
    assert np.bincount(rows, minlength=28).min() > 0.8 * n / 28
    assert np.bincount(cols, minlength=28).min() > 0.8 * n / 28


def test_seeds_reproduce_and_differ():
    """SPEC §10.4: trials must get different wiring; the same seed reproduces it bit for bit."""
    for build in (
        lambda g: local_rf_inputs(g, (28, 28, 1), 512, 16),
        lambda g: global_rf_inputs(g, (28, 28, 1), 32, 16, 16),
        lambda g: random_inputs(g, 784, 512, 16),
        lambda g: random_somata(g, 32, 16),
    ):
        a, b, c = build(rng(1)), build(rng(1)), build(rng(2))
        assert a == b and np.array_equal(a.indices, b.indices)
        assert a != c


@pytest.mark.parametrize("dendrites", [1, 4, 9, 16, 64])
def test_grf_dendrite_centres_are_distinct_and_compact(dendrites):
    somata = 300
    conn = global_rf_inputs(rng(5), (28, 28, 1), somata, dendrites, 16)
    centres = conn.centres.reshape(somata, dendrites)
    assert all(len(set(row)) == dendrites for row in centres)
    # Smallest Chebyshev ball holding each soma's dendrite centres.
    enclosing = np.array([DIST[:, row].max(axis=1).min() for row in centres])
    if dendrites == 64:
        # Away from the border the 64 centres fill the radius-4 square around the soma centre;
        # at the border the ring rule stretches them along the edge, by at most one more pixel.
        assert np.mean(enclosing <= 4) > 0.5
        assert enclosing.max() <= 5
    else:
        assert enclosing.max() <= patch_radius((28, 28), dendrites).max()


def test_grf_interior_somata_stay_within_radius_4_for_64_dendrites():
    # centres whose radius-4 square lies inside the image
    inside = np.array([r * 28 + c for r in range(4, 24) for c in range(4, 24)])
    patches = sample_patches(rng(2), (28, 28), inside, 64)
    assert DIST[inside[:, None], patches].max() <= 4


def test_rgb_receptive_fields_repeat_the_pixel_pattern_on_every_channel():
    for conn in (
        local_rf_inputs(rng(), (32, 32, 3), 200, 16),
        global_rf_inputs(rng(), (32, 32, 3), 20, 10, 16),
    ):
        table = conn.table()
        assert table.shape == (200, 48)
        pixels, channels = np.divmod(table, 3)
        for row_pixels, row_channels in zip(pixels, channels, strict=True):
            for ch in range(3):
                assert np.array_equal(np.sort(row_pixels[row_channels == ch]), np.unique(row_pixels))
            assert len(np.unique(row_pixels)) == 16


def test_structured_and_random_sparse_somata():
    blocks = structured_somata(32, 4)
    assert blocks.is_blocks and blocks.n_connections == 128
    assert np.array_equal(blocks.table()[1], [4, 5, 6, 7])
    sparse = random_somata(rng(), 32, 4)
    assert sparse.n_connections == 4 * 32 and not sparse.is_blocks
    mask = sparse.to_mask()
    assert mask.shape == (128, 32) and mask.sum() == 128


def test_reference_scatter_mode_has_variable_fan_in():
    conn = scattered_inputs(rng(), 784, 4096, 16)
    assert conn.n_connections == 16 * 4096
    assert conn.fan_in.min() < 16 < conn.fan_in.max()


def test_masks_round_trip_and_validation():
    conn = random_inputs(rng(), 50, 20, 5)
    mask = conn.to_mask()
    assert mask.shape == (50, 20) and np.all(mask.sum(axis=0) == 5)
    assert Connectivity.from_mask(mask) == conn
    assert Connectivity.from_mask(np.ones((3, 4))).is_all_to_all
    with pytest.raises(ValueError, match="only 0 and 1"):
        Connectivity.from_mask(np.full((3, 4), 0.5))
    with pytest.raises(ValueError, match="repeated input"):
        Connectivity.from_table(np.array([[1, 1]]), 5)
    with pytest.raises(ValueError, match="outside"):
        Connectivity.from_table(np.array([[1, 7]]), 5)
    with pytest.raises(ValueError, match="positive"):
        Connectivity.all_to_all(0, 3)


def test_near_square_grid_matches_the_paper():
    assert [near_square_grid(s) for s in (32, 64, 128, 256, 512)] == [
        (8, 4),
        (8, 8),
        (16, 8),
        (16, 16),
        (32, 16),
    ]


def test_impossible_samples_are_refused():
    with pytest.raises(ValueError):
        random_inputs(rng(), 10, 3, 11)
    with pytest.raises(ValueError):
        local_rf_inputs(rng(), (3, 3, 1), 3, 10)
