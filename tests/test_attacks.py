"""Properties of tfadv.attacks: budgets, eps = 0, strength ordering, targeting, argument checks,
compilation (no retracing; inside tf.function, model.fit and MirroredStrategy), seeding."""

import logging
import os
import re
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfadv import attacks, data, models
from tfadv.attacks import core as attack_compile

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EPS = 8 / 255
GRADIENT_ATTACKS = ("fgsm", "fgsm_targeted", "fgsm_random", "bim", "pgd", "random_sign")


@pytest.fixture(scope="module")
def trained(trained_tiny_cnn):
    """The shared trained tiny_cnn plus a batch of 48 held-out images."""
    test = data.make_synthetic(48, seed=1)
    return trained_tiny_cnn, test.float_images(), test.labels


def accuracy(model, images, labels):
    return float((attacks.logits_of(model, images).numpy().argmax(1) == labels).mean())


def probabilities(model, images):
    return model(images, training=False).numpy()


@pytest.mark.parametrize("name", GRADIENT_ATTACKS)
def test_eps_zero_returns_the_input(trained, name):
    model, x, y = trained
    np.testing.assert_array_equal(attacks.get(name)(model, x, y, 0.0).numpy(), x)


@pytest.mark.parametrize(
    "name, options",
    [(name, {}) for name in GRADIENT_ATTACKS]
    + [
        ("pgd", {"restarts": 2, "seed": 3}),
        ("pgd", {"loss_on": "probabilities"}),
        ("bim", {"target": "random", "seed": 0}),
    ]
    + [("pgd", {"loss": loss}) for loss in ("margin", "dlr", "ce_t")]
    + [("pgd", {"loss": "dlr", "target": "random"})],
)
def test_linf_results_stay_in_the_ball_and_the_pixel_range(trained, name, options):
    model, x, y = trained
    adv = attacks.get(name)(model, x, y, EPS, **options).numpy()
    assert adv.shape == x.shape and adv.dtype == np.float32
    assert adv.min() >= 0.0 and adv.max() <= 1.0
    assert np.abs(adv - x).max() <= EPS + 1e-6  # float32 rounding of x + eta
    assert np.abs(adv - x).max() > EPS / 2  # and the attack did move


@pytest.mark.parametrize("name", ["pgd", "bim", "fgsm"])
def test_l2_results_stay_in_the_ball(trained, name):
    model, x, y = trained
    eps = 0.5
    adv = attacks.get(name)(model, x, y, eps, norm="2").numpy()
    norms = np.sqrt(((adv - x) ** 2).reshape(len(x), -1).sum(1))
    assert adv.min() >= 0.0 and adv.max() <= 1.0
    assert norms.max() <= eps * (1 + 1e-5)
    assert np.median(norms) > eps / 2


def test_pgd_leaves_no_more_images_correct_than_fgsm(trained):
    model, x, y = trained
    for eps in (2 / 255, EPS):
        fgsm_acc = accuracy(model, attacks.fgsm(model, x, y, eps), y)
        pgd_acc = accuracy(model, attacks.pgd(model, x, y, eps, seed=0), y)
        assert pgd_acc <= fgsm_acc
    assert accuracy(model, attacks.pgd(model, x, y, EPS, seed=0), y) < accuracy(model, x, y)


@pytest.mark.parametrize("restarts", [1, 2])
def test_pgd_with_early_stop_breaks_every_image_plain_pgd_breaks(trained, restarts):
    """Early stop follows the same steps until an image breaks and keeps that iterate, so it
    breaks at least the images whose last iterate is broken, stays in the eps-ball, and
    returns the unbroken ones' last iterate."""
    model, x, y = trained
    options = dict(steps=8, restarts=restarts, loss="margin", seed=4)
    early = attacks.pgd(model, x, y, EPS, early_stop=True, **options).numpy()
    plain = attacks.pgd(model, x, y, EPS, **options).numpy()
    broken = attacks.predict_classes(model, early) != y
    assert np.all(broken[attacks.predict_classes(model, plain) != y])
    assert 0 < broken.sum() < len(y) and np.abs(early - x).max() <= EPS + 1e-6
    if restarts == 1:
        np.testing.assert_allclose(early[~broken], plain[~broken], atol=1e-6)


