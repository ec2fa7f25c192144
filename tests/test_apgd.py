"""Properties of APGD, APGD-T, FAB-T and Square: budgets, eps = 0, never weaker than PGD, successes
kept, gradient-free Square against masked gradients, query budgets, compilation, seeding and
argument checks."""

import importlib
import logging
import os
import re

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfadv import attacks, data, models
from tfadv.attacks import checks, core, losses, norms, squares
from tfadv.attacks import core as attack_compile

apgd_module = importlib.import_module("tfadv.attacks.apgd")  # `tfadv.attacks.apgd` is the function
square_module = importlib.import_module("tfadv.attacks.square")
fab_module = importlib.import_module("tfadv.attacks.fab")

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EPS = 8 / 255
L2_EPS = 0.5
FAST = {  # few steps and queries: the properties, not the strength
    "apgd": {"steps": 5},
    "apgd_dlr": {"steps": 5},
    "apgd_t": {"steps": 3, "n_targets": 3},
    "fab_t": {"steps": 5, "n_targets": 2},
    "square": {"queries": 40},
}


@pytest.fixture(scope="module")
def trained(trained_tiny_cnn):
    """The shared trained tiny_cnn plus a batch of 48 held-out images."""
    test = data.make_synthetic(48, seed=1)
    return trained_tiny_cnn, test.float_images(), test.labels


def predictions(model, images):
    return attacks.logits_of(model, images).numpy().argmax(1)


def accuracy(model, images, labels):
    return float((predictions(model, images) == labels).mean())


def l2_lengths(adv, x):
    return np.sqrt(((adv - x) ** 2).reshape(len(x), -1).sum(1))


@pytest.mark.parametrize("name", sorted(FAST))
def test_linf_results_stay_in_the_ball_and_the_pixel_range(trained, name):
    model, x, y = trained
    adv = attacks.get(name, **FAST[name])(model, x, y, EPS, seed=0).numpy()
    assert adv.shape == x.shape and adv.dtype == np.float32
    assert adv.min() >= 0.0 and adv.max() <= 1.0
    assert np.abs(adv - x).max() <= EPS + 1e-6  # float32 rounding of x + delta
    assert np.abs(adv - x).max() > EPS / 2  # and the attack did move


@pytest.mark.parametrize("name", sorted(FAST))
def test_l2_results_stay_in_the_ball(trained, name):
    model, x, y = trained
    adv = attacks.get(name, norm="2", **FAST[name])(model, x, y, L2_EPS, seed=0).numpy()
    lengths = l2_lengths(adv, x)
    assert adv.min() >= 0.0 and adv.max() <= 1.0
    assert lengths.max() <= L2_EPS * (1 + 1e-5)
    moved = predictions(model, x) == y  # the others are returned unchanged
    if name == "fab_t":  # minimum-norm: only what it breaks moves
        moved &= predictions(model, adv) != y
        assert moved.any() and np.all(lengths[predictions(model, adv) == y] == 0)
    assert np.median(lengths[moved]) > (0 if name == "fab_t" else L2_EPS / 2)


@pytest.mark.parametrize("name", sorted(FAST))
@pytest.mark.parametrize("norm", ["inf", "2"])
def test_eps_zero_returns_the_input(trained, name, norm):
    model, x, y = trained
    np.testing.assert_array_equal(
        attacks.get(name, norm=norm, **FAST[name])(model, x, y, 0.0, seed=0).numpy(), x
    )


@pytest.mark.parametrize("eps", [4 / 255, 8 / 255])
def test_apgd_leaves_no_more_images_correct_than_pgd(trained, eps):
    model, x, y = trained
    for seed in (0, 1):
        pgd = accuracy(model, attacks.pgd(model, x, y, eps, steps=20, seed=seed), y)
        assert accuracy(model, attacks.apgd(model, x, y, eps, steps=20, seed=seed), y) <= pgd
        assert (
            accuracy(model, attacks.apgd(model, x, y, eps, steps=20, loss="dlr", seed=seed), y)
            <= pgd
        )
        assert (
            accuracy(
                model, attacks.apgd_targeted(model, x, y, eps, steps=20, n_targets=3, seed=seed), y
            )
            <= pgd
        )
    assert accuracy(
        model, attacks.apgd(model, x, y, eps, steps=20, loss="dlr", seed=0), y
    ) < accuracy(model, x, y)


