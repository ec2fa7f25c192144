"""Norm strategies (tfadv.attacks.norms): L1's pieces against numpy (length, projection onto the
L1 ball), the duals (Hoelder's bound, reached by DeepFool's steepest step), FMN's projection onto
per-image radii, and `norms.get`'s allowed norms (the eps-ball attacks still reject L1)."""

import numpy as np
import pytest
import tensorflow as tf

from tfadv import attacks
from tfadv.attacks import norms
from tfadv.experiment import splits
from tfadv.runtime import choices

RNG = np.random.default_rng(0)
DELTA = RNG.normal(0.0, 0.1, (6, 4, 4, 3)).astype(np.float32)
NUMPY_LENGTH = {
    "inf": lambda d: np.abs(d.reshape(len(d), -1)).max(axis=1),
    "2": lambda d: np.sqrt((d.reshape(len(d), -1).astype(np.float64) ** 2).sum(axis=1)),
    "1": lambda d: np.abs(d.reshape(len(d), -1).astype(np.float64)).sum(axis=1),
}


def l1_ball_projection(v, radius):
    """Duchi et al.'s projection of vector v onto the L1 ball, in float64 numpy (a reference)."""
    if np.abs(v).sum() <= radius:
        return v
    mu = np.sort(np.abs(v))[::-1]
    cumsum = np.cumsum(mu)
    rho = np.nonzero(mu * np.arange(1, len(v) + 1) > cumsum - radius)[0][-1]
    theta = (cumsum[rho] - radius) / (rho + 1)
    return np.sign(v) * np.maximum(np.abs(v) - theta, 0.0)


@pytest.mark.parametrize("name", norms.ALL)
def test_lengths_equal_numpys(name):
    norm = norms.get(name, norms.ALL)
    np.testing.assert_allclose(norm.length(DELTA).numpy(), NUMPY_LENGTH[name](DELTA), rtol=1e-6)
    rows = DELTA.reshape(2, 3, -1)  # lengths along the last axis of any shape
    np.testing.assert_allclose(
        norm.lengths(rows).numpy().ravel(), NUMPY_LENGTH[name](DELTA), rtol=1e-6
    )


def test_l1_projection_lands_on_the_ball_and_matches_the_reference():
    lengths = NUMPY_LENGTH["1"](DELTA)
    radii = (lengths * np.array([0.1, 0.5, 0.9, 1.5, 2.0, np.inf])).astype(np.float32)
    projected = norms.L1_NORM.project_each(tf.constant(DELTA), tf.constant(radii)).numpy()
    new_lengths = NUMPY_LENGTH["1"](projected)
    shrunk = radii < lengths
    assert shrunk.sum() == 3
    np.testing.assert_allclose(new_lengths[shrunk], radii[shrunk], rtol=1e-4)
    for i in range(len(DELTA)):
        expected = l1_ball_projection(DELTA[i].ravel().astype(np.float64), float(radii[i]))
        np.testing.assert_allclose(projected[i].ravel(), expected, atol=1e-6)
    # inside the ball (radius >= length, inf included) the projection is the identity, bit for bit
    np.testing.assert_array_equal(projected[~shrunk], DELTA[~shrunk])


def test_l1_projection_with_one_eps_is_the_per_image_one():
    eps = float(np.median(NUMPY_LENGTH["1"](DELTA)))
    one = norms.L1_NORM.project(tf.constant(DELTA), eps).numpy()
    each = norms.L1_NORM.project_each(tf.constant(DELTA), tf.fill([len(DELTA)], eps)).numpy()
    np.testing.assert_array_equal(one, each)
    assert np.all(NUMPY_LENGTH["1"](one) <= eps * (1 + 1e-5))
    assert np.sum(NUMPY_LENGTH["1"](DELTA) > eps) == 3  # half of the images were projected


