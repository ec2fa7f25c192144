"""What every attack shares: argument checks, the loss, input gradients, projection, the compile cache.

Conventions (pixel scale): images are float32 in [0, 1]; `eps` bounds the perturbation
in the same units (L-inf: per pixel value; L2: over the whole image).

Where the loss is taken (`loss_on`):
    "logits"         sparse softmax cross-entropy on the logits beneath the model's
                     TemperatureSoftmax (the default everywhere).
    "probabilities"  cross-entropy on the model's output probabilities, with Keras'
                     usual clipping to [1e-7, 1 - 1e-7] and nothing else: what a naive
                     attacker sees, and where a saturated softmax gives exactly zero
                     gradients (gradient masking). Computed by hand, because Keras' own
                     loss silently takes the logits when the output comes from a Softmax op.
"""

import numbers
import weakref

import keras
import numpy as np
import tensorflow as tf

from tfadv import models, runtime

LOSS_ON = ("logits", "probabilities")
NORMS = ("inf", "2")
PROBABILITY_CLIP = 1e-7  # keras.config.epsilon(), as in keras.losses.sparse_categorical_crossentropy
L2_AVOID_ZERO_DIV = 1e-12  # as in CleverHans' optimize_linear and clip_eta

_NORM_ALIASES = {"inf": "inf", "linf": "inf", "l_inf": "inf", "2": "2", "l2": "2"}


# ----------------------------------------------------------------------------- argument checks


def is_concrete(value) -> bool:
    """True for values known now (Python/NumPy, eager tensors and variables), False inside graphs."""
    value = unwrap_variable(value)
    if isinstance(value, (numbers.Number, np.ndarray, np.generic, list, tuple)):
        return True
    if isinstance(value, tf.Variable):
        return tf.executing_eagerly()
    return isinstance(value, tf.Tensor) and hasattr(value, "numpy") and tf.executing_eagerly()


def unwrap_variable(value):
    """The tf.Variable behind a Keras variable (other values unchanged)."""
    return value.value if isinstance(value, keras.Variable) else value


def _value(x) -> np.ndarray:
    return x.numpy() if hasattr(x, "numpy") else np.asarray(x)


def check_eps(eps, name: str = "eps") -> None:
    """Raises ValueError unless `eps` is a scalar >= 0 (checked when its value is known)."""
    eps = unwrap_variable(eps)
    if not is_concrete(eps):
        if eps.shape.rank not in (None, 0):
            raise ValueError(f"Expected a scalar {name}. Received: {name}.shape={eps.shape}")
        return
    value = _value(eps)
    if value.ndim != 0:
        raise ValueError(f"Expected a scalar {name}. Received: {name}={value!r}")
    if not value >= 0:  # also rejects NaN
        raise ValueError(f"Expected {name} >= 0. Received: {name}={value.item()!r}")


def check_positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"Expected {name} to be an integer >= 1. Received: {name}={value!r}")
    return int(value)


def check_choice(name: str, value, choices) -> str:
    if value not in choices:
        raise ValueError(f"Expected {name} to be one of {tuple(choices)}. Received: {name}={value!r}")
    return value


def check_norm(norm) -> str:
    """Normalises a norm name ("inf", np.inf, "linf", 2, "2", "l2") to "inf" or "2"."""
    key = "inf" if norm == np.inf else str(norm).lower()
    if key not in _NORM_ALIASES:
        raise ValueError(f"Expected norm to be one of {NORMS} (or np.inf, 2). Received: norm={norm!r}")
    return _NORM_ALIASES[key]


def to_images(images) -> tf.Tensor:
    """float32 (N, H, W, C) tensor; known values must lie in [0, 1]."""
    x = tf.convert_to_tensor(images)
    if not x.dtype.is_floating:
        raise ValueError(
            f"Expected float images in [0, 1] (pixel scale). Received: images.dtype={x.dtype.name}"
        )
    x = tf.cast(x, tf.float32)
    if x.shape.rank != 4:
        raise ValueError(f"Expected images of shape (N, H, W, C). Received: images.shape={x.shape}")
    if is_concrete(x) and x.shape[0]:
        low, high = float(tf.reduce_min(x)), float(tf.reduce_max(x))
        if not (0.0 <= low and high <= 1.0):
            raise ValueError(f"Expected images in [0, 1] (pixel scale). Received: images with min={low}, max={high}")
    return x


