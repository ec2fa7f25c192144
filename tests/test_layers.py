"""tfadv.layers: numbers, argument checks, config and save/load round trips."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfadv.layers import BoundedLeakyReLU, GaussianNoise, RandomSignNoise, TemperatureSoftmax


def _roundtrip_model(layer, input_shape, tmp_path):
    inputs = keras.Input(input_shape)
    model = keras.Model(inputs, layer(inputs))
    path = str(tmp_path / "m.keras")
    model.save(path)
    return model, keras.saving.load_model(path)  # no custom_objects: registration must suffice


def test_gaussian_noise_has_claimed_stddev_in_training_only():
    layer = GaussianNoise(0.3, seed=1)
    x = tf.zeros((200, 50))
    noisy = layer(x, training=True).numpy()
    assert abs(noisy.std() - 0.3) < 0.01
    assert abs(noisy.mean()) < 0.01
    np.testing.assert_array_equal(layer(x, training=False), x)


def test_gaussian_noise_active_at_inference():
    layer = GaussianNoise(0.2, seed=1, active_at_inference=True)
    out = layer(tf.zeros((100, 100)), training=False).numpy()
    assert abs(out.std() - 0.2) < 0.01


def test_gaussian_noise_seeded_layers_repeat():
    a = GaussianNoise(0.5, seed=7)(tf.zeros((4, 4)), training=True)
    b = GaussianNoise(0.5, seed=7)(tf.zeros((4, 4)), training=True)
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("bad", [-0.1, float("nan"), "0.1"])
def test_gaussian_noise_rejects_bad_stddev(bad):
    with pytest.raises(ValueError, match="stddev"):
        GaussianNoise(bad)


def test_random_sign_noise_is_exactly_plus_minus_eps_then_clipped():
    x = tf.fill((64, 8, 8, 3), 0.5)
    out = RandomSignNoise(0.1, seed=3)(x).numpy()
    np.testing.assert_allclose(np.abs(out - 0.5), 0.1, atol=1e-6)
    assert 0.3 < (out > 0.5).mean() < 0.7
    edge = RandomSignNoise(0.1, seed=3)(tf.zeros((16, 4))).numpy()
    assert edge.min() == 0.0 and np.isclose(edge.max(), 0.1)


def test_bounded_leaky_relu_piecewise_values():
    layer = BoundedLeakyReLU(initial_bound=2.0, slope=0.1)
    x = tf.constant([[-3.0, -1.0, 0.0, 1.0, 2.0, 3.0, 5.0]])
    expected = [[-0.3, -0.1, 0.0, 1.0, 2.0, 2.0 - 0.1 * 1.0, 2.0 - 0.1 * 3.0]]
    np.testing.assert_allclose(layer(x), expected, rtol=1e-6)


def test_bounded_leaky_relu_bound_is_trainable_and_learns():
    layer = BoundedLeakyReLU(initial_bound=1.0, slope=0.1)
    layer.build((None, 3))
    assert [w.name for w in layer.trainable_weights] == ["bound"]
    x = tf.constant([[3.0, 4.0, 5.0]])
    with tf.GradientTape() as tape:
        loss = -tf.reduce_sum(layer(x))  # larger output wanted: the bound should grow
    (grad,) = tape.gradient(loss, layer.trainable_weights)
    assert float(grad) < 0
    frozen = BoundedLeakyReLU(1.0, 0.1, trainable=False)
    frozen.build((None, 3))
    assert frozen.trainable_weights == []


def test_bounded_leaky_relu_per_channel_bounds():
    layer = BoundedLeakyReLU(initial_bound=1.0, slope=0.0, per_channel=True)
    layer.build((None, 4, 4, 5))
    assert tuple(layer.bound.shape) == (5,)


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"initial_bound": 0.0}, "initial_bound"),
        ({"slope": 1.0}, "slope"),
        ({"slope": -0.1}, "slope"),
    ],
)
def test_bounded_leaky_relu_rejects_bad_arguments(kwargs, name):
    with pytest.raises(ValueError, match=name):
        BoundedLeakyReLU(**kwargs)


def test_temperature_softmax_values_and_change_after_build():
    layer = TemperatureSoftmax(2.0)
    z = tf.constant([[1.0, 2.0, 3.0]])
    np.testing.assert_allclose(layer(z), tf.nn.softmax(z / 2.0), rtol=1e-6)
    traced = tf.function(lambda t: layer(t))
    traced(z)
    layer.set_temperature(0.5)
    np.testing.assert_allclose(traced(z), tf.nn.softmax(z / 0.5), rtol=1e-6)  # no retrace needed
    assert layer.current_temperature() == 0.5
    assert layer.trainable_weights == []


@pytest.mark.parametrize("bad", [0.0, -1.0])
def test_temperature_softmax_rejects_nonpositive(bad):
    with pytest.raises(ValueError, match=f"temperature={bad}"):
        TemperatureSoftmax(bad)
    with pytest.raises(ValueError, match="temperature"):
        TemperatureSoftmax(1.0).set_temperature(bad)


@pytest.mark.parametrize(
    "layer, shape",
    [
        (GaussianNoise(0.1, seed=2, active_at_inference=False), (6,)),
        (RandomSignNoise(0.05, seed=2, active_at_inference=False), (6,)),
        (BoundedLeakyReLU(3.0, 0.2, per_channel=True), (6,)),
        (TemperatureSoftmax(4.0), (6,)),
    ],
    ids=lambda v: type(v).__name__ if not isinstance(v, tuple) else "",
)
def test_layer_config_and_keras_file_roundtrip(layer, shape, tmp_path):
    clone = type(layer).from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
    model, loaded = _roundtrip_model(layer, shape, tmp_path)
    x = np.random.default_rng(0).uniform(-1, 8, (5, *shape)).astype("float32")
    np.testing.assert_allclose(model.predict(x, verbose=0), loaded.predict(x, verbose=0), rtol=1e-6)


def test_saved_temperature_is_the_one_in_force(tmp_path):
    inputs = keras.Input((3,))
    model = keras.Model(inputs, TemperatureSoftmax(50.0)(inputs))
    model.layers[-1].set_temperature(1.0)
    path = str(tmp_path / "t.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert loaded.layers[-1].current_temperature() == 1.0
    z = np.array([[0.0, 1.0, 5.0]], "float32")
    np.testing.assert_allclose(loaded.predict(z, verbose=0), tf.nn.softmax(z), rtol=1e-6)


def test_one_training_step_updates_bound():
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((4,)),
            keras.layers.Dense(4),
            BoundedLeakyReLU(0.5, 0.1),
            keras.layers.Dense(2),
        ]
    )
    model.compile(optimizer=keras.optimizers.SGD(0.5), loss="mse")
    before = float(model.layers[1].bound.numpy())
    model.fit(np.ones((8, 4), "float32") * 3, np.ones((8, 2), "float32") * 10, epochs=1, verbose=0)
    assert float(model.layers[1].bound.numpy()) != before
