"""Gradient attacks: FGSM (untargeted and targeted), BIM, PGD, FGSM with random start,
the random-sign control, and steps-to-flip.

All take `(model, images, labels, eps, **options)`: images float32 in [0, 1], labels int
class ids of shape (N,), eps in pixel scale (Python float or scalar tensor/variable; new
values do not retrace). They return float32 tensors of the images' shape, inside the
eps-ball and [0, 1], with no gradient flowing back through them.

Every attack is a `tf.function` compiled once per (model, attack, static options) and run
in inference mode (`training=False`); `jit_compile` follows `tfadv.runtime.resolve_jit_compile`.
The loss is sparse softmax cross-entropy on the logits beneath the model's TemperatureSoftmax
unless `loss_on="probabilities"` (see `tfadv.attacks._core`).
"""

import tensorflow as tf

from tfadv.attacks import _core
from tfadv.attacks._core import LABELS_SPEC, SCALAR_SPEC, SEED_SPEC

PGD_ALPHA_FACTOR = 2.5  # default alpha = eps * min(1, 2.5 / steps) (Madry et al.)
FGSM_RANDOM_ALPHA_FACTOR = 1.25  # default alpha = 1.25 * eps (Wong et al. 2020)
TARGET_CHOICES = ("least_likely", "least_likely_top5", "random")
# Up to this many gradient steps per compiled attack (steps x restarts) the loop is unrolled
# in the graph: with oneDNN, ten fwd+bwd passes of baseline_cnn ran in 0.87-1.09x (median 0.94)
# the time of the same in a tf.while_loop over 12 processes here, for ~0.1 s more tracing per
# step (tools/bench_attacks.py prints both).
MAX_UNROLLED_STEPS = 20


def _step(forward, loss_on, adv, x, y, eps, alpha, norm, targeted):
    """One projected step: (outputs at adv, next adv). CleverHans' order: FGM step of size
    alpha clipped to [0, 1], then back into the eps-ball around x, then [0, 1] again."""
    outputs, grad = _core.outputs_and_gradient(forward, loss_on, adv, y, targeted)
    stepped = _core.clip_pixels(adv + _core.linear_step(grad, alpha, norm))
    return outputs, _core.project(stepped, x, eps, norm)


def _fgsm_fn(x, y, eps, alpha, seed, *, model_ref, loss_on, norm, targeted):
    forward = _core.output_fn(_core.deref(model_ref), loss_on)
    _, grad = _core.outputs_and_gradient(forward, loss_on, x, y, targeted)
    return _core.clip_pixels(x + _core.linear_step(grad, eps, norm))


def _iterative_fn(x, y, eps, alpha, seed, *, model_ref, loss_on, norm, steps, random_start, restarts, targeted):
    forward = _core.output_fn(_core.deref(model_ref), loss_on)

    def body(adv):
        return _step(forward, loss_on, adv, x, y, eps, alpha, norm, targeted)[1]

    def one_run(restart):
        start = x
        if random_start:
            restart_seed = _core.fold_seed(seed, restart)
            start = _core.project(x + _core.random_in_ball(tf.shape(x), eps, norm, restart_seed), x, eps, norm)
        return _repeat(body, start, steps, unroll=steps * restarts <= MAX_UNROLLED_STEPS)

    best = one_run(0)
    if restarts == 1:
        return best
    best_success, best_loss = _score(forward, loss_on, best, y, targeted)
    for restart in range(1, restarts):
        adv = one_run(restart)
        success, loss = _score(forward, loss_on, adv, y, targeted)
        better = (success & ~best_success) | ((success == best_success) & (loss > best_loss))
        best = tf.where(better[:, None, None, None], adv, best)
        best_success, best_loss = success | best_success, tf.where(better, loss, best_loss)
    return best


def _repeat(body, start, steps: int, unroll: bool):
    """body(body(...body(start))), `steps` times: unrolled in the graph, or a tf.while_loop."""
    if unroll:
        adv = start
        for _ in range(steps):
            adv = body(adv)
        return adv
    return tf.while_loop(lambda i, _: i < steps, lambda i, adv: (i + 1, body(adv)), (tf.constant(0), start))[1]


