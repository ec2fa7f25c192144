"""Minimum-norm attacks: how far each image is from the decision boundary.

    result = attacks.minimum_norm(model, images, labels, attack="fmn", norm="2")
    result.distances  # float32 (N,): L2 distance of the closest adversarial found
    result.robust_accuracy([0.25, 0.5])  # the robust-accuracy-vs-eps curve from one run

One run gives every image's distance (0 for an image misclassified already, inf where the
search found no adversarial), and with it robust accuracy at every eps. The searches:
`deepfool` (L2, L-inf), `carlini_wagner_l2` (L2) and `fmn` (L-inf, L2, L1), each compiled once
per model and static options, running off XLA as each image leaves the batch when its search
ends. This module holds what they share: the result, the Lp lengths, the per-image bookkeeping.
"""

import dataclasses
import math
import numbers

import numpy as np
import tensorflow as tf

from tfadv.attacks import checks, core, norms

INF = float("inf")


@dataclasses.dataclass(frozen=True)
class MinimumNormResult:
    """One minimum-norm run. adversarial: float32 (N, H, W, C) in [0, 1], the closest
    adversarial found (the clean image where none was); distances: float32 (N,), its distance
    to the clean image in `norm` (pixel scale; 0 for images misclassified already, inf where
    none was found); success: bool (N,), an adversarial was found; norm: "inf", "2" or "1"."""

    adversarial: tf.Tensor
    distances: tf.Tensor
    success: tf.Tensor
    norm: str

    def robust_accuracy(self, eps):
        """Fraction of images whose distance exceeds eps: a float for a scalar eps, else a
        float64 array (one per eps). Exact for this attack's results at every eps at once."""
        d = np.asarray(self.distances)
        values = np.asarray(eps, np.float64)
        curve = (
            (d[None, :] > values.reshape(-1, 1)).mean(axis=1) if d.size else np.ones(values.size)
        )
        return float(curve[0]) if values.ndim == 0 else curve

    def within(self, images, eps) -> tf.Tensor:
        """The adversarial images where their distance is at most eps, else `images`."""
        inside = self.distances <= checks.to_scalar(eps)
        return tf.where(inside[:, None, None, None], self.adversarial, tf.cast(images, tf.float32))


def check_norm(norm, allowed, name: str) -> norms.Norm:
    """The Norm named by `norm` if its name is one of `allowed`, else ValueError."""
    return norms.get(norm, allowed, name)