def test_l2_apgd_leaves_no_more_images_correct_than_l2_pgd(trained):
    model, x, y = trained
    pgd = accuracy(model, attacks.pgd(model, x, y, 2.0, steps=10, norm="2", seed=0), y)
    apgd = accuracy(
        model, attacks.apgd(model, x, y, 2.0, steps=10, norm="2", loss="dlr", seed=0), y
    )
    assert apgd <= pgd < accuracy(model, x, y)


def test_checkpoints_follow_the_reference_schedule():
    windows = apgd_module.checkpoint_windows(100)
    reviews = [i for i, w in enumerate(windows) if w]
    assert reviews == [
        21,
        40,
        56,
        69,
        79,
        86,
        92,
        98,
    ]  # p = 0.22, 0.41, 0.57, 0.70, 0.80, 0.87, 0.93, 0.99
    assert [windows[i] for i in reviews] == [22, 19, 16, 13, 10, 7, 6, 6]
    assert apgd_module.checkpoint_windows(1) == [1]


def test_step_schedule_halves_where_the_loss_rose_too_rarely_or_stalled():
    schedule = apgd_module.StepSchedule(10, rho=0.75)  # first review after step 1, window 2
    assert apgd_module.checkpoint_windows(10)[:3] == [0, 2, 1]
    s = dict(
        schedule.start(3, 0.1, tf.constant([1.0, 1.0, 1.0])),
        value=tf.constant([1.0, 1.0, 1.0]),
    )
    halve, after = schedule.review(0, s, tf.constant([2.0, 0.5, 2.0]), tf.constant([2.0, 1.0, 2.0]))
    assert not halve.numpy().any()  # no checkpoint after step 0: only the rises are counted
    np.testing.assert_array_equal(after["rises"].numpy(), [1.0, 0.0, 1.0])
    s = dict(s, **after, value=tf.constant([2.0, 0.5, 2.0]))
    s["halved"] = tf.constant([True, True, False])  # the third was not halved at its last review
    s["checked_value"] = tf.constant([1.0, 1.0, 5.0])  # and its best loss has not moved since
    halve, after = schedule.review(1, s, tf.constant([3.0, 0.6, 3.0]), tf.constant([3.0, 1.0, 3.0]))
    # rose twice in 2 steps: kept; once (<= 0.75 * 2): halved; twice but stalled: halved
    np.testing.assert_array_equal(halve.numpy(), [False, True, True])
    np.testing.assert_allclose(after["step"].numpy().ravel(), [0.1, 0.05, 0.05])
    np.testing.assert_array_equal(after["rises"].numpy(), [0.0, 0.0, 0.0])
    np.testing.assert_array_equal(after["checked_value"].numpy(), [3.0, 1.0, 3.0])
    np.testing.assert_array_equal(after["halved"].numpy(), [False, True, True])


@pytest.mark.parametrize("norm, eps", [(norms.LINF, EPS), (norms.L2_NORM, L2_EPS)])
def test_surface_start_and_momentum_step(norm, eps):
    iterative = importlib.import_module("tfadv.attacks.iterative")
    x = tf.fill([4, 8, 8, 3], 0.5)  # far from the box: nothing is clipped to [0, 1]
    seeds = importlib.import_module("tfadv.attacks.randomness").per_image(0, 4)
    start = iterative.surface_start(x, eps, seeds, norm)
    np.testing.assert_allclose(norm.length(start - x).numpy(), eps, rtol=1e-5)  # on the surface
    grad = tf.random.stateless_normal([4, 8, 8, 3], [1, 2])
    step = iterative.MomentumStep(norm, eps)
    size = tf.fill([4, 1, 1, 1], eps / 4)
    plain = norms.project(start + norm.step(grad, size), x, eps, norm)
    np.testing.assert_array_equal(step(start, start, grad, size, x, 1.0).numpy(), plain.numpy())
    mixed = step(start, x, grad, size, x, 0.75).numpy()  # 0.25 of the previous move x -> start
    np.testing.assert_allclose(
        mixed, norms.project(0.75 * plain + 0.25 * (2 * start - x), x, eps, norm).numpy(), atol=1e-6
    )
    assert np.all(norm.length(mixed - x).numpy() <= eps * (1 + 1e-5))