def to_labels(labels, images: tf.Tensor, num_classes=None, name: str = "labels") -> tf.Tensor:
    """int64 (N,) tensor of class ids matching `images`; known values must lie in [0, num_classes)."""
    y = tf.convert_to_tensor(labels)
    if not y.dtype.is_integer:
        raise ValueError(f"Expected integer class ids as {name}. Received: {name}.dtype={y.dtype.name}")
    n = images.shape[0]
    if y.shape.rank != 1 or (n is not None and y.shape[0] is not None and y.shape[0] != n):
        raise ValueError(f"Expected {name} of shape ({n},). Received: {name}.shape={tuple(y.shape)}")
    y = tf.cast(y, tf.int64)
    if num_classes and is_concrete(y) and y.shape[0]:
        low, high = int(tf.reduce_min(y)), int(tf.reduce_max(y))
        if low < 0 or high >= num_classes:
            raise ValueError(
                f"Expected {name} in [0, {num_classes}). Received: {name} with min={low}, max={high}"
            )
    return y


def to_scalar(value) -> tf.Tensor:
    return tf.cast(tf.convert_to_tensor(value), tf.float32)


def num_classes(model):
    """Number of classes when the model says so (Keras models), else None."""
    shape = getattr(model, "output_shape", None)
    return shape[-1] if isinstance(shape, tuple) and shape and isinstance(shape[-1], int) else None


def to_seed(seed) -> tf.Tensor:
    """A stateless-RNG seed: int64 tensor of shape (2,).

    `seed` is None (a fresh draw from TensorFlow's global RNG, so repeatable after
    `tf.random.set_seed` and new on every call, also inside a traced training step),
    an int, or a pair such as `(seed, step)` (may be tensors).
    """
    if seed is None:
        return tf.random.uniform([2], minval=0, maxval=2**62, dtype=tf.int64)
    if isinstance(seed, numbers.Integral):
        return tf.constant([int(seed), 0], tf.int64)
    parts = seed if isinstance(seed, (tuple, list)) else [seed]
    tensors = [tf.convert_to_tensor(part) for part in parts]
    if len(parts) > 2 or not all(t.dtype.is_integer and t.shape.rank == 0 for t in tensors):
        if len(tensors) == 1 and tensors[0].dtype.is_integer and tensors[0].shape.as_list() == [2]:
            return tf.cast(tensors[0], tf.int64)
        raise ValueError(f"Expected seed to be None, an int or a pair of ints. Received: seed={seed!r}")
    tensors = [tf.cast(t, tf.int64) for t in tensors]
    return tf.stack(tensors if len(tensors) == 2 else [tensors[0], tf.zeros_like(tensors[0])])


def fold_seed(seed, data) -> tf.Tensor:
    """A new (2,) int64 seed derived from `seed` and an integer `data` (e.g. a step or restart)."""
    return tf.cast(tf.random.experimental.stateless_fold_in(seed, data), tf.int64)


def split_seed(seed, num: int) -> list:
    """`num` independent (2,) int64 seeds derived from `seed`."""
    return list(tf.unstack(tf.cast(tf.random.experimental.stateless_split(seed, num), tf.int64)))


# ----------------------------------------------------------------------------- model outputs and loss

_LOGITS_MODELS = weakref.WeakKeyDictionary()


def _logits_fn(model):
    if hasattr(model, "logits") and callable(model.logits):  # tfadv.export.ExportedModel
        return model.logits
    if model not in _LOGITS_MODELS:
        _LOGITS_MODELS[model] = models.logits_model(model)
    return lambda x: _LOGITS_MODELS[model](x, training=False)


def output_fn(model, loss_on: str):
    """x -> logits or probabilities (inference mode), matching `loss_on`."""
    check_choice("loss_on", loss_on, LOSS_ON)
    if loss_on == "logits":
        return _logits_fn(model)
    return lambda x: model(x, training=False)


def loss_from(outputs: tf.Tensor, labels: tf.Tensor, loss_on: str) -> tf.Tensor:
    """Per-example cross-entropy of `labels` given logits or probabilities."""
    if loss_on == "probabilities":
        outputs = tf.math.log(tf.clip_by_value(outputs, PROBABILITY_CLIP, 1.0 - PROBABILITY_CLIP))
    return tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=outputs)


def outputs_and_gradient(forward, loss_on, x, labels, targeted):
    """(outputs at x, gradient of the summed loss w.r.t. x); targeted negates the loss (descent)."""
    with tf.GradientTape(watch_accessed_variables=False) as tape:
        tape.watch(x)
        outputs = forward(x)
        loss = loss_from(outputs, labels, loss_on)
        if targeted:
            loss = -loss
    return outputs, tape.gradient(loss, x)