def test_restarts_keep_each_examples_strongest_result(trained):
    model, x, y = trained
    one = attacks.pgd(model, x, y, 2 / 255, steps=3, seed=5)
    best = attacks.pgd(model, x, y, 2 / 255, steps=3, seed=5, restarts=3)
    # restart 0 of the 3-restart run is the single run (same seed), so no example can get worse
    wrong_one = attacks.logits_of(model, one).numpy().argmax(1) != y
    wrong_best = attacks.logits_of(model, best).numpy().argmax(1) != y
    assert np.all(wrong_best[wrong_one])

    def loss(a):
        return tf.nn.sparse_softmax_cross_entropy_with_logits(
            y, attacks.logits_of(model, a)
        ).numpy()

    both = wrong_one == wrong_best
    assert np.all(loss(best)[both] >= loss(one)[both] - 1e-5)


@pytest.mark.parametrize("target", ["least_likely", "least_likely_top5", "random", 3])
def test_targeted_fgsm_raises_the_targets_probability(trained, target):
    model, x, y = trained
    targets = attacks.choose_targets(model, x, y, target, seed=0).numpy()
    adv = attacks.fgsm_targeted(model, x, y, EPS, target=target, seed=0)
    rows = np.arange(len(y))
    before, after = (
        probabilities(model, x)[rows, targets],
        probabilities(model, adv.numpy())[rows, targets],
    )
    assert np.mean(after > before) > 0.9
    assert after.mean() > before.mean()


def test_target_choices(trained):
    model, x, y = trained
    logits = attacks.logits_of(model, x).numpy()
    np.testing.assert_array_equal(
        attacks.choose_targets(model, x, y, "least_likely"), logits.argmin(1)
    )
    np.testing.assert_array_equal(
        attacks.choose_targets(model, x, y, "least_likely_top5"), np.argsort(-logits, axis=1)[:, 4]
    )
    random_targets = attacks.choose_targets(model, x, y, "random", seed=1).numpy()
    assert np.all(random_targets != y) and np.all((0 <= random_targets) & (random_targets < 10))


def test_targeted_pgd_hits_the_target_more_often_than_clean(trained):
    model, x, y = trained
    targets = attacks.choose_targets(model, x, y, "random", seed=0).numpy()

    def hits(images):
        return np.mean(attacks.logits_of(model, images).numpy().argmax(1) == targets)

    targeted = hits(attacks.pgd(model, x, y, EPS, target=targets, seed=0))
    assert targeted > hits(x) and targeted > hits(attacks.pgd(model, x, y, EPS, seed=0))


def test_random_sign_moves_every_value_by_exactly_eps_unless_clipped(trained):
    model, x, y = trained
    adv = attacks.random_sign(model, x, y, EPS, seed=0).numpy()
    interior = (x >= EPS) & (x <= 1 - EPS)
    np.testing.assert_allclose(np.abs(adv - x)[interior], EPS, atol=1e-6)
    assert 0.45 < np.mean(adv[interior] > x[interior]) < 0.55
    assert accuracy(model, adv, y) > accuracy(model, attacks.fgsm(model, x, y, EPS), y)


