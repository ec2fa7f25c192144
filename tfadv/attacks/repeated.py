"""Running an attack several times (restarts, or one run per target class) and keeping, per
image, the first success or else the highest objective; the target classes of such runs.

    runs, classes, won = other_classes(clf, x, y, n_targets, "apgd_targeted", jit)
    adv = best_over_runs(attack, x, y, runs, eps, alpha, seeds, won)

Used by APGD (restarts), APGD-T and FAB-T (one run per target). Each run sees only the images
no earlier run has broken, and folds the run's number into each image's seed, so an image's
outcome does not depend on which other images share its batch.
"""

import math

import tensorflow as tf

from tfadv.attacks import checks, core, randomness
from tfadv.attacks.iterative import pick
from tfadv.models.adapter import logits_of


def best_over_runs(attack, x, y, run_targets, eps, alpha, seed, won):
    """Calls the compiled `attack(x, y, targets, eps, alpha, seeds)` -> (images, success, value)
    once per entry of `run_targets`, each time only on the examples no run has broken yet
    (`won`: broken before the first run), each image with its seed folded with the run (`seed`:
    per-image seeds (N, 2) or any seed `core.seeds_for` accepts); `alpha` is one value or
    one per run. Keeps each example's first success, else its highest objective; examples
    broken before the first run stay x."""
    seeds = core.seeds_for(seed, x)
    state = (x, tf.fill(tf.shape(y), tf.constant(-math.inf)), won)
    alphas = alpha if isinstance(alpha, (list, tuple)) else [alpha] * len(run_targets)
    for run, (targets, alpha) in enumerate(zip(run_targets, alphas, strict=True)):
        todo = tf.where(~state[2])[:, 0]
        if checks.is_concrete(todo) and todo.shape[0] == 0:
            break
        run_seeds, alpha = randomness.fold(seeds, run), checks.to_scalar(alpha)

        def one_run(state=state, todo=todo, targets=targets, alpha=alpha, run_seeds=run_seeds):
            adv, best_value, won = state
            take = lambda values: tf.gather(values, todo)  # noqa: E731
            run_adv, run_won, run_value = attack(
                take(x), take(y), take(targets), eps, alpha, take(run_seeds)
            )
            better = run_won | (run_value > take(best_value))
            rows = todo[:, None]
            return (
                tf.tensor_scatter_nd_update(adv, rows, pick(better, run_adv, take(adv))),
                tf.tensor_scatter_nd_update(
                    best_value, rows, tf.where(better, run_value, take(best_value))
                ),
                tf.tensor_scatter_nd_update(won, rows, run_won),
            )

        # inside a graph: skip the run when nothing is left (models may fail on empty batches)
        state = tf.cond(tf.size(todo) > 0, one_run, lambda state=state: state)
    return state[0]


def other_classes(clf, x, y, n_targets: int, name: str, jit_compile):
    """For targeted runs: the clean images' 2nd, ..., (n_targets + 1)-th most likely classes (by
    logits; n_targets clipped to classes - 1) as a list of int64 (N,) targets, the number of
    classes, and which images are misclassified already (bool (N,))."""
    logits = logits_of(clf, x, jit_compile=jit_compile)
    classes = logits.shape[-1]
    if classes < 2:
        raise ValueError(f"{name} needs a model with >= 2 classes. Received: {classes} classes")
    ranked = tf.cast(tf.math.top_k(logits, k=min(n_targets, classes - 1) + 1).indices, tf.int64)
    return (
        [ranked[:, k] for k in range(1, ranked.shape[1])],
        classes,
        tf.not_equal(tf.argmax(logits, axis=-1), y),
    )
