"""Test-time noise preprocessing: a noise layer put in front of a trained classifier.

    defended = with_test_noise(model, "random_sign", eps=0.03, seed=0)
    # defended(images): noise (on at inference) -> the same network -> TemperatureSoftmax

The wrapper shares the classifier's weights, ends in its own TemperatureSoftmax (at the
classifier's current temperature) fed by the classifier's logits, so `tfadv.models`
helpers and `tfadv.export` treat it like any tfadv model and it exports with the noise.
"""

import keras

from tfadv import models
from tfadv.config import TEST_NOISES
from tfadv.layers import GaussianNoise, RandomSignNoise, TemperatureSoftmax

NOISE_LAYER = "test_noise"


def noise_layer(kind: str, eps: float, seed=None):
    """The noise layer, active at inference.

    Args:
        kind: "random_sign" (x + eps * R, R in {-1, +1}, clipped to [0, 1]) or
            "gaussian" (x + N(0, eps^2), not clipped).
        eps: magnitude in pixel scale (> 0): the sign step or the stddev.
        seed: seed of the layer's generator.
    """
    if kind not in TEST_NOISES[1:]:
        raise ValueError(f"Expected test noise in {TEST_NOISES[1:]}. Received: kind={kind!r}")
    if not eps > 0:
        raise ValueError(f"Expected test noise eps > 0. Received: eps={eps!r}")
    if kind == "random_sign":
        return RandomSignNoise(eps, seed=seed, active_at_inference=True, name=NOISE_LAYER)
    return GaussianNoise(eps, seed=seed, active_at_inference=True, name=NOISE_LAYER)


def with_test_noise(model, kind: str, eps: float, seed=None, name=None):
    """A new model: noise layer -> `model`'s network up to its logits -> TemperatureSoftmax.

    Args:
        model: keras Model ending in TemperatureSoftmax (weights are shared, not copied).
        kind, eps, seed: see `noise_layer`.
        name: model name (default "<model name>_<kind>").
    """
    inputs = keras.Input(model.input_shape[1:], name="images")
    noisy = noise_layer(kind, eps, seed)(inputs)
    logits = models.logits_model(model)(noisy)
    outputs = TemperatureSoftmax(models.get_temperature(model), name=models.SOFTMAX_LAYER)(logits)
    return keras.Model(inputs, outputs, name=name or f"{model.name}_{kind}")


def add_test_noise(ctx, named_models: dict, main: str):
    """With --test_noise, adds the main model wrapped in that noise (main becomes the wrapper).

    Returns (models, main name). The wrapper is named "<main>_<noise>".
    """
    config = ctx.config
    if config.test_noise == "none":
        return named_models, main
    with ctx.strategy.scope():
        wrapped = with_test_noise(named_models[main], config.test_noise, config.test_noise_eps, seed=config.seed)
    name = f"{main}_{config.test_noise}"
    return {**named_models, name: wrapped}, name