def test_seeding_is_deterministic(trained):
    model, x, y = trained
    same = [attacks.pgd(model, x, y, EPS, steps=2, seed=7).numpy() for _ in range(2)]
    np.testing.assert_array_equal(*same)
    assert not np.array_equal(same[0], attacks.pgd(model, x, y, EPS, steps=2, seed=8).numpy())
    assert not np.array_equal(
        attacks.random_sign(model, x, y, EPS, seed=(1, 0)),
        attacks.random_sign(model, x, y, EPS, seed=(1, 1)),
    )
    tf.random.set_seed(11)
    first = [attacks.random_sign(model, x, y, EPS).numpy() for _ in range(2)]
    tf.random.set_seed(11)
    again = [attacks.random_sign(model, x, y, EPS).numpy() for _ in range(2)]
    assert not np.array_equal(*first)  # seed=None: fresh noise on every call ...
    np.testing.assert_array_equal(first[1], again[1])  # ... repeatable after tf.random.set_seed


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda m, x, y: attacks.fgsm(m, x, y, -0.1), "eps=-0.1"),
        (lambda m, x, y: attacks.pgd(m, x, y, keras.Variable(-0.5)), "eps=-0.5"),
        (
            lambda m, x, y: attacks.fgsm(m, x, y, tf.constant([0.1, 0.2])),
            "Expected a scalar number for eps",
        ),
        (lambda m, x, y: attacks.fgsm(m, x, y, 1.5), "eps=1.5"),
        (lambda m, x, y: attacks.fgsm(m, x, y, float("nan")), "eps=nan"),
        (lambda m, x, y: attacks.pgd(m, x, y, 0.03, loss="hinge"), "loss='hinge'"),
        (lambda m, x, y: attacks.pgd(m, x, y, 0.03, target=10), "target=10"),
        (lambda m, x, y: attacks.Attack("fgsm", steps=3), "takes no option(s) ['steps']"),
        (lambda m, x, y: attacks.Attack.parse("pgd(steps)"), "steps"),
        (lambda m, x, y: attacks.pgd(m, x, y, 0.01, alpha=0.02), "alpha=0.02, eps=0.01"),
        (lambda m, x, y: attacks.pgd(m, x, y, 0.03, norm="l1"), "norm='l1'"),
        (lambda m, x, y: attacks.pgd(m, x, y, 0.03, steps=0), "steps=0"),
        (lambda m, x, y: attacks.pgd(m, x, y, 0.03, restarts=2, random_start=False), "restarts=2"),
        (lambda m, x, y: attacks.fgsm(m, x, y, 0.03, loss_on="softmax"), "loss_on='softmax'"),
        (lambda m, x, y: attacks.fgsm(m, x, y[:, None], 0.03), "labels.shape=(48, 1)"),
        (lambda m, x, y: attacks.fgsm(m, x, y[:5], 0.03), "labels.shape=(5,)"),
        (lambda m, x, y: attacks.fgsm(m, x, y + 10, 0.03), "max=19"),
        (lambda m, x, y: attacks.fgsm(m, x * 255, y, 0.03), "max=25"),
        (lambda m, x, y: attacks.fgsm(m, (x * 255).astype(np.uint8), y, 0.03), "dtype=uint8"),
        (lambda m, x, y: attacks.fgsm(m, x[0], y, 0.03), "images.shape=(32, 32, 3)"),
        (lambda m, x, y: attacks.pgd(m, x, y, 0.03, seed="x"), "seed='x'"),
        (lambda m, x, y: attacks.choose_targets(m, x, y, "most_likely"), "target='most_likely'"),
        (lambda m, x, y: attacks.one_pixel(m, x, y, population=3), "population=3"),
        (lambda m, x, y: attacks.patch(m, x, y, 0.03), "eps=0.03"),
        (lambda m, x, y: attacks.patch(m, x, y, size=40), "size=40"),
        (lambda m, x, y: attacks.get("jsma"), "'bim', 'cw_l2', 'deepfool', 'fab_t', 'fgsm'"),
    ],
)
def test_invalid_arguments_raise_value_errors_echoing_the_value(trained, call, message):
    model, x, y = trained
    with pytest.raises(ValueError, match=re.escape(message)):
        call(model, x, y)


def _tracing_counts(model):
    compiled = attack_compile._COMPILED[model]
    return {
        key[0].__name__ + str(key[1]): fn.experimental_get_tracing_count()
        for key, fn in compiled.items()
    }


def test_no_retracing_across_batches_eps_values_and_a_smaller_last_batch(trained, caplog):
    model, x, y = trained
    eps_variable = tf.Variable(0.01)
    with caplog.at_level(logging.WARNING):
        for eps in (0.01, 0.02, tf.constant(0.03), eps_variable):
            for start in (0, 16, 32, 40):  # batches of 16, 16, 16 and 8
                attacks.pgd(
                    model, x[start : start + 16], y[start : start + 16], eps, steps=2, seed=start
                )
                attacks.fgsm(model, x[start : start + 16], y[start : start + 16], eps)
            eps_variable.assign_add(0.01)
    counts = _tracing_counts(model)
    pgd_key = [k for k in counts if k.startswith("_iterative_fn") and "('steps', 2)" in k]
    assert len(pgd_key) == 1 and counts[pgd_key[0]] == 1
    assert all(count == 1 for count in counts.values()), counts
    assert "retracing" not in caplog.text


