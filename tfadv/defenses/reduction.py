"""Reducing per-example losses in custom train steps (the Distiller and the ContrastiveTrainer)."""

import keras
import tensorflow as tf


def weighted_mean(values, sample_weight=None):
    """Mean of per-example `values`, weighted by `sample_weight` when given."""
    if sample_weight is None:
        return keras.ops.mean(values)
    weight = keras.ops.cast(sample_weight, values.dtype)
    return keras.ops.sum(values * weight) / keras.ops.maximum(
        keras.ops.sum(weight), keras.backend.epsilon()
    )


def replica_share(loss):
    """Divides a per-replica mean loss by the replica count
    (gradients are summed across replicas)."""
    replicas = tf.distribute.get_strategy().num_replicas_in_sync
    return loss / replicas if replicas > 1 else loss