def check_number(name: str, value, low: float = 0.0, low_open: bool = False) -> float:
    """A finite real number >= low (> low when low_open)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"Expected {name} to be a finite number. Received: {name}={value!r}")
    if value < low or (low_open and value == low):
        raise ValueError(
            f"Expected {name} {'>' if low_open else '>='} {low:g}. Received: {name}={value!r}"
        )
    return float(value)


def is_adversarial(logits, y, confidence=0.0):
    """Misclassified, by at least `confidence` in the logits when > 0 (Carlini-Wagner's kappa)."""
    if confidence:
        logits = logits + confidence * tf.one_hot(y, tf.shape(logits)[1], dtype=logits.dtype)
    return tf.not_equal(tf.argmax(logits, axis=-1), y)


def best_other(logits, y):
    """The largest logit of a class other than y, per example."""
    mask = tf.one_hot(y, tf.shape(logits)[1], on_value=True, off_value=False)
    return tf.reduce_max(tf.where(mask, -INF, logits), axis=1)


def logits_or_empty(clf, x):
    """clf.logits(x), without calling the model on an empty batch (oneDNN rejects it)."""
    empty = lambda: tf.zeros([0, clf.num_classes], tf.float32)  # noqa: E731
    return tf.cond(tf.shape(x)[0] > 0, lambda: clf.logits(x), empty)


def record(out, finished):
    """`out` (full batch: "images", "distance") with the finished examples' "best" and
    "distance" written in at their "rows"."""
    return dict(
        out,
        images=core.write_rows(out["images"], finished["rows"], finished["best"]),
        distance=core.write_rows(out["distance"], finished["rows"], finished["distance"]),
    )


def begin(clf, state, confidence=0.0):
    """(state, out) for a search over `state` (with "rows", "x", "y"): "best" = x and
    "distance" = inf added; the examples already adversarial leave at distance 0."""
    x, y = state["x"], state["y"]
    n = tf.shape(x)[0]
    state = dict(state, best=x, distance=tf.fill([n], INF))
    out = {"images": x, "distance": tf.fill([n], INF)}
    wrong = is_adversarial(logits_or_empty(clf, x), y, confidence)
    state["distance"] = tf.where(wrong, 0.0, state["distance"])
    return core.drop_finished(state, out, wrong, record)


def finish(clf, s, out, norm, confidence=0.0):
    """The (images, distance) outputs once the search loop ends: each remaining example keeps
    its best so far, or its last point `s["cur"]` if that is adversarial and closer."""
    wrong = is_adversarial(logits_or_empty(clf, s["cur"]), s["y"], confidence)
    length = norm.length(s["cur"] - s["x"])
    closer = wrong & (length < s["distance"])
    s = dict(s, best=tf.where(closer[:, None, None, None], s["cur"], s["best"]))
    s["distance"] = tf.where(closer, length, s["distance"])
    out = record(out, s)
    return out["images"], out["distance"]


def search(model, images, labels, fn, distance_norm: norms.Norm, **static) -> MinimumNormResult:
    """Runs the compiled search `fn` (shared signature, returning (images, distances)) and wraps its
    output (distances in `distance_norm`); off XLA (examples leave the batch: dynamic shapes)."""
    clf, x, y = core.prepare(model, images, labels)
    name = distance_norm.name
    if x.shape[0] == 0:
        return MinimumNormResult(x, tf.zeros([0]), tf.zeros([0], tf.bool), name)
    attack = core.compiled_attack(clf, fn, x, False, **static)
    zero = tf.constant(0.0)
    adv, distances = attack(x, y, y, zero, zero, tf.zeros([2], tf.int64))
    adv, distances = tf.stop_gradient(adv), tf.stop_gradient(distances)
    return MinimumNormResult(adv, distances, tf.math.is_finite(distances), name)


def check_budget(eps, norm: norms.Norm) -> None:
    """eps None, or a finite number >= 0 in `norm`'s range (pixel scale; at most 1 for L-inf)."""
    if eps is not None:
        norm.check_eps(eps)


def within_eps(result: MinimumNormResult, images, eps):
    """The shared-signature answer: with eps None the closest adversarial found (the clean
    image where none was), else the closest adversarial if within eps, else the clean image."""
    if eps is None:
        return result.adversarial
    return result.within(checks.to_images(images), eps)


ATTACKS = ("deepfool", "cw_l2", "fmn")


def minimum_norm(model, images, labels, attack="fmn", norm="2", **options) -> MinimumNormResult:
    """Each image's closest adversarial found by `attack` in `norm`.

    Args:
        model: any classifier `tfadv.models.as_classifier` accepts.
        images: float (N, H, W, C) in [0, 1].
        labels: int (N,) true classes.
        attack: "deepfool" (norm "2" or "inf"), "cw_l2" (norm "2") or "fmn" ("inf", "2", "1").
        norm: the norm distances are measured in.
        **options: the attack's options (see `deepfool_search`, `carlini_wagner_l2_search`,
            `fmn_search`).
    """
    from tfadv.attacks.carlini_wagner import carlini_wagner_l2_search  # these import this module
    from tfadv.attacks.deepfool import deepfool_search
    from tfadv.attacks.fmn import fmn_search

    searches = {"deepfool": deepfool_search, "cw_l2": carlini_wagner_l2_search, "fmn": fmn_search}
    if attack not in searches:
        raise ValueError(f"Expected attack to be one of {ATTACKS}. Received: attack={attack!r}")
    if attack == "cw_l2":
        check_norm(norm, ("2",), "cw_l2")
        return searches[attack](model, images, labels, **options)
    return searches[attack](model, images, labels, norm=norm, **options)
