"""Auto-PGD (Croce & Hein 2020, "Reliable evaluation of adversarial robustness with an
ensemble of diverse parameter-free attacks"): APGD and APGD-T.

APGD is PGD with momentum and a step size that adapts itself: it starts at 2 * eps and halves,
restarting from the best point found so far, at checkpoints where the loss rose on too few of
the steps since the last checkpoint (at most a fraction `rho`), or where neither the step size
nor the best loss changed since the last checkpoint. APGD-T runs APGD with the targeted DLR loss
once per target: the 2nd, 3rd, ... most likely classes of the clean image.

Every run starts from a random point on the surface of the eps-ball (as the reference does),
keeps each example's first misclassified (successful) iterate and otherwise its highest-loss
iterate, and runs only on the examples no earlier restart or target has broken; inside a run an
example leaves the batch at its first success (off XLA), which changes no result and saves the
gradients the reference spends stepping broken examples. The returned
image is misclassified (or on target) whenever any evaluated point was, the clean image
included: an example misclassified before the attack is returned unchanged. One run is a
compiled tf.while_loop (see `tfadv.attacks.core`): batch size and eps never retrace.
"""

import numbers

import tensorflow as tf

from tfadv.attacks import checks, core, iterative, losses, norms
from tfadv.attacks.core import classifier_of
from tfadv.attacks.iterative import pick
from tfadv.attacks.repeated import best_over_runs, other_classes
from tfadv.models.adapter import logits_of
from tfadv.runtime import devices

INITIAL_STEP = 2.0  # step size at the start, in units of eps
MOMENTUM = 0.75  # weight of the new gradient step; 0.25 goes to the previous move
FIRST_CHECKPOINT = 0.22  # checkpoints (fractions of the steps): p_1 = 0.22,
SHORTEST_INTERVAL = 0.06  # p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06), in whole steps as
INTERVAL_DECREASE = 0.03  # the reference rounds them


def checkpoint_windows(steps: int) -> list:
    """Per iteration (0-based): the number of steps since the previous checkpoint if the
    step size is reviewed after it, else 0. For 100 steps the reviews follow iterations
    21, 40, 56, 69, 79, 86, 92 and 98."""
    window = max(int(FIRST_CHECKPOINT * steps), 1)
    shortest = max(int(SHORTEST_INTERVAL * steps), 1)
    decrease = max(int(INTERVAL_DECREASE * steps), 1)
    windows, end = [0] * steps, window - 1
    while end < steps:
        windows[end] = window
        window = max(window - decrease, shortest)
        end += window
    return windows


class StepSchedule:
    """APGD's adaptation rule: the step size starts at alpha and halves (the run restarting from
    its best point) at a checkpoint where the loss rose on at most a fraction `rho` of the steps
    since the previous one, or where neither the step size nor the best loss changed since."""

    def __init__(self, steps: int, rho: float):
        self.windows, self.rho = tf.constant(checkpoint_windows(steps), tf.float32), rho

    def start(self, n, alpha, value) -> dict:
        """The schedule's state for n examples at their first loss `value`."""
        return {
            "step": tf.fill([n, 1, 1, 1], alpha),
            "rises": tf.zeros([n]),
            "checked_value": value,
            "halved": tf.ones([n], tf.bool),  # so the first checkpoint judges by the rises alone
        }

    def review(self, i, s, value, best_value):
        """(halve: bool per example, the schedule's next state) after step i, at loss `value`
        (the previous one is s["value"]) and best loss so far `best_value`."""
        rises = s["rises"] + tf.cast(value > s["value"], tf.float32)
        window = self.windows[i]
        review = window > 0
        oscillating = rises <= self.rho * window
        stalled = ~s["halved"] & (s["checked_value"] >= best_value)
        halve = review & (oscillating | stalled)
        return halve, {
            "step": pick(halve, s["step"] / 2.0, s["step"]),
            "rises": tf.where(review, tf.zeros_like(rises), rises),
            "checked_value": tf.where(review, best_value, s["checked_value"]),
            "halved": tf.where(review, halve, s["halved"]),
        }


