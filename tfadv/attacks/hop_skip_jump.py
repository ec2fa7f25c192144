"""HopSkipJump (Chen, Jordan & Wainwright 2020, "HopSkipJumpAttack: a query-efficient
decision-based attack"): label-only, it reads nothing but the model's predicted class.

A minimum-norm search from the adversarial side. Start: uniform random images until one is
misclassified (at most `init_trials`, every other one another image of the batch), then a
binary search on the blend toward the clean image. Each step: (1) binary search between the clean
image x and the current point to the decision boundary (L2: on the blend (1 - a) x + a p; L-inf: on
the radius of a clip around x), to tolerance theta = 0.01 / sqrt(d) (L2) or 0.01 / d (L-inf), d the
number of pixel values; (2) estimate the boundary's normal at that point from the signs (adversarial
or not) of E_t = min(init_evals * sqrt(t + 1), max_evals) random probes at distance delta (0.1 in
the first step, then 0.01 x the current distance), with the mean sign as baseline; (3) geometric
step-size search along the estimate (L2: the unit normal, L-inf: its sign) from size
dist / sqrt(t + 1), halved until the point is adversarial (at most `max_halvings` times; else the
boundary point is kept). After the last step, one more bisection to the boundary. The parameters
follow ART's implementation.

Batched: every example of the batch takes the same steps in one compiled tf.while_loop (the
probes in chunks of at most `PROBE_ROWS` images per model call). Queries are counted per
example (what each would cost alone); the search stops before a step that would pass
`max_queries`, after `steps` steps, or once every example is within eps.
"""

import math

import tensorflow as tf

from tfadv.attacks import checks, core, norms, randomness
from tfadv.attacks.core import classifier_of

THETA_FACTOR = (
    0.01  # binary-search tolerance theta = 0.01 / sqrt(d) (L2) or 0.01 / d (L-inf), as in ART
)
FIRST_DELTA = 0.1  # probe radius in the first step (pixel scale), then DELTA_FACTOR x the distance
DELTA_FACTOR = 0.01  # = sqrt(d) * theta (L2) or d * theta (L-inf)
INIT_SEARCH_STEPS = 10  # binary search of the random start toward x: tolerance 2^-10 of the blend
PROBE_ROWS = 1024  # images per model call while estimating the normal
UNIT_FLOOR = 1e-12
INIT_SALT, PROBE_SALT = (
    8101,
    8102,
)  # per-image draws (tfadv.attacks.randomness): the start, the probes


def _bisections(theta: float) -> int:
    """Halvings of [0, 1] (or of [0, r], r <= 1, to min(r theta, theta)) down to theta."""
    return max(1, math.ceil(math.log2(1.0 / theta)))


def _per_example(values, rank: int = 4):
    return tf.reshape(values, [-1] + [1] * (rank - 1))


