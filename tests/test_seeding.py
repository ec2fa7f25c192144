"""Per-image randomness: an image's random draws, and so its adversarial image, do not depend on
the batch size, the order of the images or the subset it is attacked in; seeds and images still
draw different noise."""

import numpy as np
import pytest

from tfadv import attacks, data
from tfadv.attacks import norms, randomness

N = 48
ATTACKS = {  # (spec, eps): every attack that draws at random, few steps and queries
    "pgd_restarts": ("pgd(steps=3, restarts=2)", 0.03),
    "pgd_l2": ("pgd(steps=3, norm=2)", 0.5),
    "pgd_early_stop": ("pgd(steps=3, restarts=2, early_stop=True)", 0.03),
    "pgd_random_target": ("pgd(steps=3, target=random)", 0.03),
    "apgd": ("apgd(steps=4, restarts=2)", 0.03),
    "apgd_t": ("apgd_t(steps=3, n_targets=2)", 0.03),
    "fab_t": ("fab_t(steps=1, n_targets=3, restarts=4)", 0.05),  # here restarts change 2 results
    "square_linf": ("square(queries=25)", 0.05),
    "square_l2": ("square(queries=25, norm=2)", 1.0),
    "random_sign": ("random_sign", 0.03),
    "fgsm_random": ("fgsm_random", 0.03),
}
ATOL = 1e-6  # oneDNN may round batches of different sizes differently (seen: 6e-8, L2 PGD, 8 vs 64)


@pytest.fixture(scope="module")
def setup(trained_tiny_cnn):
    test = data.make_synthetic(N, seed=1)
    return trained_tiny_cnn, test.float_images(), test.labels


def _adversarial(model, x, y, name, **kwargs):
    spec, eps = ATTACKS[name]
    return attacks.adversarial_images(model, x, y, spec, eps, seed=0, **kwargs)


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_an_images_result_does_not_depend_on_batch_size_order_or_subset(setup, name):
    model, x, y = setup
    whole = _adversarial(model, x, y, name, batch_size=N)
    assert not np.array_equal(whole, x)
    # batch size: three batches of 16 instead of one of 48
    np.testing.assert_allclose(
        _adversarial(model, x, y, name, batch_size=16), whole, rtol=0, atol=ATOL
    )
    # order: shuffled, each image named by its index
    order = np.random.default_rng(0).permutation(N)
    shuffled = _adversarial(model, x[order], y[order], name, batch_size=N, indices=order)
    np.testing.assert_allclose(shuffled, whole[order], rtol=0, atol=ATOL)
    # subset: as the evaluation suite attacks the images still unbroken
    subset = np.flatnonzero(np.arange(N) % 3 != 1)
    part = _adversarial(model, x[subset], y[subset], name, batch_size=N, indices=subset)
    np.testing.assert_allclose(part, whole[subset], rtol=0, atol=ATOL)


def test_fab_restarts_and_random_targets_are_exercised(setup):
    """The cases above are not vacuous: FAB-T's random restarts change some results, and random
    targets differ between images of one label."""
    model, x, y = setup
    once = attacks.fab_targeted(model, x, y, 0.05, steps=1, n_targets=3, restarts=1, seed=0).numpy()
    assert not np.array_equal(_adversarial(model, x, y, "fab_t", batch_size=N), once)
    targets = attacks.choose_targets(model, x, y, "random", seed=0).numpy()
    assert (targets != y).all() and len(set(targets[y == y[0]])) > 1


def test_run_attack_draws_each_image_from_the_seed_of_its_index(setup):
    model, x, y = setup
    result = attacks.run_attack(model, (x, y), "pgd", 0.03, batch_size=20, seed=(3, 1), steps=2)
    direct = attacks.pgd(
        model,
        x[20:40],
        y[20:40],
        0.03,
        steps=2,
        seed=randomness.image_seeds((3, 1), np.arange(20, 40)),
    )
    np.testing.assert_array_equal(result.adversarial[20:40], direct.numpy())
    # one seed for a batch: image k draws from (seed, k), its place in the batch
    batch = attacks.pgd(model, x[:20], y[:20], 0.03, steps=2, seed=(3, 1)).numpy()
    np.testing.assert_array_equal(result.adversarial[:20], batch)


