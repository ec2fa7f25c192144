"""Single-step gradient attacks: FGSM (untargeted and targeted), the random-sign control,
steps-to-flip, and the input gradient itself. The iterative ones (BIM, PGD, FGSM with random
start) are assembled from parts in `tfadv.attacks.iterative`.

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

from tfadv.attacks import core, iterative, losses, norms, randomness
from tfadv.attacks.core import classifier_of
from tfadv.runtime import validation


def _objective(model_ref, output, loss, loss_on, targeted) -> losses.Objective:
    return losses.Objective(classifier_of(model_ref, output), loss, loss_on, targeted)


def _fgsm_fn(x, y, t, eps, alpha, seed, *, model_ref, output, loss, loss_on, norm, targeted):
    objective = _objective(model_ref, output, loss, loss_on, targeted)
    _, _, grad = objective.gradient(x, y, t)
    return norms.clip_pixels(x + norm.step(grad, eps))


def _random_sign_fn(x, y, t, eps, alpha, seeds, *, model_ref, output):
    return norms.clip_pixels(x + eps * randomness.signs(seeds, x.shape[1:], randomness.RANDOM_SIGN))


def _steps_to_flip_fn(
    x, y, t, eps, alpha, seed, *, model_ref, output, loss, loss_on, norm, max_steps
):
    objective = _objective(model_ref, output, loss, loss_on, False)
    step = iterative.ProjectedStep(objective, norm, eps, alpha)
    clean = tf.argmax(objective.clf.logits(x), axis=-1)

    def body(i, adv, flips):
        scores, adv_next = step(adv, x, y, t)
        flipped = tf.not_equal(tf.argmax(scores, axis=-1), clean) & tf.math.is_inf(flips)
        return i + 1, adv_next, tf.where(flipped, tf.cast(i, tf.float32), flips)

    def cond(i, adv, flips):
        return (i <= max_steps) & tf.reduce_any(tf.math.is_inf(flips))

    flips = tf.fill(tf.shape(y), float("inf"))
    return tf.while_loop(cond, body, (tf.constant(0), x, flips))[2]


def _gradient_fn(x, y, t, eps, alpha, seed, *, model_ref, output, loss, loss_on):
    return _objective(model_ref, output, loss, loss_on, False).gradient(x, y, t)[2]


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
    return core.run(
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


def input_gradient(
    model, images, labels, *, loss="ce", loss_on="logits", jit_compile="auto"
) -> tf.Tensor:
    """Gradient of each example's loss w.r.t. its input pixels (N, H, W, C).

    With loss_on="probabilities" a saturated softmax gives exactly zero (gradient masking).
    """
    return core.run(
        model,
        _gradient_fn,
        images,
        labels,
        0.0,
        jit_compile=jit_compile,
        loss=losses.get(loss),
        loss_on=loss_on,
    )


def random_sign(model, images, labels, eps, *, seed=None, jit_compile="auto") -> tf.Tensor:
    """x + eps * R, R uniform in {-1, +1} per pixel value, clipped to [0, 1].

    The control for FGSM: the same L-inf size in a random direction. `model` and
    `labels` are only checked (shared signature).
    """
    return core.run(model, _random_sign_fn, images, labels, eps, seed=seed, jit_compile=jit_compile)


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
    max_steps = validation.check_positive_int("max_steps", max_steps)
    validation.check_eps(alpha, "alpha")
    return core.run(
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
