"""Randomized smoothing (Cohen, Rosenfeld & Kolter 2019): a classifier with a certified L2 radius.

The smoothed classifier g(x) = argmax_c P(f(x + d) = c), d ~ N(0, sigma^2 I), is estimated from
the base classifier f's predictions (argmax of its logits, inference mode) on noisy copies:

    smoothed = SmoothedClassifier(model, sigma=0.25)
    classes = smoothed.predict(images, n=100, alpha=0.001, seed=0)  # -1: abstain
    result = smoothed.certify(images, n0=100, n=10_000, alpha=0.001, seed=0)
    result.classes, result.radii  # radius 0 where abstaining
    certified_accuracy(result.radii, result.classes == labels, [0, 0.25, 0.5])

`predict` is the paper's PREDICT: the two most frequent classes' counts nA, nB over n samples;
return the top class if the two-sided binomial test of nA out of nA + nB at p = 1/2 gives a
p-value <= alpha, else abstain (so a tie always abstains). `certify` is CERTIFY: pick the top
class from n0 samples, bound its probability from below with a one-sided (1 - alpha)
Clopper-Pearson interval on n fresh samples, p_A_lower, and certify the radius
sigma * Phi^-1(p_A_lower) when p_A_lower > 1/2, else abstain. Each answer is wrong with
probability at most alpha.

Noisy copies are not clipped to [0, 1] (as in the paper): the radius is an L2 distance in pixel
scale. Noise is drawn in compiled batches of about `batch_size` copies (several images per
forward pass for small n); a given seed and batch size give the same counts.
The quantiles come from SciPy (`scipy.stats.beta`, `binomtest`, `norm`), imported on first use.
"""

from typing import NamedTuple

import numpy as np
import tensorflow as tf

from tfadv.attacks.core import classifier_of, compiled
from tfadv.data.batching import map_batches
from tfadv.models import as_classifier, logits_of
from tfadv.runtime import tensors, validation
from tfadv.runtime.tensors import SCALAR_SPEC, SEED_SPEC

ABSTAIN = -1


def _stats():
    from scipy import (
        stats,  # a tfadv dependency; imported here to keep `import tfadv.defenses` fast
    )

    return stats


def clopper_pearson_lower(successes, trials: int, alpha: float) -> np.ndarray:
    """One-sided (1 - alpha) lower confidence bound of a binomial proportion (exact,
    Clopper-Pearson): the alpha quantile of Beta(k, n - k + 1); 0 where k = 0."""
    k = np.asarray(successes, np.float64)
    bound = _stats().beta.ppf(alpha, np.maximum(k, 1), trials - k + 1)
    return np.where(k > 0, bound, 0.0)


def binomial_p_value(successes: int, trials: int) -> float:
    """Two-sided p-value of `successes` out of `trials` under p = 1/2 (1.0 when trials = 0)."""
    if trials == 0:
        return 1.0
    return float(_stats().binomtest(int(successes), int(trials), 0.5).pvalue)


class Certification(NamedTuple):
    """`certify` results (NumPy, per image).

    classes: int64 (N,), the certified class or -1 (abstain).
    radii: float64 (N,), certified L2 radius (pixel scale); 0 where abstaining.
    p_lower: float64 (N,), the lower confidence bound of the top class's probability.
    counts: int64 (N,), how many of the n estimation samples gave the top class.
    """

    classes: np.ndarray
    radii: np.ndarray
    p_lower: np.ndarray
    counts: np.ndarray


def _counts_fn(x, sigma, n, seed, *, model_ref, output, copies, num_classes):
    """int32 (B, classes): class counts of f over n noisy copies of each image, `copies` per
    pass."""
    clf = classifier_of(model_ref, output)
    b = tf.shape(x)[0]
    shape = x.shape[1:]
    n = tf.cast(n, tf.int32)

    def body(i, counts):
        noise = (
            tf.random.stateless_normal(
                tf.concat([[b, copies], shape], 0), tensors.fold_seed(seed, i)
            )
            * sigma
        )
        noisy = tf.reshape(x[:, None] + noise, tf.concat([[-1], shape], 0))
        predicted = tf.reshape(
            tf.argmax(clf.logits(noisy), axis=-1, output_type=tf.int32), [b, copies]
        )
        valid = tf.cast(
            i * copies + tf.range(copies) < n, tf.int32
        )  # the last pass may draw too many
        return i + 1, counts + tf.reduce_sum(
            tf.one_hot(predicted, num_classes, dtype=tf.int32) * valid[None, :, None], 1
        )

    passes = (n + copies - 1) // copies
    counts = tf.zeros(tf.stack([b, num_classes]), tf.int32)
    return tf.while_loop(lambda i, _: i < passes, body, (tf.constant(0), counts))[1]