# ----------------------------------------------------------------------------- geometry


def _per_example_sum(t):
    return tf.reduce_sum(t, axis=list(range(1, t.shape.rank)), keepdims=True)


def linear_step(grad, size, norm: str):
    """The steepest-ascent step of length `size` for a linear loss with gradient `grad`."""
    if norm == "inf":
        return size * tf.stop_gradient(tf.sign(grad))
    return size * (grad / tf.sqrt(tf.maximum(L2_AVOID_ZERO_DIV, _per_example_sum(tf.square(grad)))))


def clip_eta(eta, eps, norm: str):
    """Scales/clips a perturbation back into the eps-ball."""
    if norm == "inf":
        return tf.clip_by_value(eta, -eps, eps)
    length = tf.sqrt(tf.maximum(L2_AVOID_ZERO_DIV, _per_example_sum(tf.square(eta))))
    return eta * tf.minimum(1.0, eps / length)


def clip_pixels(x):
    return tf.clip_by_value(x, 0.0, 1.0)


def project(adv, x, eps, norm: str):
    """Back into the eps-ball around x, then into [0, 1] (CleverHans' order of operations)."""
    return clip_pixels(x + clip_eta(adv - x, eps, norm))


def random_in_ball(shape, eps, norm: str, seed):
    """A uniform random perturbation inside the eps-ball (stateless, seeded)."""
    if norm == "inf":
        return tf.random.stateless_uniform(shape, seed, minval=-1.0, maxval=1.0) * eps
    seeds = split_seed(seed, 2)
    direction = tf.random.stateless_normal(shape, seeds[0])
    direction /= tf.sqrt(tf.maximum(L2_AVOID_ZERO_DIV, _per_example_sum(tf.square(direction))))
    dim = tf.cast(tf.reduce_prod(shape[1:]), tf.float32)
    radius = tf.random.stateless_uniform(tf.stack([shape[0], 1, 1, 1]), seeds[1]) ** (1.0 / dim)
    return direction * radius * eps


# ----------------------------------------------------------------------------- compile cache

_COMPILED = weakref.WeakKeyDictionary()


class _Bound:
    """`fn` with its model and static options bound. A callable object rather than a closure:
    TensorFlow's retracing-warning detector groups functions by code object, and would count
    the traces of different models and options of one attack as retracing."""

    def __init__(self, fn, model_ref, static):
        self.fn, self.model_ref, self.static = fn, model_ref, static

    def __call__(self, *tensors):
        return self.fn(*tensors, model_ref=self.model_ref, **self.static)


def compiled(model, fn, signature, jit_compile="auto", **static):
    """The tf.function running `fn(*tensors, model_ref=..., **static)` on `model`: created once
    per (model, fn, static options, signature, XLA choice) and traced once (per device).

    Args:
        model: the attacked model (cache key; held weakly).
        fn: a module-level function `fn(*tensors, model_ref, **static)`; it must reach the
            model only through the weak reference `model_ref` (see `deref`), so that the
            cache does not keep the model alive.
        signature: the tf.function input_signature (None batch dimensions: no retracing
            for a smaller last batch; scalar tensors for eps/alpha: none for new values).
        jit_compile: "auto" | "true" | "false" | bool (see tfadv.runtime.resolve_jit_compile).
        **static: hashable Python options fixed at trace time (norm, steps, ...).
    """
    jit = runtime.resolve_jit_compile(jit_compile)
    per_model = _COMPILED.setdefault(model, {})
    shapes = tuple((tuple(s.shape.as_list()), s.dtype) for s in signature)
    key = (fn, tuple(sorted(static.items())), shapes, jit)
    if key not in per_model:
        bound = _Bound(fn, weakref.ref(model), static)
        # autograph=False: the attacks use explicit tf.while_loop, and tracing need not re-read sources.
        per_model[key] = tf.function(bound, input_signature=signature, jit_compile=jit, autograph=False)
    return per_model[key]


def image_spec(x: tf.Tensor) -> tf.TensorSpec:
    return tf.TensorSpec([None, *x.shape[1:]], tf.float32)


LABELS_SPEC = tf.TensorSpec([None], tf.int64)
SCALAR_SPEC = tf.TensorSpec([], tf.float32)
SEED_SPEC = tf.TensorSpec([2], tf.int64)


def deref(model_ref):
    model = model_ref()
    if model is None:
        raise RuntimeError("The attacked model no longer exists")
    return model