def test_a_success_is_never_given_up(trained):
    """With a loss whose ascent walks along the decision boundary, iterates cross it back
    and forth: every example misclassified at any iterate must come back misclassified,
    although PGD's last iterate often is not. Run without dropping broken examples (the XLA
    path), where they keep stepping; with dropping they leave at their first success."""
    model, x, y = trained
    correct = predictions(model, x) == y
    x, y = (
        x[correct],
        y[correct],
    )  # all attacked, in place: the loss sees every example at its index
    ever_wrong = tf.Variable(tf.zeros([len(y)], tf.bool))

    def boundary(scores, labels):
        seen = ever_wrong.assign(ever_wrong | tf.not_equal(tf.argmax(scores, axis=-1), labels))
        with tf.control_dependencies([seen]):
            return -tf.abs(losses.margin(scores, labels))

    run = core.compiled_attack(
        models.as_classifier(model),
        apgd_module._apgd_fn,
        x,
        False,
        loss=losses.get(boundary),
        loss_on="logits",
        norm=norms.LINF,
        steps=20,
        rho=0.75,
        targeted=False,
        misclassify=False,
        compact=False,
    )
    adv, won, _ = run(x, y, y, tf.constant(EPS), tf.constant(2 * EPS), checks.to_seed(0))
    crossed = ever_wrong.numpy()
    wrong = predictions(model, adv.numpy()) != y
    assert crossed.sum() >= 5
    assert np.all(wrong[crossed]) and np.array_equal(won.numpy(), wrong)
    last_iterate_wrong = (
        predictions(model, attacks.pgd(model, x, y, EPS, steps=10, loss=boundary, seed=0)) != y
    )
    assert last_iterate_wrong.sum() < crossed.sum()


@pytest.mark.parametrize("targeted", [False, True])
def test_apgd_searches_alike_with_and_without_dropping_broken_examples(trained, targeted):
    """Dropping an example at its first success (the default off XLA) changes no result and
    saves the gradients the reference spends stepping broken examples."""
    model, x, y = trained
    counter = CountQueries()
    counted = keras.Sequential([keras.Input(x.shape[1:]), counter, model])
    clf = models.as_classifier(counted)
    targets = np.asarray(attacks.choose_targets(model, x, y, "random", seed=0)) if targeted else y
    results, images = [], []
    for compact in (True, False):
        run = core.compiled_attack(
            clf,
            apgd_module._apgd_fn,
            x,
            False,
            loss=losses.DLR if targeted else losses.CE,
            loss_on="logits",
            norm=norms.LINF,
            steps=12,
            rho=0.75,
            targeted=targeted,
            misclassify=False,
            compact=compact,
        )
        counter.reset()
        results.append(
            [
                v.numpy()
                for v in run(
                    x, y, targets, tf.constant(EPS), tf.constant(2 * EPS), checks.to_seed(3)
                )
            ]
        )
        images.append(int(counter.images.numpy()))
    (adv, won, value), (adv_kept, won_kept, value_kept) = results
    np.testing.assert_allclose(adv, adv_kept, atol=1e-6)
    np.testing.assert_array_equal(won, won_kept)
    np.testing.assert_allclose(
        value[~won], value_kept[~won], rtol=1e-5
    )  # a broken one's value no longer matters
    assert 0 < won.sum() < len(y)
    assert images[1] == len(y) * 13  # the start and 12 steps for every example
    assert images[0] < images[1] - won.sum()  # each broken example skipped at least one step


def test_misclassified_images_come_back_unchanged(trained):
    model, x, y = trained
    wrong = predictions(model, x) != y
    assert wrong.any()
    for name in FAST:
        adv = attacks.get(name, **FAST[name])(model, x, y, EPS, seed=0).numpy()
        np.testing.assert_array_equal(adv[wrong], x[wrong])


def test_restarts_keep_each_examples_success(trained):
    model, x, y = trained
    one = predictions(model, attacks.apgd(model, x, y, 4 / 255, steps=3, seed=5)) != y
    three = predictions(model, attacks.apgd(model, x, y, 4 / 255, steps=3, restarts=3, seed=5)) != y
    assert np.all(three[one])  # restart 0 of the 3-restart run is the single run
    assert three.sum() >= one.sum()


def test_targeted_apgd_hits_the_target_more_often_than_untargeted(trained):
    model, x, y = trained
    targets = attacks.choose_targets(model, x, y, "random", seed=0).numpy()
    hits = lambda images: np.mean(predictions(model, images) == targets)  # noqa: E731
    targeted = hits(
        attacks.apgd(model, x, y, 16 / 255, steps=10, loss="dlr", target=targets, seed=0)
    )
    assert targeted > hits(x) and targeted > hits(
        attacks.apgd(model, x, y, 16 / 255, steps=10, seed=0)
    )


