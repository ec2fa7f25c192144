"""The train and test steps of a keras.Model wrapper that trains one inner network (the Distiller's
student, the ContrastiveTrainer's classifier) with its own `compute_loss`."""

import keras
import tensorflow as tf

from tfadv.defenses.reduction import replica_share


class OneNetworkSteps(keras.Model):
    """Base of wrappers that train `trained_network()`: subclasses give `trained_network()` and
    `predictions(x, training)` (the `y_pred` their `compute_loss` takes) and list their trackers in
    `metrics`."""

    def trained_network(self) -> keras.Model:
        raise NotImplementedError

    def predictions(self, x, training=False):
        raise NotImplementedError

    def train_step(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        weights = self.trained_network().trainable_weights
        with tf.GradientTape() as tape:
            y_pred = self.predictions(x, training=True)
            loss = self.compute_loss(x, y, y_pred, sample_weight, training=True)
            loss = self.optimizer.scale_loss(replica_share(loss))
        self.optimizer.apply(tape.gradient(loss, weights), weights)
        return {m.name: m.result() for m in self.metrics}

    def test_step(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        self.compute_loss(x, y, self.predictions(x, training=False), sample_weight, training=False)
        return {m.name: m.result() for m in self.metrics}
