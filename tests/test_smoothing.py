"""Randomized smoothing on models with known behaviour (constant, a coin, a threshold on one pixel),
the Clopper-Pearson bound, certified accuracy, and EOT gradients on a randomised model."""

import re
from statistics import NormalDist

import keras
import numpy as np
import pytest

from tfadv import attacks, models
from tfadv.attacks import core as attack_compile
from tfadv.defenses import SmoothedClassifier, certified_accuracy, clopper_pearson_lower
from tfadv.layers import GaussianNoise


def constant_model(num_classes=3, winner=1):
    """Logits that ignore the image: class `winner` always."""
    inputs = keras.Input((8, 8, 3))
    dense = keras.layers.Dense(num_classes)
    logits = dense(keras.layers.Flatten()(inputs))
    bias = np.zeros(num_classes, np.float32)
    bias[winner] = 5.0
    dense.set_weights([np.zeros((192, num_classes), np.float32), bias])
    return keras.Model(inputs, logits)


def pixel_model(offset=0.0):
    """Class 0 when pixel (0, 0, 0) > 0.5 + offset, else class 1 (logits +-(x - 0.5 - offset))."""
    inputs = keras.Input((8, 8, 3))
    dense = keras.layers.Dense(2)
    logits = dense(keras.layers.Flatten()(inputs))
    kernel = np.zeros((192, 2), np.float32)
    kernel[0] = [1.0, -1.0]
    dense.set_weights([kernel, np.array([-(0.5 + offset), 0.5 + offset], np.float32)])
    return keras.Model(inputs, logits)


def grey(n=4):
    return np.full((n, 8, 8, 3), 0.5, np.float32)


def test_constant_classifier_is_certified_with_the_clopper_pearson_radius():
    sigma, n, alpha = 0.25, 200, 0.001
    smoothed = SmoothedClassifier(constant_model(), sigma, batch_size=64)
    result = smoothed.certify(grey(5), n0=10, n=n, alpha=alpha, seed=0)
    np.testing.assert_array_equal(result.classes, 1)
    np.testing.assert_array_equal(result.counts, n)
    p_lower = alpha ** (1 / n)  # Beta(alpha; n, 1) quantile: all n samples agree
    np.testing.assert_allclose(result.p_lower, p_lower, rtol=1e-9)
    np.testing.assert_allclose(result.radii, sigma * NormalDist().inv_cdf(p_lower), rtol=1e-9)
    np.testing.assert_array_equal(smoothed.predict(grey(5), n=50, alpha=alpha), 1)


def test_a_tie_abstains():
    smoothed = SmoothedClassifier(pixel_model(), 0.25, batch_size=100)
    counts = smoothed.counts(grey(6), n=400, seed=1)
    assert np.all(np.abs(counts[:, 0] - 200) < 60)  # a fair coin per image
    np.testing.assert_array_equal(smoothed.predict(grey(6), n=400, alpha=0.001, seed=1), -1)
    result = smoothed.certify(grey(6), n0=20, n=400, alpha=0.001, seed=1)
    np.testing.assert_array_equal(result.classes, -1)
    np.testing.assert_array_equal(result.radii, 0.0)
    assert np.all(result.p_lower < 0.5)


def test_counts_follow_the_noise_distribution_and_the_seed():
    sigma, offset = 0.25, -0.1  # class 0 when noise > -0.1: probability Phi(0.4)
    smoothed = SmoothedClassifier(pixel_model(offset), sigma, batch_size=1000)
    counts = smoothed.counts(
        grey(3), n=4500, seed=2
    )  # 4 full passes and a partial one, three images
    np.testing.assert_array_equal(counts.sum(axis=1), 4500)
    np.testing.assert_allclose(counts[:, 0] / 4500, NormalDist().cdf(0.1 / sigma), atol=0.03)
    np.testing.assert_array_equal(counts, smoothed.counts(grey(3), n=4500, seed=2))
    assert not np.array_equal(counts, smoothed.counts(grey(3), n=4500, seed=3))
    smoothed.counts(grey(2), n=2000, seed=2)  # another n and batch: no retrace
    traces = [
        f.experimental_get_tracing_count()
        for f in attack_compile._COMPILED[smoothed.model].values()
    ]
    assert traces == [1]
    # the smoothed prediction: Phi(0.4) = 0.66 with n = 1000 is significant at alpha = 0.001
    np.testing.assert_array_equal(smoothed.predict(grey(3), n=1000, alpha=0.001, seed=0), 0)


