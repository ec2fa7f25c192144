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

from tfadv.attacks import active, checks, gradient, losses, norms, randomness
from tfadv.attacks.compile import classifier_of
from tfadv.runtime import devices

SCHEDULE_QUERIES = (
    10_000  # with rescale_schedule, the query index is mapped onto this many queries ...
)
HALVINGS_AFTER = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)  # ... and p halves after each
L2_GRID = 5  # the L2 start tiles the image with 5 x 5 squares of side min(H, W) // 5
LENGTH_FLOOR = 1e-12  # added to lengths before dividing (as the reference does)


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
    side = tf.cast(tf.round(tf.sqrt(p * height * width)), tf.int32)
    if norm is norms.LINF:
        side = tf.maximum(side, 1)
    else:
        side = tf.maximum(side, 3)
        side += 1 - side % 2
    return tf.minimum(side, min(height, width))


def _window(offset_h, offset_w, side, height: int, width: int):
    """(n, H, W, 1) float mask of the side x side squares at per-example offsets."""
    rows = tf.range(height)[None, :]
    cols = tf.range(width)[None, :]
    in_rows = (rows >= offset_h[:, None]) & (rows < offset_h[:, None] + side)
    in_cols = (cols >= offset_w[:, None]) & (cols < offset_w[:, None] + side)
    return tf.cast(in_rows[:, :, None, None] & in_cols[:, None, :, None], tf.float32)


def _inverse_square_sums(size: int):
    """T[m] = sum_{k=1}^{m} 1 / k^2 for m = 0..size."""
    return tf.constant(
        [0.0] + [sum(1.0 / k**2 for k in range(1, m + 1)) for m in range(1, size + 1)]
    )


