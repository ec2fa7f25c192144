"""Gradient attacks: FGSM, BIM, PGD, FGSM with random start, the random-sign control,
steps-to-flip, and the input gradient itself.

All take `(model, images, labels, eps, **options)`: any classifier `tfadv.models.as_classifier`
accepts, images float32 in [0, 1], labels int class ids of shape (N,), eps in pixel scale
(Python float or scalar tensor/variable; new values do not retrace). They return float32
tensors of the images' shape, inside the eps-ball and [0, 1], with no gradient flowing back.

Shared options: `loss` ("ce", "margin", "dlr", "ce_t" or a callable; see `tfadv.attacks.losses`),
`loss_on` ("logits", the default, or "probabilities": the naive attacker's view), `norm`
("inf" or "2"), `target` (None, "least_likely", "least_likely_top5", "random", a class id or
per-image ids; see `tfadv.attacks.targets`), `seed` and `jit_compile`. Every attack is a
`tf.function` compiled once per (model, attack, static options), run in inference mode.
Random draws are per image (`tfadv.attacks.randomness`): `seed` is None, an int, a pair, or
per-image seeds (N, 2), and image i's draws depend on its own seed only (by default
fold(seed, i)), never on the other images of the batch.
"""

import tensorflow as tf

from tfadv.attacks import active, checks, losses, norms, randomness, targets
from tfadv.attacks.checks import LABELS_SPEC, SCALAR_SPEC, SEEDS_SPEC
from tfadv.attacks.compile import classifier_of, compiled
from tfadv.models import as_classifier

PGD_ALPHA_FACTOR = 2.5  # default alpha = eps * min(1, 2.5 / steps) (Madry et al.)
FGSM_RANDOM_ALPHA_FACTOR = 1.25  # default alpha = 1.25 * eps (Wong et al. 2020)
# Up to this many gradient steps per compiled attack (steps x restarts) the loop is unrolled
# in the graph: with oneDNN, ten fwd+bwd passes of baseline_cnn ran in 0.87-1.09x (median 0.94)
# the time of the same in a tf.while_loop over 12 processes here, for ~0.1 s more tracing per
# step (tools/bench_attacks.py prints both).
MAX_UNROLLED_STEPS = 20


def _objective(model_ref, output, loss, loss_on, targeted) -> losses.Objective:
    return losses.Objective(classifier_of(model_ref, output), loss, loss_on, targeted)


def _step(objective, adv, x, y, t, eps, alpha, norm):
    """One projected step: (scores at adv, next adv). CleverHans' order: FGM step of size
    alpha clipped to [0, 1], then back into the eps-ball around x, then [0, 1] again."""
    scores, _, grad = objective.gradient(adv, y, t)
    stepped = norms.clip_pixels(adv + norm.step(grad, alpha))
    return scores, norms.project(stepped, x, eps, norm)


def _fgsm_fn(x, y, t, eps, alpha, seed, *, model_ref, output, loss, loss_on, norm, targeted):
    objective = _objective(model_ref, output, loss, loss_on, targeted)
    _, _, grad = objective.gradient(x, y, t)
    return norms.clip_pixels(x + norm.step(grad, eps))


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
    objective = _objective(model_ref, output, loss, loss_on, targeted)
    if early_stop:
        return _early_stop(
            objective, x, y, t, eps, alpha, seeds, norm, steps, random_start, restarts
        )

    def body(adv):
        return _step(objective, adv, x, y, t, eps, alpha, norm)[1]

    def one_run(restart):
        start = _start(x, eps, randomness.fold(seeds, restart), norm, random_start)
        return _repeat(body, start, steps, unroll=steps * restarts <= MAX_UNROLLED_STEPS)

    best = one_run(0)
    if restarts == 1:
        return best
    best_success, best_value = _score(objective, best, y, t)
    for restart in range(1, restarts):
        adv = one_run(restart)
        success, value = _score(objective, adv, y, t)
        better = (success & ~best_success) | ((success == best_success) & (value > best_value))
        best = tf.where(better[:, None, None, None], adv, best)
        best_success, best_value = success | best_success, tf.where(better, value, best_value)
    return best


def _start(x, eps, seeds, norm, random_start):
    """x, or a uniform random point of the eps-ball around each image drawn from its seed
    (`seeds` int64 (N, 2), one per image), in [0, 1]."""
    if not random_start:
        return x
    return norms.project(x + norm.random(x.shape, eps, seeds), x, eps, norm)


def _succeeded(objective, adv, y, t):
    """Per example: broken at `adv`; no forward pass on an empty batch (oneDNN convolutions reject it)."""
    return tf.cond(
        tf.size(y) > 0,
        lambda: objective.success(objective.scores(adv), y, t),
        lambda: tf.zeros([0], tf.bool),
    )


