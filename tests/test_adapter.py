"""The model adapter: every kind of classifier is attacked through its logits, found once.

One logits network (tiny_cnn's body + Dense(10)) is wrapped in each way a user may hand it to
tfadv; every wrapping must give the same logits, so PGD (loss on logits, same seed) must give
the same adversarial images on all of them.
"""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfadv import attacks, data, models
from tfadv.layers import TemperatureSoftmax

EPS = 8 / 255


@pytest.fixture(scope="module")
def twin(trained_tiny_cnn):
    """(logits model sharing the trained weights, a batch of 32 images, labels)."""
    test = data.make_synthetic(32, seed=2)
    return models.logits_model(trained_tiny_cnn), test.float_images(), test.labels


def _dense_softmax(logits_model):
    """The same network with its last Dense layer computing softmax itself (weights copied)."""
    features = keras.Model(logits_model.inputs, logits_model.get_layer("logits").input)
    dense = keras.layers.Dense(10, activation="softmax", name="head")
    outputs = dense(features.output)
    dense.set_weights(logits_model.get_layer("logits").get_weights())
    return keras.Model(features.inputs, outputs)


class Subclassed(keras.Model):
    """An opaque model: its layers are not a graph the adapter can read."""

    def __init__(self, inner, softmax):
        super().__init__()
        self.inner, self.softmax = inner, softmax

    def call(self, x, training=False):
        z = self.inner(x, training=training)
        return tf.nn.softmax(z) if self.softmax else z


def _kinds(logits_model):
    inputs = keras.Input((32, 32, 3))
    z = logits_model(inputs)
    return {
        "temperature_softmax": keras.Model(inputs, TemperatureSoftmax(1.0)(z)),
        "softmax_layer": keras.Model(inputs, keras.layers.Softmax()(z)),
        "activation_softmax": keras.Model(inputs, keras.layers.Activation("softmax")(z)),
        "dense_softmax": _dense_softmax(logits_model),
        "logits_output": logits_model,
        "sequential_never_called": keras.Sequential([logits_model, TemperatureSoftmax()]),
        "preprocessing_then_model": keras.Sequential(
            [
                keras.Input((32, 32, 3)),
                keras.layers.Rescaling(1.0),
                keras.Sequential([logits_model, keras.layers.Softmax()]),
            ]
        ),
    }


@pytest.mark.parametrize(
    "kind",
    [
        "temperature_softmax",
        "softmax_layer",
        "activation_softmax",
        "dense_softmax",
        "logits_output",
        "sequential_never_called",
        "preprocessing_then_model",
    ],
)
def test_every_kind_gives_the_same_logits_and_the_same_attacks(twin, kind):
    logits_model, x, y = twin
    model = _kinds(logits_model)[kind]
    clf = models.as_classifier(model)
    expected_output = "logits" if kind == "logits_output" else "probabilities"
    assert clf.output == expected_output
    reference = logits_model(x, training=False).numpy()
    np.testing.assert_allclose(attacks.logits_of(model, x).numpy(), reference, rtol=1e-5, atol=1e-5)
    pgd_ref = attacks.pgd(logits_model, x, y, EPS, steps=5, seed=3).numpy()
    np.testing.assert_allclose(
        attacks.pgd(model, x, y, EPS, steps=5, seed=3).numpy(), pgd_ref, atol=1e-5
    )
    fgsm = attacks.fgsm(model, x, y, EPS).numpy()
    assert np.abs(fgsm - x).max() <= EPS + 1e-6
    assert np.mean(attacks.predict_classes(model, fgsm) != y) > np.mean(
        attacks.predict_classes(model, x) != y
    )


