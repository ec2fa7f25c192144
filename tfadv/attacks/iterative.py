"""Iterative gradient attacks assembled from parts: BIM, PGD and FGSM with random start (here)
and APGD (`tfadv.attacks.apgd`, from the same parts).

    attack = start + objective (loss) + step (norm's steepest step, then projection) + stopping rule

- start: `no_start` (x itself: BIM), `ball_start` (a uniform point of the eps-ball: PGD) or
  `surface_start` (a random point on the ball's surface: APGD);
- objective: a `tfadv.attacks.losses.Objective` (loss, logits or probabilities, targeted);
- step: `ProjectedStep`, CleverHans' order: the norm's steepest step of size alpha, clipped to
  [0, 1], then back into the eps-ball around x, then [0, 1] again; or `MomentumStep` (APGD's:
  the norm's steepest step projected, then mixed with the previous move, projected again);
- stopping rule: `FixedSteps` (every example takes every step; with restarts each keeps its
  strongest run) or `FirstSuccess` (an example leaves the batch at its first successful iterate,
  which is kept; later restarts run only on the unbroken); APGD adds its step-size schedule.

Each attack takes `(model, images, labels, eps, **options)` and is compiled once per model
(see `tfadv.attacks.core`); images float32 in [0, 1], eps in pixel scale.
"""

import tensorflow as tf

from tfadv.attacks import core, losses, norms, randomness
from tfadv.runtime import tensors, validation

PGD_ALPHA_FACTOR = 2.5  # default alpha = eps * min(1, 2.5 / steps) (Madry et al.)
FGSM_RANDOM_ALPHA_FACTOR = 1.25  # default alpha = 1.25 * eps (Wong et al. 2020)
# Up to this many gradient steps per compiled attack (steps x restarts) the loop is unrolled
# in the graph: with oneDNN, ten fwd+bwd passes of baseline_cnn ran in 0.87-1.09x (median 0.94)
# the time of the same in a tf.while_loop over 12 processes here, for ~0.1 s more tracing per
# step (tools/bench_attacks.py prints both).
MAX_UNROLLED_STEPS = 20
LENGTH_FLOOR = 1e-12  # added to the surface start's noise length before dividing (as APGD's)


# ------------------------------------------------------------------------------------ parts


def no_start(x, eps, seeds, norm):
    """BIM's start: the clean images."""
    return x


def ball_start(x, eps, seeds, norm):
    """PGD's start: a uniform random point of the eps-ball around each image, drawn from its
    seed (`seeds` int64 (N, 2), one per image), in [0, 1]."""
    return norms.project(x + norm.random(x.shape, eps, seeds), x, eps, norm)


def surface_start(x, eps, seeds, norm):
    """APGD's start: x plus a random direction of length eps (L-inf: uniform noise over its
    largest entry; L2: Gaussian noise over its length), clipped to [0, 1]; each image's drawn
    from its seed (`seeds` int64 (N, 2))."""
    noise = norm.surface_noise(seeds, x.shape[1:])
    length = tf.reshape(norm.length(noise), [-1, 1, 1, 1])
    return norms.clip_pixels(x + eps * noise / (length + LENGTH_FLOOR))


def pick(mask, a, b):
    """a where the per-example bool (N,) `mask` holds, else b (images or per-example values)."""
    if a.shape.rank == 4:
        mask = tf.reshape(mask, [-1, 1, 1, 1])
    return tf.where(mask, a, b)


class ProjectedStep:
    """One projected step: (scores at adv, next adv). CleverHans' order: the norm's steepest
    step of size alpha clipped to [0, 1], then back into the eps-ball around x, then [0, 1]."""

    def __init__(self, objective: losses.Objective, norm: norms.Norm, eps, alpha):
        self.objective, self.norm, self.eps, self.alpha = objective, norm, eps, alpha

    def __call__(self, adv, x, y, t):
        scores, _, grad = self.objective.gradient(adv, y, t)
        stepped = norms.clip_pixels(adv + self.norm.step(grad, self.alpha))
        return scores, norms.project(stepped, x, self.eps, self.norm)


class MomentumStep:
    """APGD's step from adv (previous iterate prev) given the gradient at adv: the norm's
    steepest step of per-example size `size` (N, 1, 1, 1), back into the eps-ball around x and
    [0, 1]; then `weight` of that move plus 1 - weight of the previous one (adv - prev), back
    into the ball and [0, 1] again."""

    def __init__(self, norm: norms.Norm, eps):
        self.norm, self.eps = norm, eps

    def __call__(self, adv, prev, grad, size, x, weight):
        ahead = norms.project(adv + self.norm.step(grad, size), x, self.eps, self.norm)
        moved = adv + weight * (ahead - adv) + (1.0 - weight) * (adv - prev)
        return norms.project(moved, x, self.eps, self.norm)


