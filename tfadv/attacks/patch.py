"""Adversarial patch ("sticker", Brown et al. 2017): one square patch for a whole set of images.

The patch replaces the pixels it covers, so it has no eps budget: its size is the budget.
It is optimised by signed gradient steps on the patch pixels (kept in [0, 1]), each step on
a random minibatch of the images with fresh random positions when positions="random"
(expectation over transformations), untargeted (raise the loss of the true classes) or
toward one target class for every image.
"""

import numbers
from typing import NamedTuple

import numpy as np
import tensorflow as tf

from tfadv.attacks import checks, losses, norms
from tfadv.attacks.checks import LABELS_SPEC, SCALAR_SPEC, SEED_SPEC
from tfadv.attacks.core import classifier_of, compiled, prepare


class PatchResult(NamedTuple):
    """images: (N, H, W, C) patched; patch: (size, size, C); positions: int32 (N, 2) top-left
    (row, column)."""

    images: tf.Tensor
    patch: tf.Tensor
    positions: tf.Tensor


def random_positions(n, image_shape, size, seed) -> tf.Tensor:
    """Uniform top-left corners (row, column), int32 (n, 2), for a size x size patch."""
    limits = tf.constant([image_shape[0] - size + 1, image_shape[1] - size + 1], tf.int32)
    return (
        tf.random.stateless_uniform(
            tf.stack([n, 2]), seed, minval=0, maxval=tf.int32.max, dtype=tf.int32
        )
        % limits
    )


def paste(images, patch, positions):
    """`images` with `patch` pasted at `positions` (int32 (N, 2) top-left corners); differentiable
    in patch."""
    size = patch.shape[0]
    n = tf.shape(images)[0]
    offsets = tf.stack(
        tf.meshgrid(tf.range(size), tf.range(size), indexing="ij"), axis=-1
    )  # (s, s, 2)
    where = positions[:, None, None, :] + offsets[None]  # (N, s, s, 2)
    image = tf.broadcast_to(tf.range(n)[:, None, None, None], [n, size, size, 1])
    indices = tf.reshape(tf.concat([image, where], axis=-1), [-1, 3])
    updates = tf.reshape(tf.broadcast_to(patch[None], [n, *patch.shape]), [-1, patch.shape[-1]])
    return tf.tensor_scatter_nd_update(images, indices, updates)


def _positions(positions, n, image_shape, size, seed):
    if positions is None:
        return random_positions(n, image_shape, size, seed)
    return tf.broadcast_to(positions, [n, 2])


def _train_patch_fn(
    x,
    y,
    t,
    step_size,
    seed,
    start,
    fixed,
    *,
    model_ref,
    output,
    steps,
    batch_size,
    loss,
    loss_on,
    targeted,
    random,
):
    """`y` holds the true labels, `t` the targets (used when `targeted`)."""
    objective = losses.Objective(classifier_of(model_ref, output), loss, loss_on, targeted)
    n = tf.shape(x)[0]
    size = start.shape[0]

    def body(i, patch):
        s = checks.split_seed(checks.fold_seed(seed, i), 2)
        batch = tf.random.stateless_uniform([batch_size], s[0], minval=0, maxval=n, dtype=tf.int32)
        positions = (
            random_positions(batch_size, x.shape[1:], size, s[1])
            if random
            else tf.gather(fixed, batch)
        )
        with tf.GradientTape(watch_accessed_variables=False) as tape:
            tape.watch(patch)
            scores = objective.scores(paste(tf.gather(x, batch), patch, positions))
            value = tf.reduce_sum(objective.value(scores, tf.gather(y, batch), tf.gather(t, batch)))
        return i + 1, norms.clip_pixels(
            patch
            + norms.LINF.step(tape.gradient(value, patch, unconnected_gradients="zero"), step_size)
        )

    return tf.while_loop(lambda i, _: i < steps, body, (tf.constant(0), start))[1]


def _check_positions(positions, n, image_shape, size):
    if isinstance(positions, str):
        checks.check_choice("positions", positions, ("random",))
        return None
    p = np.asarray(positions)
    if not np.issubdtype(p.dtype, np.integer) or p.shape not in ((2,), (n, 2)):
        raise ValueError(
            f"Expected positions 'random', (row, column) or an int array of shape ({n}, 2). "
            f"Received: positions={positions!r}"
        )
    high = np.array([image_shape[0] - size, image_shape[1] - size])
    if (p < 0).any() or (p > high).any():
        raise ValueError(
            f"Expected patch positions in [0, {tuple(high)}] for size {size}. "
            f"Received: positions={positions!r}"
        )
    return tf.constant(p, tf.int32)