def _apgd_fn(
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
    rho,
    targeted,
    misclassify,
    compact,
):
    """One APGD run from a random start; alpha is the initial step size. Returns (images,
    success, best objective) per example. Success means on target when `targeted`, unless
    `misclassify` (APGD-T: any wrong class counts). With `compact`, an example leaves the
    batch at its first success (its result is final then: the reference keeps stepping it to
    no effect); without (XLA needs static shapes), every example steps to the end.

    Assembled from the parts of `tfadv.attacks.iterative`: `surface_start`, the objective's
    loss and gradient, `MomentumStep`, and `StepSchedule` with the first success as the
    stopping rule."""
    objective = losses.Objective(classifier_of(model_ref, output), loss, loss_on, targeted)
    step, schedule = iterative.MomentumStep(norm, eps), StepSchedule(steps, rho)

    def succeeded(scores, s):
        if misclassify:
            return tf.not_equal(tf.argmax(scores, axis=-1), s["y"])
        return objective.success(scores, s["y"], s["t"])

    def body(i, s, out):
        weight = tf.where(i > 0, MOMENTUM, 1.0)  # no previous move on the first step
        new = step(s["adv"], s["prev"], s["grad"], s["step"], s["x"], weight)
        scores, value, grad = objective.gradient(new, s["y"], s["t"])
        hit = succeeded(scores, s) & ~s["won"]
        improved = value > s["best_value"]  # the best (highest-loss) iterate and its gradient
        best, best_grad = pick(improved, new, s["best"]), pick(improved, grad, s["best_grad"])
        best_value = tf.where(improved, value, s["best_value"])
        halve, scheduled = schedule.review(i, s, value, best_value)
        s = dict(
            s,
            **scheduled,
            adv=pick(halve, best, new),  # a halving restarts from the best iterate
            prev=s["adv"],
            grad=pick(halve, best_grad, grad),
            value=value,
            best=best,
            best_grad=best_grad,
            best_value=best_value,
            won=s["won"] | hit,
            found=pick(hit, new, s["found"]),
        )
        return (
            (i + 1, *core.drop_finished(s, out, s["won"], _recorded))
            if compact
            else (i + 1, s, out)
        )

    start = iterative.surface_start(x, eps, seeds, norm)
    n = tf.shape(x)[0]
    state = {"x": x, "y": y, "t": t, "rows": tf.range(tf.cast(n, tf.int64))}
    scores, value, grad = objective.gradient(start, y, t)
    state.update(
        schedule.start(n, alpha, value),
        adv=start,
        prev=start,
        grad=grad,
        value=value,
        best=start,
        best_grad=grad,
        best_value=value,
        won=succeeded(scores, state),
        found=start,
    )
    out = {"images": x, "won": tf.zeros([n], tf.bool), "value": value}
    if compact:
        state, out = core.drop_finished(state, out, state["won"], _recorded)

    def cond(i, s, out):
        return (i < steps) & tf.reduce_any(~s["won"])  # with compact, False once the batch is empty

    _, state, out = tf.while_loop(cond, body, (tf.constant(0), state, out))
    out = _recorded(out, state)
    return out["images"], out["won"], out["value"]


def _recorded(out, s):
    """The run's outputs with the examples of `s` written in at their `rows`: the first
    success, else the best point."""
    return {
        "images": core.write_rows(out["images"], s["rows"], pick(s["won"], s["found"], s["best"])),
        "won": core.write_rows(out["won"], s["rows"], s["won"]),
        "value": core.write_rows(out["value"], s["rows"], s["best_value"]),
    }


def _check_rho(rho) -> float:
    if isinstance(rho, bool) or not isinstance(rho, numbers.Real) or not 0 < rho < 1:
        raise ValueError(f"Expected rho to be a number in (0, 1). Received: rho={rho!r}")
    return float(rho)


def _predicted(clf, x, jit_compile):
    return tf.argmax(logits_of(clf, x, jit_compile=jit_compile), axis=-1)


def _checked(model, images, labels, eps, norm, steps, rho, loss, loss_on):
    """The shared argument checks of `apgd` and `apgd_targeted`."""
    norm = norms.get(norm)
    steps = checks.check_positive_int("steps", steps)
    rho, loss = _check_rho(rho), losses.get(loss)
    clf, x, y = core.prepare(model, images, labels, eps, norm)
    losses.check_loss_on(clf, loss_on)
    return norm, steps, rho, loss, clf, x, y