def test_works_inside_tf_function_and_stops_gradients(trained):
    model, x, y = trained
    eps = tf.Variable(EPS)

    @tf.function
    def outer(images, labels):
        with tf.GradientTape() as tape:
            tape.watch(images)
            adv = attacks.pgd(model, images, labels, eps, steps=2, seed=(0, 1))
            total = tf.reduce_sum(adv)
        return adv, tape.gradient(total, images, unconnected_gradients="zero")

    adv, grad = outer(tf.constant(x[:16]), tf.constant(y[:16]))
    np.testing.assert_array_equal(
        adv.numpy(), attacks.pgd(model, x[:16], y[:16], EPS, steps=2, seed=(0, 1)).numpy()
    )
    assert not np.any(grad.numpy())


def test_model_fit_train_step_with_a_ramped_eps_variable(trained):
    _, x, y = trained
    keras.utils.set_random_seed(1)
    base = models.build("tiny_cnn")

    class Adversarial(keras.Model):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.eps = tf.Variable(0.0, trainable=False)

        def train_step(self, batch):
            images, labels = batch
            adv = attacks.pgd(
                self, images, labels, self.eps, steps=2, seed=(0, self.optimizer.iterations)
            )
            return super().train_step((adv, labels))

    model = Adversarial(inputs=base.inputs, outputs=base.outputs)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    for eps in (0.01, 0.02):
        model.eps.assign(eps)
        model.fit(x, y, batch_size=20, epochs=1, verbose=0)  # 20, 20, 8: a smaller last batch
    counts = _tracing_counts(model)
    assert list(counts.values()) == [1], counts