def _early_stop(objective, x, y, t, eps, alpha, seeds, norm, steps, random_start, restarts):
    """PGD that drops each example from the batch as soon as it is broken (misclassified, or
    the target hit), keeping that first successful iterate: the same steps at a fraction of the
    cost on weak models. Later restarts run only on the examples still unbroken."""
    out = {"images": x, "done": tf.zeros([tf.shape(x)[0]], tf.bool)}

    def record(out, finished):
        return {
            "images": active.write_rows(out["images"], finished["rows"], finished["adv"]),
            "done": active.write_rows(
                out["done"], finished["rows"], tf.ones_like(finished["rows"], tf.bool)
            ),
        }

    def body(i, s, out):
        scores, _, grad = objective.gradient(s["adv"], s["y"], s["t"])
        stepped = norms.project(
            norms.clip_pixels(s["adv"] + norm.step(grad, alpha)), s["x"], eps, norm
        )
        s, out = active.drop_finished(
            dict(s, stepped=stepped), out, objective.success(scores, s["y"], s["t"]), record
        )
        return i + 1, dict(s, adv=s["stepped"]), out

    for restart in range(restarts):
        rows = tf.where(~out["done"])[:, 0]
        s = {
            "rows": rows,
            "x": tf.gather(x, rows),
            "y": tf.gather(y, rows),
            "t": tf.gather(t, rows),
        }
        restart_seeds = randomness.fold(tf.gather(seeds, rows), restart)  # each image's own draws
        s["adv"] = s["stepped"] = _start(s["x"], eps, restart_seeds, norm, random_start)
        _, s, out = tf.while_loop(
            lambda i, s, out: (i < steps) & (tf.size(s["rows"]) > 0), body, (tf.constant(0), s, out)
        )
        s, out = active.drop_finished(
            s, out, _succeeded(objective, s["adv"], s["y"], s["t"]), record
        )
    return active.write_rows(
        out["images"], s["rows"], s["adv"]
    )  # the unbroken keep their last iterate


def _repeat(body, start, steps: int, unroll: bool):
    """body(body(...body(start))), `steps` times: unrolled in the graph, or a tf.while_loop."""
    if unroll:
        adv = start
        for _ in range(steps):
            adv = body(adv)
        return adv
    return tf.while_loop(
        lambda i, _: i < steps, lambda i, adv: (i + 1, body(adv)), (tf.constant(0), start)
    )[1]


def _score(objective, adv, y, t):
    """(attack succeeded, attacker's objective) per example, for keeping the best restart."""
    scores = objective.scores(adv)
    return objective.success(scores, y, t), objective.value(scores, y, t)


def _random_sign_fn(x, y, t, eps, alpha, seeds, *, model_ref, output):
    return norms.clip_pixels(x + eps * randomness.signs(seeds, x.shape[1:], randomness.RANDOM_SIGN))


def _steps_to_flip_fn(
    x, y, t, eps, alpha, seed, *, model_ref, output, loss, loss_on, norm, max_steps
):
    objective = _objective(model_ref, output, loss, loss_on, False)
    clean = tf.argmax(objective.clf.logits(x), axis=-1)

    def body(i, adv, flips):
        scores, adv_next = _step(objective, adv, x, y, t, eps, alpha, norm)
        flipped = tf.not_equal(tf.argmax(scores, axis=-1), clean) & tf.math.is_inf(flips)
        return i + 1, adv_next, tf.where(flipped, tf.cast(i, tf.float32), flips)

    def cond(i, adv, flips):
        return (i <= max_steps) & tf.reduce_any(tf.math.is_inf(flips))

    flips = tf.fill(tf.shape(y), float("inf"))
    return tf.while_loop(cond, body, (tf.constant(0), x, flips))[2]


def _gradient_fn(x, y, t, eps, alpha, seed, *, model_ref, output, loss, loss_on):
    return _objective(model_ref, output, loss, loss_on, False).gradient(x, y, t)[2]


def _logits_fn(x, y, t, eps, alpha, seed, *, model_ref, output):
    return classifier_of(model_ref, output).logits(x)


def _probabilities_fn(x, y, t, eps, alpha, seed, *, model_ref, output):
    return classifier_of(model_ref, output).probabilities(x)


def prepare(model, images, labels, eps=0.0, norm=norms.LINF):
    """(Classifier, images, labels) checked and converted; eps checked (L-inf: at most 1)."""
    clf = as_classifier(model)
    x = checks.to_images(images, clf.input_shape)
    clf.ensure_built(x)
    y = checks.to_labels(labels, x, clf.num_classes)
    checks.check_eps(eps, at_most=1.0 if norm is norms.LINF else None)
    return clf, x, y