def test_clopper_pearson_lower_bound():
    np.testing.assert_allclose(
        clopper_pearson_lower(5, 10, 0.05), 0.22244, atol=1e-5
    )  # the 90% two-sided interval
    np.testing.assert_allclose(clopper_pearson_lower([0, 10], 10, 0.01), [0.0, 0.01**0.1])
    bounds = clopper_pearson_lower(np.arange(101), 100, 0.001)
    assert np.all(np.diff(bounds) > 0) and np.all(bounds <= np.arange(101) / 100)


def test_certified_accuracy_counts_correct_images_with_a_large_enough_radius():
    radii = np.array([0.0, 0.1, 0.3, 0.5, 0.7])
    correct = np.array([False, True, True, False, True])
    np.testing.assert_allclose(
        certified_accuracy(radii, correct, [0.0, 0.1, 0.25, 0.6, 1.0]), [0.6, 0.6, 0.4, 0.2, 0.0]
    )
    with pytest.raises(ValueError, match="5 radii, 4 flags"):
        certified_accuracy(radii, correct[:4], [0.0])


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: SmoothedClassifier(constant_model(), 0.0), "sigma=0.0"),
        (lambda: SmoothedClassifier(constant_model(), 0.25, batch_size=0), "batch_size=0"),
        (
            lambda: SmoothedClassifier(constant_model(), 0.25).predict(grey(), alpha=1.5),
            "alpha=1.5",
        ),
        (lambda: SmoothedClassifier(constant_model(), 0.25).certify(grey(), n=0), "n=0"),
        (lambda: SmoothedClassifier(constant_model(), 0.25).counts(grey() * 3, n=10), "max=1.5"),
    ],
)
def test_invalid_arguments_raise_value_errors_echoing_the_value(call, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        call()


def test_eot_averages_the_gradient_over_noise_draws():
    """Margin loss sum((x + d)^2): one draw's gradient 2(x + d) points off x; the mean over many
    draws points along x (the L2 FGSM step is that direction)."""
    inputs = keras.Input((8, 8, 3))
    noisy = GaussianNoise(0.5, seed=0, active_at_inference=True)(inputs)
    square = keras.layers.Lambda(
        lambda t: keras.ops.sum(keras.ops.square(t), axis=(1, 2, 3), keepdims=False)[:, None]
    )(noisy)
    logits = keras.layers.Concatenate()([square, keras.ops.zeros_like(square)])
    model = models.as_classifier(keras.Model(inputs, logits), output="logits")
    x = np.random.default_rng(0).uniform(0.3, 0.7, (4, 8, 8, 3)).astype(np.float32)
    labels = np.ones(4, np.int64)  # margin = z_0 - z_1 = sum((x + d)^2)

    def cosine(samples):
        view = models.expectation(model, samples) if samples > 1 else model
        step = attacks.fgsm(view, x, labels, 0.1, norm="2", loss="margin").numpy() - x
        step, direction = step.reshape(4, -1), x.reshape(4, -1)
        return (
            (step * direction).sum(1)
            / np.linalg.norm(step, axis=1)
            / np.linalg.norm(direction, axis=1)
        )

    one, many = cosine(1), cosine(256)
    assert np.all(many > 0.99) and np.all(one < 0.9)
    deterministic = models.build("tiny_cnn", (8, 8, 3), 3)
    np.testing.assert_array_equal(
        attacks.pgd(deterministic, x, labels, 0.03, steps=2, seed=0),
        attacks.pgd(models.expectation(deterministic, 3), x, labels, 0.03, steps=2, seed=0),
    )


def test_certified_accuracy_figure_png(tmp_path):
    from tfadv.defenses import smoothing_figures

    grid = np.linspace(0.0, 1.0, 11)
    fig = smoothing_figures.certified_accuracy_figure(grid, {"sigma 0.25": 1.0 - grid}, "smoothing")
    assert len(fig.axes[0].lines) == 1 and fig.axes[0].get_xlabel().startswith("L2 radius")
    path = smoothing_figures.save_png(fig, str(tmp_path / "certified.png"))
    assert open(path, "rb").read()[:4] == b"\x89PNG"
