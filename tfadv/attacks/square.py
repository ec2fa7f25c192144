"""The Square attack (Andriushchenko et al. 2020, "Square Attack: a query-efficient black-box
adversarial attack via random search"): score-based, it reads only the model's logits.

A random search over square-shaped changes. L-inf: start from vertical stripes of +-eps (one
sign per column and channel), then per query move one random square of side s to the other
face of the eps-box (+-2 eps per channel, projected back). L2: start from a grid of centred
square patterns of length eps in total, then per query move the perturbation's mass out of
a second random window into a fresh centred pattern in the first one. A candidate replaces
the current point when it raises the loss or succeeds. The fraction of pixels the square
covers, p (s = round(sqrt(p * H * W))), starts at `p_init` and halves at 10, 50, 200, 500,
1000, 2000, 4000, 6000 and 8000 of 10,000 queries (the reference's schedule, scaled to the
budget). Each example draws its own square positions and signs, from its own seed (see
`tfadv.attacks.randomness`): its search is the same in any batch.

Queries: the clean image is evaluated first (an example already misclassified, or on
target, is returned unchanged), then the start, then one candidate per query; an example is
no longer evaluated once it succeeds, and the search stops when every example has. So each
example costs at most `queries` model evaluations. The whole search for a batch is one
compiled tf.while_loop. Under XLA (`jit_compile`), which needs static shapes, every example
of the batch is evaluated on every query and the results of the broken ones are dropped:
the same budget and the same search per example (each draws its own randomness, whoever
else is left), without the savings.
"""

import tensorflow as tf

from tfadv.attacks import checks, core, losses, norms, randomness, squares
from tfadv.attacks.core import classifier_of
from tfadv.runtime import devices

SCHEDULE_QUERIES = (
    10_000  # with rescale_schedule, the query index is mapped onto this many queries ...
)
HALVINGS_AFTER = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)  # ... and p halves after each


def square_fraction(i, queries: int, p_init, rescale: bool = False):
    """p for query i (0-based, after the start): p_init halved once for each threshold that i
    has passed (with `rescale`, i mapped onto a 10,000-query budget first)."""
    scaled = tf.cast(i, tf.float64)
    if rescale:
        scaled = tf.floor(scaled / queries * SCHEDULE_QUERIES)
    halvings = tf.reduce_sum(tf.cast(scaled > tf.constant(HALVINGS_AFTER, tf.float64), tf.float32))
    return p_init / 2.0**halvings


def square_side(p, height: int, width: int, norm):
    """Side s of the square covering a fraction p of the pixels: at least 1 (L-inf) or an odd
    number >= 3 (L2), at most min(H, W). int32 scalar."""
    side = norm.square_side(tf.cast(tf.round(tf.sqrt(p * height * width)), tf.int32))
    return tf.minimum(side, min(height, width))


def _square_fn(
    x,
    y,
    t,
    eps,
    p_init,
    seeds,
    *,
    model_ref,
    output,
    norm,
    loss,
    queries,
    targeted,
    compact,
    rescale,
):
    """The search; `t` holds the targets when `targeted`; p_init comes in the alpha slot.
    With `compact`, an example leaves the batch at its first success and only the others are
    evaluated; without (XLA needs static shapes), every example is, and the results of the
    finished ones are dropped."""
    objective = losses.Objective(classifier_of(model_ref, output), loss, "logits", targeted)
    height, width, channels = x.shape[1], x.shape[2], x.shape[3]
    n = tf.shape(x)[0]

    def evaluated(s, out, points, always=False):
        """(s, out) with each unfinished example moved to its `points` where the objective rose,
        it succeeded, or `always`; one query per example. With `compact`, the examples that
        succeeded are written to `out` and leave `s`."""
        scores = objective.scores(points)
        value, won = (
            objective.value(scores, s["y"], s["t"]),
            objective.success(scores, s["y"], s["t"]),
        )
        accept = ~s["done"] & (won | always | (value > s["best_value"]))
        s = dict(
            s,
            best=tf.where(accept[:, None, None, None], points, s["best"]),
            best_value=tf.where(accept, value, s["best_value"]),
            done=s["done"] | won,
        )
        return core.drop_finished(s, out, s["done"], recorded) if compact else (s, out)

    def recorded(out, finished):  # the finished examples' points, at their rows of the batch
        return core.write_rows(out, finished["rows"], finished["best"])

    out = x  # the clean image, for examples that already succeed
    s = {
        "rows": tf.range(tf.cast(n, tf.int64)),
        "x": x,
        "y": y,
        "t": t,
        "seeds": seeds,
        "best": x,
        "best_value": tf.fill([n], tf.constant(-float("inf"))),
        "done": tf.zeros([n], tf.bool),
    }
    s, out = evaluated(s, out, x, always=True)  # the clean query
    if queries >= 2:

        def started():  # each example's own draws, whoever is left
            return evaluated(s, out, norm.square_start(s["x"], eps, s["seeds"]), always=True)

        # models may fail on empty batches
        s, out = (
            tf.cond(tf.size(s["rows"]) > 0, started, lambda: (s, out)) if compact else started()
        )

    def body(i, s, out):
        side = square_side(square_fraction(i, queries, p_init, rescale), height, width, norm)
        draws = squares.draws(
            randomness.fold(s["seeds"], i), side, height, width, channels
        )  # each example's own
        return (
            i + 1,
            *evaluated(s, out, norm.square_candidate(s["x"], s["best"], eps, side, draws)),
        )

    def cond(i, s, out):
        return (i < queries - 2) & tf.reduce_any(~s["done"])

    _, s, out = tf.while_loop(cond, body, (tf.constant(0), s, out))
    return recorded(out, s)


