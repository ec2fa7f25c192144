"""Leaky ReLU with a trainable upper bound that folds back above it."""

import keras

from tfadv.runtime.validation import check_bool, check_positive, check_unit_interval


@keras.saving.register_keras_serializable(package="tfadv")
class BoundedLeakyReLU(keras.layers.Layer):
    """f(x) = s*x for x < 0; x for 0 <= x <= b; b - s*(x - b) for x > b.

    Args:
        initial_bound: starting value of the upper bound b (> 0).
        slope: s in [0, 1), the slope outside [0, b].
        per_channel: one bound per channel (last axis) instead of one per layer.
        trainable: (Keras's own argument) whether b is learned; default True.
    """

    def __init__(self, initial_bound=6.0, slope=0.1, per_channel=False, **kwargs):
        super().__init__(**kwargs)
        self.initial_bound = check_positive("initial_bound", initial_bound)
        self.slope = check_unit_interval("slope", slope)
        self.per_channel = check_bool("per_channel", per_channel)

    def build(self, input_shape):
        shape = (input_shape[-1],) if self.per_channel else ()
        self.bound = self.add_weight(
            name="bound",
            shape=shape,
            initializer=keras.initializers.Constant(self.initial_bound),
        )

    def call(self, inputs):
        bound = keras.ops.cast(self.bound, inputs.dtype)
        below = self.slope * inputs
        above = bound - self.slope * (inputs - bound)
        return keras.ops.where(inputs < 0, below, keras.ops.where(inputs > bound, above, inputs))

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {
            **super().get_config(),
            "initial_bound": self.initial_bound,
            "slope": self.slope,
            "per_channel": self.per_channel,
        }
