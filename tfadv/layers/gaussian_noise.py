"""Additive zero-mean Gaussian noise, optionally active at inference."""

import keras

from tfadv.runtime.validation import check_bool, check_nonnegative


@keras.saving.register_keras_serializable(package="tfadv")
class GaussianNoise(keras.layers.Layer):
    """Adds N(0, stddev^2) noise to its input.

    Unlike `keras.layers.GaussianNoise`, the noise can stay on at inference
    (`active_at_inference=True`): the noise-preprocessing defence.

    Args:
        stddev: standard deviation in input units (pixel scale [0, 1] when placed
            at the input). Must be >= 0; 0 makes the layer an identity.
        seed: seed of the layer's own generator (None: unseeded).
        active_at_inference: add noise also when `training` is False.
    """

    def __init__(self, stddev, seed=None, active_at_inference=False, **kwargs):
        super().__init__(**kwargs)
        self.stddev = check_nonnegative("stddev", stddev)
        self.active_at_inference = check_bool("active_at_inference", active_at_inference)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.supports_masking = True

    def call(self, inputs, training=None):
        if self.stddev == 0 or not (training or self.active_at_inference):
            return inputs
        noise = keras.random.normal(
            keras.ops.shape(inputs),
            stddev=self.stddev,
            dtype=inputs.dtype,
            seed=self.seed_generator,
        )
        return inputs + noise

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {
            **super().get_config(),
            "stddev": self.stddev,
            "seed": self.seed,
            "active_at_inference": self.active_at_inference,
        }