class FixedSteps:
    """Every example takes `steps` steps; with restarts each keeps its strongest run (a success
    beats a failure, then the higher objective). Unrolled in the graph up to MAX_UNROLLED_STEPS
    steps in all, else a tf.while_loop."""

    def __init__(self, steps: int, restarts: int = 1):
        self.steps, self.restarts = steps, restarts
        self.unroll = steps * restarts <= MAX_UNROLLED_STEPS

    def _repeat(self, body, start):
        if self.unroll:
            adv = start
            for _ in range(self.steps):
                adv = body(adv)
            return adv
        return tf.while_loop(
            lambda i, _: i < self.steps,
            lambda i, adv: (i + 1, body(adv)),
            (tf.constant(0), start),
        )[1]

    def __call__(self, step, start, x, y, t, eps, seeds):
        objective = step.objective

        def one_run(restart):
            begin = start(x, eps, randomness.fold(seeds, restart), step.norm)
            return self._repeat(lambda adv: step(adv, x, y, t)[1], begin)

        best = one_run(0)
        if self.restarts == 1:
            return best
        best_success, best_value = _score(objective, best, y, t)
        for restart in range(1, self.restarts):
            adv = one_run(restart)
            success, value = _score(objective, adv, y, t)
            better = (success & ~best_success) | ((success == best_success) & (value > best_value))
            best = pick(better, adv, best)
            best_success, best_value = success | best_success, tf.where(better, value, best_value)
        return best


class FirstSuccess:
    """Each example leaves the batch as soon as it is broken (misclassified, or the target hit),
    keeping that first successful iterate: the same steps at a fraction of the cost on weak
    models. Later restarts run only on the examples still unbroken; the unbroken keep their last
    iterate."""

    def __init__(self, steps: int, restarts: int = 1):
        self.steps, self.restarts = steps, restarts

    def __call__(self, step, start, x, y, t, eps, seeds):
        objective = step.objective
        out = {"images": x, "done": tf.zeros([tf.shape(x)[0]], tf.bool)}

        def record(out, finished):
            return {
                "images": core.write_rows(out["images"], finished["rows"], finished["adv"]),
                "done": core.write_rows(
                    out["done"], finished["rows"], tf.ones_like(finished["rows"], tf.bool)
                ),
            }

        def body(i, s, out):
            scores, stepped = step(s["adv"], s["x"], s["y"], s["t"])
            s, out = core.drop_finished(
                dict(s, stepped=stepped), out, objective.success(scores, s["y"], s["t"]), record
            )
            return i + 1, dict(s, adv=s["stepped"]), out

        for restart in range(self.restarts):
            rows = tf.where(~out["done"])[:, 0]
            s = {
                "rows": rows,
                "x": tf.gather(x, rows),
                "y": tf.gather(y, rows),
                "t": tf.gather(t, rows),
            }
            restart_seeds = randomness.fold(tf.gather(seeds, rows), restart)  # each image's own
            s["adv"] = s["stepped"] = start(s["x"], eps, restart_seeds, step.norm)
            _, s, out = tf.while_loop(
                lambda i, s, out: (i < self.steps) & (tf.size(s["rows"]) > 0),
                body,
                (tf.constant(0), s, out),
            )
            s, out = core.drop_finished(
                s, out, _succeeded(objective, s["adv"], s["y"], s["t"]), record
            )
        return core.write_rows(out["images"], s["rows"], s["adv"])


def _succeeded(objective, adv, y, t):
    """Per example: broken at `adv`; no forward pass on an empty batch (oneDNN convolutions
    reject it)."""
    return tf.cond(
        tf.size(y) > 0,
        lambda: objective.success(objective.scores(adv), y, t),
        lambda: tf.zeros([0], tf.bool),
    )


def _score(objective, adv, y, t):
    """(attack succeeded, attacker's objective) per example, for keeping the best restart."""
    scores = objective.scores(adv)
    return objective.success(scores, y, t), objective.value(scores, y, t)


# ------------------------------------------------------------------------ the compiled attack


def _iterative_fn(
    x,
    y,
    t,
    eps,
    alpha,
    seeds,
    *,
    model_ref,
    output,
    loss,
    loss_on,
    norm,
    steps,
    random_start,
    restarts,
    targeted,
    early_stop=False,
):
    clf = core.classifier_of(model_ref, output)
    step = ProjectedStep(losses.Objective(clf, loss, loss_on, targeted), norm, eps, alpha)
    rule = (FirstSuccess if early_stop else FixedSteps)(steps, restarts)
    return rule(step, ball_start if random_start else no_start, x, y, t, eps, seeds)


