"""Adversarial training through `model.fit`: per batch (Madry style), per epoch, pre-generated
noise.

    attack = tfadv.attacks.Attack("pgd", steps=7)
    trainer = AdversarialTrainer(classifier, attack, eps=8 / 255, ratio=1.0)
    trainer.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    trainer.fit(train_ds, callbacks=[EpsSchedule(trainer.eps, 8 / 255, warmup_epochs=1)])
    # trainer.classifier is the trained model.

Per epoch: `TrainingSetWithCopy` holds the clean training images plus an extra float32
copy that a callback (`tfadv.defenses.RegenerateAdversarialCopy`) rewrites between epochs;
its `dataset()` reads the current copy every epoch. The random-noise recipe fills the copy
once with `attacks.random_sign`.

All eps values are in pixel scale [0, 1] (L-inf).
"""

import keras
import numpy as np
import tensorflow as tf

from tfadv import attacks
from tfadv.data import pipeline
from tfadv.data.augment import make_augment_fn
from tfadv.defenses import awp, trainer_config


def eps_at(epoch: int, eps: float, warmup_epochs: int = 0, ramp_epochs: int = 0) -> float:
    """The eps in force in `epoch` (0-based): 0 while warming up, then a linear ramp to eps.

    Epochs [0, warmup) get 0; ramp epoch r (r = 0 .. ramp-1) gets eps * (r + 1) / ramp;
    later epochs get eps.
    """
    if epoch < warmup_epochs:
        return 0.0
    step = epoch - warmup_epochs
    if ramp_epochs and step < ramp_epochs:
        return float(eps) * (step + 1) / ramp_epochs
    return float(eps)


