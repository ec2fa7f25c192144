"""Target classes for targeted attacks, chosen one way everywhere.

`target` is None (untargeted), "least_likely" (the lowest logit), "least_likely_top5" (the lowest of
the five most probable classes, as in the Possas study), "random" (a uniformly random class other
than the label, drawn from the image's own seed), an int class id for every image, or per-image
class ids (N,).
"""

import numbers

import numpy as np
import tensorflow as tf

from tfadv.attacks import checks, randomness
from tfadv.runtime.choices import TARGETS as STRATEGIES


def check_target(target, num_classes=None):
    """`target` validated (values of per-image arrays are checked when they are used)."""
    if target is None or isinstance(target, (tf.Tensor, np.ndarray, list, tuple)):
        return target
    if isinstance(target, str):
        return checks.check_choice("target", target, STRATEGIES)
    if isinstance(target, bool) or not isinstance(target, numbers.Integral):
        raise ValueError(
            f"Expected target None, {STRATEGIES}, a class id or per-image class ids. "
            f"Received: target={target!r}"
        )
    if target < 0 or (num_classes and target >= num_classes):
        allowed = f"in [0, {num_classes})" if num_classes else ">= 0"
        raise ValueError(f"Expected a target class {allowed}. Received: target={target!r}")
    return int(target)


def resolve(clf, x, y, target, seed=None, logits_fn=None) -> tf.Tensor | None:
    """The int64 (N,) targets for `target` (None when untargeted).

    Args:
        clf: the attacked Classifier (its logits rank the classes).
        x, y: images and true labels (tensors).
        target: see the module docstring.
        seed: for "random": None, an int, a pair or per-image seeds (N, 2) (see
            `tfadv.attacks.randomness.per_image`); image i's target depends on its seed only.
        logits_fn: images -> logits (default clf.logits; attacks pass their compiled one).
    """
    target = check_target(target, clf.num_classes)
    if target is None:
        return None
    if isinstance(target, int):
        return tf.fill(tf.shape(y), tf.constant(target, tf.int64))
    if not isinstance(target, str):
        return checks.to_labels(target, x, clf.num_classes, name="target")
    logits = (logits_fn or clf.logits)(x)
    classes = logits.shape[-1]
    if target == "least_likely":
        return tf.argmin(logits, axis=-1)
    if target == "least_likely_top5":
        if classes < 5:
            raise ValueError(
                f"target='least_likely_top5' needs >= 5 classes. Received: {classes} classes"
            )
        return tf.cast(tf.math.top_k(logits, k=5).indices[:, -1], tf.int64)
    n = x.shape[0] if x.shape[0] is not None else tf.shape(x)[0]
    seeds = randomness.per_image(seed, n)
    shift = 1 + tf.cast(
        randomness.integers(seeds, [], classes - 1, randomness.RANDOM_TARGET), tf.int64
    )
    return (y + shift) % classes
