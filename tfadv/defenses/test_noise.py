"""Noise preprocessing at test time: a noise layer, on at inference, in front of a trained
classifier.

    defended = with_test_noise(model, "random_sign", eps=0.03, seed=0)
    # defended(images): noise -> the same network (shared weights) -> its own output

The wrapper is a Functional model whose final layer is `model` itself, so the model adapter
still finds the logits (and any TemperatureSoftmax) inside it, and it exports with the noise.
Its outputs differ between calls: evaluate it with expectation over transformation.
"""

import keras

from tfadv.layers import GaussianNoise, RandomSignNoise
from tfadv.models import as_classifier
from tfadv.runtime.choices import TEST_NOISES

NOISE_LAYER = "test_noise"


def noise_layer(kind: str, eps: float, seed=None):
    """The noise layer, active at inference.

    Args:
        kind: "random_sign" (x + eps * R, R in {-1, +1}, clipped to [0, 1]) or
            "gaussian" (x + N(0, eps^2), not clipped).
        eps: magnitude in pixel scale (> 0): the sign step or the stddev.
        seed: seed of the layer's generator.
    """
    if kind not in TEST_NOISES:
        raise ValueError(f"Expected test noise in {TEST_NOISES}. Received: kind={kind!r}")
    if not eps > 0:
        raise ValueError(f"Expected test noise eps > 0. Received: eps={eps!r}")
    if kind == "random_sign":
        return RandomSignNoise(eps, seed=seed, active_at_inference=True, name=NOISE_LAYER)
    return GaussianNoise(eps, seed=seed, active_at_inference=True, name=NOISE_LAYER)


def with_test_noise(model, kind: str, eps: float, seed=None, name=None):
    """A new Keras model: noise layer -> `model` (weights shared, not copied).

    Args:
        model: a Keras classifier with a known input shape.
        kind, eps, seed: see `noise_layer`.
        name: model name (default "<model name>_<kind>").
    """
    shape = as_classifier(model).input_shape
    if not isinstance(model, keras.Model) or shape is None:
        raise ValueError(f"Expected a built Keras model. Received: {type(model).__name__}")
    inputs = keras.Input(shape[1:], name="images")
    outputs = model(noise_layer(kind, eps, seed)(inputs))
    return keras.Model(inputs, outputs, name=name or f"{model.name}_{kind}")