def square(
    model,
    images,
    labels,
    eps,
    *,
    queries=5000,
    p_init=0.8,
    norm="inf",
    loss="margin",
    target=None,
    rescale_schedule=False,
    seed=None,
    jit_compile="auto",
) -> tf.Tensor:
    """The Square attack: a random search that reads only the model's logits (no gradients).

    Args:
        model: any classifier `tfadv.models.as_classifier` accepts.
        images: float (N, H, W, C) in [0, 1]; L2 needs H, W >= 5.
        labels: int (N,) true classes.
        eps: budget, pixel scale (L-inf: per pixel value, at most 1; L2: over the whole image).
        queries: model evaluations per example (>= 1), the clean image and the start included;
            an example stops being queried once it succeeds.
        p_init: fraction of the pixels the first squares cover, in (0, 1]; it halves after
            queries 10, 50, 200, 500, 1000, 2000, 4000, 6000 and 8000, as in the reference
            and in AutoAttack's standard version (5000 queries, not rescaled).
        rescale_schedule: map the query index onto 10,000 queries first (the reference's
            option for budgets other than 10,000).
        norm: "inf" or "2".
        loss: raised by the search (on the logits): "margin" (default; the reference's
            margin), "ce", "dlr", "ce_t" or a callable (see `tfadv.attacks.losses`).
        target: None (success = misclassified) or a target (see `tfadv.attacks.targets`;
            success = predicted as the target; strategies such as "least_likely" read the
            clean logits, the clean query).
        seed: None, an int, a pair or per-image seeds (N, 2) (see
            `tfadv.attacks.randomness.per_image`): each image's draws depend on its seed only.
        jit_compile: "auto", "true", "false" or a bool.

    Returns:
        float32 (N, H, W, C) in the eps-ball and [0, 1], no gradient: the first successful
        point, else the highest-loss one; x itself for an example that already succeeds.
    """
    norm = norms.get(norm)
    queries = checks.check_positive_int("queries", queries)
    p_init = checks.check_fraction("p_init", p_init, low_open=True)
    loss = losses.get(loss)
    clf, x, y = core.prepare(model, images, labels, eps, norm)
    norm.check_square_images(x.shape)
    if x.shape[0] == 0:
        return tf.stop_gradient(x)
    seeds = core.seeds_for(seed, x)
    chosen = core.resolve_targets(clf, x, y, target, seeds, jit_compile)
    attack = core.compiled_attack(
        clf,
        _square_fn,
        x,
        jit_compile,
        norm=norm,
        loss=loss,
        queries=queries,
        targeted=chosen is not None,
        compact=not devices.resolve_jit_compile(jit_compile),
        rescale=bool(rescale_schedule),
    )
    targets = y if chosen is None else chosen
    eps = checks.to_scalar(eps)
    return tf.stop_gradient(attack(x, y, targets, eps, checks.to_scalar(p_init), seeds))
