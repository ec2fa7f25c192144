"""Softmax at a temperature that can be changed after training."""

import keras

from tfadv.runtime.validation import check_positive


@keras.saving.register_keras_serializable(package="tfadv")
class TemperatureSoftmax(keras.layers.Layer):
    """softmax(z / T) over the last axis.

    T lives in a non-trainable variable, so `set_temperature` changes a built
    (even compiled or traced) model without rebuilding it, and a saved model
    keeps the temperature in force when it was saved.

    Args:
        temperature: T > 0.
    """

    def __init__(self, temperature=1.0, **kwargs):
        super().__init__(**kwargs)
        self.initial_temperature = check_positive("temperature", temperature)

    def build(self, input_shape):
        self.temperature = self.add_weight(
            name="temperature",
            shape=(),
            initializer=keras.initializers.Constant(self.initial_temperature),
            trainable=False,
        )

    def set_temperature(self, temperature):
        """Sets T (> 0) in place; traced functions see the new value."""
        temperature = check_positive("temperature", temperature)
        if not self.built:
            self.initial_temperature = temperature
        else:
            self.temperature.assign(temperature)

    def current_temperature(self):
        """The temperature in force, as a Python float."""
        if not self.built:
            return self.initial_temperature
        return float(keras.ops.convert_to_numpy(self.temperature))

    def call(self, logits):
        temperature = keras.ops.cast(self.temperature, logits.dtype)
        return keras.ops.softmax(logits / temperature, axis=-1)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        # The current value, so that from_config of a saved model starts where it stopped.
        return {**super().get_config(), "temperature": self.current_temperature()}
