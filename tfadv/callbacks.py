"""Callbacks for adversarial training: the eps schedule, per-epoch regeneration, monitoring.

Values they add to the epoch logs reach TensorBoard when they come before Keras'
TensorBoard callback in the list (`tfadv.training.fit` puts extra callbacks first):
"eps" (the budget in force), "val_robust_accuracy" and "val_robust_subset_accuracy"
(the clean accuracy of the same validation subset).
"""

import os
import time

import keras
import numpy as np
import tensorflow as tf

from tfadv import adversarial, evaluate


def _read(variable) -> float:
    return float(keras.ops.convert_to_numpy(variable))


class EpsSchedule(keras.callbacks.Callback):
    """Sets an eps variable at the start of every epoch: warm-up at 0, then a linear ramp.

    See `tfadv.adversarial.eps_at` for the values. Adds "eps" to the epoch logs.

    Args:
        variable: scalar variable (keras or tf) the attack reads, e.g. `AdversarialTrainer.eps`.
        eps: final budget, pixel scale.
        warmup_epochs: clean epochs (eps 0) first.
        ramp_epochs: epochs over which eps grows linearly to `eps` after the warm-up.
    """

    def __init__(self, variable, eps, warmup_epochs=0, ramp_epochs=0):
        super().__init__()
        if warmup_epochs < 0 or ramp_epochs < 0:
            raise ValueError(
                f"Expected warmup_epochs, ramp_epochs >= 0. Received: {warmup_epochs!r}, {ramp_epochs!r}"
            )
        self.variable = variable
        self.eps = float(eps)
        self.warmup_epochs = int(warmup_epochs)
        self.ramp_epochs = int(ramp_epochs)

    def on_epoch_begin(self, epoch, logs=None):
        self.variable.assign(adversarial.eps_at(epoch, self.eps, self.warmup_epochs, self.ramp_epochs))

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["eps"] = _read(self.variable)


class RegenerateAdversarialCopy(keras.callbacks.Callback):
    """At the start of every epoch, rewrites a TrainingSetWithCopy's copy with adversarial
    versions of a fresh random subset of the clean images, crafted against the current weights.

    With eps 0 (warm-up) the copy holds the clean images. Adds "regeneration_seconds"
    to the epoch logs.

    Args:
        training_set: the `tfadv.adversarial.TrainingSetWithCopy` passed to fit.
        attack: an AttackSpec.
        eps_variable: scalar variable holding the budget in force (pixel scale).
        classifier: model attacked; default: the model being fit.
        batch_size: attack batch size.
        seed: seeds the subset drawn each epoch.
    """

    def __init__(self, training_set, attack, eps_variable, classifier=None, batch_size=256, seed=0):
        super().__init__()
        self.training_set = training_set
        self.attack = attack
        self.eps_variable = eps_variable
        self.classifier = classifier
        self.batch_size = batch_size
        self.seed = seed
        self.seconds = 0.0

    def on_epoch_begin(self, epoch, logs=None):
        start = time.time()
        clean = self.training_set.clean
        if self.training_set.copy_size == 0:  # the fraction rounded to no image
            return
        fraction = self.training_set.copy_size / len(clean)
        subset = clean.take(adversarial.choose_subset(len(clean), fraction, self.seed, epoch))
        images, labels = subset.float_images(), subset.labels
        eps = _read(self.eps_variable)
        if eps > 0:
            model = self.classifier if self.classifier is not None else self.model
            images = adversarial.generate(model, self.attack, images, labels, eps, self.batch_size)
        self.training_set.set_copy(images, labels)
        self.seconds = time.time() - start

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["regeneration_seconds"] = self.seconds


def image_grid(clean, adversarial_images, eps, columns=8) -> np.ndarray:
    """One (1, 3H, columns*W, C) image: clean row, adversarial row, perturbation row.

    The perturbation row maps [-eps, +eps] to [0, 1] (grey = unchanged).
    """
    clean = np.asarray(clean, np.float32)[:columns]
    adv = np.asarray(adversarial_images, np.float32)[:columns]
    delta = 0.5 + (adv - clean) / (2.0 * eps) if eps > 0 else np.full_like(adv, 0.5)
    rows = [np.concatenate(list(row), axis=1) for row in (clean, adv, np.clip(delta, 0.0, 1.0))]
    return np.concatenate(rows, axis=0)[None]


class RobustMonitor(keras.callbacks.Callback):
    """Each epoch end: robust accuracy on a fixed validation subset under the training attack
    at the eps in force, into the logs, and a grid of current adversarial examples as a
    TensorBoard image.

    Logs "val_robust_accuracy" (adversarial accuracy on the subset) and
    "val_robust_subset_accuracy" (its clean accuracy); TensorBoard's callback shows
    them as "robust_accuracy" / "robust_subset_accuracy" under validation.

    Args:
        classifier: the model being trained (attacked in inference mode).
        images: float32 validation images in [0, 1] (the fixed subset).
        labels: their int labels.
        attack: an AttackSpec (use a fixed seed for comparable epochs).
        eps_variable: scalar variable (or float) with the eps in force.
        log_dir: folder for the image summaries (e.g. logs/<stage>/images); None: no images.
        grid_size: examples in the image grid.
        batch_size: attack batch size.
    """

    def __init__(self, classifier, images, labels, attack, eps_variable, log_dir=None, grid_size=8, batch_size=256):
        super().__init__()
        if len(images) == 0:
            raise ValueError("RobustMonitor needs at least one validation image. Received: 0 images")
        self.classifier = classifier
        self.images = np.asarray(images, np.float32)
        self.labels = np.asarray(labels)
        self.attack = attack
        self.eps_variable = eps_variable
        self.grid_size = grid_size
        self.batch_size = batch_size
        self.log_dir = log_dir
        self._writer = None

    def _eps(self) -> float:
        return _read(self.eps_variable)

    def on_epoch_end(self, epoch, logs=None):
        eps = self._eps()
        result = evaluate.robust_accuracy(
            self.classifier, self.images, self.labels, self.attack.name, eps,
            batch_size=self.batch_size, **self.attack.options,
        )  # fmt: skip
        if logs is not None:
            logs["val_robust_accuracy"] = float(result["adversarial_accuracy"])
            logs["val_robust_subset_accuracy"] = float(result["clean_accuracy"])
        if self.log_dir and self.grid_size:
            self._write_grid(epoch, eps)

    def _write_grid(self, epoch, eps):
        clean = self.images[: self.grid_size]
        adv = self.attack(self.classifier, clean, self.labels[: self.grid_size], eps)
        if self._writer is None:
            os.makedirs(self.log_dir, exist_ok=True)
            self._writer = tf.summary.create_file_writer(self.log_dir)
        with self._writer.as_default():
            tf.summary.image(
                "adversarial_examples",
                image_grid(clean, adv, eps, self.grid_size),
                step=epoch,
                description=f"rows: clean, {self.attack.describe()} at eps={eps:.4g}, perturbation (grey = 0)",
            )
        self._writer.flush()

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.close()
            self._writer = None