def three_class_model():
    keras.utils.set_random_seed(3)
    return keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.Dense(3)])


def test_apgd_t_clips_targets_and_uses_the_margin_below_four_classes():
    model = three_class_model()
    x = np.random.default_rng(0).uniform(0, 1, (16, 8, 8, 1)).astype(np.float32)
    y = predictions(model, x)
    adv = attacks.apgd_targeted(model, x, y, 0.3, steps=10, n_targets=9, seed=0).numpy()
    assert np.abs(adv - x).max() <= 0.3 + 1e-6
    assert np.mean(predictions(model, adv) != y) > 0.5
    with pytest.raises(
        ValueError, match=re.escape("needs at least 4 classes. Received: 3 classes")
    ):
        attacks.apgd(model, x, y, 0.3, steps=2, loss="dlr", target=0)


class MaskGradient(keras.layers.Layer):
    """The identity, with a gradient of zero everywhere."""

    def call(self, x):
        return 0.0 * x + tf.stop_gradient(x)


class CountQueries(keras.layers.Layer):
    """The identity, counting the images it sees and the calls (batches) it gets."""

    def build(self, input_shape):
        self.images = self.add_weight(
            shape=(), initializer="zeros", dtype="int64", trainable=False, name="images"
        )
        self.calls = self.add_weight(
            shape=(), initializer="zeros", dtype="int64", trainable=False, name="calls"
        )

    def call(self, x):
        self.images.assign_add(tf.cast(tf.shape(x)[0], tf.int64))
        self.calls.assign_add(tf.constant(1, tf.int64))
        return x

    def reset(self):
        self.images.assign(0)
        self.calls.assign(0)


def test_square_breaks_a_model_whose_gradients_are_zero(trained):
    model, x, y = trained
    masked = keras.Sequential([keras.Input(x.shape[1:]), MaskGradient(), model])
    assert not np.any(attacks.input_gradient(masked, x, y).numpy())
    eps = 24 / 255
    pgd = accuracy(masked, attacks.pgd(masked, x, y, eps, steps=10, seed=0), y)
    found = attacks.square(masked, x, y, eps, queries=300, rescale_schedule=True, seed=0)
    assert accuracy(masked, found, y) <= pgd - 0.15
    assert pgd >= accuracy(model, x, y) - 0.05  # PGD only moved by its random start
    # only the logits matter: the same search on the unmasked model
    np.testing.assert_array_equal(
        found.numpy(),
        attacks.square(model, x, y, eps, queries=300, rescale_schedule=True, seed=0).numpy(),
    )


def test_square_spends_exactly_the_budget_on_an_unbreakable_model():
    counter = CountQueries()
    bias = keras.initializers.Constant([5.0] + [0.0] * 9)
    model = keras.Sequential(
        [
            keras.Input((32, 32, 3)),
            counter,
            keras.layers.Flatten(),
            keras.layers.Dense(10, kernel_initializer="zeros", bias_initializer=bias),
        ]
    )
    x = data.make_synthetic(6, seed=2).float_images()
    y = np.zeros(6, np.int64)
    for norm, eps in (("inf", EPS), ("2", L2_EPS)):
        counter.reset()
        attacks.square(model, x, y, eps, queries=30, norm=norm, seed=0)
        assert (
            counter.calls.numpy() == 30
        )  # clean, start, 28 squares: each a batch of every example
        assert counter.images.numpy() == 6 * 30


def test_square_stops_querying_broken_examples(trained):
    model, x, y = trained
    counter = CountQueries()
    counted = keras.Sequential([keras.Input(x.shape[1:]), counter, model])
    counted(x[:1])
    counter.reset()
    adv = attacks.square(counted, x, y, 0.3, queries=400, seed=0)
    assert accuracy(model, adv, y) == 0.0
    calls, images = int(counter.calls.numpy()), int(counter.images.numpy())
    assert calls < 400  # the search ended when every example was broken ...
    assert images < len(x) * calls / 2  # ... and broken examples left it earlier
    counter.reset()
    attacks.square(counted, x, y, EPS, queries=25, seed=0)
    assert counter.calls.numpy() <= 25 and counter.images.numpy() <= len(x) * 25