def run(
    model, fn, images, labels, eps, alpha=0.0, seed=0, target=None, jit_compile="auto", **static
):
    """Checks the arguments, resolves the targets, fetches the compiled attack and runs it
    (eagerly or inside a graph). `fn(x, y, targets, eps, alpha, seed, *, model_ref, output, **static)`;
    eps is checked against `static["norm"]` (L-inf when absent)."""
    clf, x, y = prepare(model, images, labels, eps, static.get("norm", norms.LINF))
    if "loss_on" in static:
        losses.check_loss_on(clf, static["loss_on"])
    seeds = seeds_for(seed, x)
    chosen = _targets(clf, x, y, target, seeds, jit_compile)
    if "targeted" in static:
        static["targeted"] = chosen is not None
    attack = compiled_attack(clf, fn, x, jit_compile, **static)
    t = y if chosen is None else chosen
    return tf.stop_gradient(attack(x, y, t, checks.to_scalar(eps), checks.to_scalar(alpha), seeds))


def seeds_for(seed, x) -> tf.Tensor:
    """int64 (N, 2): the per-image seeds of an attack on images `x` given `seed` (None, an int,
    a pair, or per-image seeds (N, 2); see `tfadv.attacks.randomness.per_image`)."""
    n = x.shape[0]
    return randomness.per_image(seed, n if n is not None else tf.shape(x)[0])


class _PerImageSeeds:
    """A compiled attack that also takes one seed for the batch (None, an int, a pair, a (2,)
    tensor) in place of per-image seeds: image i then draws from fold(seed, i)."""

    def __init__(self, fn):
        self.fn = fn

    @tf.autograph.experimental.do_not_convert  # inside a caller's tf.function: a plain call
    def __call__(self, x, y, t, eps, alpha, seed):
        return self.fn(x, y, t, eps, alpha, seeds_for(seed, x))


def compiled_attack(clf, fn, x, jit_compile="auto", **static):
    """The compiled `fn` with the shared signature (x, y, targets, eps, alpha, seeds) for
    images shaped like `x` (any batch size): for attacks that call it more than once. `fn`
    receives int64 (N, 2) per-image seeds (see `tfadv.attacks.randomness`); the returned
    callable takes those or any seed `seeds_for` accepts."""
    signature = [
        checks.image_spec(x),
        LABELS_SPEC,
        LABELS_SPEC,
        SCALAR_SPEC,
        SCALAR_SPEC,
        SEEDS_SPEC,
    ]
    return _PerImageSeeds(compiled(clf, fn, signature, jit_compile, **static))


def _alpha(alpha, eps, default_factor, name, at_most_eps):
    """Step size: `alpha` if given (checked), else `default_factor * eps`."""
    if alpha is None:
        return checks.to_scalar(eps) * default_factor
    checks.check_eps(alpha, "alpha")
    eps = checks.unwrap_variable(eps)
    fixed_eps = checks.is_concrete(eps) and not isinstance(eps, tf.Variable)
    if at_most_eps and fixed_eps and checks.is_concrete(alpha) and float(alpha) > float(eps):
        raise ValueError(
            f"Expected alpha <= eps for {name} (a step cannot leave the eps-ball). "
            f"Received: alpha={float(alpha)!r}, eps={float(eps)!r}"
        )
    return alpha


def fgsm(
    model,
    images,
    labels,
    eps,
    *,
    norm="inf",
    loss="ce",
    loss_on="logits",
    target=None,
    seed=None,
    jit_compile="auto",
) -> tf.Tensor:
    """Fast gradient sign method: x + eps * sign(grad_x L(x, y)), clipped to [0, 1].

    Untargeted (default) ascends the loss of the true class; with a `target` it descends
    toward the target (x - eps * sign(grad_x L(x, t)) for cross-entropy).

    Args:
        model: any classifier `tfadv.models.as_classifier` accepts.
        images: float (N, H, W, C) in [0, 1].
        labels: int (N,) true classes.
        eps: step size, pixel scale (L-inf), or L2 length of the step for `norm="2"`.
        norm: "inf" (sign of the gradient) or "2" (normalised gradient).
        loss, loss_on, target, seed, jit_compile: see the module docstring.
    """
    norm = norms.get(norm)
    return run(
        model,
        _fgsm_fn,
        images,
        labels,
        eps,
        seed=seed,
        target=target,
        jit_compile=jit_compile,
        loss=losses.get(loss),
        loss_on=loss_on,
        norm=norm,
        targeted=False,
    )


def fgsm_targeted(
    model,
    images,
    labels,
    eps,
    *,
    target="least_likely",
    norm="inf",
    loss="ce",
    loss_on="logits",
    seed=None,
    jit_compile="auto",
) -> tf.Tensor:
    """Targeted FGSM: `fgsm` toward `target` (default the least likely class)."""
    if target is None:
        raise ValueError("fgsm_targeted needs a target. Received: target=None")
    return fgsm(
        model,
        images,
        labels,
        eps,
        norm=norm,
        loss=loss,
        loss_on=loss_on,
        target=target,
        seed=seed,
        jit_compile=jit_compile,
    )