def _rings(r, c, rows, cols, sums):
    """Weights of a rows x cols rectangle at (r, c): concentric squares around its centre
    (rows // 2, cols // 2), the k-th (k = 0, 1, ...) adding 1 / (k + 1)^2 to the points
    within Chebyshev distance k, out to max(rows, cols) // 2."""
    distance = tf.maximum(tf.abs(r - rows // 2), tf.abs(c - cols // 2))
    rings = tf.maximum(rows // 2, cols // 2) + 1
    return tf.gather(sums, rings) - tf.gather(sums, tf.minimum(distance, rings))


def _unit(values, axis=(1, 2)):
    length = tf.sqrt(tf.reduce_sum(tf.square(values), axis=axis, keepdims=True))
    return values / tf.maximum(length, LENGTH_FLOOR)


def centred_pattern(offset_h, offset_w, side, transposed, height: int, width: int):
    """(n, H, W) L2 pattern of unit length on each example's side x side window (zero
    elsewhere): ring weights over the top half (side // 2 rows) and minus them over the
    bottom half, each half of equal length; transposed where `transposed`."""
    sums = _inverse_square_sums(max(height, width) + 1)
    r = tf.range(height)[None, :, None] - offset_h[:, None, None]
    c = tf.range(width)[None, None, :] - offset_w[:, None, None]
    r, c = r + tf.zeros_like(c), c + tf.zeros_like(r)
    inside = (r >= 0) & (r < side) & (c >= 0) & (c < side)
    flip = transposed[:, None, None]
    r, c = tf.where(flip, c, r), tf.where(flip, r, c)
    half = side // 2
    top = tf.where(inside & (r < half), _rings(r, c, half, side, sums), 0.0)
    bottom = tf.where(inside & (r >= half), _rings(r - half, c, side - half, side, sums), 0.0)
    return _unit(_unit(top) - _unit(bottom))


def _draws(seeds, side, height: int, width: int, channels: int):
    """Per example, from its seed (`seeds` int64 (n, 2), this query's): two square offsets
    (rows, columns) uniform over every position where a side x side square fits, a sign per
    channel, and a coin for transposing the pattern."""
    fits_h, fits_w = height - side + 1, width - side + 1
    offsets = randomness.uniform(seeds, [4], randomness.SQUARE_SEARCH)
    limits = tf.cast(tf.stack([fits_h, fits_w, fits_h, fits_w]), tf.float32)
    offsets = tf.minimum(
        tf.cast(tf.floor(offsets * limits), tf.int32),
        tf.stack([fits_h, fits_w, fits_h, fits_w]) - 1,
    )
    signs = randomness.signs(seeds, [1, 1, channels], randomness.SQUARE_SEARCH + 1)
    coin = randomness.uniform(seeds, [], randomness.SQUARE_SEARCH + 2) < 0.5
    return offsets[:, 0], offsets[:, 1], offsets[:, 2], offsets[:, 3], signs, coin


def _linf_start(x, eps, seeds):
    """Vertical stripes: every column of each channel moved by +eps or -eps (each image's signs
    drawn from its seed, `seeds` int64 (n, 2))."""
    signs = randomness.signs(seeds, [1, x.shape[2], x.shape[3]], randomness.SQUARE_START)
    return norms.clip_pixels(x + eps * signs)


def _linf_candidate(x, best, eps, side, draws):
    """The current point with one square of each example moved to +-eps (a sign per channel)."""
    offset_h, offset_w, _, _, signs, _ = draws
    mask = _window(offset_h, offset_w, side, x.shape[1], x.shape[2])
    return norms.project(best + mask * 2.0 * eps * signs, x, eps, norms.LINF)


def _per_channel_length(values):
    return tf.sqrt(tf.reduce_sum(tf.square(values), axis=(1, 2), keepdims=True))


def _l2_unit_image(delta):
    return delta / (tf.reshape(norms.L2_NORM.length(delta), [-1, 1, 1, 1]) + LENGTH_FLOOR)


def _l2_start(x, eps, seeds):
    """A 5 x 5 grid of squares of side min(H, W) // 5 (centred in the image), each a centred
    pattern (randomly transposed) with a random sign per channel; scaled to length eps (each
    image's signs and coins drawn from its seed, `seeds` int64 (n, 2))."""
    height, width, channels = x.shape[1], x.shape[2], x.shape[3]
    side = min(height, width) // L2_GRID
    blocks = L2_GRID * L2_GRID
    tops = [(height - L2_GRID * side) // 2 + (k // L2_GRID) * side for k in range(blocks)]
    lefts = [(width - L2_GRID * side) // 2 + (k % L2_GRID) * side for k in range(blocks)]
    n = tf.shape(x)[0]
    signs = randomness.signs(seeds, [blocks, 1, 1, channels], randomness.SQUARE_START)
    transposed = tf.reshape(
        randomness.uniform(seeds, [blocks], randomness.SQUARE_START + 1) < 0.5, [-1]
    )
    patterns = centred_pattern(
        tf.tile(tf.constant(tops), [n]),
        tf.tile(tf.constant(lefts), [n]),
        side,
        transposed,
        height,
        width,
    )  # one per (example, block), example-major
    patterns = tf.reshape(patterns, tf.stack([n, blocks, height, width, 1]))
    return norms.clip_pixels(x + eps * _l2_unit_image(tf.reduce_sum(patterns * signs, axis=1)))


def _l2_candidate(x, best, eps, side, draws):
    """Moves the perturbation's mass out of window 2 and window 1 into a fresh centred
    pattern in window 1 (per channel, keeping the total length at most eps), then rescales
    to length eps (the reference's L2 step)."""
    height, width, channels = x.shape[1], x.shape[2], x.shape[3]
    offset_h, offset_w, offset_h2, offset_w2, signs, transposed = draws
    first = _window(offset_h, offset_w, side, height, width)
    both = tf.maximum(first, _window(offset_h2, offset_w2, side, height, width))
    delta = best - x
    length = tf.reshape(norms.L2_NORM.length(delta), [-1, 1, 1, 1])
    old = delta * first / (_per_channel_length(delta * first) + LENGTH_FLOOR)
    fresh = (
        centred_pattern(offset_h, offset_w, side, transposed, height, width)[..., None] * signs
        + old
    )
    room = tf.maximum(eps**2 - length**2, 0.0) / channels + tf.square(
        _per_channel_length(delta * both)
    )
    fresh = fresh / (_per_channel_length(fresh) + LENGTH_FLOOR) * tf.sqrt(room)
    delta = delta * (1.0 - both) + fresh
    return norms.clip_pixels(x + eps * _l2_unit_image(delta))


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
    start_fn, candidate_fn = (
        (_linf_start, _linf_candidate) if norm is norms.LINF else (_l2_start, _l2_candidate)
    )

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
        return active.drop_finished(s, out, s["done"], recorded) if compact else (s, out)

    def recorded(out, finished):  # the finished examples' points, at their rows of the batch
        return active.write_rows(out, finished["rows"], finished["best"])

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
            return evaluated(s, out, start_fn(s["x"], eps, s["seeds"]), always=True)

        # models may fail on empty batches
        s, out = (
            tf.cond(tf.size(s["rows"]) > 0, started, lambda: (s, out)) if compact else started()
        )

    def body(i, s, out):
        side = square_side(square_fraction(i, queries, p_init, rescale), height, width, norm)
        draws = _draws(
            randomness.fold(s["seeds"], i), side, height, width, channels
        )  # each example's own
        return (i + 1, *evaluated(s, out, candidate_fn(s["x"], s["best"], eps, side, draws)))

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
    clf, x, y = gradient.prepare(model, images, labels, eps, norm)
    if norm is norms.L2_NORM and min(x.shape[1], x.shape[2]) < L2_GRID:
        raise ValueError(
            f"Square's L2 start needs images of at least 5 x 5 pixels. Received: images.shape={tuple(x.shape)}"
        )
    if x.shape[0] == 0:
        return tf.stop_gradient(x)
    seeds = gradient.seeds_for(seed, x)
    chosen = gradient._targets(clf, x, y, target, seeds, jit_compile)
    attack = gradient.compiled_attack(
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
