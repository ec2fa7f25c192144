"""DeepFool (Moosavi-Dezfooli et al. 2016, "DeepFool: a simple and accurate method to fool deep
neural networks"), L2 and L-inf, over the clean image's most likely classes.

Each step linearises, at the current point, the logit gap between each candidate class k and
the true class y, f_k - f_y, and moves onto the nearest of those hyperplanes: by
(|f_k - f_y| + PUSH) / ||grad||_2 along the gradient (L2), or that over ||grad||_1 times its
sign (L-inf). The steps add up to a total r; the point is clip(x + (1 + overshoot) r, 0, 1).
An example leaves the batch as soon as it is misclassified. Per step: one forward pass and
candidates - 1 backward passes (one persistent tape).
"""

import tensorflow as tf

from tfadv.attacks import checks, core, norms
from tfadv.attacks.core import classifier_of
from tfadv.attacks.minimum_norm import (
    INF,
    begin,
    check_budget,
    check_norm,
    check_number,
    finish,
    is_adversarial,
    logits_or_empty,
    record,
    search,
    within_eps,
)

PUSH = 1e-5  # added to each step's distance so the point lands past the linearised boundary
GRAD_FLOOR = 1e-8  # added to gradient norms before dividing (as Foolbox does)


def _deepfool_fn(
    x, y, t, eps, alpha, seed, *, model_ref, output, norm, steps, overshoot, candidates
):
    clf = classifier_of(model_ref, output)
    others = tf.math.top_k(_without(logits_or_empty(clf, x), y), k=candidates - 1).indices
    s = {
        "rows": tf.range(tf.cast(tf.shape(x)[0], tf.int64)),
        "x": x,
        "y": y,
        "others": tf.cast(others, tf.int64),
    }
    s, out = begin(clf, dict(s, cur=x, total=tf.zeros_like(x)))
    flat = lambda t: tf.reshape(t, [tf.shape(t)[0], -1])  # noqa: E731

    def body(i, s, out):
        cur = s["cur"]
        with tf.GradientTape(persistent=True, watch_accessed_variables=False) as tape:
            tape.watch(cur)
            logits = clf.logits(cur)
            true = tf.gather(logits, s["y"], batch_dims=1)
            gaps = [
                tf.gather(logits, s["others"][:, k], batch_dims=1) - true
                for k in range(candidates - 1)
            ]
        grads = [
            flat(tape.gradient(gap, cur, unconnected_gradients=tf.UnconnectedGradients.ZERO))
            for gap in gaps
        ]
        del tape
        gaps, grads = tf.stack(gaps, axis=1), tf.stack(grads, axis=1)  # (m, K), (m, K, D)
        distances = tf.abs(gaps) / (norm.dual.lengths(grads) + GRAD_FLOOR)
        nearest = tf.argmin(distances, axis=1)
        d = tf.gather(distances, nearest, batch_dims=1) + PUSH
        g = tf.gather(grads, nearest, batch_dims=1)
        step = norm.step_each(g, d, GRAD_FLOOR)
        total = s["total"] + tf.reshape(step, tf.shape(cur))
        wrong = is_adversarial(logits, s["y"])
        s = dict(
            s,
            total=total,
            cur=norms.clip_pixels(s["x"] + (1.0 + overshoot) * total),
            best=cur,
            distance=tf.where(wrong, norm.length(cur - s["x"]), INF),
        )
        s, out = core.drop_finished(s, out, wrong, record)
        return i + 1, dict(s, best=s["x"], distance=tf.fill(tf.shape(s["y"]), INF)), out

    def cond(i, s, out):
        return (i < steps) & (tf.size(s["rows"]) > 0)

    _, s, out = tf.while_loop(cond, body, (tf.constant(0), s, out))
    return finish(clf, s, out, norm)


def _without(logits, y):
    """Logits with the true class pushed to -inf (so top_k ranks the other classes)."""
    mask = tf.one_hot(y, tf.shape(logits)[1], on_value=True, off_value=False)
    return tf.where(mask, -INF, logits)


def deepfool_search(model, images, labels, *, norm="2", steps=50, overshoot=0.02, candidates=10):
    """DeepFool's closest adversarial per image: a `tfadv.attacks.MinimumNormResult`.

    Args:
        model: any classifier `tfadv.models.as_classifier` accepts.
        images: float (N, H, W, C) in [0, 1].
        labels: int (N,) true classes.
        norm: "2" or "inf" (distances in that norm, pixel scale).
        steps: most steps per image (>= 1; each one forward and candidates - 1 backward passes).
        overshoot: the total move is scaled by 1 + overshoot (>= 0).
        candidates: the true class and the clean image's candidates - 1 most likely others
            (>= 2, clipped to the number of classes).
    """
    norm = check_norm(norm, ("2", "inf"), "deepfool")
    steps = checks.check_positive_int("steps", steps)
    overshoot = check_number("overshoot", overshoot)
    if isinstance(candidates, bool) or not isinstance(candidates, int) or candidates < 2:
        raise ValueError(
            f"Expected candidates to be an integer >= 2. Received: candidates={candidates!r}"
        )
    from tfadv.models import as_classifier

    candidates = min(candidates, as_classifier(model).num_classes)
    return search(
        model,
        images,
        labels,
        _deepfool_fn,
        norm,
        norm=norm,
        steps=steps,
        overshoot=overshoot,
        candidates=candidates,
    )


def deepfool(
    model, images, labels, eps=None, *, norm="2", steps=50, overshoot=0.02, candidates=10
) -> tf.Tensor:
    """DeepFool with the shared attack signature: with eps None each image's closest adversarial
    found (the clean image where none was); with eps (pixel scale, in `norm`) that adversarial
    where it lies within eps, else the clean image. Options as in `deepfool_search`."""
    check_budget(eps, check_norm(norm, ("2", "inf"), "deepfool"))
    result = deepfool_search(
        model, images, labels, norm=norm, steps=steps, overshoot=overshoot, candidates=candidates
    )
    return within_eps(result, images, eps)
