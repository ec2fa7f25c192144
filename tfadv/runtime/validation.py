"""Argument checks shared by layers, attacks, defences and explain: ValueErrors in one style,
"Expected <what>. Received: <name>=<value!r>", naming the Python argument.

Conventions (pixel scale): images are float32 in [0, 1]; `eps` bounds the perturbation in the
same units (L-inf: per pixel value, so at most 1; L2: over the whole image). The norm-dependent
bound on eps is the norm's (`tfadv.attacks.norms.Norm.check_eps`).
"""

import math
import numbers

import numpy as np
import tensorflow as tf

from tfadv.runtime.tensors import is_concrete, unwrap_variable


def _value(x) -> np.ndarray:
    return x.numpy() if hasattr(x, "numpy") else np.asarray(x)


def check_eps(eps, name: str = "eps", at_most: float | None = None) -> None:
    """Raises ValueError unless `eps` is a finite scalar >= 0 (and <= `at_most` when given);
    checked when its value is known (not for symbolic tensors inside a graph)."""
    eps = unwrap_variable(eps)
    if not is_concrete(eps):
        if eps.shape.rank not in (None, 0):
            raise ValueError(f"Expected a scalar {name}. Received: {name}.shape={eps.shape}")
        return
    value = _value(eps)
    if value.ndim != 0 or not np.issubdtype(value.dtype, np.number) or value.dtype == np.bool_:
        raise ValueError(f"Expected a scalar number for {name}. Received: {name}={eps!r}")
    number = value.item()
    if not (math.isfinite(number) and number >= 0):
        raise ValueError(
            f"Expected a finite {name} >= 0 (pixel scale). Received: {name}={number!r}"
        )
    if at_most is not None and number > at_most:
        raise ValueError(
            f"Expected {name} in [0, {at_most:g}] (pixel scale). Received: {name}={number!r}"
        )


def check_positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"Expected {name} to be an integer >= 1. Received: {name}={value!r}")
    return int(value)


def check_batch_size(batch_size) -> int:
    """An integer >= 1 (images per forward pass or per compiled call)."""
    return check_positive_int("batch_size", batch_size)


def check_fraction(name: str, value, low_open: bool = False) -> float:
    """A finite number in [0, 1] ((0, 1] with low_open)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"Expected {name} to be a number in [0, 1]. Received: {name}={value!r}")
    if not (0 < value <= 1 if low_open else 0 <= value <= 1):
        raise ValueError(
            f"Expected {name} in {'(0, 1]' if low_open else '[0, 1]'}. Received: {name}={value!r}"
        )
    return float(value)


def check_choice(name: str, value, choices) -> str:
    if value not in choices:
        raise ValueError(
            f"Expected {name} to be one of {tuple(choices)}. Received: {name}={value!r}"
        )
    return value


def to_images(images, input_shape=None) -> tf.Tensor:
    """float32 (N, H, W, C) tensor; known values must lie in [0, 1]; shape checked against the
    model's `input_shape` (None, H, W, C) when given."""
    x = tf.convert_to_tensor(images)
    if not x.dtype.is_floating:
        raise ValueError(
            f"Expected float images in [0, 1] (pixel scale). Received: images.dtype={x.dtype.name}"
        )
    x = tf.cast(x, tf.float32)
    if x.shape.rank != 4:
        raise ValueError(
            f"Expected images of shape (N, H, W, C). Received: images.shape={tuple(x.shape)}"
        )
    if input_shape is not None and len(input_shape) == 4:
        expected, got = list(input_shape[1:]), x.shape.as_list()[1:]
        if any(
            e is not None and g is not None and e != g for e, g in zip(expected, got, strict=True)
        ):
            raise ValueError(
                f"Expected images of shape (N, {', '.join(map(str, expected))}) for this model. "
                f"Received: images.shape={tuple(x.shape)}"
            )
    if is_concrete(x) and x.shape[0]:
        low, high = float(tf.reduce_min(x)), float(tf.reduce_max(x))
        if not (0.0 <= low and high <= 1.0):
            raise ValueError(
                "Expected images in [0, 1] (pixel scale). "
                f"Received: images with min={low}, max={high}"
            )
    return x


def to_labels(labels, images: tf.Tensor, num_classes=None, name: str = "labels") -> tf.Tensor:
    """int64 (N,) tensor of class ids matching `images`; known values must lie in
    [0, num_classes)."""
    y = tf.convert_to_tensor(labels)
    if not y.dtype.is_integer:
        raise ValueError(
            f"Expected integer class ids as {name}. Received: {name}.dtype={y.dtype.name}"
        )
    n = images.shape[0]
    if y.shape.rank != 1 or (n is not None and y.shape[0] is not None and y.shape[0] != n):
        raise ValueError(
            f"Expected {name} of shape ({n},). Received: {name}.shape={tuple(y.shape)}"
        )
    y = tf.cast(y, tf.int64)
    if num_classes and is_concrete(y) and y.shape[0]:
        low, high = int(tf.reduce_min(y)), int(tf.reduce_max(y))
        if low < 0 or high >= num_classes:
            raise ValueError(
                f"Expected {name} in [0, {num_classes}). "
                f"Received: {name} with min={low}, max={high}"
            )
    return y


def _check_number(name, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"Expected a finite number for `{name}`. Received: {name}={value!r}")
    return float(value)


def check_nonnegative(name, value):
    value_f = _check_number(name, value)
    if value_f < 0:
        raise ValueError(f"Expected `{name}` >= 0. Received: {name}={value!r}")
    return value_f


def check_positive(name, value):
    value_f = _check_number(name, value)
    if value_f <= 0:
        raise ValueError(f"Expected `{name}` > 0. Received: {name}={value!r}")
    return value_f


def check_unit_interval(name, value):
    value_f = _check_number(name, value)
    if not 0 <= value_f < 1:
        raise ValueError(f"Expected `{name}` in [0, 1). Received: {name}={value!r}")
    return value_f


def check_bool(name, value):
    if not isinstance(value, bool):
        raise ValueError(f"Expected a bool for `{name}`. Received: {name}={value!r}")
    return value