@pytest.mark.parametrize("norm, eps", [("inf", 16 / 255), ("2", 1.0)])
def test_square_searches_alike_with_and_without_evaluating_broken_examples(trained, norm, eps):
    """Without compaction (the XLA path) every example is evaluated on every query; each
    example's search must not depend on which others are still being searched."""
    model, x, y = trained
    clf = models.as_classifier(model)
    results = []
    for compact in (True, False):
        search = core.compiled_attack(
            clf,
            square_module._square_fn,
            x,
            False,
            norm=norms.get(norm),
            loss=losses.MARGIN,
            queries=30,
            targeted=False,
            compact=compact,
            rescale=False,
        )
        results.append(
            search(x, y, y, tf.constant(eps), tf.constant(0.8), checks.to_seed(0)).numpy()
        )
    np.testing.assert_array_equal(*results)
    assert np.all(
        np.abs(results[0] - x).reshape(len(x), -1).max(1)[predictions(model, x) == y] > 0
    )  # all searched


def test_square_schedule_and_square_sides():
    fractions = [
        float(square_module.square_fraction(i, 10_000, 0.8))
        for i in (0, 10, 11, 50, 51, 8000, 8001, 9999)
    ]
    np.testing.assert_allclose(
        fractions, [0.8, 0.8, 0.4, 0.4, 0.2, 0.8 / 256, 0.8 / 512, 0.8 / 512], rtol=1e-6
    )
    assert float(square_module.square_fraction(100, 1000, 0.8, rescale=True)) == pytest.approx(
        0.8 / 16
    )  # 100 of 1000 = 1000 of 10,000
    assert float(square_module.square_fraction(100, 5000, 0.8)) == pytest.approx(
        0.8 / 4
    )  # AutoAttack: not rescaled

    def side(p, norm):
        return int(square_module.square_side(tf.constant(p), 32, 32, norms.get(norm)))

    assert [side(0.8, "inf"), side(0.05, "inf"), side(1e-5, "inf")] == [29, 7, 1]
    assert [side(0.8, "2"), side(0.05, "2"), side(1e-5, "2"), side(1.0, "2")] == [29, 7, 3, 32]