@pytest.mark.parametrize("name", ("inf", "2"))
def test_fmn_projection_onto_per_image_radii(name):
    norm = norms.get(name)
    lengths = NUMPY_LENGTH[name](DELTA)
    radii = (lengths * np.array([0.1, 0.5, 0.9, 1.5, 2.0, np.inf])).astype(np.float32)
    projected = norm.project_each(tf.constant(DELTA), tf.constant(radii)).numpy()
    new_lengths = NUMPY_LENGTH[name](projected)
    assert np.all(new_lengths <= radii * (1 + 1e-5))
    np.testing.assert_allclose(new_lengths[:3], radii[:3], rtol=1e-5)  # onto the surface
    np.testing.assert_array_equal(projected[3:], DELTA[3:])  # inside: unchanged


def test_duals_bound_a_linear_rise_and_deepfools_step_reaches_it():
    assert (norms.LINF.dual, norms.L2_NORM.dual, norms.L1_NORM.dual) == (
        norms.L1_NORM,
        norms.L2_NORM,
        norms.LINF,
    )
    grad = RNG.normal(size=(5, 48)).astype(np.float32)
    distances = np.linspace(0.1, 1.0, 5).astype(np.float32)
    for norm in (norms.LINF, norms.L2_NORM):
        dual = norm.dual.lengths(tf.constant(grad)).numpy()
        step = norm.step_each(tf.constant(grad), tf.constant(distances), 0.0).numpy()
        np.testing.assert_allclose(norm.lengths(step).numpy(), distances, rtol=1e-5)
        np.testing.assert_allclose((grad * step).sum(axis=1), distances * dual, rtol=1e-4)
        other = RNG.normal(size=grad.shape).astype(np.float32)  # any other move of that length
        other *= (distances / norm.lengths(tf.constant(other)).numpy())[:, None]
        assert np.all((grad * other).sum(axis=1) <= distances * dual * (1 + 1e-5))


@pytest.mark.parametrize("given", ["1", "l1", "L1", 1, norms.L1_NORM])
def test_get_gives_l1_only_where_allowed(given):
    assert norms.get(given, norms.ALL) is norms.L1_NORM
    assert choices.norm_name(given) == "1"
    with pytest.raises(ValueError, match=r"Expected norm to be one of \('inf', '2'\)"):
        norms.get(given)
    with pytest.raises(ValueError, match=r"one of \('2', 'inf'\) for deepfool. Received: norm="):
        norms.get(given, ("2", "inf"), "deepfool")


def test_get_keeps_the_eps_ball_norms():
    assert norms.get(np.inf) is norms.get("linf") is norms.get("inf") is norms.LINF
    assert norms.get(2) is norms.get("L2") is norms.L2_NORM
    assert set(norms.NORMS) == {"inf", "2"}  # the eps-ball attacks' norms
    assert (norms.L1_NORM.name, norms.L1_NORM.threat_model, norms.L1_NORM.eps_max) == (
        "1",
        "L1",
        None,
    )
    with pytest.raises(ValueError, match="Received: norm='3'"):
        norms.get("3", norms.ALL)


@pytest.mark.parametrize(
    "attack", [attacks.pgd, attacks.bim, attacks.fgsm, attacks.apgd, attacks.square]
)
def test_eps_ball_attacks_reject_l1_in_one_line(attack):
    x, y = np.zeros((1, 8, 8, 3), np.float32), np.zeros(1, np.int64)
    with pytest.raises(ValueError, match=r"Expected norm to be one of .*Received: norm=norms"):
        attack(lambda images: images, x, y, 0.1, norm=norms.L1_NORM)


def test_flag_time_eps_check_follows_the_norms_range():
    splits.check_eps(3.0, "1")  # L1 and L2 budgets may exceed 1
    splits.check_eps(3.0, "l2")
    for norm in ("inf", "linf", np.inf):
        with pytest.raises(ValueError, match="Received: eps=3.0"):
            splits.check_eps(3.0, norm)
    with pytest.raises(ValueError, match="Received: eps=x"):
        splits.check_eps("x", "1")
