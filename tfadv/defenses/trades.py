"""TRADES (Zhang et al. 2019): clean cross-entropy plus beta times the KL divergence between the
predictions on the clean image and on its adversarial neighbour.

    trainer = TradesTrainer(classifier, "pgd(steps=10)", eps=8 / 255, beta=6.0)
    trainer.compile(optimizer="adam")
    trainer.fit(train_ds, callbacks=[EpsSchedule(trainer.eps, 8 / 255)])
    # trainer.classifier is the trained model.

Per example, with p = f(x) and p' = f(x') the classifier's probabilities (training mode):

    loss = CE(p, y) + beta * KL(p || p'),     KL(p || p') = sum_j p_j (log p_j - log p'_j)

The inner maximisation raises KL(f(x) || f(x')) over the eps-ball of the attack's norm (L-inf
or L2; inference mode, f(x) fixed): from x + 0.001 * N(0, 1) (the reference code's start),
`steps` steepest-ascent steps of size alpha (signed gradient for L-inf, normalised gradient for
L2), each projected into the ball and [0, 1]. Its steps and alpha are those of the
`attack` value (a 'pgd' spec; alpha defaults to eps * min(1, 2.5 / steps)). Cost per batch:
one inference forward pass (f(x)), `steps` forward-backward passes, and a training pass over
x and x' (two forward-backward passes of the batch).

`RobustLossTrainer` is the base TRADES and MART share: the classifier, the attack budget in a
variable, per-step seeds, AWP (`awp_gamma`), the validation step and serialisation.
"""

import keras
import numpy as np
import tensorflow as tf

from tfadv import attacks, models
from tfadv.attacks import norms
from tfadv.attacks.iterative import PGD_ALPHA_FACTOR
from tfadv.defenses import awp, trainer_config
from tfadv.defenses.reduction import weighted_mean
from tfadv.defenses.train_steps import OneNetworkSteps

START_STDDEV = 0.001  # the TRADES reference code's random start: x + 0.001 * N(0, 1)
UNROLLED_STEPS = (
    20  # up to this many inner steps the loop is unrolled in the graph (as the attacks do)
)


def kl_divergence(log_p, log_q):
    """Per-example KL(p || q) = sum_j p_j (log p_j - log q_j) from log-probabilities
    (N, classes)."""
    return tf.reduce_sum(tf.exp(log_p) * (log_p - log_q), axis=-1)


def trades_loss(clean_log_probs, adversarial_log_probs, labels, beta):
    """Per-example TRADES loss: CE(f(x), y) + beta * KL(f(x) || f(x'))
    (inputs: log-probabilities)."""
    labels = tf.cast(labels, tf.int32)
    natural = -tf.gather(clean_log_probs, labels, batch_dims=1)
    return natural + tf.cast(beta, clean_log_probs.dtype) * kl_divergence(
        clean_log_probs, adversarial_log_probs
    )


def training_network(classifier):
    """(network, to_log_probabilities): a Keras model sharing the classifier's weights that can
    run in training mode, and the map from its outputs to log-probabilities.

    A classifier ending in TemperatureSoftmax: its logits z, mapped to log_softmax(z / T); one
    whose output the adapter takes as logits: log_softmax of it; one that outputs probabilities
    from another softmax: log of them clipped to [1e-7, 1] (as Keras' cross-entropy does).
    """
    if not isinstance(classifier, keras.Model):
        raise ValueError(
            f"Expected the classifier to be a Keras model (it is trained). Received: {classifier!r}"
        )
    clf = models.as_classifier(classifier)
    if clf.logits_source == "temperature_softmax":
        layer = models.softmax_layer(classifier)
        return models.logits_model(classifier), lambda z: tf.nn.log_softmax(
            z / tf.cast(layer.temperature, z.dtype)
        )
    if clf.output == "logits":
        return classifier, lambda z: tf.nn.log_softmax(z, axis=-1)
    return classifier, lambda p: tf.math.log(tf.clip_by_value(p, 1e-7, 1.0))