def _score(forward, loss_on, adv, y, targeted):
    """(attack succeeded, attacker's objective) per example, for keeping the best restart."""
    outputs = forward(adv)
    loss = _core.loss_from(outputs, y, loss_on)
    hit = tf.equal(tf.argmax(outputs, axis=-1), y)
    return (hit, -loss) if targeted else (~hit, loss)


def _random_sign_fn(x, y, eps, alpha, seed, *, model_ref):
    signs = tf.random.stateless_uniform(tf.shape(x), seed, minval=0, maxval=2, dtype=tf.int32)
    return _core.clip_pixels(x + eps * tf.cast(2 * signs - 1, x.dtype))


def _steps_to_flip_fn(x, y, eps, alpha, seed, *, model_ref, loss_on, norm, max_steps):
    forward = _core.output_fn(_core.deref(model_ref), loss_on)
    clean = tf.argmax(forward(x), axis=-1)

    def body(i, adv, flips):
        outputs, adv_next = _step(forward, loss_on, adv, x, y, eps, alpha, norm, False)
        flipped = tf.not_equal(tf.argmax(outputs, axis=-1), clean) & tf.math.is_inf(flips)
        return i + 1, adv_next, tf.where(flipped, tf.cast(i, tf.float32), flips)

    def cond(i, adv, flips):
        return (i <= max_steps) & tf.reduce_any(tf.math.is_inf(flips))

    flips = tf.fill(tf.shape(y), float("inf"))
    return tf.while_loop(cond, body, (tf.constant(0), x, flips))[2]


def _gradient_fn(x, y, eps, alpha, seed, *, model_ref, loss_on):
    forward = _core.output_fn(_core.deref(model_ref), loss_on)
    return _core.outputs_and_gradient(forward, loss_on, x, y, False)[1]


def _logits_fn(x, y, eps, alpha, seed, *, model_ref):
    return _core.output_fn(_core.deref(model_ref), "logits")(x)


def _run(model, fn, images, labels, eps, alpha=0.0, seed=0, jit_compile="auto", **static):
    """Checks the arguments, fetches the compiled attack and runs it (eagerly or in a graph)."""
    x = _core.to_images(images)
    y = _core.to_labels(labels, x, _core.num_classes(model))
    _core.check_eps(eps)
    signature = [_core.image_spec(x), LABELS_SPEC, SCALAR_SPEC, SCALAR_SPEC, SEED_SPEC]
    attack = _core.compiled(model, fn, signature, jit_compile, **static)
    return tf.stop_gradient(attack(x, y, _core.to_scalar(eps), _core.to_scalar(alpha), _core.to_seed(seed)))


def _alpha(alpha, eps, default_factor, name, at_most_eps):
    """Step size: `alpha` if given (checked), else `default_factor * eps`."""
    if alpha is None:
        return _core.to_scalar(eps) * default_factor
    _core.check_eps(alpha, "alpha")
    eps = _core.unwrap_variable(eps)
    fixed_eps = _core.is_concrete(eps) and not isinstance(eps, tf.Variable)
    if at_most_eps and fixed_eps and _core.is_concrete(alpha) and float(alpha) > float(eps):
        raise ValueError(
            f"Expected alpha <= eps for {name} (a step cannot leave the eps-ball). "
            f"Received: alpha={float(alpha)!r}, eps={float(eps)!r}"
        )
    return alpha


