"""FMN, fast minimum-norm attack (Pintor et al. 2021, "Fast minimum-norm adversarial attacks
through adaptive norm constraints"), L-inf, L2 and L1, untargeted, as Foolbox 3 runs it.

Each step ascends the misclassification margin max_{k != y} f_k - f_y by a gradient step of
L2 length alpha (cosine-annealed from `max_stepsize` to `min_stepsize`) and projects the
perturbation onto the norm ball of radius epsilon and into [0, 1]. epsilon adapts per image:
while the point is adversarial it shrinks by a factor (1 - gamma_i) (at most to the best
distance so far); before any adversarial is found it is the current norm plus the linearised
distance to the boundary |margin| / ||grad||_dual, overshot by (1 + gamma_i) (without it, a
point can creep toward a curved boundary from inside for all its steps: the paper and Foolbox
take no overshoot); after, it grows by (1 + gamma_i); gamma_i is cosine-annealed from `gamma`
to 0.001. The closest adversarial met is kept. Images misclassified before the attack leave the
batch at once (distance 0). Per step: one forward and one backward pass. (Foolbox 3.3.4's L2
projection is a no-op, `factor = min(1, norms / norms)`; here it projects.)
"""

import math

import tensorflow as tf

from tfadv.attacks import checks, norms
from tfadv.attacks.core import classifier_of
from tfadv.attacks.minimum_norm import (
    INF,
    begin,
    best_other,
    check_budget,
    check_norm,
    check_number,
    finish,
    is_adversarial,
    search,
    within_eps,
)

FINAL_GAMMA = 0.001  # gamma's cosine annealing ends here (as in the paper and Foolbox)
NORM_FLOOR = norms.LENGTH_FLOOR  # under a length before dividing


def _fmn_fn(
    x, y, t, eps, alpha, seed, *, model_ref, output, norm, steps, max_stepsize, min_stepsize, gamma
):
    clf = classifier_of(model_ref, output)
    s = {"rows": tf.range(tf.cast(tf.shape(x)[0], tf.int64)), "x": x, "y": y}
    s, out = begin(clf, dict(s, cur=x))
    m = tf.shape(s["x"])[0]
    s = dict(
        s,
        delta=tf.zeros_like(s["x"]),
        epsilon=tf.fill([m], INF),
        found=tf.zeros([m], tf.bool),
        worst=norm.length(tf.maximum(s["x"], 1.0 - s["x"])),
    )
    s["best_norm"] = s["worst"]

    def body(i, s, out):
        cosine = (1.0 + tf.cos(math.pi * tf.cast(i, tf.float32) / steps)) / 2.0
        stepsize = min_stepsize + (max_stepsize - min_stepsize) * cosine
        rate = FINAL_GAMMA + (gamma - FINAL_GAMMA) * cosine
        delta, x = s["delta"], s["x"]
        adv = x + delta
        with tf.GradientTape(watch_accessed_variables=False) as tape:
            tape.watch(adv)
            logits = clf.logits(adv)
            margin = best_other(logits, s["y"]) - tf.gather(logits, s["y"], batch_dims=1)
        grad = tape.gradient(margin, adv, unconnected_gradients=tf.UnconnectedGradients.ZERO)
        wrong = is_adversarial(logits, s["y"])
        length = norm.length(delta)
        better = wrong & (length <= s["best_norm"])
        found = s["found"] | wrong
        best_norm = tf.where(better, length, s["best_norm"])
        boundary = tf.abs(margin) / tf.maximum(norm.dual.length(grad), NORM_FLOOR)
        epsilon = tf.where(
            wrong,
            tf.minimum(s["epsilon"] * (1.0 - rate), best_norm),
            tf.where(found, s["epsilon"] * (1.0 + rate), (length + boundary) * (1.0 + rate)),
        )
        epsilon = tf.minimum(epsilon, s["worst"])
        # the step has L2 length `stepsize` in every norm (as in the paper and Foolbox)
        length_2 = tf.maximum(norms.L2_NORM.length(grad), NORM_FLOOR)
        step = grad / length_2[:, None, None, None] * stepsize
        moved = norms.clip_pixels(x + norm.project_each(delta + step, epsilon)) - x
        s = dict(
            s,
            delta=moved,
            epsilon=epsilon,
            found=found,
            best_norm=best_norm,
            best=tf.where(better[:, None, None, None], adv, s["best"]),
            distance=tf.where(better, length, s["distance"]),
        )
        return i + 1, s, out

    def cond(i, s, out):
        return (i < steps) & (tf.size(s["rows"]) > 0)

    _, s, out = tf.while_loop(cond, body, (tf.constant(0), s, out))
    return finish(clf, dict(s, cur=s["x"] + s["delta"]), out, norm)


def fmn_search(
    model, images, labels, *, norm="2", steps=100, max_stepsize=1.0, min_stepsize=None, gamma=0.05
):
    """FMN's closest adversarial per image: a `tfadv.attacks.MinimumNormResult`.

    Args:
        model: any classifier `tfadv.models.as_classifier` accepts.
        images: float (N, H, W, C) in [0, 1].
        labels: int (N,) true classes.
        norm: "inf", "2" or "1" (distances in that norm, pixel scale).
        steps: iterations (>= 1; each one forward and one backward pass).
        max_stepsize: the first step's L2 length (> 0), cosine-annealed to `min_stepsize`.
        min_stepsize: the last step's L2 length, in (0, max_stepsize]; default max_stepsize / 100.
        gamma: the first epsilon update factor, in (0, 1), cosine-annealed to 0.001.
    """
    norm = check_norm(norm, norms.ALL, "fmn")
    steps = checks.check_positive_int("steps", steps)
    max_stepsize = check_number("max_stepsize", max_stepsize, low_open=True)
    min_stepsize = (
        max_stepsize / 100
        if min_stepsize is None
        else check_number("min_stepsize", min_stepsize, low_open=True)
    )
    if min_stepsize > max_stepsize:
        raise ValueError(
            "Expected min_stepsize <= max_stepsize. Received: "
            f"min_stepsize={min_stepsize!r}, max_stepsize={max_stepsize!r}"
        )
    gamma = check_number("gamma", gamma, low_open=True)
    if gamma >= 1:
        raise ValueError(f"Expected gamma in (0, 1). Received: gamma={gamma!r}")
    return search(
        model,
        images,
        labels,
        _fmn_fn,
        norm,
        norm=norm,
        steps=steps,
        max_stepsize=max_stepsize,
        min_stepsize=min_stepsize,
        gamma=gamma,
    )


def fmn(
    model,
    images,
    labels,
    eps=None,
    *,
    norm="2",
    steps=100,
    max_stepsize=1.0,
    min_stepsize=None,
    gamma=0.05,
):
    """FMN with the shared attack signature: with eps None each image's closest adversarial
    found (the clean image where none was); with eps (pixel scale, in `norm`) that adversarial
    where it lies within eps, else the clean image. Options as in `fmn_search`."""
    check_budget(eps, check_norm(norm, norms.ALL, "fmn"))
    result = fmn_search(
        model,
        images,
        labels,
        norm=norm,
        steps=steps,
        max_stepsize=max_stepsize,
        min_stepsize=min_stepsize,
        gamma=gamma,
    )
    return within_eps(result, images, eps)