class RobustLossTrainer(OneNetworkSteps):
    """Base of trainers whose loss takes the clean and the adversarial batch (TRADES, MART).

    Subclasses give `adversarial_examples(x, y)` (stop-gradient, the inner maximisation) and
    `per_example_loss(clean_log_probs, adversarial_log_probs, labels)`. Train metrics: loss,
    accuracy (clean batch, training mode), adversarial_accuracy; validation: loss (clean
    cross-entropy) and accuracy. Compile with an optimizer only.

    Args:
        classifier: the Keras model being trained (any classifier `tfadv.models.as_classifier`
            takes; see `training_network`).
        attack: the inner maximisation, an `tfadv.attacks.Attack`, a name or a spec string.
        eps: initial attack budget, pixel scale, in the variable `self.eps` (0: x' = x).
        beta: weight of the robust term (>= 0).
        awp_gamma: relative size of the adversarial weight perturbation (0: none); it lives in
            the variable `self.awp_gamma` (`tfadv.defenses.AwpSchedule` sets it per epoch).
        seed: None or an int: the random draws of training step k on replica r come from
            (seed, k, r), so a resumed run repeats them.
    """

    def __init__(
        self, classifier, attack="pgd", eps=0.03, beta=6.0, awp_gamma=0.0, seed=None, **kwargs
    ):
        super().__init__(**kwargs)
        attacks.checks.check_eps(eps, at_most=1.0)
        beta_value = beta
        if (
            isinstance(beta, bool)
            or not isinstance(beta, (int, float, np.floating))
            or not beta >= 0
        ):
            raise ValueError(f"Expected beta to be a number >= 0. Received: beta={beta_value!r}")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))):
            raise ValueError(f"Expected seed to be None or an int. Received: seed={seed!r}")
        self.classifier = classifier
        self.attack = attacks.get(attack)
        self.beta = float(beta)
        self.awp_size = awp.check_gamma(awp_gamma)
        self.seed = None if seed is None else int(seed)
        self.network, self.to_log_probabilities = training_network(classifier)
        self.eps = self.add_weight(
            name="eps",
            shape=(),
            initializer=keras.initializers.Constant(float(eps)),
            trainable=False,
        )
        self.awp_gamma = None
        if self.awp_size > 0:
            self.awp_gamma = self.add_weight(
                name="awp_gamma",
                shape=(),
                initializer=keras.initializers.Constant(self.awp_size),
                trainable=False,
            )
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.accuracy_metric = keras.metrics.SparseCategoricalAccuracy(name="accuracy")
        self.adversarial_accuracy = keras.metrics.SparseCategoricalAccuracy(
            name="adversarial_accuracy"
        )
        self.built = True

    @property
    def metrics(self):
        return [self.loss_tracker, self.accuracy_metric, self.adversarial_accuracy]

    def call(self, inputs, training=False):
        return self.classifier(inputs, training=training)

    def trained_network(self):
        return self.network

    def predictions(self, x, training=False):
        return self.to_log_probabilities(self.network(x, training=training))

    def step_seed(self):
        """(2,) int64 seed from (seed, training step, replica), or None when unseeded."""
        if self.seed is None:
            return None
        step = self.optimizer.iterations if self.optimizer is not None else 0
        step = tf.cast(attacks.checks.unwrap_variable(step), tf.int64)
        replica = tf.distribute.get_replica_context()
        replica_id = replica.replica_id_in_sync_group if replica is not None else 0
        seed = attacks.checks.to_seed((tf.constant(self.seed, tf.int64), step))
        return attacks.checks.fold_seed(seed, tf.cast(replica_id, tf.int64))

    def adversarial_examples(self, x, y):
        raise NotImplementedError

    def per_example_loss(self, clean_log_probs, adversarial_log_probs, labels):
        raise NotImplementedError

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """The batch loss (replica-local weighted mean); y_pred = (clean, adversarial)
        log-probabilities.

        Touches no metric (AWP evaluates it twice per step)."""
        clean, adversarial = y_pred
        return weighted_mean(self.per_example_loss(clean, adversarial, y), sample_weight)

    def train_step(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        eps = self.eps.value
        x_adv = tf.cond(eps > 0.0, lambda: self.adversarial_examples(x, y), lambda: tf.identity(x))
        outputs = {}

        def loss_fn(forward):
            clean = self.to_log_probabilities(forward(x))
            adversarial = self.to_log_probabilities(forward(x_adv))
            outputs.update(
                clean=clean, adversarial=adversarial
            )  # the last call is the training pass
            return self.compute_loss(x, y, (clean, adversarial), sample_weight)

        loss = awp.train_step(self.network, self.optimizer, loss_fn, self.awp_gamma)
        self.loss_tracker.update_state(loss)
        self.accuracy_metric.update_state(y, outputs["clean"], sample_weight=sample_weight)
        self.adversarial_accuracy.update_state(
            y, outputs["adversarial"], sample_weight=sample_weight
        )
        return {m.name: m.result() for m in self.metrics}

    def test_step(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        log_probs = self.predictions(x, training=False)
        labels = tf.cast(y, tf.int32)
        self.loss_tracker.update_state(
            weighted_mean(-tf.gather(log_probs, labels, batch_dims=1), sample_weight)
        )
        self.accuracy_metric.update_state(y, log_probs, sample_weight=sample_weight)
        return {"loss": self.loss_tracker.result(), "accuracy": self.accuracy_metric.result()}

    def get_config(self):
        return {**super().get_config(), **trainer_config.config_of(self, beta=self.beta)}

    @classmethod
    def from_config(cls, config):
        return trainer_config.from_config(cls, config)


def kl_attack(log_probabilities, x, eps, steps: int, alpha, seed=None, norm="inf"):
    """TRADES' inner maximisation: x' in the eps-ball of `norm` ("inf" or "2") around x (and
    [0, 1]) raising KL(f(x) || f(x')), `log_probabilities(images)` being log f in inference mode
    (stop-gradient). eps and alpha in pixel scale (L2: the Euclidean length over all pixels)."""
    norm = norms.get(norm)
    target = tf.stop_gradient(log_probabilities(x))
    noise_shape = tf.shape(x)
    if seed is None:
        noise = tf.random.normal(noise_shape, dtype=x.dtype)
    else:
        noise = tf.random.stateless_normal(noise_shape, seed, dtype=x.dtype)

    def body(adv):
        with tf.GradientTape(watch_accessed_variables=False) as tape:
            tape.watch(adv)
            kl = tf.reduce_sum(kl_divergence(target, log_probabilities(adv)))
        return norms.project(adv + norm.step(tape.gradient(kl, adv), alpha), x, eps, norm)

    adv = norms.project(x + START_STDDEV * noise, x, eps, norm)
    if steps <= UNROLLED_STEPS:
        for _ in range(steps):
            adv = body(adv)
    else:
        adv = tf.while_loop(
            lambda i, _: i < steps, lambda i, a: (i + 1, body(a)), (tf.constant(0), adv)
        )[1]
    return tf.stop_gradient(adv)


@keras.saving.register_keras_serializable(package="tfadv")
class TradesTrainer(RobustLossTrainer):
    """TRADES training of `classifier` (see the module docstring); beta 1 and 6 are the paper's
    points.

    `attack` must be a 'pgd' value: its norm ("inf" or "2"), steps and alpha drive the KL
    maximisation.
    Other arguments as in `RobustLossTrainer`.
    """

    def __init__(
        self, classifier, attack="pgd", eps=0.03, beta=6.0, awp_gamma=0.0, seed=None, **kwargs
    ):
        super().__init__(classifier, attack, eps, beta, awp_gamma, seed, **kwargs)
        options = self.attack.options
        if self.attack.name != "pgd":
            raise ValueError(
                "Expected attack to be a 'pgd' value for TRADES. "
                f"Received: attack={self.attack.describe()!r}"
            )
        self.norm = norms.get(options.get("norm", "inf"))
        self.steps = attacks.checks.check_positive_int(
            "steps", self.attack.info.option(options, "steps")
        )
        self.alpha = options.get("alpha")

    def step_size(self, eps):
        if self.alpha is not None:
            return tf.minimum(tf.cast(self.alpha, eps.dtype), eps)
        return eps * min(1.0, PGD_ALPHA_FACTOR / self.steps)

    def adversarial_examples(self, x, y):
        eps = tf.convert_to_tensor(self.eps.value)

        def inference(images):
            return self.to_log_probabilities(self.network(images, training=False))

        return kl_attack(
            inference, x, eps, self.steps, self.step_size(eps), self.step_seed(), self.norm
        )

    def per_example_loss(self, clean_log_probs, adversarial_log_probs, labels):
        return trades_loss(clean_log_probs, adversarial_log_probs, labels, self.beta)
