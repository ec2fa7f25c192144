"""FMN's L1 projection (Michelot's iteration) against the sort-based projection of Duchi et
al. (2008) in NumPy: the same point, on the ball, rows inside unchanged, radius 0 and inf."""

import numpy as np
import tensorflow as tf

from tfadv.attacks import norms


def duchi(row, radius):
    """The Euclidean projection of `row` onto the L1 ball of `radius`, by sorting."""
    if np.abs(row).sum() <= radius:
        return row
    mu = np.sort(np.abs(row))[::-1]
    cumsum = np.cumsum(mu)
    ranks = np.arange(1, row.size + 1)
    rho = np.nonzero(mu * ranks > cumsum - radius)[0][-1]
    theta = (cumsum[rho] - radius) / (rho + 1.0)
    return np.sign(row) * np.maximum(np.abs(row) - theta, 0.0)


def test_l1_projection_matches_the_sort_based_projection():
    rng = np.random.default_rng(0)
    # heavy-tailed rows (a sparse projection, as FMN's) and dense ones, with ties
    rows = np.concatenate(
        [rng.standard_normal((6, 3072)) ** 3 * 0.01, rng.uniform(-0.1, 0.1, (4, 3072))]
    ).astype(np.float32)
    rows[7, :100] = 0.05
    radius = np.array([2.0, 0.5, 10.0, 0.01, 1.0, 3.0, 5.0, 2.0, 50.0, 0.3], np.float32)
    radius[8] = np.abs(rows[8]).sum() + 1.0  # inside: unchanged
    got = norms.project_l1(tf.constant(rows), tf.constant(radius)).numpy()
    for row, r, g in zip(rows.astype(np.float64), radius, got, strict=True):
        want = duchi(row, float(r))
        np.testing.assert_allclose(g, want, atol=1e-6)
        assert np.abs(g).sum() <= r * (1 + 1e-5)
    np.testing.assert_array_equal(got[8], rows[8])
    assert np.abs(got[0]).sum() > 0.999 * radius[0]  # on the ball, not just inside


def test_l1_projection_radius_zero_and_inf():
    rows = np.random.default_rng(1).uniform(-1, 1, (2, 50)).astype(np.float32)
    got = norms.project_l1(tf.constant(rows), tf.constant([0.0, np.inf], tf.float32)).numpy()
    np.testing.assert_array_equal(got[0], np.zeros(50, np.float32))
    np.testing.assert_array_equal(got[1], rows[1])