@pytest.mark.parametrize(
    "name",
    ["pgd_restarts", "apgd", "fab_t", "square_linf", "square_l2", "random_sign", "fgsm_random"],
)
def test_different_seeds_draw_different_noise(setup, name):
    model, x, y = setup
    spec, eps = ATTACKS[name]
    first = attacks.adversarial_images(model, x, y, spec, eps, seed=0)
    np.testing.assert_array_equal(attacks.adversarial_images(model, x, y, spec, eps, seed=0), first)
    assert not np.array_equal(attacks.adversarial_images(model, x, y, spec, eps, seed=1), first)


def test_different_images_draw_different_noise(setup):
    model, x, y = setup
    copies, labels = np.repeat(x[:1], 8, axis=0), np.repeat(y[:1], 8)
    for spec in ("random_sign", "fgsm_random", "pgd(steps=1)"):
        adv = attacks.adversarial_images(model, copies, labels, spec, 0.03, seed=0)
        assert len({a.tobytes() for a in adv}) == 8, (
            spec
        )  # eight copies of one image, eight results
    seeds = randomness.image_seeds(0, np.arange(4))
    for norm in norms.NORMS.values():
        noise = norm.random((4, 8, 8, 3), 0.1, seeds).numpy()
        assert len({n.tobytes() for n in noise}) == 4
        assert not np.array_equal(
            noise, norm.random((4, 8, 8, 3), 0.1, randomness.fold(seeds, 1)).numpy()
        )


def test_image_seeds_depend_on_the_seed_and_the_index_only():
    whole = randomness.image_seeds(5, np.arange(10)).numpy()
    np.testing.assert_array_equal(randomness.image_seeds(5, [7, 2]).numpy(), whole[[7, 2]])
    np.testing.assert_array_equal(randomness.image_seeds((5, 0), np.arange(10)).numpy(), whole)
    assert len({tuple(row) for row in whole}) == 10
    assert not (randomness.image_seeds(6, np.arange(10)).numpy() == whole).all(axis=1).any()
    assert not (randomness.image_seeds((5, 1), np.arange(10)).numpy() == whole).all(axis=1).any()
    np.testing.assert_array_equal(
        randomness.per_image(whole, 10).numpy(), whole
    )  # per-image seeds as given
    np.testing.assert_array_equal(
        randomness.per_image(5, 10).numpy(), whole
    )  # one seed: by place in the batch


def test_the_generator_draws_uniform_and_normal_numbers():
    seeds = randomness.image_seeds(0, np.arange(64))
    u = randomness.uniform(seeds, [16, 16, 3], salt=1).numpy()
    assert u.shape == (64, 16, 16, 3) and u.min() >= 0.0 and u.max() < 1.0
    assert abs(u.mean() - 0.5) < 0.005 and abs(u.var() - 1 / 12) < 0.002  # 49,152 draws: ~5 sigma
    z = randomness.normal(seeds, [16, 16, 3], salt=1).numpy()
    assert abs(z.mean()) < 0.025 and abs(z.std() - 1) < 0.02 and abs((z**4).mean() - 3) < 0.15
    r = np.corrcoef(u.reshape(64, -1))[
        np.triu_indices(64, 1)
    ]  # images independent: r^2 ~ chi2(1) / 768
    assert np.abs(r).max() < 0.2 and abs((r**2).mean() * u[0].size - 1) < 0.15  # sd 0.036; sd 0.03
    assert not np.array_equal(u, randomness.uniform(seeds, [16, 16, 3], salt=2).numpy())
    k = randomness.integers(seeds, [100], 7, salt=3).numpy()
    assert (
        k.min() == 0 and k.max() == 6 and abs(np.bincount(k.ravel()) / k.size - 1 / 7).max() < 0.01
    )
    signs = randomness.signs(seeds, [100], salt=4).numpy()
    assert set(np.unique(signs)) == {-1.0, 1.0} and abs(signs.mean()) < 0.03


def test_bad_seeds_and_indices_raise_value_errors_echoing_the_value(setup):
    model, x, y = setup
    with pytest.raises(ValueError, match=r"shape \(48, 2\).*seed.shape=\(3, 2\)"):
        attacks.pgd(model, x, y, 0.03, seed=np.zeros((3, 2), np.int64))
    with pytest.raises(ValueError, match="one index per image"):
        attacks.adversarial_images(model, x, y, "pgd", 0.03, seed=0, indices=np.arange(5))
    with pytest.raises(ValueError, match="indices"):
        attacks.adversarial_images(
            model, x, y, "pgd", 0.03, seed=0, indices=np.zeros((N, 2), np.int64)
        )
