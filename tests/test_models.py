"""tfadv.models: parameter counts, options, logits access, temperature, registry."""

import numpy as np
import pytest
import tensorflow as tf

from tfadv import models
from tfadv.layers import BoundedLeakyReLU, GaussianNoise, TemperatureSoftmax


def test_baseline_cnn_has_150954_parameters():
    model = models.build("baseline_cnn", (32, 32, 3), 10)
    assert models.count_parameters(model) == 150_954
    assert model.count_params() == 150_955  # + the non-trainable temperature


def test_vgg_small_shape():
    model = models.build("vgg_small")
    convs = [layer for layer in model.layers if layer.__class__.__name__ == "Conv2D"]
    pools = [layer for layer in model.layers if layer.__class__.__name__ == "MaxPooling2D"]
    assert len(pools) == 3 and all(c.kernel_size == (3, 3) for c in convs)
    assert model.get_layer("fc1").units == 512
    assert model.output_shape == (None, 10)


@pytest.mark.parametrize("name", sorted(models.REGISTRY))
def test_every_model_ends_in_temperature_softmax_over_logits(name):
    model = models.build(name, (32, 32, 3), 10, temperature=3.0)
    assert isinstance(model.layers[-1], TemperatureSoftmax)
    x = np.random.default_rng(0).uniform(0, 1, (4, 32, 32, 3)).astype("float32")
    logits = models.logits_model(model)(x)
    np.testing.assert_allclose(model(x), tf.nn.softmax(logits / 3.0), rtol=1e-5, atol=1e-6)


def test_set_temperature_changes_output_without_rebuilding():
    model = models.build("tiny_cnn")
    x = np.random.default_rng(1).uniform(0, 1, (3, 32, 32, 3)).astype("float32")
    logits = models.logits_model(model)(x)
    models.set_temperature(model, 10.0)
    assert models.get_temperature(model) == 10.0
    np.testing.assert_allclose(model(x), tf.nn.softmax(logits / 10.0), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("placement", ["input", "after_first_conv", "before_classifier"])
def test_noise_placement(placement):
    model = models.build("baseline_cnn", noise=placement, noise_stddev=0.1, noise_at_inference=True)
    noise_layers = [i for i, layer in enumerate(model.layers) if isinstance(layer, GaussianNoise)]
    assert len(noise_layers) == 1
    position = noise_layers[0]
    names = [layer.name for layer in model.layers]
    if placement == "input":
        assert position == 1
    elif placement == "after_first_conv":
        assert names[position - 1] == "block1_act1"
    else:
        assert names[position + 1] == "logits"
    x = np.full((2, 32, 32, 3), 0.5, "float32")
    assert not np.allclose(model(x, training=False), model(x, training=False))  # noisy at inference
    assert models.count_parameters(model) == 150_954


def test_bounded_activation_option():
    model = models.build("baseline_cnn", activation="bounded_leaky_relu")
    assert sum(isinstance(layer, BoundedLeakyReLU) for layer in model.layers) == 6
    assert models.count_parameters(model) == 150_954 + 6


def test_grayscale_input_shape():
    model = models.build("baseline_cnn", (28, 28, 1), 10)
    assert model.output_shape == (None, 10)


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        ({"activation": "tanh"}, "activation"),
        ({"noise": "middle", "noise_stddev": 0.1}, "noise placement"),
        ({"noise": "input"}, "noise_stddev"),
        ({"temperature": 0.0}, "temperature"),
    ],
)
def test_bad_options_raise(kwargs, fragment):
    with pytest.raises(ValueError, match=fragment):
        models.build("tiny_cnn", **kwargs)


def test_unknown_model_and_registration():
    with pytest.raises(ValueError, match="Unknown model 'resnet999'"):
        models.build("resnet999")

    @models.register("test_only_linear")
    def linear(input_shape, num_classes, options):
        import keras

        inputs = keras.Input(input_shape)
        logits = keras.layers.Dense(num_classes, name="logits")(keras.layers.Flatten()(inputs))
        return keras.Model(inputs, TemperatureSoftmax(options.temperature)(logits))

    try:
        assert models.build("test_only_linear", (4, 4, 1), 3).output_shape == (None, 3)
        with pytest.raises(ValueError, match="already registered"):
            models.register("test_only_linear")(linear)
    finally:
        models.REGISTRY.pop("test_only_linear")