class SmoothedClassifier:
    """g(x) = argmax_c P(f(x + N(0, sigma^2 I)) = c) for a base classifier f.

    Args:
        model: the base classifier (any `tfadv.models.as_classifier` accepts); best trained with
            Gaussian noise of the same sigma (`tfadv.models.build(..., noise="input",
            noise_stddev=sigma)`).
        sigma: noise stddev, pixel scale (> 0).
        batch_size: noisy copies classified per forward pass.
        jit_compile: "auto" | "true" | "false" (XLA).
    """

    def __init__(self, model, sigma: float, *, batch_size: int = 1000, jit_compile="auto"):
        self.model = model
        self.classifier = as_classifier(model)
        validation.check_eps(sigma, "sigma")
        if not float(sigma) > 0:
            raise ValueError(f"Expected sigma > 0 (pixel scale). Received: sigma={sigma!r}")
        self.sigma = float(sigma)
        self.batch_size = validation.check_batch_size(batch_size)
        self.jit_compile = jit_compile

    def __repr__(self):
        return f"SmoothedClassifier({self.classifier.name!r}, sigma={self.sigma})"

    def counts(self, images, n: int, seed=0) -> np.ndarray:
        """int64 (N, classes): how often f predicts each class over `n` noisy copies of each
        image."""
        n = validation.check_positive_int("n", n)
        clf = self.classifier
        x = validation.to_images(images, clf.input_shape)
        clf.ensure_built(x)
        num_classes = clf.num_classes or int(
            logits_of(clf, x[:1], jit_compile=self.jit_compile).shape[-1]
        )
        copies = min(n, self.batch_size)
        signature = [tensors.image_spec(x), SCALAR_SPEC, tf.TensorSpec([], tf.int32), SEED_SPEC]
        fn = compiled(
            clf, _counts_fn, signature, self.jit_compile, copies=copies, num_classes=num_classes
        )
        seed = tensors.to_seed(seed)
        images_per_call = max(1, self.batch_size // copies)
        sigma, draws = tf.constant(self.sigma), tf.constant(n)

        def run(xb, first):
            return fn(xb, sigma, draws, tensors.fold_seed(seed, int(first[0]) // images_per_call))

        starts = np.arange(len(x))
        return map_batches(run, x.numpy(), starts, batch_size=images_per_call).astype(np.int64)

    def predict(self, images, n: int = 100, alpha: float = 0.001, seed=0) -> np.ndarray:
        """int64 (N,): g's class where the binomial test of the top two counts is significant at
        `alpha`, else -1 (abstain). Each returned class is wrong with probability <= alpha."""
        alpha = _check_alpha(alpha)
        counts = self.counts(images, n, seed)
        top2 = np.argsort(-counts, axis=1, kind="stable")[:, :2]
        n_a, n_b = np.take_along_axis(counts, top2, axis=1).T
        significant = np.array(
            [binomial_p_value(a, a + b) <= alpha for a, b in zip(n_a, n_b, strict=True)], bool
        )
        return np.where(significant, top2[:, 0], ABSTAIN).astype(np.int64)

    def certify(
        self, images, n0: int = 100, n: int = 10_000, alpha: float = 0.001, seed=0
    ) -> Certification:
        """Cohen et al.'s CERTIFY: top class from n0 samples, its probability bounded from below at
        confidence 1 - alpha from n separate samples, radius sigma * Phi^-1(p_A_lower).

        Returns:
            Certification (classes with -1 and radius 0 where p_A_lower <= 1/2).
        """
        alpha = _check_alpha(alpha)
        n0, n = validation.check_positive_int("n0", n0), validation.check_positive_int("n", n)
        selection, estimation = tensors.split_seed(tensors.to_seed(seed), 2)
        top = self.counts(images, n0, selection).argmax(axis=1)
        n_a = np.take_along_axis(self.counts(images, n, estimation), top[:, None], axis=1)[:, 0]
        p_lower = clopper_pearson_lower(n_a, n, alpha)
        certified = p_lower > 0.5
        radii = np.where(
            certified, self.sigma * _stats().norm.ppf(np.where(certified, p_lower, 0.75)), 0.0
        )
        return Certification(
            np.where(certified, top, ABSTAIN).astype(np.int64), radii, p_lower, n_a.astype(np.int64)
        )


def _check_alpha(alpha) -> float:
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 < alpha < 1:
        raise ValueError(
            f"Expected alpha in (0, 1) (the allowed error probability). Received: alpha={alpha!r}"
        )
    return float(alpha)


def certified_accuracy(radii, correct, radius_grid) -> np.ndarray:
    """float64 (len(radius_grid),): the share of images certified correct with radius >= r, per r.

    Args:
        radii: (N,) certified radii (0 where abstaining).
        correct: bool (N,), certified class == label (False where abstaining).
        radius_grid: radii r (pixel scale, L2).
    """
    radii, correct = (
        np.asarray(radii, np.float64).reshape(-1),
        np.asarray(correct, bool).reshape(-1),
    )
    grid = np.asarray(radius_grid, np.float64).reshape(-1)
    if len(radii) != len(correct) or len(radii) == 0:
        raise ValueError(
            f"Expected radii and correct of one length >= 1. Received: {len(radii)} radii, "
            f"{len(correct)} flags"
        )
    return (correct[None, :] & (radii[None, :] >= grid[:, None])).mean(axis=1)