@keras.saving.register_keras_serializable(package="tfadv")
class AdversarialTrainer(keras.Model):
    """Wraps a classifier so that `fit` trains it on batches attacked with its current weights.

    Each train step replaces the first round(ratio * batch) examples of the (shuffled)
    batch by their adversarial versions, crafted against the current weights with the
    classifier in inference mode, then runs Keras' own train step on that batch: one
    attack plus one forward/backward pass per batch. While `eps` is 0 (warm-up), the
    attack is skipped and the step is clean training. Calling the trainer calls the
    classifier; compile it like the classifier.

    Args:
        classifier: the Keras model being trained (any classifier the attacks accept).
        attack: an `tfadv.attacks.Attack`, a name or a spec string ('pgd(steps=7)').
        eps: initial attack budget, pixel scale; lives in the non-trainable variable
            `self.eps` (change it with `self.eps.assign` or `tfadv.defenses.EpsSchedule`).
        ratio: share in [0, 1] of each batch that is adversarial (1: Madry-style).
        seed: None (random starts drawn from TensorFlow's global RNG) or an int: the attack's
            random draws in training step k on replica r come from (seed, k, r), so a run
            resumed from a checkpoint (which restores the step count) repeats them.
        awp_gamma: relative size of the adversarial weight perturbation (`tfadv.defenses.awp`;
            0: none). While the variable `self.awp_gamma` is > 0 each step takes its gradient
            at kernels perturbed by awp_gamma * ||w|| along the ascent direction of the loss on
            the attacked batch (one forward-backward pass more), then updates the unperturbed
            weights; `tfadv.defenses.AwpSchedule` sets the variable per epoch.
    """

    def __init__(
        self, classifier, attack="fgsm", eps=0.03, ratio=1.0, seed=None, awp_gamma=0.0, **kwargs
    ):
        super().__init__(**kwargs)
        attack = attacks.get(attack)
        ratio = attacks.checks.check_fraction("ratio", ratio)
        attacks.checks.check_eps(eps, at_most=1.0)
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))):
            raise ValueError(f"Expected seed to be None or an int. Received: seed={seed!r}")
        self.classifier = classifier
        self.attack = attack
        self.ratio = ratio
        self.seed = None if seed is None else int(seed)
        self.eps = self.add_weight(
            name="eps",
            shape=(),
            initializer=keras.initializers.Constant(float(eps)),
            trainable=False,
        )
        self.awp_size = awp.check_gamma(awp_gamma)
        self.awp_gamma = None
        if self.awp_size > 0:
            self.awp_gamma = self.add_weight(
                name="awp_gamma",
                shape=(),
                initializer=keras.initializers.Constant(self.awp_size),
                trainable=False,
            )
        self.built = True

    def call(self, inputs, training=False):
        return self.classifier(inputs, training=training)

    def step_seed(self):
        """{"seed": (2,) int64 tensor from (seed, training step, replica)}, or {} when unseeded."""
        if self.seed is None or not self.attack.takes_seed:
            return {}
        step = self.optimizer.iterations if self.optimizer is not None else 0
        step = tf.cast(attacks.checks.unwrap_variable(step), tf.int64)
        replica = tf.distribute.get_replica_context()
        replica_id = replica.replica_id_in_sync_group if replica is not None else 0
        seed = attacks.checks.to_seed((tf.constant(self.seed, tf.int64), step))
        return {"seed": attacks.checks.fold_seed(seed, tf.cast(replica_id, tf.int64))}

    def adversarial_batch(self, images, labels):
        """The batch the step trains on: adversarial head, clean tail (traceable)."""
        if self.ratio == 0.0:
            return images
        eps = self.eps.value  # the backing tf.Variable, read at run time

        def attacked():
            seed = self.step_seed()
            if self.ratio == 1.0:
                return self.attack(self.classifier, images, labels, eps, **seed)
            batch = tf.cast(tf.shape(images)[0], tf.float32)
            n_adv = tf.cast(tf.round(self.ratio * batch), tf.int32)
            head = self.attack(self.classifier, images[:n_adv], labels[:n_adv], eps, **seed)
            return tf.concat([head, images[n_adv:]], axis=0)

        return tf.cond(eps > 0.0, attacked, lambda: tf.identity(images))

    def train_step(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        x = self.adversarial_batch(x, y)
        if self.awp_gamma is None:
            return super().train_step(keras.utils.pack_x_y_sample_weight(x, y, sample_weight))
        return self._awp_train_step(x, y, sample_weight)

    def _awp_train_step(self, x, y, sample_weight):
        """Keras' train step with the gradient taken at AWP-perturbed weights
        (`tfadv.defenses.awp`)."""
        outputs = {}

        def loss_fn(forward):  # the compiled loss, as a replica-local mean
            outputs["y_pred"] = forward(x)  # the last call is the training pass
            loss = self._compute_loss(
                x=x, y=y, y_pred=outputs["y_pred"], sample_weight=sample_weight, training=True
            )
            return (
                loss * tf.distribute.get_strategy().num_replicas_in_sync
            )  # Keras scales it per replica

        loss = awp.train_step(self.classifier, self.optimizer, loss_fn, self.awp_gamma)
        self._loss_tracker.update_state(loss, sample_weight=tf.shape(x)[0])
        return self.compute_metrics(x, y, outputs["y_pred"], sample_weight=sample_weight)

    def get_config(self):
        return {**super().get_config(), **trainer_config.config_of(self, ratio=self.ratio)}

    @classmethod
    def from_config(cls, config):
        return trainer_config.from_config(cls, config)


def generate(model, attack, images, labels, eps, batch_size=256, seed=None) -> np.ndarray:
    """`tfadv.attacks.adversarial_images`: image i draws from the seed hashed from `seed` (an int
    or a pair such as (seed, epoch)) and i, whatever its batch, when the attack takes a seed."""
    return attacks.adversarial_images(
        model,
        images,
        labels,
        attack,
        eps,
        batch_size=batch_size,
        seed=seed if attack.takes_seed else None,
    )


def generate_per_replica(
    strategy, model, attack, images, labels, eps, batch_size=256, seed=None
) -> np.ndarray:
    """`generate` with the work split over the replicas of a tf.distribute `strategy`.

    The images go in chunks of (replicas x batch_size); replica r attacks rows
    [r * batch_size, (r + 1) * batch_size) of each chunk on its own device (seeded from
    (seed, chunk, r)), and an all-gather gives every worker the whole chunk. With one replica
    this is `generate`. `model` must have been built under `strategy.scope()`.
    """
    replicas = strategy.num_replicas_in_sync
    if replicas == 1 or len(images) == 0:
        return generate(model, attack, images, labels, eps, batch_size, seed)
    images, labels = np.asarray(images, np.float32), np.asarray(labels, np.int64)
    chunk = replicas * batch_size
    base = attacks.checks.to_seed(seed if seed is not None else 0)
    seeded = seed is not None and attack.takes_seed
    parts = []
    for start in range(0, len(images), chunk):
        rows = np.minimum(
            np.arange(start, start + chunk), len(images) - 1
        )  # the last chunk repeats its last row

        def shard(context, rows=rows, index=start // chunk):
            mine = rows[context.replica_id_in_sync_group * batch_size :][:batch_size]
            replica_seed = attacks.checks.fold_seed(
                attacks.checks.fold_seed(base, index), context.replica_id_in_sync_group
            )
            return tf.constant(images[mine]), tf.constant(labels[mine]), replica_seed

        x, y, replica_seed = strategy.experimental_distribute_values_from_function(shard)

        def attack_and_gather(x, y, replica_seed):
            options = {"seed": replica_seed} if seeded else {}
            adversarial = attack(model, x, y, eps, **options)
            return tf.distribute.get_replica_context().all_gather(adversarial, axis=0)

        gathered = strategy.run(attack_and_gather, args=(x, y, replica_seed))
        parts.append(np.asarray(strategy.experimental_local_results(gathered)[0]))
    return np.concatenate(parts)[: len(images)].astype(np.float32, copy=False)


class TrainingSetWithCopy:
    """Clean training images plus a float32 extra copy that may be rewritten between epochs.

    The copy (e.g. adversarial or noisy versions of some training images) lives in
    TensorFlow variables that `dataset()` reads while iterating, so one pipeline passed
    to `fit` sees a new copy every epoch. Clean images get the run's augmentation; the
    copy is used as is (an augmented adversarial example is no longer one). The order and
    augmentation are functions of (seed, epoch, index) (see `tfadv.data.pipeline.build`).

    Create it outside any `strategy.scope()`: its variables are data, not model state.

    Args:
        clean: ImageSet (uint8 images, int labels).
        copy_size: number of images in the extra copy (>= 0).
        batch_size: global batch size of `dataset()`.
        augment: augmentation ops for the clean images (see tfadv.data.parse_augment).
        seed: seeds the shuffling and augmentation.
        replicas: replicas of the tf.distribute strategy; each epoch is trimmed to a
            multiple of it (see tfadv.data.to_dataset).
        epoch: a tf.Variable holding the epoch (`tfadv.data.pipeline.epoch_variable`, set by the
            training loop at every epoch start), or None to count passes over `dataset()`.
    """

    def __init__(
        self,
        clean,
        copy_size: int,
        batch_size: int,
        augment=(),
        seed: int = 0,
        replicas: int = 1,
        epoch=None,
    ):
        if (
            isinstance(copy_size, bool)
            or not isinstance(copy_size, (int, np.integer))
            or copy_size < 0
        ):
            raise ValueError(
                f"Expected copy_size to be an integer >= 0. Received: copy_size={copy_size!r}"
            )
        pipeline.check_batching(batch_size, replicas)
        self.clean = clean
        self.copy_size = int(copy_size)
        self.batch_size = int(batch_size)
        self.augment = tuple(augment)
        self.seed = seed
        self.replicas = replicas
        self.epoch = epoch
        shape = clean.images.shape[1:]
        pipeline.check_outside_strategy()
        self._clean_images = tf.Variable(clean.images, trainable=False, name="clean_images")
        self._copy_images = tf.Variable(
            tf.zeros((self.copy_size, *shape), tf.float32), trainable=False, name="copy_images"
        )
        labels = np.concatenate([clean.labels, np.zeros(self.copy_size, np.int64)])
        self._labels = tf.Variable(labels, trainable=False, name="labels")

    def __len__(self):
        return len(self.clean) + self.copy_size

    def set_copy(self, images, labels) -> None:
        """Replaces the extra copy: float images in [0, 1] of shape (copy_size, H, W, C)."""
        images = np.asarray(images, np.float32)
        expected = (self.copy_size, *self.clean.images.shape[1:])
        if images.shape != expected or len(labels) != self.copy_size:
            raise ValueError(
                f"Expected a copy of shape {expected} with {self.copy_size} labels. "
                f"Received: images {images.shape}, {len(labels)} labels"
            )
        self._copy_images.assign(images)
        self._labels[len(self.clean) :].assign(np.asarray(labels, np.int64))

    def copy_images(self) -> np.ndarray:
        return self._copy_images.numpy()

    def copy_labels(self) -> np.ndarray:
        return self._labels.numpy()[len(self.clean) :]

    def dataset(self) -> tf.data.Dataset:
        """Shuffled batches of (float32 images in [0, 1], int64 labels): clean set plus copy."""
        n_clean = len(self.clean)
        clean_images, copy_images, labels = self._clean_images, self._copy_images, self._labels
        augment = make_augment_fn(self.augment) if self.augment else None

        def clean_image(i, seed):
            image = tf.cast(tf.gather(clean_images, i), tf.float32) / 255.0
            return augment(image, seed) if augment else image

        def element(i, seed):
            image = tf.cond(
                i < n_clean,
                lambda: clean_image(tf.minimum(i, n_clean - 1), seed),
                lambda: tf.gather(copy_images, tf.maximum(i - n_clean, 0)),
            )
            return image, tf.gather(labels, i)

        return pipeline.build(
            len(self),
            element,
            self.batch_size,
            shuffle=True,
            seed=self.seed,
            epoch=self.epoch,
            replicas=self.replicas,
        )


def choose_subset(n: int, fraction: float, seed: int, epoch: int = 0) -> np.ndarray:
    """Sorted indices of round(fraction * n) images, a fresh seeded draw per epoch
    (all when fraction is 1)."""
    if not 0 < fraction <= 1:
        raise ValueError(f"Expected fraction in (0, 1]. Received: fraction={fraction!r}")
    size = int(round(fraction * n))
    if size >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng([seed, epoch]).choice(n, size, replace=False))