def _hop_skip_jump_fn(
    x,
    y,
    t,
    eps,
    alpha,
    seed,
    *,
    model_ref,
    output,
    norm,
    steps,
    max_queries,
    init_evals,
    max_evals,
    init_trials,
    max_halvings,
    bounded,
):
    """The search; returns (images, distance): the adversarial if found (else x, distance inf).
    With `bounded`, an example within eps stops."""
    clf = classifier_of(model_ref, output)
    n = tf.shape(x)[0]
    d = x.shape[1] * x.shape[2] * x.shape[3]
    linf = norm is norms.LINF
    theta = THETA_FACTOR / (d if linf else math.sqrt(d))
    bisections = _bisections(theta)

    def adversarial(points, labels):
        return tf.not_equal(tf.argmax(clf.probabilities(points), axis=-1), labels)

    def blend(a, point):  # L2 interpolation between x (a = 0) and point (a = 1)
        return (1.0 - _per_example(a)) * x + _per_example(a) * point

    def clip_around(a, point):  # L-inf: point clipped to the box of radius a around x
        return tf.clip_by_value(point, x - _per_example(a), x + _per_example(a))

    def boundary(point, interpolate, high, iterations):
        """Bisection on a in [0, high] for the smallest adversarial interpolate(a, point)."""

        def body(i, low, high):
            middle = (low + high) / 2.0
            won = adversarial(interpolate(middle, point), y)
            return i + 1, tf.where(won, low, middle), tf.where(won, middle, high)

        _, _, high = tf.while_loop(
            lambda i, *_: i < iterations, body, (tf.constant(0), tf.zeros_like(high), high)
        )
        return interpolate(high, point)

    def to_boundary(point):
        if linf:
            return boundary(
                point, clip_around, tf.reduce_max(tf.abs(point - x), axis=[1, 2, 3]), bisections
            )
        return boundary(point, blend, tf.ones([n]), bisections)

    def distance(point):
        return norm.length(point - x)

    # the start: clean images already misclassified stay; others from uniform noise
    init_seeds, loop_seeds = (
        randomness.fold(seed, 1),
        randomness.fold(seed, 2),
    )  # seed: (n, 2), per image
    clean_wrong = adversarial(x, y)

    def init_body(k, start, found):
        # even trials: uniform noise; odd trials: the batch's other images (rotated by (k + 1) / 2)
        noise = randomness.uniform(randomness.fold(init_seeds, k), x.shape[1:], INIT_SALT)
        others = tf.roll(x, shift=(k + 1) // 2, axis=0)
        use_others = (k % 2 == 1) & ((k + 1) // 2 < n)
        noise = tf.where(use_others, others, noise)
        new = adversarial(noise, y) & ~found
        return k + 1, tf.where(_per_example(new), noise, start), found | new

    trials, start, found = tf.while_loop(
        lambda k, _, found: (k < init_trials) & tf.reduce_any(~found),
        init_body,
        (tf.constant(0), x, clean_wrong),
    )
    start = boundary(start, blend, tf.ones([n]), INIT_SEARCH_STEPS)
    start = tf.where(_per_example(clean_wrong), x, start)
    queries = 1 + trials + INIT_SEARCH_STEPS

    def evals_at(i):
        grown = tf.cast(init_evals * tf.sqrt(tf.cast(i + 1, tf.float32)), tf.int32)
        return tf.minimum(grown, max_evals)

    def normal(point, delta, evals, step_seed):
        """Unit estimate (L2) or sign (L-inf) of the boundary's normal at `point`, (n, H, W, C)."""
        per = tf.maximum(PROBE_ROWS // tf.maximum(n, 1), 1)  # probes per example in one model call
        chunks = (evals + per - 1) // per
        delta = _per_example(delta, 5)

        def body(c, sum_fu, sum_u, sum_f):
            m = tf.minimum(per, evals - c * per)  # the last call evaluates only what is left
            s = randomness.fold(step_seed, c)
            if linf:
                noise = 2.0 * randomness.uniform(s, [m, *x.shape[1:]], PROBE_SALT) - 1.0
            else:
                noise = randomness.normal(s, [m, *x.shape[1:]], PROBE_SALT)
            lengths = tf.norm(tf.reshape(noise, [n, m, -1]), axis=-1)
            noise /= tf.reshape(tf.maximum(lengths, UNIT_FLOOR), [n, m, 1, 1, 1])
            probes = norms.clip_pixels(point[:, None] + delta * noise)
            u = (probes - point[:, None]) / delta
            won = adversarial(
                tf.reshape(probes, tf.concat([[n * m], tf.shape(x)[1:]], 0)), tf.repeat(y, m)
            )
            f = tf.reshape(2.0 * tf.cast(won, tf.float32) - 1.0, [n, m])
            fu = tf.reduce_sum(tf.reshape(f, [n, m, 1, 1, 1]) * u, 1)
            return c + 1, sum_fu + fu, sum_u + tf.reduce_sum(u, 1), sum_f + tf.reduce_sum(f, 1)

        zeros = tf.zeros_like(x)
        _, sum_fu, sum_u, sum_f = tf.while_loop(
            lambda c, *_: c < chunks, body, (tf.constant(0), zeros, zeros, tf.zeros([n]))
        )
        count = tf.cast(evals, tf.float32)
        mean_f, mean_u = _per_example(sum_f / count), sum_u / count
        # baseline: subtract the mean sign; where every probe agrees, the mean probe direction
        # (signed)
        estimate = tf.where(
            tf.abs(mean_f) >= 1.0, mean_f * mean_u, sum_fu / count - mean_f * mean_u
        )
        if linf:
            return tf.sign(estimate)
        return estimate / _per_example(tf.maximum(norms.L2_NORM.length(estimate), UNIT_FLOOR))

    def step_search(point, direction, size, live):
        """The first of point + size * direction, halving size, that is adversarial (else point)."""

        def body(j, size, best, done):
            candidate = norms.clip_pixels(point + _per_example(size) * direction)
            won = adversarial(candidate, y) & ~done
            return (
                j + 1,
                tf.where(done | won, size, size / 2.0),
                tf.where(_per_example(won), candidate, best),
                done | won,
            )

        j, _, best, _ = tf.while_loop(
            lambda j, size, best, done: (j <= max_halvings) & tf.reduce_any(~done),
            body,
            (tf.constant(0), size, point, ~live),
        )
        return j, best

    active = found & ~clean_wrong

    def still(current):  # the examples still searched
        return active & (distance(current) > eps) if bounded else active

    def body(i, current, queries):
        live = still(current)
        delta = tf.where(i == 0, FIRST_DELTA, DELTA_FACTOR * distance(current))
        point = to_boundary(current)
        evals = evals_at(i)
        direction = normal(
            point, tf.maximum(delta, UNIT_FLOOR), evals, randomness.fold(loop_seeds, i)
        )
        size = distance(point) / tf.sqrt(tf.cast(i + 1, tf.float32))
        rounds, new = step_search(point, direction, size, live)
        new = tf.where(_per_example(live), new, current)
        return i + 1, new, queries + bisections + evals + rounds

    def cond(i, current, queries):
        next_cost = (
            bisections + evals_at(i) + max_halvings + 1 + bisections
        )  # and the last bisection
        return (i < steps) & (queries + next_cost <= max_queries) & tf.reduce_any(still(current))

    steps_taken, current, _ = tf.while_loop(cond, body, (tf.constant(0), start, queries))
    # the last step left the boundary: back onto it (at most the distance the step reached)
    current = tf.cond(steps_taken > 0, lambda: to_boundary(current), lambda: current)
    current = tf.where(_per_example(active), current, start)
    reached = distance(current)
    won = found & (reached <= eps)
    return tf.where(_per_example(won), current, x), tf.where(found, reached, float("inf"))


def hop_skip_jump(
    model,
    images,
    labels,
    eps=None,
    *,
    norm="2",
    max_queries=5000,
    steps=40,
    init_evals=100,
    max_evals=1000,
    init_trials=100,
    max_halvings=20,
    seed=None,
    jit_compile="auto",
) -> tf.Tensor:
    """HopSkipJump: a decision-based (label-only) minimum-norm attack; no gradients, no scores.

    Args:
        model: any classifier `tfadv.models.as_classifier` accepts (a TFLite model, a callable).
        images: float (N, H, W, C) in [0, 1].
        labels: int (N,) true classes (success = another class predicted).
        eps: None (return the closest adversarial found) or a budget, pixel scale (L2: over
            the whole image; L-inf: per pixel value): then an example is returned adversarial
            only within eps (else clean), and the search stops once every example is.
        norm: "2" (default, as in the paper) or "inf".
        max_queries: model queries per example (>= 1): the clean image, the random start and
            its bisection (these always), then whole steps while the next and a last bisection fit.
        steps: at most this many steps (>= 1), each `ceil(log2(1 / theta))` bisection queries,
            E_t probes and at most max_halvings + 1 step-size queries.
        init_evals, max_evals: probes for the normal in step t: min(init_evals sqrt(t + 1),
            max_evals).
        init_trials: candidates tried for a misclassified start (>= 1): uniform random images,
            alternating with the batch's other images; an example without one is returned clean.
        max_halvings: halvings of the step size before the step is given up (>= 1).
        seed: None, an int, a pair, or per-image seeds (N, 2) (see `tfadv.attacks.randomness`):
            image k's draws come from its own seed, whatever its batch.
        jit_compile: "auto", "true", "false" or a bool.

    Returns:
        float32 (N, H, W, C) in [0, 1], no gradient: the adversarial found (within eps when
        given), else x; x for an example misclassified before the attack.
    """
    norm = norms.get(norm)
    counts = {
        "max_queries": max_queries,
        "steps": steps,
        "init_evals": init_evals,
        "max_evals": max_evals,
        "init_trials": init_trials,
        "max_halvings": max_halvings,
    }
    counts = {key: checks.check_positive_int(key, value) for key, value in counts.items()}
    bounded = eps is not None
    if eps is None:
        eps = float("inf")
    else:
        norm.check_eps(eps)
    clf, x, y = core.prepare(model, images, labels, 0.0, norm)
    if x.shape[0] == 0:
        return tf.stop_gradient(x)
    attack = core.compiled_attack(
        clf, _hop_skip_jump_fn, x, jit_compile, norm=norm, bounded=bounded, **counts
    )
    seeds = core.seeds_for(seed, x)  # per-image seeds (N, 2) as run_attack passes them, or one seed
    images, _ = attack(x, y, y, checks.to_scalar(eps), tf.constant(0.0), seeds)
    return tf.stop_gradient(images)
