"""Carlini-Wagner L2 (Carlini & Wagner 2017, "Towards evaluating the robustness of neural
networks"), untargeted, as Foolbox 3 runs it.

The image is written x' = (tanh(w + delta) + 1) / 2 (the tanh box keeps it in [0, 1]; w maps
the clean image), and Adam minimises over delta, per image,
    ||x' - x||_2^2 + c * max(0, f_y(x') - max_{k != y} f_k(x') + kappa)
for `steps` steps; a binary search over c (`binary_search_steps` runs, c starting at
`initial_const`, times 10 until a run succeeds, then halving the bracket) keeps the closest
point misclassified by a logit margin of at least kappa. With `abort_early`, every
ceil(steps / 10) steps an image whose objective has not fallen below 0.9999 of its value at the
last check leaves the run (the original stops the whole batch on the summed objective).
Per Adam step: one forward and one backward pass on the images still running.
"""

import math

import tensorflow as tf

from tfadv.attacks import checks, core, norms
from tfadv.attacks.core import classifier_of
from tfadv.attacks.minimum_norm import (
    INF,
    best_other,
    check_budget,
    check_number,
    is_adversarial,
    logits_or_empty,
    record,
    search,
    within_eps,
)

TANH_SHRINK = 0.999999  # images are scaled by this before arctanh (as Foolbox and the original do)
BETA_1, BETA_2, ADAM_EPSILON = 0.9, 0.999, 1e-8
PROGRESS = 0.9999  # abort early: the objective must fall below this fraction of its last check
LAST_CONST_CAP = 1e10  # with >= 10 binary-search steps the last uses the upper bound, capped here


def _record(out, finished):
    out = record(out, finished)
    return dict(out, found=core.write_rows(out["found"], finished["rows"], finished["found"]))


def _cw_fn(
    x,
    y,
    t,
    eps,
    alpha,
    seed,
    *,
    model_ref,
    output,
    steps,
    binary_search_steps,
    stepsize,
    confidence,
    initial_const,
    abort_early,
):
    clf = classifier_of(model_ref, output)
    n = tf.shape(x)[0]
    w = tf.atanh((2.0 * x - 1.0) * TANH_SHRINK)
    clean = is_adversarial(
        logits_or_empty(clf, x), y, confidence
    )  # adversarial already: distance 0
    out = {"images": x, "distance": tf.where(clean, 0.0, INF), "found": tf.zeros([n], tf.bool)}
    consts, lower, upper = tf.fill([n], initial_const), tf.zeros([n]), tf.fill([n], INF)
    every = max(1, math.ceil(steps / 10))

    def body(i, s, out):
        delta = s["delta"]
        with tf.GradientTape(watch_accessed_variables=False) as tape:
            tape.watch(delta)
            adv = (tf.tanh(s["w"] + delta) + 1.0) / 2.0
            logits = clf.logits(adv)
            margin = (
                tf.gather(logits, s["y"], batch_dims=1) - best_other(logits, s["y"]) + confidence
            )
            objective = s["c"] * tf.maximum(margin, 0.0) + tf.reduce_sum(
                tf.square(adv - s["start"]), axis=[1, 2, 3]
            )
        grad = tape.gradient(
            objective, delta, unconnected_gradients=tf.UnconnectedGradients.ZERO
        )  # of the sum
        k = tf.cast(i + 1, tf.float32)
        m = BETA_1 * s["m"] + (1.0 - BETA_1) * grad
        v = BETA_2 * s["v"] + (1.0 - BETA_2) * tf.square(grad)
        move = stepsize * (m / (1.0 - BETA_1**k)) / (tf.sqrt(v / (1.0 - BETA_2**k)) + ADAM_EPSILON)
        wrong = is_adversarial(logits, s["y"], confidence)
        length = norms.L2_NORM.length(adv - s["x"])
        closer = wrong & (length < s["distance"])
        check = tf.equal(i % every, 0) if abort_early else tf.constant(False)
        stalled = check & ~(objective <= PROGRESS * s["last"])
        s = dict(
            s,
            delta=delta - move,
            m=m,
            v=v,
            found=s["found"] | wrong,
            best=tf.where(closer[:, None, None, None], adv, s["best"]),
            distance=tf.where(closer, length, s["distance"]),
            last=tf.where(check, objective, s["last"]),
        )
        s, out = core.drop_finished(s, out, stalled, _record)
        return i + 1, s, out

    def cond(i, s, out):
        return (i < steps) & (tf.size(s["rows"]) > 0)

    def binary_step(b, consts, lower, upper, out):
        if binary_search_steps >= 10:
            consts = tf.where(
                tf.equal(b, binary_search_steps - 1), tf.minimum(upper, LAST_CONST_CAP), consts
            )
        rows = tf.where(~clean)[:, 0]
        take = lambda v: tf.gather(v, rows)  # noqa: E731
        zeros = tf.zeros_like(take(x))
        s = {
            "rows": rows,
            "x": take(x),
            "y": take(y),
            "w": take(w),
            "c": take(consts),
            "delta": zeros,
            "m": zeros,
            "v": zeros,
            "found": tf.zeros_like(rows, tf.bool),
            "best": take(out["images"]),
            "distance": take(out["distance"]),
            "last": tf.fill(tf.shape(rows), INF),
        }
        s["start"] = (tf.tanh(s["w"]) + 1.0) / 2.0
        out = dict(out, found=tf.zeros([n], tf.bool))
        _, s, out = tf.while_loop(cond, body, (tf.constant(0), s, out))
        out = _record(out, s)
        found = out["found"]
        upper = tf.where(found, consts, upper)
        lower = tf.where(found, lower, consts)
        consts = tf.where(tf.math.is_inf(upper), consts * 10.0, (lower + upper) / 2.0)
        return b + 1, consts, lower, upper, out

    loop = (tf.constant(0), consts, lower, upper, out)
    out = tf.while_loop(lambda b, *_: b < binary_search_steps, binary_step, loop)[4]
    return out["images"], out["distance"]