def fgsm(
    model, images, labels, eps, *, norm="inf", loss_on="logits", targeted=False, jit_compile="auto"
) -> tf.Tensor:
    """Fast gradient sign method: x + eps * sign(grad_x L(x, y)), clipped to [0, 1].

    Untargeted (default) ascends the loss of the true class. With `targeted=True`,
    `labels` are the targets and the step descends: x - eps * sign(grad_x L(x, target)).

    Args:
        model: Keras model ending in TemperatureSoftmax, or `tfadv.export.ExportedModel`.
        images: float (N, H, W, C) in [0, 1].
        labels: int (N,) true classes (targets if `targeted`).
        eps: step size, pixel scale (L-inf), or L2 length of the step for `norm="2"`.
        norm: "inf" (sign of the gradient) or "2" (normalised gradient).
        loss_on: "logits" (default) or "probabilities".
        targeted: descend toward `labels` instead of ascending away from them.
        jit_compile: "auto" | "true" | "false" | bool.
    """
    norm = _core.check_norm(norm)
    _core.check_choice("loss_on", loss_on, _core.LOSS_ON)
    return _run(
        model, _fgsm_fn, images, labels, eps, jit_compile=jit_compile, loss_on=loss_on, norm=norm, targeted=bool(targeted)
    )


def choose_targets(model, images, labels, target="least_likely", *, seed=None, jit_compile="auto") -> tf.Tensor:
    """Target classes for targeted attacks, int64 (N,).

    Args:
        target: "least_likely" (lowest model probability, ranked by logits so that a
            saturated softmax does not tie), "least_likely_top5" (the lowest of the five
            most probable classes, as in the Possas study), "random" (a uniformly random
            class other than the label) or an int class id.
        seed: for "random" (None, int or pair; see `_core.to_seed`).
    """
    x = _core.to_images(images)
    y = _core.to_labels(labels, x, _core.num_classes(model))
    if isinstance(target, int) and not isinstance(target, bool):
        classes = _core.num_classes(model)
        if target < 0 or (classes and target >= classes):
            raise ValueError(f"Expected a target class in [0, {classes}). Received: target={target!r}")
        return tf.fill(tf.shape(y), tf.constant(target, tf.int64))
    _core.check_choice("target", target, TARGET_CHOICES)
    logits = logits_of(model, x, jit_compile=jit_compile)
    classes = logits.shape[-1]
    if target == "least_likely":
        return tf.argmin(logits, axis=-1)
    if target == "least_likely_top5":
        if classes < 5:
            raise ValueError(f"target='least_likely_top5' needs >= 5 classes. Received: {classes} classes")
        return tf.cast(tf.math.top_k(logits, k=5).indices[:, -1], tf.int64)
    shift = tf.random.stateless_uniform(tf.shape(y), _core.to_seed(seed), minval=1, maxval=classes, dtype=tf.int64)
    return (y + shift) % classes


def logits_of(model, images, *, jit_compile="auto") -> tf.Tensor:
    """The logits beneath the softmax, inference mode, compiled once per model."""
    x = _core.to_images(images)
    labels = tf.zeros(tf.shape(x)[:1], tf.int64)
    return _run(model, _logits_fn, x, labels, 0.0, jit_compile=jit_compile)


def input_gradient(model, images, labels, *, loss_on="logits", jit_compile="auto") -> tf.Tensor:
    """Gradient of each example's cross-entropy w.r.t. its input pixels (N, H, W, C).

    With loss_on="probabilities" a saturated softmax gives exactly zero (gradient masking).
    """
    _core.check_choice("loss_on", loss_on, _core.LOSS_ON)
    return _run(model, _gradient_fn, images, labels, 0.0, jit_compile=jit_compile, loss_on=loss_on)


