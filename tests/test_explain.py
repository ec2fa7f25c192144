"""tfadv.explain: saliency against an independent GradientTape, occlusion on a model that looks at
one quadrant only, ROC numbers, sticker detection on a briefly trained model, figures, checks."""

import os
import re

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfadv import attacks, data, explain, models
from tfadv.attacks import core as attack_compile
from tfadv.explain import figures


@pytest.fixture(scope="module")
def small_model():
    keras.utils.set_random_seed(3)
    return models.build("tiny_cnn", (16, 16, 3), 4)


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).random((20, 16, 16, 3), dtype=np.float32)


def quadrant_model(scale=0.25, clean_logit=3.0):
    """2 classes on 16x16x3 images; logit 0 = scale * (sum of the top-left 8x8 quadrant - c),
    logit 1 = 0, with c chosen so that an all-ones quadrant gives logit 0 = clean_logit. The rest of
    the image is ignored."""
    inputs = keras.Input((16, 16, 3))
    quadrant = keras.layers.Cropping2D(((0, 8), (0, 8)))(inputs)
    dense = keras.layers.Dense(2)
    logits = dense(keras.layers.Flatten()(quadrant))
    kernel = np.zeros((192, 2), np.float32)
    kernel[:, 0] = scale
    dense.set_weights([kernel, np.array([clean_logit - scale * 192, 0.0], np.float32)])
    return keras.Model(inputs, logits)


def _tracing_counts(model):
    return {
        key[0].__name__: fn.experimental_get_tracing_count()
        for key, fn in attack_compile._COMPILED[model].items()
    }


# ----------------------------------------------------------------------------- saliency


def test_saliency_is_the_channel_max_of_the_absolute_logit_gradient(small_model, images):
    model = small_model
    logits_model = models.logits_model(model)
    classes = np.arange(len(images)) % 4
    x = tf.constant(images)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        logits = logits_model(x, training=False)
        given = tf.reduce_sum(tf.gather(logits, classes, batch_dims=1))
        predicted = tf.reduce_sum(tf.reduce_max(logits, axis=1))
    expected_given = np.abs(tape.gradient(given, x).numpy()).max(axis=-1)
    expected_predicted = np.abs(tape.gradient(predicted, x).numpy()).max(axis=-1)

    maps = explain.saliency(model, images, classes, batch_size=8)  # batches of 8, 8, 4
    assert maps.shape == (20, 16, 16) and maps.dtype == np.float32
    np.testing.assert_allclose(maps, expected_given, rtol=1e-4, atol=1e-6)
    maps, used = explain.saliency(model, images, return_classes=True)
    np.testing.assert_array_equal(used, logits.numpy().argmax(1))
    np.testing.assert_allclose(maps, expected_predicted, rtol=1e-4, atol=1e-6)
    assert _tracing_counts(model)["_saliency_fn"] == 1


def test_saliency_is_zero_where_the_model_does_not_look():
    maps = explain.saliency(quadrant_model(), np.full((3, 16, 16, 3), 0.9, np.float32), [0, 0, 1])
    np.testing.assert_allclose(maps[:2, :8, :8], 0.25)  # |d logit / dx| = the kernel value
    assert not maps[:, 8:].any() and not maps[:, :, 8:].any()
    np.testing.assert_array_equal(maps[2], 0.0)  # logit 1 is a constant


# ----------------------------------------------------------------------------- occlusion


def test_occlusion_drops_only_where_the_model_looks():
    model = quadrant_model()
    x = np.random.default_rng(1).uniform(0.97, 1.0, (5, 16, 16, 3)).astype(np.float32)
    maps = explain.occlusion(model, x, size=4, stride=4, fill=0.5, batch_size=2, chunk_size=6)
    assert maps.drops.shape == (5, 4, 4) and maps.upsampled.shape == (5, 16, 16)
    np.testing.assert_array_equal(maps.classes, 0)
    inside = maps.drops[:, :2, :2]  # the four 4x4 places within the top-left quadrant
    outside = maps.drops.copy()
    outside[:, :2, :2] = 0
    assert inside.min() > 0.6  # covering 16 of the 64 quadrant pixels: logit 0 falls by ~6
    np.testing.assert_allclose(outside, 0.0, atol=1e-6)
    np.testing.assert_allclose(
        maps.upsampled[:, :8, :8], np.repeat(np.repeat(inside, 4, 1), 4, 2), atol=1e-6
    )
    np.testing.assert_allclose(maps.upsampled[:, 8:], 0.0, atol=1e-6)
    np.testing.assert_array_equal(maps.covered_predictions[:, :2, :2], 1)  # the class flips
    np.testing.assert_array_equal(maps.covered_predictions[:, 2:], 0)