def reference_pattern(side):
    """The L2 square pattern restated with loops: concentric squares weighted 1 / (k + 1)^2
    over the top half, minus the same over the bottom half, each half of unit length."""

    def rings(rows, cols):
        out, cr, cc = np.zeros((rows, cols)), rows // 2, cols // 2
        for k in range(max(cr, cc) + 1):
            out[max(cr - k, 0) : cr + k + 1, max(cc - k, 0) : cc + k + 1] += 1.0 / (k + 1) ** 2
        return out / np.sqrt((out**2).sum())

    pattern = np.concatenate([rings(side // 2, side), -rings(side - side // 2, side)])
    return pattern / np.sqrt((pattern**2).sum())


@pytest.mark.parametrize("side", [3, 6, 7, 11])
def test_l2_square_pattern(side):
    top, left = tf.constant([2, 0]), tf.constant([1, 32 - side])
    pattern = squares.centred_pattern(top, left, side, tf.constant([False, True]), 32, 32).numpy()
    np.testing.assert_allclose(
        pattern[0, 2 : 2 + side, 1 : 1 + side], reference_pattern(side), atol=1e-6
    )
    np.testing.assert_allclose(pattern[1, :side, 32 - side :], reference_pattern(side).T, atol=1e-6)
    assert (
        np.sum(pattern[0] ** 2) == pytest.approx(1.0)
        and np.count_nonzero(pattern[0]) == side * side
    )


def _tracing_counts(model):
    compiled = attack_compile._COMPILED[model]
    return {
        key[0].__name__ + str(key[1]): fn.experimental_get_tracing_count()
        for key, fn in compiled.items()
    }


def test_no_retracing_across_batches_and_eps_values(trained, caplog):
    model, x, y = trained
    eps_variable = tf.Variable(0.01)
    with caplog.at_level(logging.WARNING):
        for eps in (0.01, tf.constant(0.03), eps_variable):
            for start in (0, 16, 40):  # batches of 16, 16 and 8
                part = slice(start, start + 16)
                attacks.apgd(model, x[part], y[part], eps, restarts=2, seed=start, **FAST["apgd"])
                attacks.apgd_targeted(
                    model, x[part], y[part], eps, steps=3, n_targets=2, seed=start
                )
                attacks.square(model, x[part], y[part], eps, seed=start, **FAST["square"])
            eps_variable.assign_add(0.01)
    counts = _tracing_counts(model)
    ours = {k: v for k, v in counts.items() if k.startswith(("_apgd_fn", "_square_fn"))}
    assert len(ours) >= 3 and all(count == 1 for count in ours.values()), (
        ours
    )  # here: apgd, apgd_t, square
    assert "retracing" not in caplog.text


@pytest.mark.parametrize("name", ["apgd", "apgd_t", "square"])
def test_seeded_runs_repeat_exactly(trained, name):
    model, x, y = trained
    attack = attacks.get(name, **FAST[name])
    same = [attack(model, x, y, 16 / 255, seed=7).numpy() for _ in range(2)]
    np.testing.assert_array_equal(*same)
    assert not np.array_equal(same[0], attack(model, x, y, 16 / 255, seed=8).numpy())


def test_registered_attacks_and_their_defaults(trained):
    model, x, y = trained
    assert {"apgd", "apgd_dlr", "apgd_t", "fab_t", "square"} <= set(attacks.names())
    assert attacks.Attack("apgd_dlr").describe() == "apgd_dlr(loss=dlr)"
    dlr = attacks.Attack("apgd_dlr", steps=5)(model, x, y, EPS, seed=0)
    np.testing.assert_array_equal(
        dlr.numpy(), attacks.apgd(model, x, y, EPS, steps=5, loss="dlr", seed=0).numpy()
    )
    result = attacks.run_attack(model, (x, y), "square(queries=20)", EPS, batch_size=32, seed=0)
    assert result.summary()["adversarial_accuracy"] <= result.summary()["clean_accuracy"]


def test_attack_cli_flags_reach_the_new_options():
    from tfadv import attack as attack_cli

    try:
        attack_cli.FLAGS(
            [
                "attack",
                "--model=m.keras",
                "--attack=apgd_t",
                "--n_targets=2",
                "--steps=3",
                "--queries=7",
            ]
        )
        job = attack_cli.job_from_flags()
    finally:
        attack_cli.FLAGS.unparse_flags()
    assert job.attack == "apgd_t" and job.options == {"n_targets": 2, "steps": 3, "queries": 7}
    assert (
        attacks.get(job.attack, n_targets=2, steps=3).describe() == "apgd_t(n_targets=2, steps=3)"
    )
    assert attacks.get("square", queries=job.options["queries"]).describe() == "square(queries=7)"


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda m, x, y: attacks.apgd(m, x, y, EPS, steps=0), "steps=0"),
        (lambda m, x, y: attacks.apgd(m, x, y, EPS, restarts=0), "restarts=0"),
        (lambda m, x, y: attacks.apgd(m, x, y, EPS, rho=1.0), "rho=1.0"),
        (lambda m, x, y: attacks.apgd(m, x, y, EPS, rho=0), "rho=0"),
        (lambda m, x, y: attacks.apgd(m, x, y, EPS, loss="hinge"), "loss='hinge'"),
        (lambda m, x, y: attacks.apgd(m, x, y, 1.5), "eps=1.5"),
        (lambda m, x, y: attacks.apgd(m, x, y, EPS, norm="l1"), "norm='l1'"),
        (lambda m, x, y: attacks.apgd(m, x, y, EPS, target=10), "target=10"),
        (lambda m, x, y: attacks.apgd_targeted(m, x, y, EPS, n_targets=0), "n_targets=0"),
        (lambda m, x, y: attacks.apgd_targeted(m, x, y, EPS, steps=-3), "steps=-3"),
        (lambda m, x, y: attacks.apgd_targeted(m, x, y, EPS, rho=1.5), "rho=1.5"),
        (lambda m, x, y: attacks.square(m, x, y, EPS, queries=0), "queries=0"),
        (lambda m, x, y: attacks.square(m, x, y, EPS, p_init=0.0), "p_init=0.0"),
        (lambda m, x, y: attacks.square(m, x, y, EPS, p_init=1.5), "p_init=1.5"),
        (lambda m, x, y: attacks.square(m, x, y, EPS, loss="hinge"), "loss='hinge'"),
        (
            lambda m, x, y: attacks.square(m, x[:, :4, :4], y, EPS, norm="2"),
            "images.shape=(48, 4, 4, 3)",
        ),
        (lambda m, x, y: attacks.fab_targeted(m, x, y, EPS, steps=0), "steps=0"),
        (lambda m, x, y: attacks.fab_targeted(m, x, y, EPS, n_targets=0), "n_targets=0"),
        (lambda m, x, y: attacks.fab_targeted(m, x, y, EPS, eta=0.5), "eta=0.5"),
        (lambda m, x, y: attacks.fab_targeted(m, x, y, EPS, beta=0.0), "beta=0.0"),
        (lambda m, x, y: attacks.fab_targeted(m, x, y, EPS, alpha_max=1.5), "alpha_max=1.5"),
        (lambda m, x, y: attacks.fab_targeted(m, x, y, EPS, norm="l1"), "norm='l1'"),
        (lambda m, x, y: attacks.fab_targeted(m, x, y, 1.5), "eps=1.5"),
        (lambda m, x, y: attacks.Attack("apgd_t", restarts=2), "takes no option(s) ['restarts']"),
        (lambda m, x, y: attacks.Attack("square", steps=2), "takes no option(s) ['steps']"),
    ],
)
def test_invalid_arguments_raise_value_errors_echoing_the_value(trained, call, message):
    model, x, y = trained
    with pytest.raises(ValueError, match=re.escape(message)):
        call(model, x, y)