def apply_patch(images, patch, positions="random", *, seed=None) -> PatchResult:
    """Pastes a (trained) patch onto images at "random" positions, one (row, column) or (N, 2)
    positions."""
    x = checks.to_images(images)
    patch = checks.to_images(tf.convert_to_tensor(patch)[None])[0]
    n = x.shape[0]
    fixed = _check_positions(positions, n, x.shape[1:], patch.shape[0])
    where = _positions(fixed, n, x.shape[1:], patch.shape[0], checks.to_seed(seed))
    return PatchResult(paste(x, patch, where), patch, where)


def patch(
    model,
    images,
    labels,
    eps=None,
    *,
    size=8,
    positions="random",
    target=None,
    steps=200,
    step_size=2 / 255,
    batch_size=64,
    loss="ce",
    loss_on="logits",
    seed=None,
    jit_compile="auto",
) -> PatchResult:
    """Optimises one square patch over `images` and pastes it on them.

    Args:
        model: any classifier `tfadv.models.as_classifier` accepts.
        images: float (N, H, W, C) in [0, 1]; the patch is trained on these.
        labels: int (N,) true classes.
        eps: must be None: a patch replaces pixels and has no eps budget (shared signature).
        size: patch side in pixels.
        positions: "random" (new uniform positions per image at every step and for the
            result), one (row, column) for every image, or an int (N, 2) array.
        target: None (untargeted) or the class every image is pushed toward.
        steps: signed-gradient steps on the patch.
        step_size: change of each patch value per step (pixel scale).
        batch_size: images per step (drawn at random from `images`).
        loss: "ce", "margin", "dlr", "ce_t" or a callable (see `tfadv.attacks.losses`).
        loss_on: "logits" or "probabilities".
        seed: None, int or pair: minibatches, positions and the initial patch.
    Returns:
        PatchResult(images, patch, positions); use `apply_patch` to paste the patch on other images.
    """
    if eps is not None:
        raise ValueError(
            "A patch replaces the pixels it covers and has no eps budget; "
            f"pass eps=None. Received: eps={eps!r}"
        )
    clf, x, y = prepare(model, images, labels)
    losses.check_loss_on(clf, loss_on)
    height, width = x.shape[1], x.shape[2]
    size = checks.check_positive_int("size", size)
    if size > min(height, width):
        raise ValueError(
            f"Expected size <= {min(height, width)} (the image side). Received: size={size}"
        )
    steps = checks.check_positive_int("steps", steps)
    batch_size = checks.check_positive_int("batch_size", batch_size)
    checks.check_eps(step_size, "step_size")
    n = x.shape[0]
    fixed = _check_positions(positions, n, (height, width), size)
    if target is not None:
        classes = clf.num_classes
        if (
            isinstance(target, bool)
            or not isinstance(target, numbers.Integral)
            or target < 0
            or (classes and target >= classes)
        ):
            raise ValueError(
                f"Expected target None or a class id in [0, {classes}). Received: target={target!r}"
            )
    t = y if target is None else tf.fill(tf.shape(y), tf.constant(int(target), tf.int64))
    seeds = checks.split_seed(checks.to_seed(seed), 3)
    start = tf.random.stateless_uniform([size, size, x.shape[-1]], seeds[0])
    signature = [
        checks.image_spec(x),
        LABELS_SPEC,
        LABELS_SPEC,
        SCALAR_SPEC,
        SEED_SPEC,
        tf.TensorSpec([size, size, x.shape[-1]], tf.float32),
        tf.TensorSpec([None, 2], tf.int32),
    ]
    train = compiled(
        clf,
        _train_patch_fn,
        signature,
        jit_compile,
        steps=steps,
        batch_size=batch_size,
        loss=losses.get(loss),
        loss_on=loss_on,
        targeted=target is not None,
        random=fixed is None,
    )
    fixed_or_dummy = tf.zeros([0, 2], tf.int32) if fixed is None else tf.broadcast_to(fixed, [n, 2])
    trained = tf.stop_gradient(
        train(x, y, t, checks.to_scalar(step_size), seeds[1], start, fixed_or_dummy)
    )
    where = _positions(fixed, n, (height, width), size, seeds[2])
    return PatchResult(paste(x, trained, where), trained, where)
