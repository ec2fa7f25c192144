"""Tensor plumbing shared by attacks, defences and explain: whether a value is known now,
scalars and stateless-RNG seeds as tensors, and the tf.function input specs of the shared
attack signature (images float32 (N, H, W, C), labels int64 (N,), scalars, seeds)."""

import numbers

import keras
import numpy as np
import tensorflow as tf


def is_concrete(value) -> bool:
    """True for values known now (Python/NumPy, eager tensors and variables), False inside
    graphs."""
    value = unwrap_variable(value)
    if isinstance(value, (numbers.Number, np.ndarray, np.generic, list, tuple)):
        return True
    if isinstance(value, tf.Variable):
        return tf.executing_eagerly()
    return isinstance(value, tf.Tensor) and hasattr(value, "numpy") and tf.executing_eagerly()


def unwrap_variable(value):
    """The tf.Variable behind a Keras variable (other values unchanged)."""
    return value.value if isinstance(value, keras.Variable) else value


def to_scalar(value) -> tf.Tensor:
    return tf.cast(tf.convert_to_tensor(unwrap_variable(value)), tf.float32)


def to_seed(seed) -> tf.Tensor:
    """A stateless-RNG seed: int64 tensor of shape (2,).

    `seed` is None (a fresh draw from TensorFlow's global RNG, so repeatable after
    `tf.random.set_seed` and new on every call, also inside a traced training step),
    an int, or a pair such as `(seed, step)` (may be tensors).
    """
    if seed is None:
        return tf.random.uniform([2], minval=0, maxval=2**62, dtype=tf.int64)
    if isinstance(seed, numbers.Integral) and not isinstance(seed, bool):
        return tf.constant([int(seed), 0], tf.int64)
    parts = seed if isinstance(seed, (tuple, list)) else [seed]
    tensors = [tf.convert_to_tensor(part) for part in parts]
    if len(parts) > 2 or not all(t.dtype.is_integer and t.shape.rank == 0 for t in tensors):
        if len(tensors) == 1 and tensors[0].dtype.is_integer and tensors[0].shape.as_list() == [2]:
            return tf.cast(tensors[0], tf.int64)
        raise ValueError(
            f"Expected seed to be None, an int or a pair of ints. Received: seed={seed!r}"
        )
    tensors = [tf.cast(t, tf.int64) for t in tensors]
    return tf.stack(tensors if len(tensors) == 2 else [tensors[0], tf.zeros_like(tensors[0])])


def fold_seed(seed, data) -> tf.Tensor:
    """A new (2,) int64 seed derived from `seed` and an integer `data` (e.g. a step or restart)."""
    return tf.cast(tf.random.experimental.stateless_fold_in(seed, data), tf.int64)


def split_seed(seed, num: int) -> list:
    """`num` independent (2,) int64 seeds derived from `seed`."""
    return list(tf.unstack(tf.cast(tf.random.experimental.stateless_split(seed, num), tf.int64)))


def image_spec(x: tf.Tensor) -> tf.TensorSpec:
    return tf.TensorSpec([None, *x.shape[1:]], tf.float32)


LABELS_SPEC = tf.TensorSpec([None], tf.int64)
SCALAR_SPEC = tf.TensorSpec([], tf.float32)
SEED_SPEC = tf.TensorSpec([2], tf.int64)
SEEDS_SPEC = tf.TensorSpec([None, 2], tf.int64)  # per-image seeds (see tfadv.attacks.randomness)
