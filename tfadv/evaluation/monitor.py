"""Robust accuracy during training: a Keras callback, with its own evaluation attack.

Logs "val_robust_accuracy" (adversarial accuracy of a fixed validation subset) and
"val_robust_subset_accuracy" (the subset's clean accuracy) every epoch; TensorBoard's
callback shows them as "robust_accuracy" / "robust_subset_accuracy" under validation when
this callback comes first. Also writes a grid of the scored adversarial examples as a
TensorBoard image.
"""

import os

import keras
import numpy as np
import tensorflow as tf

from tfadv import attacks
from tfadv.evaluation import plots


def _read(value) -> float:
    return float(keras.ops.convert_to_numpy(value))


class RobustMonitor(keras.callbacks.Callback):
    """Each epoch end: robust accuracy on a fixed validation subset under `attack` at the eps
    in force, into the logs, and a grid of the first adversarial examples in TensorBoard.

    The evaluation attack is separate from the training attack (a stronger one, e.g.
    PGD-10 with the margin loss, shows what the training attack may not).

    Args:
        classifier: the model being trained (attacked in inference mode).
        images: float32 validation images in [0, 1] (the fixed subset).
        labels: their int labels.
        attack: an `tfadv.attacks.Attack` (a fixed seed makes epochs comparable).
        eps_variable: scalar variable (or float) with the eps in force.
        log_dir: folder for the image summaries (e.g. logs/<stage>/images); None: no images.
        grid_size: examples in the image grid.
        batch_size: attack batch size.
        class_names: for the grid's captions.
    """

    def __init__(
        self,
        classifier,
        images,
        labels,
        attack,
        eps_variable,
        log_dir=None,
        grid_size=8,
        batch_size=256,
        class_names=None,
    ):
        super().__init__()
        if len(images) == 0:
            raise ValueError("Expected at least one validation image. Received: 0 images")
        attacks.checks.check_eps(eps_variable, "eps_variable", at_most=1.0)
        self.classifier = classifier
        self.images = np.asarray(images, np.float32)
        self.labels = np.asarray(labels)
        self.attack = attacks.get(attack)
        self.eps_variable = eps_variable
        self.grid_size = grid_size
        self.batch_size = batch_size
        self.log_dir = log_dir
        self.class_names = class_names
        self._writer = None

    def on_epoch_end(self, epoch, logs=None):
        eps = _read(self.eps_variable)
        result = attacks.run_attack(
            self.classifier,
            (self.images, self.labels),
            self.attack,
            eps,
            batch_size=self.batch_size,
        )
        summary = result.summary()
        if logs is not None:
            logs["val_robust_accuracy"] = summary["adversarial_accuracy"]
            logs["val_robust_subset_accuracy"] = summary["clean_accuracy"]
        if self.log_dir and self.grid_size:
            self._write_grid(epoch, eps, result)

    def _write_grid(self, epoch, eps, result):
        n = min(self.grid_size, len(result))
        fig = plots.example_grid(
            self.images[:n],
            result.adversarial[:n],
            result.labels[:n],
            result.clean_predictions[:n],
            result.adversarial_predictions[:n],
            self.class_names,
            title=f"{self.attack.describe()} eps={eps:.4g}",
        )
        if self._writer is None:
            os.makedirs(self.log_dir, exist_ok=True)
            self._writer = tf.summary.create_file_writer(self.log_dir)
        with self._writer.as_default():
            tf.summary.image("adversarial_examples", plots.to_array(fig), step=epoch)
        self._writer.flush()

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.close()
            self._writer = None
