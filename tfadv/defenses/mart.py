"""MART (Wang et al. 2020): misclassification-aware adversarial training.

    trainer = MartTrainer(classifier, "pgd(steps=10)", eps=8 / 255, beta=6.0)
    trainer.compile(optimizer="adam")
    trainer.fit(train_ds)

Per example, with p = f(x), p' = f(x') (training mode) and x' from the `attack` value (the
inner maximisation raises the cross-entropy, e.g. PGD), as the reference code computes it:

    BCE  = CE(p', y) - log(1.0001 - p'_k + 1e-12),   k = argmax_{j != y} p'_j
    KL   = sum_j p_j (log p_j - log(p'_j + 1e-12))
    loss = BCE + beta * KL * (1.0000001 - p_y)

The boosted cross-entropy also pushes down the strongest wrong class; the KL term weighs most
the examples the classifier gets wrong on clean data. Cost per batch: the attack plus a training
pass over x and x'.
"""

import keras
import tensorflow as tf

from tfadv.defenses.trades import RobustLossTrainer

MARGIN_OFFSET = 1.0001  # the reference code's constants
LOG_FLOOR = 1e-12
WEIGHT_OFFSET = 1.0000001


def mart_loss(clean_log_probs, adversarial_log_probs, labels, beta):
    """Per-example MART loss from log-probabilities of the clean and the adversarial batch."""
    labels = tf.cast(labels, tf.int32)
    adversarial = tf.exp(adversarial_log_probs)
    clean = tf.exp(clean_log_probs)
    is_label = tf.one_hot(labels, tf.shape(adversarial)[-1], on_value=True, off_value=False)
    best_other = tf.reduce_max(
        tf.where(is_label, tf.constant(-1.0, adversarial.dtype), adversarial), axis=-1
    )
    boosted = -tf.gather(adversarial_log_probs, labels, batch_dims=1) - tf.math.log(
        MARGIN_OFFSET - best_other + LOG_FLOOR
    )
    kl = tf.reduce_sum(clean * (clean_log_probs - tf.math.log(adversarial + LOG_FLOOR)), axis=-1)
    weight = WEIGHT_OFFSET - tf.gather(clean, labels, batch_dims=1)
    return boosted + tf.cast(beta, kl.dtype) * kl * weight


@keras.saving.register_keras_serializable(package="tfadv")
class MartTrainer(RobustLossTrainer):
    """MART training of `classifier` (see the module docstring); the paper's beta is 6.

    `attack` is the inner maximisation (any training attack, e.g. 'pgd(steps=10)'), run against
    the current weights in inference mode. Other arguments as in `RobustLossTrainer`.
    """

    def adversarial_examples(self, x, y):
        seed = self.step_seed()
        options = {"seed": seed} if seed is not None and self.attack.takes_seed else {}
        return self.attack(self.classifier, x, y, self.eps.value, **options)

    def per_example_loss(self, clean_log_probs, adversarial_log_probs, labels):
        return mart_loss(clean_log_probs, adversarial_log_probs, labels, self.beta)
