"""FAB-T (Croce & Hein 2020, "Minimally distorted adversarial examples with a fast adaptive
boundary attack"), targeted, as AutoAttack's standard version runs it.

A minimum-norm attack. Each step linearises the gap between the true class's logit and the
target's at the current point, finds the smallest move (in the attack's norm, inside the
[0, 1] box) onto that hyperplane from the current point and from the clean image, and takes a
convex combination of the two moves, overshot by `eta`, weighted toward the clean image by
a1 / (a1 + a2) (the two moves' lengths) but at most `alpha_max`. A misclassified point is kept
if it is the closest yet, and the search steps back toward the clean image (to `beta` of the
way) to look for a closer one. An example is broken when a misclassified point within eps has
been found; it then leaves the batch (off XLA). Targets: the clean image's 2nd, ..., 10th most
likely classes, one run each (and `restarts` runs per target, all but the first from a random
point at half eps), each only on the examples still unbroken. Per step: one gradient of the
logit gap and one forward pass.
"""

import tensorflow as tf

from tfadv.attacks import checks, core, norms
from tfadv.attacks.core import classifier_of
from tfadv.attacks.repeated import best_over_runs, other_classes
from tfadv.models.callable import require_gradients
from tfadv.runtime import devices

LENGTH_FLOOR = 1e-8  # move lengths are floored at this before forming the weight a1 / (a1 + a2)
RESTART_RADIUS = (
    0.5  # restarts after the first start this far from the clean image, in units of eps
)


def hyperplane_step(points, w, b, norm):
    """Per row: the shortest move d (in `norm`) with w . (p + d) = b and p + d in [0, 1], for
    float (n, D) points p, normals w and offsets b (n,). Where no move in the box reaches the
    hyperplane, the move in the box that gets closest (each coordinate to its bound).

    With the gap g = b - w . p made positive by flipping w, coordinate i moves toward its bound
    in the direction of w_i, by at most room_i: L-inf d_i = min(lam, room_i), L2 d_i =
    min(lam |w_i|, room_i) (sign of w_i). w . d grows piecewise linearly in lam; sorting the
    coordinates by where they saturate gives the segment holding g and lam in closed form."""
    gap = b - tf.reduce_sum(w * points, axis=1)
    flip = tf.where(gap < 0, -1.0, 1.0)
    w, gap = w * flip[:, None], gap * flip
    room = tf.where(w > 0, 1.0 - points, tf.where(w < 0, points, 0.0))
    size = tf.abs(w)
    saturates, slope = norm.hyperplane_terms(room, size)
    order = tf.argsort(saturates, axis=1)
    at = tf.gather(saturates, order, batch_dims=1)
    before = tf.cumsum(
        tf.gather(size * room, order, batch_dims=1), axis=1, exclusive=True
    )  # saturated ones' share
    after = tf.cumsum(
        tf.gather(slope, order, batch_dims=1), axis=1, reverse=True
    )  # slope of the others
    reach = before + at * after  # w . d at lam = each saturation point, non-decreasing
    segment = tf.reduce_sum(tf.cast(reach < gap[:, None], tf.int32), axis=1)
    feasible = segment < tf.shape(points)[1]
    k = tf.minimum(segment, tf.shape(points)[1] - 1)[:, None]
    lam = tf.math.divide_no_nan(
        gap - tf.gather(before, k, batch_dims=1)[:, 0], tf.gather(after, k, batch_dims=1)[:, 0]
    )
    lam = tf.maximum(lam, 0.0)[:, None]
    move = norm.hyperplane_move(lam, size)
    return tf.sign(w) * tf.where(feasible[:, None], tf.minimum(move, room), room)