def apgd(
    model,
    images,
    labels,
    eps,
    *,
    steps=100,
    restarts=1,
    norm="inf",
    loss="ce",
    loss_on="logits",
    rho=0.75,
    target=None,
    seed=None,
    jit_compile="auto",
) -> tf.Tensor:
    """Auto-PGD: `restarts` APGD runs of `steps` iterations (one gradient each), each from a
    random point on the eps-ball's surface; each restart attacks only the examples still
    unbroken.

    Args:
        model: any classifier `tfadv.models.as_classifier` accepts.
        images: float (N, H, W, C) in [0, 1].
        labels: int (N,) true classes.
        eps: budget, pixel scale (L-inf: per pixel value, at most 1; L2: over the whole image).
        steps: iterations per restart (>= 1); the step size is reviewed at 22%, 41%, 57%, ...
        restarts: runs (>= 1); later runs only on examples not yet broken.
        norm: "inf" (sign steps) or "2" (normalised-gradient steps, projected onto the L2
            ball, then clipped to [0, 1]).
        loss: "ce" (APGD-CE), "dlr" (APGD-DLR, needs >= 3 classes), "margin", "ce_t" or a
            callable (see `tfadv.attacks.losses`).
        loss_on: "logits" or "probabilities".
        rho: halve the step at a checkpoint when the loss rose on at most this fraction of
            the steps since the previous one, in (0, 1).
        target: None (untargeted: success = misclassified) or a target (see
            `tfadv.attacks.targets`; success = predicted as the target, the loss is
            `Loss.targeted`: for "dlr" the targeted DLR, which needs >= 4 classes).
        seed: None, an int, a pair or per-image seeds (N, 2) (see
            `tfadv.attacks.randomness.per_image`): each image's draws depend on its seed only.
        jit_compile: "auto", "true", "false" or a bool.

    Returns:
        float32 (N, H, W, C) in the eps-ball and [0, 1], no gradient: per example the first
        successful iterate, else the highest-loss one; x itself when x already succeeds.
    """
    restarts = checks.check_positive_int("restarts", restarts)
    norm, steps, rho, loss, clf, x, y = _checked(
        model, images, labels, eps, norm, steps, rho, loss, loss_on
    )
    if x.shape[0] == 0:
        return tf.stop_gradient(x)
    seeds = core.seeds_for(seed, x)
    chosen = core.resolve_targets(clf, x, y, target, seeds, jit_compile)
    targets = y if chosen is None else chosen
    predicted = _predicted(clf, x, jit_compile)
    won = tf.not_equal(predicted, y) if chosen is None else tf.equal(predicted, chosen)
    attack = core.compiled_attack(
        clf,
        _apgd_fn,
        x,
        jit_compile,
        loss=loss,
        loss_on=loss_on,
        norm=norm,
        steps=steps,
        rho=rho,
        targeted=chosen is not None,
        misclassify=False,
        compact=not devices.resolve_jit_compile(jit_compile),
    )
    eps = checks.to_scalar(eps)
    adv = best_over_runs(attack, x, y, [targets] * restarts, eps, INITIAL_STEP * eps, seeds, won)
    return tf.stop_gradient(adv)


def apgd_targeted(
    model,
    images,
    labels,
    eps,
    *,
    steps=100,
    n_targets=9,
    norm="inf",
    loss="dlr",
    loss_on="logits",
    rho=0.75,
    seed=None,
    jit_compile="auto",
) -> tf.Tensor:
    """APGD-T: one APGD run toward each of the clean image's 2nd, ..., (n_targets + 1)-th
    most likely classes (by logits), each from its own random start and only on examples no
    earlier target broke. Success is misclassification (any wrong class), as in AutoAttack.

    Args:
        steps: iterations per target (>= 1).
        n_targets: targets per example (>= 1), clipped to num_classes - 1.
        loss: raised toward each target with `Loss.targeted`; "dlr" is the targeted DLR,
            -(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2), undefined with fewer than 4
            classes: there the targeted margin z_t - max_{j != t} z_j is used instead.
        Others as in `apgd`.

    Returns:
        float32 (N, H, W, C) in the eps-ball and [0, 1], no gradient: per example the first
        misclassified result over the targets, else the one with the highest objective.
    """
    n_targets = checks.check_positive_int("n_targets", n_targets)
    norm, steps, rho, loss, clf, x, y = _checked(
        model, images, labels, eps, norm, steps, rho, loss, loss_on
    )
    if x.shape[0] == 0:
        return tf.stop_gradient(x)
    seeds = core.seeds_for(seed, x)
    runs, classes, won = other_classes(clf, x, y, n_targets, "apgd_targeted", jit_compile)
    if loss is losses.DLR and classes < 4:
        loss = losses.MARGIN
    attack = core.compiled_attack(
        clf,
        _apgd_fn,
        x,
        jit_compile,
        loss=loss,
        loss_on=loss_on,
        norm=norm,
        steps=steps,
        rho=rho,
        targeted=True,
        misclassify=True,
        compact=not devices.resolve_jit_compile(jit_compile),
    )
    eps = checks.to_scalar(eps)
    return tf.stop_gradient(best_over_runs(attack, x, y, runs, eps, INITIAL_STEP * eps, seeds, won))