def test_mirrored_strategy_replica_context():
    """Runs in a subprocess: the CPU must be split into 2 devices before TF initialises."""
    script = textwrap.dedent(
        """
        import numpy as np, keras, tensorflow as tf
        from tfadv.runtime import devices as runtime
        runtime.split_cpu(2)
        from tfadv import attacks, models
        from tfadv.attacks import core as attack_compile
        strategy = runtime.make_strategy("mirrored")
        assert strategy.num_replicas_in_sync == 2

        class Adversarial(keras.Model):
            def train_step(self, batch):
                images, labels = batch
                adv = attacks.pgd(
                    self, images, labels, 0.03, steps=2, seed=(0, self.optimizer.iterations)
                )
                tf.debugging.assert_less_equal(tf.reduce_max(tf.abs(adv - images)), 0.0301)
                return super().train_step((adv, labels))

        with strategy.scope():
            base = models.build("tiny_cnn")
            model = Adversarial(base.inputs, base.outputs)
            model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
        x = np.random.default_rng(0).random((40, 32, 32, 3), dtype=np.float32)
        history = model.fit(x, np.arange(40) % 10, batch_size=16, epochs=2, verbose=0)
        counts = [
            f.experimental_get_tracing_count() for f in attack_compile._COMPILED[model].values()
        ]
        print("OK", counts)
        """
    )
    env = dict(os.environ, PYTHONPATH=REPO_ROOT, TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO_ROOT,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "OK [2]" in proc.stdout  # one trace per replica device, none per batch


def test_loss_on_probabilities_sees_masked_gradients_where_logits_do_not(trained):
    model, x, y = trained
    clone = keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    models.set_temperature(clone, 1e-3)  # a saturated softmax, like a distilled model at T=1
    on_probs = attacks.input_gradient(clone, x, y, loss_on="probabilities").numpy()
    on_logits = attacks.input_gradient(clone, x, y, loss_on="logits").numpy()
    correct = attacks.logits_of(clone, x).numpy().argmax(1) == y
    assert correct.any()
    assert not np.any(on_probs[correct])  # exactly zero: nothing for a naive attacker to follow
    assert np.all(np.abs(on_logits[correct]).reshape(correct.sum(), -1).max(1) > 0)
    fgsm_probs = attacks.fgsm(clone, x, y, EPS, loss_on="probabilities").numpy()
    np.testing.assert_array_equal(fgsm_probs[correct], x[correct])


def test_steps_to_flip_agrees_with_bim(trained):
    model, x, y = trained
    alpha = 1 / 255
    steps = attacks.steps_to_flip(model, x, y, alpha=alpha, max_steps=30).numpy()
    finite = np.isfinite(steps)
    assert finite.any() and np.all(steps[finite] >= 1)
    clean = attacks.logits_of(model, x).numpy().argmax(1)
    for k in np.unique(steps[finite]).astype(int)[:3]:
        idx = np.flatnonzero(steps == k)
        after = attacks.bim(model, x[idx], y[idx], 1.0, steps=int(k), alpha=alpha)
        assert np.all(attacks.logits_of(model, after).numpy().argmax(1) != clean[idx])
        if k > 1:
            before = attacks.bim(model, x[idx], y[idx], 1.0, steps=int(k) - 1, alpha=alpha)
            np.testing.assert_array_equal(
                attacks.logits_of(model, before).numpy().argmax(1), clean[idx]
            )


def test_exported_saved_model_is_attacked_like_the_keras_model(trained, tmp_path):
    model, x, y = trained
    exported = models.load(models.export_saved_model(model, str(tmp_path / "saved")))
    assert isinstance(exported, models.Classifier) and exported.logits_source == "signature"
    a = attacks.fgsm(model, x, y, EPS).numpy()
    b = attacks.fgsm(exported, x, y, EPS).numpy()
    assert np.mean(a == b) > 0.999
    adv = attacks.pgd(exported, x, y, EPS, steps=3, seed=0).numpy()
    assert np.abs(adv - x).max() <= EPS + 1e-6


def test_one_pixel_changes_at_most_k_pixels_and_lowers_the_true_class(trained):
    model, x, y = trained
    x, y = x[:24], y[:24]
    for pixels, eps in ((1, 1.0), (3, 0.25)):
        adv = attacks.one_pixel(
            model, x, y, eps, pixels=pixels, population=12, max_queries=96, seed=0
        ).numpy()
        changed = np.any(adv != x, axis=-1).reshape(len(x), -1).sum(1)
        assert changed.max() <= pixels and changed.max() >= 1
        assert np.abs(adv - x).max() <= eps + 1e-6
        rows = np.arange(len(y))
        assert probabilities(model, adv)[rows, y].mean() < probabilities(model, x)[rows, y].mean()


def test_one_pixel_on_an_empty_batch_returns_it(trained):
    model, x, y = trained
    assert attacks.one_pixel(
        model, x[:0], y[:0], 1.0, population=4, max_queries=8, seed=0
    ).shape == (0, *x.shape[1:])


def test_one_pixel_targeted_raises_the_target(trained):
    model, x, y = trained
    x, y = x[:24], y[:24]
    targets = attacks.choose_targets(model, x, y, "random", seed=0).numpy()
    adv = attacks.one_pixel(
        model, x, y, pixels=2, population=12, max_queries=96, target=targets, seed=0
    )
    rows = np.arange(len(y))
    assert (
        probabilities(model, adv.numpy())[rows, targets].mean()
        > probabilities(model, x)[rows, targets].mean()
    )


def test_patch_only_touches_its_square_and_hurts_accuracy(trained):
    model, x, y = trained
    result = attacks.patch(model, x, y, size=10, steps=40, step_size=0.05, batch_size=32, seed=0)
    assert result.patch.shape == (10, 10, 3)
    diff = np.any(result.images.numpy() != x, axis=-1)
    for image_diff, (row, col) in zip(diff, result.positions.numpy(), strict=True):
        outside = image_diff.copy()
        outside[row : row + 10, col : col + 10] = False
        assert not outside.any()

    def loss(a):
        return (
            tf.nn.sparse_softmax_cross_entropy_with_logits(y, attacks.logits_of(model, a))
            .numpy()
            .mean()
        )  # noqa: E731

    random_patch = attacks.apply_patch(
        x, np.random.default_rng(0).random((10, 10, 3), dtype=np.float32), result.positions
    )
    assert loss(result.images) > loss(random_patch.images)


def test_targeted_patch_at_a_fixed_position(trained):
    model, x, y = trained
    result = attacks.patch(
        model, x, y, size=10, positions=(2, 3), target=4, steps=40, step_size=0.05, seed=0
    )
    np.testing.assert_array_equal(result.positions.numpy(), np.tile([2, 3], (len(x), 1)))
    np.testing.assert_array_equal(
        result.images.numpy()[:, 2:12, 3:13],
        np.broadcast_to(result.patch.numpy(), (len(x), 10, 10, 3)),
    )
    assert (
        probabilities(model, result.images.numpy())[:, 4].mean()
        > probabilities(model, x)[:, 4].mean()
    )
