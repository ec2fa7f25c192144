"""Callbacks for adversarial training: the eps schedule and the per-epoch adversarial copy.

Values they add to the epoch logs ("eps", "regeneration_seconds") reach TensorBoard when they
come before Keras' TensorBoard callback in the list.
"""

import time

import keras

from tfadv.defenses import adversarial_training as adversarial
from tfadv.runtime import validation


def _read(variable) -> float:
    return float(keras.ops.convert_to_numpy(variable))


class EpsSchedule(keras.callbacks.Callback):
    """Sets an eps variable at the start of every epoch: warm-up at 0, then a linear ramp.

    See `tfadv.defenses.eps_at` for the values. Adds "eps" to the epoch logs.

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
                f"Expected warmup_epochs, ramp_epochs >= 0. Received: {warmup_epochs!r}, "
                f"{ramp_epochs!r}"
            )
        validation.check_eps(eps, at_most=1.0)
        self.variable = variable
        self.eps = float(eps)
        self.warmup_epochs = int(warmup_epochs)
        self.ramp_epochs = int(ramp_epochs)

    def on_epoch_begin(self, epoch, logs=None):
        self.variable.assign(
            adversarial.eps_at(epoch, self.eps, self.warmup_epochs, self.ramp_epochs)
        )

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["eps"] = _read(self.variable)


class RegenerateAdversarialCopy(keras.callbacks.Callback):
    """At the start of every epoch, rewrites a TrainingSetWithCopy's copy with adversarial
    versions of a fresh random subset of the clean images, crafted against the current weights.

    With eps 0 (warm-up) the copy holds the clean images. Adds "regeneration_seconds"
    to the epoch logs.

    Args:
        training_set: the `TrainingSetWithCopy` passed to fit.
        attack: an `tfadv.attacks.Attack`.
        eps_variable: scalar variable holding the budget in force (pixel scale).
        classifier: model attacked; default: the model being fit.
        batch_size: attack batch size.
        seed: seeds the subset drawn each epoch and the attack's random draws: epoch e
            uses (seed, e), so a resumed run regenerates the copy it had.
        strategy: the tf.distribute strategy the classifier was built under; with several
            replicas each attacks its share of the copy (see `generate_per_replica`).
    """

    def __init__(
        self,
        training_set,
        attack,
        eps_variable,
        classifier=None,
        batch_size=256,
        seed=0,
        strategy=None,
    ):
        super().__init__()
        validation.check_eps(eps_variable, at_most=1.0)
        validation.check_batch_size(batch_size)
        self.training_set = training_set
        self.attack = attack
        self.eps_variable = eps_variable
        self.classifier = classifier
        self.batch_size = batch_size
        self.seed = seed
        self.strategy = strategy
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
            images = self._generate(model, images, labels, eps, seed=(self.seed, epoch))
        self.training_set.set_copy(images, labels)
        self.seconds = time.time() - start

    def _generate(self, model, images, labels, eps, seed):
        if self.strategy is None:
            return adversarial.generate(
                model, self.attack, images, labels, eps, self.batch_size, seed=seed
            )
        return adversarial.generate_per_replica(
            self.strategy, model, self.attack, images, labels, eps, self.batch_size, seed=seed
        )

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["regeneration_seconds"] = self.seconds