def test_keras_applications_with_preprocessing_inside():
    keras.utils.set_random_seed(0)
    app = keras.applications.MobileNetV2(weights=None, classes=10, input_shape=(32, 32, 3))
    model = keras.Sequential(
        [keras.Input((32, 32, 3)), keras.layers.Rescaling(2.0, offset=-1.0), app]
    )
    clf = models.as_classifier(model)
    assert (clf.output, clf.logits_source) == ("probabilities", "softmax_activation")
    x = data.make_synthetic(8, seed=0).float_images()
    y = np.arange(8) % 10
    logits = attacks.logits_of(model, x).numpy()
    np.testing.assert_allclose(
        tf.nn.softmax(logits).numpy(), model(x, training=False).numpy(), rtol=1e-4, atol=1e-6
    )
    for attack in (attacks.fgsm, lambda *a: attacks.pgd(*a, steps=2, seed=0)):
        adv = attack(model, x, y, EPS).numpy()
        assert np.abs(adv - x).max() <= EPS + 1e-6 and np.abs(adv - x).max() > EPS / 2


def test_opaque_models_must_declare_their_output(twin):
    logits_model, x, y = twin
    for softmax, output in ((True, "probabilities"), (False, "logits")):
        model = Subclassed(logits_model, softmax)
        with pytest.raises(ValueError, match="output='logits' or output='probabilities'"):
            attacks.fgsm(model, x, y, EPS)
        clf = models.as_classifier(model, output=output)
        reference = logits_model(x, training=False).numpy()
        logits = attacks.logits_of(clf, x).numpy()
        if softmax:  # log-probabilities: the logits up to a per-image constant
            assert clf.logits_source == "log_probabilities"
            logits, reference = (
                logits - logits.mean(1, keepdims=True),
                reference - reference.mean(1, keepdims=True),
            )
        np.testing.assert_allclose(logits, reference, rtol=1e-4, atol=1e-4)
        ours = attacks.pgd(clf, x, y, EPS, steps=3, seed=1).numpy()
        np.testing.assert_allclose(
            ours, attacks.pgd(logits_model, x, y, EPS, steps=3, seed=1).numpy(), atol=1e-5
        )


def test_a_probability_loss_is_never_computed_on_logits(twin):
    logits_model, x, y = twin
    with pytest.raises(ValueError, match="outputs logits.*loss_on='probabilities'"):
        attacks.fgsm(logits_model, x, y, EPS, loss_on="probabilities")
    with pytest.raises(ValueError, match="outputs logits"):
        attacks.input_gradient(logits_model, x, y, loss_on="probabilities")
    with pytest.raises(ValueError, match="ends in a softmax"):
        models.as_classifier(_kinds(logits_model)["softmax_layer"], output="logits")
    with pytest.raises(ValueError, match="output='scores'"):
        models.as_classifier(logits_model, output="scores")


def test_saved_models_tfadv_and_plain(twin, tmp_path):
    logits_model, x, y = twin
    softmax_model = _kinds(logits_model)["temperature_softmax"]
    tfadv_path = models.export_saved_model(softmax_model, str(tmp_path / "tfadv"))
    plain_path = str(tmp_path / "plain")
    softmax_model.export(plain_path, verbose=False)  # Keras' own archive: a `serve` endpoint only
    reference = attacks.pgd(logits_model, x, y, EPS, steps=3, seed=2).numpy()
    tfadv_clf = models.load(tfadv_path)
    assert tfadv_clf.logits_source == "signature" and tfadv_clf.num_classes == 10
    np.testing.assert_allclose(
        attacks.pgd(tfadv_clf, x, y, EPS, steps=3, seed=2).numpy(), reference, atol=1e-5
    )
    with pytest.raises(ValueError, match="output='logits' or output='probabilities'"):
        models.load(plain_path)
    plain = models.load(plain_path, output="probabilities")
    assert plain.logits_source == "log_probabilities"
    np.testing.assert_allclose(
        attacks.pgd(plain, x, y, EPS, steps=3, seed=2).numpy(), reference, atol=1e-5
    )
    assert os.path.basename(plain_path) in repr(plain)


def test_the_classifier_is_found_once_per_model(twin):
    logits_model, x, y = twin
    model = _kinds(logits_model)["softmax_layer"]
    assert models.as_classifier(model) is models.as_classifier(model)
    assert models.as_classifier(models.as_classifier(model)) is models.as_classifier(model)