def step_size(alpha, eps, default_factor, name, at_most_eps):
    """Step size: `alpha` if given (checked), else `default_factor * eps`."""
    if alpha is None:
        return tensors.to_scalar(eps) * default_factor
    validation.check_eps(alpha, "alpha")
    eps = tensors.unwrap_variable(eps)
    fixed_eps = tensors.is_concrete(eps) and not isinstance(eps, tf.Variable)
    if at_most_eps and fixed_eps and tensors.is_concrete(alpha) and float(alpha) > float(eps):
        raise ValueError(
            f"Expected alpha <= eps for {name} (a step cannot leave the eps-ball). "
            f"Received: alpha={float(alpha)!r}, eps={float(eps)!r}"
        )
    return alpha


# ----------------------------------------------------------------------------- the attacks


def pgd(
    model,
    images,
    labels,
    eps,
    *,
    steps=10,
    alpha=None,
    norm="inf",
    random_start=True,
    restarts=1,
    loss="ce",
    loss_on="logits",
    target=None,
    early_stop=False,
    seed=None,
    jit_compile="auto",
) -> tf.Tensor:
    """Projected gradient descent (Madry et al.): `steps` FGM steps of size alpha, each
    projected into the eps-ball and [0, 1], from a random start inside the ball.

    With `restarts` > 1 each example keeps its strongest result: a success (misclassified;
    the target hit if targeted) beats a failure, then the higher objective wins.
    With `early_stop` (for measuring robust accuracy) an example leaves the batch at its first
    successful iterate, which is returned; the unbroken return their last iterate.

    Args:
        steps: iterations (>= 1).
        alpha: step size (pixel scale; L2 length for norm "2"), at most eps;
            default eps * min(1, 2.5 / steps).
        random_start: start uniformly inside the ball (needed for restarts > 1).
        restarts: independent runs, best kept per example.
        seed: None (fresh draw from TF's global RNG), an int, a pair such as
            (seed, step) which may be tensors, or per-image seeds (N, 2) (see
            `tfadv.attacks.randomness`; `run_attack` passes those of the images' indices).
        Others as in `tfadv.attacks.fgsm`.
    """
    norm = norms.get(norm)
    steps = validation.check_positive_int("steps", steps)
    restarts = validation.check_positive_int("restarts", restarts)
    if restarts > 1 and not random_start:
        raise ValueError(
            "restarts > 1 needs random_start=True. Received: "
            f"restarts={restarts}, random_start=False"
        )
    alpha = step_size(alpha, eps, min(1.0, PGD_ALPHA_FACTOR / steps), "pgd", at_most_eps=True)
    return core.run(
        model,
        _iterative_fn,
        images,
        labels,
        eps,
        alpha,
        seed,
        target,
        jit_compile,
        loss=losses.get(loss),
        loss_on=loss_on,
        norm=norm,
        steps=steps,
        random_start=bool(random_start),
        restarts=restarts,
        targeted=False,
        early_stop=bool(early_stop),
    )


def bim(
    model,
    images,
    labels,
    eps,
    *,
    steps=10,
    alpha=None,
    norm="inf",
    loss="ce",
    loss_on="logits",
    target=None,
    seed=None,
    jit_compile="auto",
) -> tf.Tensor:
    """Basic iterative method (iterative FGSM, Kurakin et al.): `pgd` without random start."""
    return pgd(
        model,
        images,
        labels,
        eps,
        steps=steps,
        alpha=alpha,
        norm=norm,
        random_start=False,
        loss=loss,
        loss_on=loss_on,
        target=target,
        seed=seed,
        jit_compile=jit_compile,
    )


def fgsm_random(
    model,
    images,
    labels,
    eps,
    *,
    alpha=None,
    loss="ce",
    loss_on="logits",
    seed=None,
    jit_compile="auto",
) -> tf.Tensor:
    """FGSM from a uniform random start in the eps-ball, projected back into the ball
    ("fast is better than free", Wong et al. 2020). alpha defaults to 1.25 * eps."""
    alpha = step_size(alpha, eps, FGSM_RANDOM_ALPHA_FACTOR, "fgsm_random", at_most_eps=False)
    return core.run(
        model,
        _iterative_fn,
        images,
        labels,
        eps,
        alpha,
        seed,
        None,
        jit_compile,
        loss=losses.get(loss),
        loss_on=loss_on,
        norm=norms.get("inf"),
        steps=1,
        random_start=True,
        restarts=1,
        targeted=False,
    )