def fgsm_targeted(
    model, images, labels, eps, *, target="least_likely", loss_on="logits", seed=None, jit_compile="auto"
) -> tf.Tensor:
    """Targeted FGSM: x - eps * sign(grad_x L(x, t)), t chosen by `choose_targets(target)`.

    `labels` are the true classes (used by target="random"); see `fgsm` for the rest.
    """
    targets = choose_targets(model, images, labels, target, seed=seed, jit_compile=jit_compile)
    return fgsm(model, images, targets, eps, loss_on=loss_on, targeted=True, jit_compile=jit_compile)


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
    loss_on="logits",
    targeted=False,
    seed=None,
    jit_compile="auto",
) -> tf.Tensor:
    """Projected gradient descent (Madry et al.): `steps` FGM steps of size alpha, each
    projected into the eps-ball and [0, 1], from a random start inside the ball.

    With `restarts` > 1 each example keeps its strongest result: a success (misclassified;
    the target hit if targeted) beats a failure, then the higher loss wins.

    Args:
        steps: iterations (>= 1).
        alpha: step size (pixel scale; L2 length for norm "2"), at most eps;
            default eps * min(1, 2.5 / steps).
        norm: "inf" or "2".
        random_start: start uniformly inside the ball (needed for restarts > 1).
        restarts: independent runs, best kept per example.
        seed: None (fresh draw from TF's global RNG), an int, or a pair such as
            (seed, step) which may be tensors.
        Others as in `fgsm`.
    """
    norm = _core.check_norm(norm)
    steps = _core.check_positive_int("steps", steps)
    restarts = _core.check_positive_int("restarts", restarts)
    _core.check_choice("loss_on", loss_on, _core.LOSS_ON)
    if restarts > 1 and not random_start:
        raise ValueError(f"restarts > 1 needs random_start=True. Received: restarts={restarts}, random_start=False")
    alpha = _alpha(alpha, eps, min(1.0, PGD_ALPHA_FACTOR / steps), "pgd", at_most_eps=True)
    return _run(
        model, _iterative_fn, images, labels, eps, alpha, seed if random_start else 0, jit_compile,
        loss_on=loss_on, norm=norm, steps=steps, random_start=bool(random_start), restarts=restarts,
        targeted=bool(targeted),
    )  # fmt: skip


def bim(
    model, images, labels, eps, *, steps=10, alpha=None, norm="inf", loss_on="logits", targeted=False, jit_compile="auto"
) -> tf.Tensor:
    """Basic iterative method (iterative FGSM, Kurakin et al.): `pgd` without random start."""
    return pgd(
        model, images, labels, eps, steps=steps, alpha=alpha, norm=norm, random_start=False,
        loss_on=loss_on, targeted=targeted, jit_compile=jit_compile,
    )  # fmt: skip


def fgsm_random(
    model, images, labels, eps, *, alpha=None, loss_on="logits", seed=None, jit_compile="auto"
) -> tf.Tensor:
    """FGSM from a uniform random start in the eps-ball, projected back into the ball
    ("fast is better than free", Wong et al. 2020). alpha defaults to 1.25 * eps."""
    _core.check_choice("loss_on", loss_on, _core.LOSS_ON)
    alpha = _alpha(alpha, eps, FGSM_RANDOM_ALPHA_FACTOR, "fgsm_random", at_most_eps=False)
    return _run(
        model, _iterative_fn, images, labels, eps, alpha, seed, jit_compile,
        loss_on=loss_on, norm="inf", steps=1, random_start=True, restarts=1, targeted=False,
    )  # fmt: skip


def random_sign(model, images, labels, eps, *, seed=None, jit_compile="auto") -> tf.Tensor:
    """x + eps * R, R uniform in {-1, +1} per pixel value, clipped to [0, 1].

    The control for FGSM: the same L-inf size in a random direction. `model` and
    `labels` are only checked (shared signature).
    """
    return _run(model, _random_sign_fn, images, labels, eps, seed=seed, jit_compile=jit_compile)


def steps_to_flip(
    model, images, labels, eps=1.0, *, alpha=1 / 255, max_steps=100, norm="inf", loss_on="logits", jit_compile="auto"
) -> tf.Tensor:
    """How many iterative (BIM) steps of size alpha each example needs before its predicted
    class differs from its clean prediction: a hardness score per example.

    Returns float32 (N,): the step count (1 = after one step), `inf` if the prediction
    survived `max_steps` steps. `eps` bounds the total perturbation (1.0: only [0, 1]).
    """
    norm = _core.check_norm(norm)
    max_steps = _core.check_positive_int("max_steps", max_steps)
    _core.check_eps(alpha, "alpha")
    _core.check_choice("loss_on", loss_on, _core.LOSS_ON)
    return _run(
        model, _steps_to_flip_fn, images, labels, eps, alpha, 0, jit_compile,
        loss_on=loss_on, norm=norm, max_steps=max_steps,
    )  # fmt: skip