def test_occlusion_agrees_with_covering_by_hand(small_model, images):
    model, x = small_model, images[:5]
    size, stride, fill = 5, 3, 0.2
    maps = explain.occlusion(
        model,
        x,
        classes=[0, 1, 2, 3, 0],
        size=size,
        stride=stride,
        fill=fill,
        batch_size=3,
        chunk_size=20,
    )
    rows = len(range(0, 16 - size + 1, stride))
    assert maps.drops.shape == (5, rows, rows) and len(maps.positions) == rows * rows
    probabilities = model(x, training=False).numpy()
    for i, c in enumerate([0, 1, 2, 3, 0]):
        covered = np.repeat(x[i : i + 1], len(maps.positions), axis=0)
        for j, (r, col) in enumerate(maps.positions):
            covered[j, r : r + size, col : col + size] = fill
        p = model(covered, training=False).numpy()
        np.testing.assert_allclose(
            maps.drops[i].reshape(-1), probabilities[i, c] - p[:, c], atol=1e-5
        )
        np.testing.assert_array_equal(maps.covered_predictions[i].reshape(-1), p.argmax(1))
    counts = _tracing_counts(model)
    explain.occlusion(
        model, images, size=size, stride=stride, fill=0.7, batch_size=3, chunk_size=20
    )
    assert (
        _tracing_counts(model)["_occlusion_fn"] == counts["_occlusion_fn"] == 1
    )  # new fill, batch: no retrace


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda m, x: explain.occlusion(m, x, stride=0), "stride=0"),
        (lambda m, x: explain.occlusion(m, x, size=17), "size=17"),
        (lambda m, x: explain.occlusion(m, x, fill=1.5), "fill=1.5"),
        (lambda m, x: explain.occlusion(m, x, chunk_size=0), "chunk_size=0"),
        (lambda m, x: explain.saliency(m, x, classes=[7] * len(x)), "max=7"),
        (lambda m, x: explain.saliency(m, x * 255), "max=25"),
        (lambda m, x: explain.ConsistencyDetector(m, score="entropy"), "score='entropy'"),
        (lambda m, x: explain.ConsistencyDetector(m, candidates="best"), "candidates='best'"),
        (lambda m, x: explain.ConsistencyDetector(m, size=4).detect(x), "threshold=None"),
        (lambda m, x: explain.threshold_for_fpr([0.1, 0.2], fpr=1.5), "fpr=1.5"),
        (lambda m, x: explain.roc_curve([], [1.0]), "clean_scores of length 0"),
    ],
)
def test_invalid_arguments_raise_value_errors_echoing_the_value(small_model, images, call, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        call(small_model, images)


# ----------------------------------------------------------------------------- ROC and thresholds


def _mann_whitney_auc(clean, attacked):
    a, c = np.asarray(attacked)[:, None], np.asarray(clean)[None, :]
    return float(((a > c) + 0.5 * (a == c)).mean())


def test_roc_auc_perfect_random_and_ties():
    rng = np.random.default_rng(0)
    assert explain.roc_auc([0.0, 0.1, 0.2], [0.5, 0.9]) == 1.0
    assert explain.roc_auc([0.5, 0.9], [0.0, 0.1, 0.2]) == 0.0
    random_auc = explain.roc_auc(rng.random(2000), rng.random(2000))
    assert abs(random_auc - 0.5) < 0.03
    clean, attacked = rng.integers(0, 5, 300), rng.integers(1, 7, 200)  # many ties
    assert explain.roc_auc(clean, attacked) == pytest.approx(
        _mann_whitney_auc(clean, attacked), abs=1e-12
    )
    fpr, tpr, thresholds = explain.roc_curve(clean, attacked)
    assert (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0, 0, 1, 1) and np.isinf(thresholds[0])
    assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(tpr) >= 0)
    np.testing.assert_allclose(tpr[3], np.mean(attacked >= thresholds[3]))