def carlini_wagner_l2_search(
    model,
    images,
    labels,
    *,
    steps=100,
    binary_search_steps=9,
    stepsize=0.01,
    confidence=0.0,
    initial_const=1e-3,
    abort_early=True,
):
    """Carlini-Wagner L2's closest adversarial per image: a `tfadv.attacks.MinimumNormResult`
    (success: misclassified by a logit margin of at least `confidence`).

    Args:
        model: any classifier `tfadv.models.as_classifier` accepts.
        images: float (N, H, W, C) in [0, 1].
        labels: int (N,) true classes.
        steps: Adam steps per binary-search step (>= 1; each one forward and one backward pass).
        binary_search_steps: runs with different c (>= 1).
        stepsize: Adam's learning rate, in tanh space (> 0).
        confidence: kappa, the logit margin a success needs (>= 0).
        initial_const: the first c (> 0).
        abort_early: an image leaves a run when its objective stops falling (see the module).
    """
    steps = checks.check_positive_int("steps", steps)
    binary_search_steps = checks.check_positive_int("binary_search_steps", binary_search_steps)
    stepsize = check_number("stepsize", stepsize, low_open=True)
    confidence = check_number("confidence", confidence)
    initial_const = check_number("initial_const", initial_const, low_open=True)
    if not isinstance(abort_early, bool):
        raise ValueError(
            f"Expected abort_early to be a bool. Received: abort_early={abort_early!r}"
        )
    return search(
        model,
        images,
        labels,
        _cw_fn,
        norms.L2_NORM,
        steps=steps,
        binary_search_steps=binary_search_steps,
        stepsize=stepsize,
        confidence=confidence,
        initial_const=initial_const,
        abort_early=abort_early,
    )


def carlini_wagner_l2(
    model,
    images,
    labels,
    eps=None,
    *,
    steps=100,
    binary_search_steps=9,
    stepsize=0.01,
    confidence=0.0,
    initial_const=1e-3,
    abort_early=True,
) -> tf.Tensor:
    """Carlini-Wagner L2 with the shared attack signature: with eps None each image's closest
    adversarial found (the clean image where none was); with eps (L2, pixel scale) that
    adversarial where it lies within eps, else the clean image. Options as in
    `carlini_wagner_l2_search`."""
    check_budget(eps, norms.L2_NORM)
    result = carlini_wagner_l2_search(
        model,
        images,
        labels,
        steps=steps,
        binary_search_steps=binary_search_steps,
        stepsize=stepsize,
        confidence=confidence,
        initial_const=initial_const,
        abort_early=abort_early,
    )
    return within_eps(result, images, eps)