def _fab_fn(
    x,
    y,
    t,
    eps,
    start_radius,
    seeds,
    *,
    model_ref,
    output,
    norm,
    steps,
    eta,
    beta,
    alpha_max,
    compact,
):
    """One FAB run toward the targets `t`; start_radius (in the alpha slot, in units of eps)
    > 0 starts from a random point at that radius. Returns (images, broken, -distance): a
    misclassified point found within eps (see `fab_targeted`), else x."""
    clf = classifier_of(model_ref, output)
    require_gradients(clf, "fab_t")
    n = tf.shape(x)[0]
    flat = lambda images: tf.reshape(images, [tf.shape(images)[0], -1])  # noqa: E731

    noise = norm.random(x.shape, 1.0, seeds)  # each image's own draw
    noise /= tf.reshape(tf.maximum(norm.length(noise), 1e-12), [-1, 1, 1, 1])
    start = tf.where(start_radius > 0, norms.clip_pixels(x + start_radius * eps * noise), x)

    def body(i, s, out):
        cur, xs = s["cur"], s["x"]
        with tf.GradientTape(watch_accessed_variables=False) as tape:
            tape.watch(cur)
            logits = clf.logits(cur)
            gap = tf.gather(logits, s["y"], batch_dims=1) - tf.gather(logits, s["t"], batch_dims=1)
        w, here, clean = (
            flat(tape.gradient(gap, cur, unconnected_gradients=tf.UnconnectedGradients.ZERO)),
            flat(cur),
            flat(xs),
        )
        b = tf.reduce_sum(w * here, axis=1) - gap  # the linearised gap is zero on w . z = b
        moves = hyperplane_step(
            tf.concat([here, clean], 0), tf.concat([w, w], 0), tf.concat([b, b], 0), norm
        )
        lengths = tf.maximum(norm.length(moves), LENGTH_FLOOR)
        m = tf.shape(here)[0]
        alpha = tf.minimum(lengths[:m] / (lengths[:m] + lengths[m:]), alpha_max)[:, None]
        new = (here + eta * moves[:m]) * (1.0 - alpha) + (clean + eta * moves[m:]) * alpha
        new = norms.clip_pixels(tf.reshape(new, tf.shape(cur)))
        wrong = tf.not_equal(tf.argmax(clf.logits(new), axis=-1), s["y"])
        distance = norm.length(new - xs)
        closer = wrong & (distance < s["distance"])
        s = dict(
            s,
            cur=tf.where(wrong[:, None, None, None], xs + beta * (new - xs), new),
            best=tf.where(closer[:, None, None, None], new, s["best"]),
            distance=tf.where(closer, distance, s["distance"]),
        )
        return (
            (i + 1, *core.drop_finished(s, out, s["distance"] <= eps, recorded))
            if compact
            else (i + 1, s, out)
        )

    def recorded(out, finished):
        """`out` with the finished examples written in: the closest misclassified point if
        within eps (else x), whether it is, and minus its distance (the objective)."""
        within = finished["distance"] <= eps
        images = tf.where(within[:, None, None, None], finished["best"], finished["x"])
        return {
            "images": core.write_rows(out["images"], finished["rows"], images),
            "won": core.write_rows(out["won"], finished["rows"], within),
            "value": core.write_rows(out["value"], finished["rows"], -finished["distance"]),
        }

    s = {
        "rows": tf.range(tf.cast(n, tf.int64)),
        "x": x,
        "y": y,
        "t": t,
        "cur": start,
        "best": x,
        "distance": tf.fill([n], tf.constant(float("inf"))),
    }
    out = {
        "images": x,
        "won": tf.zeros([n], tf.bool),
        "value": tf.fill([n], tf.constant(-float("inf"))),
    }

    def cond(i, s, out):
        return (i < steps) & tf.reduce_any(s["distance"] > eps)

    _, s, out = tf.while_loop(cond, body, (tf.constant(0), s, out))
    out = recorded(out, s)
    return out["images"], out["won"], out["value"]


def fab_targeted(
    model,
    images,
    labels,
    eps,
    *,
    steps=100,
    n_targets=9,
    restarts=1,
    norm="inf",
    eta=1.05,
    beta=0.9,
    alpha_max=0.1,
    seed=None,
    jit_compile="auto",
) -> tf.Tensor:
    """FAB-T: a minimum-norm search toward each of the clean image's 2nd, ...,
    (n_targets + 1)-th most likely classes (by logits), only on the examples still unbroken;
    success is misclassification (any wrong class) within eps, as in AutoAttack.

    Args:
        model: any classifier `tfadv.models.as_classifier` accepts.
        images: float (N, H, W, C) in [0, 1].
        labels: int (N,) true classes.
        eps: budget, pixel scale (L-inf: per pixel value, at most 1; L2: over the whole image).
        steps: iterations per target and restart (>= 1; each one gradient and one forward pass).
        n_targets: targets per example (>= 1), clipped to num_classes - 1.
        restarts: runs per target (>= 1); all but the first start from a random point at
            half eps from the clean image.
        norm: "inf" or "2".
        eta: overshoot of each move onto the linearised boundary, >= 1.
        beta: after a success, the next point is x + beta * (success - x); in (0, 1].
        alpha_max: largest weight of the move from the clean image, in [0, 1].
        seed: None, an int, a pair or per-image seeds (N, 2) (see
            `tfadv.attacks.randomness.per_image`): each image's draws depend on its seed only.
        jit_compile: "auto", "true", "false" or a bool.

    Returns:
        float32 (N, H, W, C), no gradient: per example a misclassified point within eps if one
        was found (off XLA the first such point, as the example then leaves the search; under
        XLA, which keeps every example, the closest by the end), else x (also x for an example
        misclassified before the attack).
    """
    norm = norms.get(norm)
    steps = checks.check_positive_int("steps", steps)
    n_targets = checks.check_positive_int("n_targets", n_targets)
    restarts = checks.check_positive_int("restarts", restarts)
    if isinstance(eta, bool) or not isinstance(eta, (int, float)) or not 1.0 <= eta <= 2.0:
        raise ValueError(f"Expected eta to be a number in [1, 2]. Received: eta={eta!r}")
    beta = checks.check_fraction("beta", beta, low_open=True)
    alpha_max = checks.check_fraction("alpha_max", alpha_max)
    clf, x, y = core.prepare(model, images, labels, eps, norm)
    if x.shape[0] == 0:
        return tf.stop_gradient(x)
    seeds = core.seeds_for(seed, x)
    targets, _, won = other_classes(clf, x, y, n_targets, "fab_targeted", jit_compile)
    attack = core.compiled_attack(
        clf,
        _fab_fn,
        x,
        jit_compile,
        norm=norm,
        steps=steps,
        eta=float(eta),
        beta=beta,
        alpha_max=alpha_max,
        compact=not devices.resolve_jit_compile(jit_compile),
    )
    runs = [target for target in targets for _ in range(restarts)]
    radii = [0.0 if r == 0 else RESTART_RADIUS for _ in targets for r in range(restarts)]
    adv = best_over_runs(attack, x, y, runs, checks.to_scalar(eps), radii, seeds, won)
    return tf.stop_gradient(adv)