def test_threshold_for_fpr_flags_at_most_the_share_asked():
    scores = np.random.default_rng(1).random(200)
    for fpr in (0.0, 0.05, 0.1, 0.5):
        t = explain.threshold_for_fpr(scores, fpr)
        assert np.mean(scores > t) <= fpr
        assert np.mean(scores > t) > fpr - 1 / 200 - 1e-9  # the smallest such threshold
    assert explain.threshold_for_fpr(scores, 1.0) == -np.inf


# ----------------------------------------------------------------------------- detection


@pytest.fixture(scope="module")
def patched():
    """tiny_cnn trained briefly on 16x16 synthetic images, and a 6x6 patch attack on held-out
    images."""
    keras.utils.set_random_seed(0)
    model = models.build("tiny_cnn", (16, 16, 3), 10)
    train = data.make_synthetic(2048, seed=0, size=16)
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy")
    model.fit(train.float_images(), train.labels, epochs=5, batch_size=64, verbose=0)
    test = data.make_synthetic(128, seed=1, size=16)
    x, y = test.float_images(), test.labels
    result = attacks.patch(model, x, y, size=6, steps=200, step_size=0.05, batch_size=64, seed=0)
    return model, x, y, result.images.numpy()


def test_detector_separates_patched_from_clean_images(patched, tmp_path):
    model, x, y, adv = patched
    detector = explain.ConsistencyDetector(model, size=6, stride=2)
    threshold = detector.fit_threshold(x[:64], fpr=0.1)
    assert np.mean(detector.scores(x[:64]) > threshold) <= 0.1
    report = detector.evaluate(x[64:], adv[64:], y[64:])
    assert report.tpr > report.fpr + 0.4, report.summary()
    assert report.auc > 0.85 and report.tpr_successful >= report.tpr - 0.1
    np.testing.assert_array_equal(detector.detect(adv[64:]), report.attacked_scores > threshold)
    maps = detector.maps(adv[64:])
    np.testing.assert_array_equal(detector.scores_from_maps(maps), report.attacked_scores)
    flip = explain.ConsistencyDetector(
        model, size=6, stride=2, score="flip_fraction", candidates="top_k", top_k=3
    )
    scores = flip.scores(adv[64:80])
    assert (
        scores.min() >= 0
        and scores.max() <= 1
        and np.all(np.isin(np.round(scores * 3), [0, 1, 2, 3]))
    )
    path = figures.save_png(
        figures.roc_figure(
            report.roc_fpr, report.roc_tpr, report.auc, operating_point=(report.fpr, report.tpr)
        ),
        str(tmp_path / "roc.png"),
    )
    assert os.path.getsize(path) > 1000


def test_map_overlays_png(patched, tmp_path):
    model, x, y, adv = patched
    clean_maps, adv_maps = explain.saliency(model, x[:3]), explain.saliency(model, adv[:3])
    fig = figures.map_overlays(
        x[:3],
        adv[:3],
        clean_maps,
        adv_maps,
        labels=y[:3],
        clean_predictions=y[:3],
        adversarial_predictions=attacks.predict_classes(model, adv[:3]),
        map_name="saliency",
    )
    path = figures.save_png(fig, str(tmp_path / "overlay.png"))
    image = figures.plt.imread(path)
    assert image.ndim == 3 and image.shape[0] > 100
    occluded = explain.occlusion(model, np.concatenate([x[:3], adv[:3]]), size=6, stride=2)
    figures.save_png(
        figures.map_overlays(x[:3], adv[:3], occluded.upsampled[:3], occluded.upsampled[3:]),
        str(tmp_path / "occ.png"),
    )
    with pytest.raises(ValueError, match="0 images"):
        figures.map_overlays(x[:0], adv[:0], clean_maps[:0], adv_maps[:0])