def test_empty_batch_and_a_fully_broken_batch(trained):
    model, x, y = trained
    for name in FAST:
        assert attacks.get(name, **FAST[name])(model, x[:0], y[:0], EPS, seed=0).shape == (
            0,
            *x.shape[1:],
        )
    wrong = predictions(model, x) != y
    np.testing.assert_array_equal(
        attacks.apgd(model, x[wrong], y[wrong], EPS, steps=3, seed=0).numpy(), x[wrong]
    )


def test_seed_pairs_and_tensors_work_inside_tf_function(trained):
    model, x, y = trained

    @tf.function
    def outer(images, labels, step):
        return attacks.apgd(model, images, labels, EPS, steps=2, restarts=2, seed=(0, step))

    inside = outer(tf.constant(x[:16]), tf.constant(y[:16]), tf.constant(1, tf.int64))
    eager = attacks.apgd(model, x[:16], y[:16], EPS, steps=2, restarts=2, seed=(0, 1))
    np.testing.assert_array_equal(inside.numpy(), eager.numpy())


def _hyperplanes(n=40, dims=30, seed=0):
    rng = np.random.default_rng(seed)
    points = rng.uniform(0, 1, (n, dims)).astype(np.float32)
    w = rng.normal(size=(n, dims)).astype(np.float32)
    w[0, :10] = 0.0  # coordinates the hyperplane ignores
    b = (np.sum(w * points, 1) + rng.normal(size=n) * 2.0).astype(np.float32)
    b[1] = np.sum(w[1] * points[1]) + 1e3  # beyond the box
    return points, w, b


@pytest.mark.parametrize("norm", ["inf", "2"])
def test_fab_hyperplane_step_is_the_shortest_move_in_the_box(norm):
    """Lands on the hyperplane inside [0, 1]; no shorter move in the box reaches it: the
    furthest w . d a move of 99.9% of the length can reach (each coordinate toward its bound)
    falls short. Beyond the box: every coordinate at the bound that helps."""
    points, w, b = _hyperplanes()
    step = fab_module.hyperplane_step(
        tf.constant(points), tf.constant(w), tf.constant(b), norms.get(norm)
    ).numpy()
    moved = points + step
    assert moved.min() >= -1e-6 and moved.max() <= 1 + 1e-6
    gap = b - np.sum(w * points, 1)
    sign = np.sign(gap)[:, None]
    room = np.where(w * sign > 0, 1 - points, np.where(w * sign < 0, points, 0.0))
    reachable = np.abs(np.sum(np.abs(w) * room, 1)) >= np.abs(gap)
    assert not reachable[1] and reachable.sum() == len(b) - 1
    np.testing.assert_allclose(np.sum(w * moved, 1)[reachable], b[reachable], atol=1e-3)
    np.testing.assert_allclose(step[1], np.sign(w[1] * sign[1]) * room[1], atol=1e-6)
    for i in np.flatnonzero(reachable):
        if norm == "inf":
            budget = 0.999 * np.abs(step[i]).max()
            best = np.sum(np.abs(w[i]) * np.minimum(budget, room[i]))
        else:  # the L2-shortest move toward a hyperplane inside a box: d_j = min(lam |w_j|, room_j)
            length = np.linalg.norm(step[i])
            lam_hi = 1e6
            lam_lo = 0.0
            for _ in range(
                100
            ):  # the largest reach within 99.9% of the length, by bisection on lam
                lam = (lam_lo + lam_hi) / 2
                if np.linalg.norm(np.minimum(lam * np.abs(w[i]), room[i])) <= 0.999 * length:
                    lam_lo = lam
                else:
                    lam_hi = lam
            best = np.sum(np.abs(w[i]) * np.minimum(lam_lo * np.abs(w[i]), room[i]))
        assert best < abs(gap[i])


