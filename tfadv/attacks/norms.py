"""Norms as small values: the steepest-ascent step, the projection and the random start of each.

    norm = norms.get("inf")            # or "2", np.inf, 2, "linf", "l2", a Norm
    adv = norms.project(adv + norm.step(grad, alpha), x, eps, norm)

The L-inf and L2 pieces use the same operations as CleverHans 4.0 (`optimize_linear`, `clip_eta`),
so FGSM, BIM and PGD agree with it bit for bit (L-inf).
"""

import numpy as np
import tensorflow as tf

from tfadv.attacks import randomness

AVOID_ZERO_DIV = 1e-12  # as in CleverHans' optimize_linear and clip_eta


def _per_example_sum(t):
    return tf.reduce_sum(t, axis=list(range(1, t.shape.rank)), keepdims=True)


def _image_shape(shape):
    """One image's shape, a list, from a batch shape (N, H, W, C): a TensorShape (use x.shape,
    whose H, W, C are known) or a rank-1 tensor."""
    if isinstance(shape, tf.Tensor):
        return [shape[i] for i in range(1, shape.shape[0])]
    return list(tf.TensorShape(shape))[1:]


def _l2_length(t):
    return tf.sqrt(tf.maximum(AVOID_ZERO_DIV, _per_example_sum(tf.square(t))))


class Norm:
    """One norm's pieces. `name` is "inf" or "2"."""

    name = ""

    def step(self, grad, size):
        """The steepest-ascent step of length `size` for a linear loss with gradient `grad`."""
        raise NotImplementedError

    def project(self, delta, eps):
        """`delta` scaled or clipped back into the eps-ball."""
        raise NotImplementedError

    def random(self, shape, eps, seeds):
        """A uniform random point of the eps-ball per image, drawn from its seed: `seeds` int64
        (N, 2) per-image seeds (see `tfadv.attacks.randomness`), `shape` (N, H, W, C)."""
        raise NotImplementedError

    def length(self, delta):
        """Per-example size of `delta`, float32 (N,)."""
        raise NotImplementedError

    def __repr__(self):
        return f"norms.get({self.name!r})"


class LInf(Norm):
    name = "inf"

    def step(self, grad, size):
        return size * tf.stop_gradient(tf.sign(grad))

    def project(self, delta, eps):
        return tf.clip_by_value(delta, -eps, eps)

    def random(self, shape, eps, seeds):
        return (
            2.0 * randomness.uniform(seeds, _image_shape(shape), randomness.PGD_START) - 1.0
        ) * eps

    def length(self, delta):
        return tf.reduce_max(tf.abs(tf.reshape(delta, [tf.shape(delta)[0], -1])), axis=1)


class L2(Norm):
    name = "2"

    def step(self, grad, size):
        return size * (grad / _l2_length(grad))

    def project(self, delta, eps):
        return delta * tf.minimum(1.0, eps / _l2_length(delta))

    def random(self, shape, eps, seeds):
        image_shape = _image_shape(shape)
        direction = randomness.normal(seeds, image_shape, randomness.PGD_START)
        direction /= _l2_length(direction)
        dim = tf.cast(tf.reduce_prod(image_shape), tf.float32)
        radius = randomness.uniform(seeds, [1] * len(image_shape), randomness.PGD_START) ** (
            1.0 / dim
        )
        return direction * radius * eps

    def length(self, delta):
        return tf.sqrt(
            tf.reduce_sum(tf.square(tf.reshape(delta, [tf.shape(delta)[0], -1])), axis=1)
        )


LINF, L2_NORM = LInf(), L2()
NORMS = {"inf": LINF, "2": L2_NORM}
_ALIASES = {"inf": "inf", "linf": "inf", "l_inf": "inf", "2": "2", "l2": "2"}


def get(norm) -> Norm:
    """The Norm named by `norm`: "inf" (also np.inf, "linf"), "2" (also 2, "l2") or a Norm."""
    if isinstance(norm, Norm):
        return norm
    key = "inf" if (isinstance(norm, float) and norm == np.inf) else str(norm).lower()
    if key not in _ALIASES:
        raise ValueError(
            f"Expected norm to be one of {tuple(NORMS)} (or np.inf, 2). Received: norm={norm!r}"
        )
    return NORMS[_ALIASES[key]]


def clip_pixels(x):
    return tf.clip_by_value(x, 0.0, 1.0)


def project(adv, x, eps, norm: Norm):
    """Back into the eps-ball around x, then into [0, 1] (CleverHans' order of operations)."""
    return clip_pixels(x + norm.project(adv - x, eps))
