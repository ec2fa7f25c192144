"""BPDA views (tfadv.models.straight_through): found by probing, exact forward pass, gradients that
flow again; and gradient attacks on a model whose input gradient is undefined do not crash."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfadv import attacks, data, models


@keras.saving.register_keras_serializable(package="tfadv_tests")
class Quantize(keras.layers.Layer):
    """stop_gradient(round(x * 255 / 4) * 4 / 255): 64 levels, no gradient at all."""

    def call(self, inputs):
        return tf.stop_gradient(tf.round(inputs * 255.0 / 4.0) * 4.0 / 255.0)


@pytest.fixture(scope="module")
def setup(trained_tiny_cnn):
    test = data.make_synthetic(64, seed=5)
    inputs = keras.Input((32, 32, 3))
    quantized = keras.Model(
        inputs, trained_tiny_cnn(Quantize(name="quantize")(inputs)), name="quantized"
    )
    return quantized, test.float_images(), test.labels


def test_probing_finds_the_quantizer_and_nothing_else(setup, trained_tiny_cnn):
    quantized, x, _ = setup
    assert models.nondifferentiable_layers(quantized, x) == ["quantize"]
    sequential = keras.Sequential(
        [
            keras.Input((32, 32, 3)),
            Quantize(name="q"),
            keras.layers.Conv2D(4, 3),
            keras.layers.ReLU(),
            keras.layers.Flatten(),
            keras.layers.Dense(10),
        ]
    )
    assert models.nondifferentiable_layers(sequential, x) == ["q"]
    assert models.nondifferentiable_layers(trained_tiny_cnn, x) == []


def test_the_view_has_the_same_outputs_and_usable_gradients(setup):
    quantized, x, y = setup
    view = models.straight_through(quantized, images=x)
    assert view.name == "quantized_bpda" and "quantize_bpda" in [
        layer.name for layer in view.layers
    ]
    np.testing.assert_array_equal(view(x).numpy(), quantized(x).numpy())
    logits = models.as_classifier(view).logits(x)  # the adapter finds the view's logits too
    np.testing.assert_array_equal(logits.numpy(), models.as_classifier(quantized).logits(x).numpy())
    # the original's gradient is undefined: zero for the attacks, never a crash
    assert float(tf.reduce_max(tf.abs(attacks.input_gradient(quantized, x, y)))) == 0.0
    assert (
        float(
            tf.reduce_min(tf.reduce_max(tf.abs(attacks.input_gradient(view, x, y)), axis=[1, 2, 3]))
        )
        > 0.0
    )
    # the weights are shared, not copied
    assert {id(w) for w in view.weights} == {id(w) for w in quantized.weights}


def test_gradient_attacks_run_on_the_masked_model_and_bpda_breaks_what_they_miss(setup):
    quantized, x, y = setup
    eps = 8 / 255
    for attack in (
        "fgsm",
        "pgd(steps=3)",
        "apgd(steps=3)",
        "apgd_t(steps=3, n_targets=2)",
        "fab_t(steps=3, n_targets=2)",
    ):
        adv = attacks.get(attack)(quantized, x, y, eps)
        assert float(tf.reduce_max(tf.abs(adv - x))) <= eps + 1e-6, attack
    masked = attacks.pgd(quantized, x, y, eps, steps=10, seed=0)
    through = attacks.pgd(
        models.straight_through(quantized, ["quantize"]), x, y, eps, steps=10, seed=0
    )

    def correct(adv):  # scored on the original model
        return int(np.sum(attacks.predict_classes(quantized, adv) == y))

    assert correct(through) < correct(masked) - 5, (correct(through), correct(masked))


def test_the_view_round_trips_through_a_keras_file(setup, tmp_path):
    quantized, x, _ = setup
    view = models.straight_through(quantized, ["quantize"])
    path = str(tmp_path / "view.keras")
    models.save_keras(view, path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_allclose(loaded(x).numpy(), view(x).numpy(), atol=1e-6)
    assert any(isinstance(layer, models.StraightThrough) for layer in loaded.layers)


def test_bad_arguments_raise_and_echo(setup, trained_tiny_cnn):
    quantized, x, _ = setup

    class Opaque(keras.Model):
        def call(self, inputs):
            return inputs

    with pytest.raises(
        ValueError, match="Functional or Sequential.*Received: model of type Opaque"
    ):
        models.straight_through(Opaque(), ["x"])
    with pytest.raises(ValueError, match=r"Received: layers=\['nope'\]"):
        models.straight_through(quantized, ["nope"])
    with pytest.raises(ValueError, match="changes the shape"):
        models.straight_through(trained_tiny_cnn, [trained_tiny_cnn.layers[1].name])
    with pytest.raises(ValueError, match="Received: images=None"):
        models.straight_through(quantized)
    with pytest.raises(ValueError, match="Found no layer"):
        models.straight_through(trained_tiny_cnn, images=x)
    with pytest.raises(ValueError, match="0 images"):
        models.nondifferentiable_layers(quantized, x[:0])