@pytest.mark.parametrize("norm", ["inf", "2"])
def test_fab_hyperplane_through_the_far_corner_with_an_ignored_coordinate(norm):
    """The hyperplane is just reachable (through the corner) and one coordinate has w = 0: the
    move is to the corner, not zero (float rounding once put L2 in a zero-slope segment)."""
    points = tf.constant([[0.006785466, 0.14796288, 0.20988652]])
    w = tf.constant([[-0.6778862, -0.82115996, 0.0]])
    step = fab_module.hyperplane_step(points, w, tf.constant([0.0]), norms.get(norm)).numpy()
    np.testing.assert_allclose(step[0], [-0.006785466, -0.14796288, 0.0], atol=1e-6)


def test_fab_t_finds_the_nearest_boundary_of_a_linear_model():
    """On a linear classifier the boundaries are exact hyperplanes: FAB-T breaks every image
    whose nearest wrong-class boundary (in the box) lies within eps, and none beyond it."""
    rng = np.random.default_rng(1)
    model = keras.Sequential(
        [keras.Input((4, 4, 3)), keras.layers.Flatten(), keras.layers.Dense(5)]
    )
    model.layers[-1].set_weights(
        [rng.normal(size=(48, 5)).astype(np.float32), np.zeros(5, np.float32)]
    )
    x = rng.uniform(0.2, 0.8, (30, 4, 4, 3)).astype(np.float32)
    y = predictions(model, x)
    kernel = model.layers[-1].get_weights()[0]
    flat = x.reshape(len(x), -1)
    nearest = np.full(len(x), np.inf)
    for j in range(5):  # the L-inf distance to each boundary z_y = z_j
        w = (kernel[:, y] - kernel[:, [j]]).T
        b = np.zeros(len(x), np.float32)
        step = fab_module.hyperplane_step(
            tf.constant(flat), tf.constant(w), tf.constant(b), norms.LINF
        ).numpy()
        distance = np.where(j == y, np.inf, np.abs(step).max(1))
        nearest = np.minimum(nearest, distance)
    eps = float(np.median(nearest))
    adv = attacks.fab_targeted(model, x, y, eps, steps=50, n_targets=4, seed=0).numpy()
    broken = predictions(model, adv) != y
    assert np.abs(adv - x).max() <= eps + 1e-6
    assert not broken[nearest > eps].any()  # no success where none exists
    assert broken[nearest < 0.95 * eps].all()  # and every clear one found (overshoot eta = 1.05)


def test_fab_t_is_as_strong_as_apgd_t_on_a_trained_model(trained):
    model, x, y = trained
    fab = accuracy(model, attacks.fab_targeted(model, x, y, EPS, steps=20, n_targets=3, seed=0), y)
    apgd_t = accuracy(
        model, attacks.apgd_targeted(model, x, y, EPS, steps=20, n_targets=3, seed=0), y
    )
    assert fab < accuracy(model, x, y)
    assert fab <= apgd_t + 2 / len(y)


def test_fab_t_drops_broken_examples_without_changing_results(trained):
    model, x, y = trained
    clf = models.as_classifier(model)
    targets = attacks.choose_targets(model, x, y, "random", seed=0)
    results = []
    for compact in (True, False):
        run = core.compiled_attack(
            clf,
            fab_module._fab_fn,
            x,
            False,
            norm=norms.LINF,
            steps=10,
            eta=1.05,
            beta=0.9,
            alpha_max=0.1,
            compact=compact,
        )
        results.append(
            [
                v.numpy()
                for v in run(x, y, targets, tf.constant(EPS), tf.constant(0.0), checks.to_seed(0))
            ]
        )
    (adv, won, value), (adv_kept, won_kept, value_kept) = results
    np.testing.assert_array_equal(won, won_kept)  # the same examples broken ...
    assert 0 < won.sum() < len(y)
    for images in (adv, adv_kept):
        assert (
            np.all(predictions(model, images)[won] != y[won])
            and np.abs(images - x).max() <= EPS + 1e-6
        )
        np.testing.assert_array_equal(images[~won], x[~won])
    assert np.all(
        value_kept[won] >= value[won]
    )  # ... searched on, FAB only gets closer; dropped at the first within eps