def _targets(clf, x, y, target, seeds, jit_compile):
    """The targets an attack with per-image `seeds` (int64 (N, 2)) uses; None when untargeted."""
    logits = lambda images: logits_of(clf, images, jit_compile=jit_compile)  # noqa: E731
    return targets.resolve(clf, x, y, target, seeds, logits)


def choose_targets(
    model, images, labels, target="least_likely", *, seed=None, jit_compile="auto"
) -> tf.Tensor:
    """The int64 (N,) target classes `target` picks (see `tfadv.attacks.targets`): the same an
    attack given the same `seed` (None, an int, a pair or per-image seeds (N, 2)) uses."""
    clf, x, y = prepare(model, images, labels)
    if target is None:
        raise ValueError(
            "Expected a target strategy, class id or per-image ids. Received: target=None"
        )
    return _targets(clf, x, y, target, seeds_for(seed, x), jit_compile)


def _forward(model, images, fn, jit_compile):
    clf = as_classifier(model)
    x = checks.to_images(images, clf.input_shape)
    clf.ensure_built(x)
    y = tf.zeros(tf.shape(x)[:1], tf.int64)
    zero = tf.constant(0.0)
    no_seeds = tf.zeros(tf.stack([tf.shape(x)[0], 2]), tf.int64)
    return compiled_attack(clf, fn, x, jit_compile)(x, y, y, zero, zero, no_seeds)


def logits_of(model, images, *, jit_compile="auto") -> tf.Tensor:
    """The logits (see `tfadv.models.as_classifier`), inference mode, compiled once per model."""
    return _forward(model, images, _logits_fn, jit_compile)


def probabilities_of(model, images, *, jit_compile="auto") -> tf.Tensor:
    """The probabilities (the model's own, or softmax of its logits), inference mode, compiled once."""
    return _forward(model, images, _probabilities_fn, jit_compile)


def input_gradient(
    model, images, labels, *, loss="ce", loss_on="logits", jit_compile="auto"
) -> tf.Tensor:
    """Gradient of each example's loss w.r.t. its input pixels (N, H, W, C).

    With loss_on="probabilities" a saturated softmax gives exactly zero (gradient masking).
    """
    return run(
        model,
        _gradient_fn,
        images,
        labels,
        0.0,
        jit_compile=jit_compile,
        loss=losses.get(loss),
        loss_on=loss_on,
    )


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
        Others as in `fgsm`.
    """
    norm = norms.get(norm)
    steps = checks.check_positive_int("steps", steps)
    restarts = checks.check_positive_int("restarts", restarts)
    if restarts > 1 and not random_start:
        raise ValueError(
            f"restarts > 1 needs random_start=True. Received: restarts={restarts}, random_start=False"
        )
    alpha = _alpha(alpha, eps, min(1.0, PGD_ALPHA_FACTOR / steps), "pgd", at_most_eps=True)
    return run(
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
    alpha = _alpha(alpha, eps, FGSM_RANDOM_ALPHA_FACTOR, "fgsm_random", at_most_eps=False)
    return run(
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
        norm=norms.LINF,
        steps=1,
        random_start=True,
        restarts=1,
        targeted=False,
    )


def random_sign(model, images, labels, eps, *, seed=None, jit_compile="auto") -> tf.Tensor:
    """x + eps * R, R uniform in {-1, +1} per pixel value, clipped to [0, 1].

    The control for FGSM: the same L-inf size in a random direction. `model` and
    `labels` are only checked (shared signature).
    """
    return run(model, _random_sign_fn, images, labels, eps, seed=seed, jit_compile=jit_compile)


def steps_to_flip(
    model,
    images,
    labels,
    eps=1.0,
    *,
    alpha=1 / 255,
    max_steps=100,
    norm="inf",
    loss="ce",
    loss_on="logits",
    jit_compile="auto",
) -> tf.Tensor:
    """How many iterative (BIM) steps of size alpha each example needs before its predicted
    class differs from its clean prediction: a hardness score per example.

    Returns float32 (N,): the step count (1 = after one step), `inf` if the prediction
    survived `max_steps` steps. `eps` bounds the total perturbation (1.0: only [0, 1]).
    """
    norm = norms.get(norm)
    max_steps = checks.check_positive_int("max_steps", max_steps)
    checks.check_eps(alpha, "alpha")
    return run(
        model,
        _steps_to_flip_fn,
        images,
        labels,
        eps,
        alpha,
        0,
        None,
        jit_compile,
        loss=losses.get(loss),
        loss_on=loss_on,
        norm=norm,
        max_steps=max_steps,
    )
