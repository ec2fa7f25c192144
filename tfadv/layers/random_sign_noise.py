"""Random-sign (+-eps) noise, the test-time noise-preprocessing defence."""

import keras

from tfadv.runtime.validation import check_bool, check_nonnegative


@keras.saving.register_keras_serializable(package="tfadv")
class RandomSignNoise(keras.layers.Layer):
    """Adds eps * R with R uniform in {-1, +1} per pixel, then clips to [0, 1].

    Put in front of a trained model to randomise its input at test time.

    Args:
        eps: noise magnitude in pixel scale [0, 1].
        seed: seed of the layer's own generator (None: unseeded).
        active_at_inference: add noise when `training` is False (default True:
            this layer exists for test-time preprocessing).
    """

    def __init__(self, eps, seed=None, active_at_inference=True, **kwargs):
        super().__init__(**kwargs)
        self.eps = check_nonnegative("eps", eps)
        self.active_at_inference = check_bool("active_at_inference", active_at_inference)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, inputs, training=None):
        if self.eps == 0 or not (training or self.active_at_inference):
            return inputs
        bits = keras.random.randint(keras.ops.shape(inputs), 0, 2, seed=self.seed_generator)
        signs = keras.ops.cast(bits * 2 - 1, inputs.dtype)
        return keras.ops.clip(inputs + self.eps * signs, 0.0, 1.0)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {
            **super().get_config(),
            "eps": self.eps,
            "seed": self.seed,
            "active_at_inference": self.active_at_inference,
        }
