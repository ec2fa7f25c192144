"""Saliency maps: |d logit_c / d x|, the largest over the colour channels (Simonyan et al. 2014).

    maps = saliency(model, images)                  # (N, H, W) for each image's predicted class
    maps = saliency(model, images, classes=labels)  # for given classes

The score is the logit (the unnormalised class score beneath the softmax), found by
`tfadv.models.as_classifier`, so any classifier the attacks accept works. One compiled
function per model; batch size and classes never retrace.
"""

import numpy as np
import tensorflow as tf

from tfadv.attacks.core import classifier_of, compiled
from tfadv.data.batching import map_batches
from tfadv.models import as_classifier
from tfadv.runtime import tensors, validation
from tfadv.runtime.tensors import LABELS_SPEC

PREDICTED = -1  # class id meaning "the class the model predicts for this image"


def _saliency_fn(x, classes, *, model_ref, output):
    clf = classifier_of(model_ref, output)
    with tf.GradientTape(watch_accessed_variables=False) as tape:
        tape.watch(x)
        logits = clf.logits(x)
        chosen = tf.where(classes < 0, tf.argmax(logits, axis=-1), classes)
        score = tf.reduce_sum(tf.gather(logits, chosen, batch_dims=1))  # images are independent
    grad = tape.gradient(score, x, unconnected_gradients=tf.UnconnectedGradients.ZERO)
    return tf.reduce_max(tf.abs(grad), axis=-1), chosen


def prepare(model, images, classes, name="classes"):
    """(Classifier, float32 images tensor, int64 classes with -1 for "predicted") checked."""
    clf = as_classifier(model)
    x = validation.to_images(images, clf.input_shape)
    clf.ensure_built(x)
    if classes is None:
        return clf, x, tf.fill(tf.shape(x)[:1], tf.constant(PREDICTED, tf.int64))
    return clf, x, validation.to_labels(classes, x, clf.num_classes, name=name)


def saliency(
    model, images, classes=None, *, batch_size: int = 256, jit_compile="auto", return_classes=False
):
    """Absolute gradient of the class logit w.r.t. the input, max over colour channels.

    Args:
        model: any classifier `tfadv.models.as_classifier` accepts.
        images: float (N, H, W, C) in [0, 1].
        classes: int (N,) class per image; None: each image's predicted class.
        batch_size: images per compiled call.
        jit_compile: "auto" | "true" | "false" (XLA).
        return_classes: also return the int64 (N,) classes used.

    Returns:
        float32 (N, H, W) NumPy array in logit units per pixel-value unit (and the classes).
    """
    clf, x, c = prepare(model, images, classes)
    fn = compiled(clf, _saliency_fn, [tensors.image_spec(x), LABELS_SPEC], jit_compile)
    used = []

    def run(xb, cb):
        maps, chosen = fn(xb, cb)
        used.append(chosen.numpy())
        return maps

    maps = map_batches(run, x.numpy(), c.numpy(), batch_size=batch_size).astype(
        np.float32, copy=False
    )
    return (maps, np.concatenate(used)) if return_classes else maps
