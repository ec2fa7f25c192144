"""A latent-space defence: a contrastive loss on the penultimate embedding, and classification by
the nearest reference image in that space.

    trainer = ContrastiveTrainer(model)              # margin 1.0, weight 0.5, unit-length embedding
    trainer.compile(optimizer=keras.optimizers.Adam(1e-3))
    trainer.fit(train_ds, epochs=10)                                   # trains `model` in place
    refs = choose_references(train_labels, per_class=5, seed=0)
    nearest = NearestReferenceClassifier(model, train_images[refs], train_labels[refs])
    attacks.pgd(nearest, images, labels, 8 / 255)                      # logits = -distance

The embedding is the input of the Dense layer named "logits" (`tfadv.models.LOGITS_LAYER`).
The contrastive loss (Hadsell, Chopra & LeCun 2006) over all pairs i != j of a batch, with
Euclidean distances d_ij between embeddings:

    L_con = 1/2 mean_{y_i = y_j} d_ij^2 + 1/2 mean_{y_i != y_j} max(0, margin - d_ij)^2

(the two means are taken separately, so the ~1 in 10 same-class pairs of a 10-class batch weigh as
much as the rest; a mean over no pairs is 0). Training minimises
CE(labels, logits) + weight * L_con.

With `normalize=True` (the default) the distances are taken between unit-length embeddings
(e / |e|, so 0 <= d_ij <= 2): the loss can no longer shrink every distance by shrinking the
embedding, which is how the unnormalised loss at margin 2, weight 1 collapsed it (clean accuracy
0.114 against the base model's 0.466 on the mini archive; docs/results.md, latent-space defence).
`NearestReferenceClassifier(..., normalize=True)` measures distances the same way.
"""

import copy

import keras
import numpy as np

from tfadv.data.batching import map_batches
from tfadv.defenses.reduction import weighted_mean
from tfadv.defenses.train_steps import OneNetworkSteps
from tfadv.models import LOGITS_LAYER
from tfadv.runtime.validation import check_nonnegative, check_positive

DISTANCE_EPSILON = 1e-12  # inside sqrt: a finite gradient at distance 0


def embedding_model(model) -> keras.Model:
    """The same network (shared weights) from its input to the input of its "logits" Dense layer."""
    try:
        layer = model.get_layer(LOGITS_LAYER)
    except ValueError as e:
        raise ValueError(
            f"Expected a model with a Dense layer named {LOGITS_LAYER!r}. Received: {model.name!r}"
        ) from e
    return keras.Model(model.input, layer.input, name=f"{model.name}_embedding")


def embeddings(model, images, batch_size: int = 256) -> np.ndarray:
    """float32 (N, D) penultimate embeddings (inference mode) of a tfadv model."""
    embed = embedding_model(model)
    return map_batches(
        lambda x: embed(x, training=False), np.asarray(images, np.float32), batch_size=batch_size
    )


def pairwise_distances(a, b):
    """(N, M) Euclidean distances between the rows of a (N, D) and b (M, D)."""
    squared = (
        keras.ops.sum(a * a, axis=1)[:, None]
        - 2.0 * keras.ops.matmul(a, keras.ops.transpose(b))
        + keras.ops.sum(b * b, axis=1)[None, :]
    )
    return keras.ops.sqrt(keras.ops.maximum(squared, 0.0) + DISTANCE_EPSILON)


def unit_length(embedded):
    """Rows of (N, D) scaled to length 1 (a zero row stays near zero)."""
    norm = keras.ops.sqrt(
        keras.ops.sum(embedded * embedded, axis=1, keepdims=True) + DISTANCE_EPSILON
    )
    return embedded / norm


def contrastive_loss(embedded, labels, margin: float = 1.0, normalize: bool = True):
    """The batch's contrastive loss (scalar; see the module docstring)."""
    if normalize:
        embedded = unit_length(embedded)
    labels = keras.ops.reshape(keras.ops.cast(labels, "int32"), (-1,))
    distances = pairwise_distances(embedded, embedded)
    n = keras.ops.shape(labels)[0]
    off_diagonal = keras.ops.logical_not(keras.ops.eye(n, dtype="bool"))
    same = keras.ops.logical_and(keras.ops.equal(labels[:, None], labels[None, :]), off_diagonal)
    different = keras.ops.not_equal(labels[:, None], labels[None, :])
    pull = keras.ops.square(distances)
    push = keras.ops.square(keras.ops.relu(margin - distances))
    return 0.5 * _masked_mean(pull, same) + 0.5 * _masked_mean(push, different)


def _masked_mean(values, mask):
    mask = keras.ops.cast(mask, values.dtype)
    return keras.ops.sum(values * mask) / keras.ops.maximum(keras.ops.sum(mask), 1.0)


@keras.saving.register_keras_serializable(package="tfadv")
class ContrastiveTrainer(OneNetworkSteps):
    """Trains a tfadv classifier with cross-entropy plus `weight` x the contrastive loss on its
    embedding.

    Calling the trainer calls the classifier. Train and validation metrics: loss, ce_loss,
    contrastive_loss, accuracy. Compile with an optimizer only.

    Args:
        classifier: a tfadv model (a Dense layer named "logits" whose input is the embedding);
            trained in place.
        margin: distance beyond which pairs of different classes cost nothing (> 0; in embedding
            units, or on the unit sphere, where distances are at most 2, with `normalize`).
        weight: weight of the contrastive term (>= 0; 0 is plain cross-entropy).
        normalize: measure distances between unit-length embeddings (see the module docstring).
    """

    def __init__(self, classifier, margin=1.0, weight=0.5, normalize=True, **kwargs):
        super().__init__(**kwargs)
        self.margin = check_positive("margin", margin)
        self.weight = check_nonnegative("weight", weight)
        if not isinstance(normalize, bool):
            raise ValueError(f"Expected normalize to be a bool. Received: normalize={normalize!r}")
        self.normalize = normalize
        self.classifier = classifier
        logits_layer = (
            classifier.get_layer(LOGITS_LAYER) if _has_layer(classifier, LOGITS_LAYER) else None
        )
        if logits_layer is None:
            raise ValueError(
                f"Expected a model with a Dense layer named {LOGITS_LAYER!r}. Received: "
                f"{classifier.name!r}"
            )
        # One pass to both outputs, sharing the classifier's layers and weights.
        self.heads = keras.Model(
            classifier.input,
            [logits_layer.input, logits_layer.output],
            name=f"{classifier.name}_heads",
        )
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.ce_tracker = keras.metrics.Mean(name="ce_loss")
        self.contrastive_tracker = keras.metrics.Mean(name="contrastive_loss")
        self.accuracy_metric = keras.metrics.SparseCategoricalAccuracy(name="accuracy")
        self.built = True

    @property
    def metrics(self):
        return [self.loss_tracker, self.ce_tracker, self.contrastive_tracker, self.accuracy_metric]

    def call(self, inputs, training=False):
        return self.classifier(inputs, training=training)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """CE + weight * contrastive of a batch; `y_pred` is (embeddings, logits). Updates the
        metrics.

        `sample_weight` weighs the cross-entropy only."""
        embedded, logits = y_pred
        ce = weighted_mean(
            keras.losses.sparse_categorical_crossentropy(y, logits, from_logits=True), sample_weight
        )
        contrastive = contrastive_loss(embedded, y, self.margin, self.normalize)
        loss = ce + self.weight * contrastive
        if self.classifier.losses:
            loss = loss + keras.ops.sum(self.classifier.losses)
        self.loss_tracker.update_state(loss)
        self.ce_tracker.update_state(ce)
        self.contrastive_tracker.update_state(contrastive)
        self.accuracy_metric.update_state(y, logits, sample_weight=sample_weight)
        return loss

    def trained_network(self):
        return self.classifier

    def predictions(self, x, training=False):
        return self.heads(x, training=training)

    def get_config(self):
        return {
            **super().get_config(),
            "classifier": keras.saving.serialize_keras_object(self.classifier),
            "margin": self.margin,
            "weight": self.weight,
            "normalize": self.normalize,
        }

    @classmethod
    def from_config(cls, config):
        config = copy.deepcopy(config)  # deserializing consumes the nested dicts
        classifier = keras.saving.deserialize_keras_object(config.pop("classifier"))
        return cls(classifier, **config)


def _has_layer(model, name) -> bool:
    return any(layer.name == name for layer in getattr(model, "layers", ()))


def choose_references(labels, per_class: int = 5, seed: int = 0, num_classes=None) -> np.ndarray:
    """Sorted indices of `per_class` images of each class, drawn at random (seeded).

    Raises:
        ValueError: a class (of 0 .. num_classes - 1, default up to the largest label) has too few
            images.
    """
    labels = np.asarray(labels).reshape(-1)
    if isinstance(per_class, bool) or not isinstance(per_class, (int, np.integer)) or per_class < 1:
        raise ValueError(
            f"Expected per_class to be an integer >= 1. Received: per_class={per_class!r}"
        )
    num_classes = int(labels.max()) + 1 if num_classes is None else int(num_classes)
    rng = np.random.default_rng(seed)
    chosen = []
    for c in range(num_classes):
        members = np.flatnonzero(labels == c)
        if len(members) < per_class:
            raise ValueError(
                f"Expected at least per_class={per_class} images of class {c}. Received: "
                f"{len(members)}"
            )
        chosen.append(rng.choice(members, per_class, replace=False))
    return np.sort(np.concatenate(chosen))


@keras.saving.register_keras_serializable(package="tfadv")
class ReferenceLogits(keras.layers.Layer):
    """Embeddings (N, D) -> logits (N, classes): minus the distance to the nearest reference of each
    class.

    The reference embeddings are a non-trainable weight (K, D); their classes are in the config.

    Args:
        reference_labels: int class of each of the K references.
        num_classes: number of classes (every class needs at least one reference).
        dim: embedding size D.
        normalize: distances between unit-length embeddings (as `ContrastiveTrainer` trains them).
    """

    def __init__(self, reference_labels, num_classes, dim, normalize=False, **kwargs):
        super().__init__(**kwargs)
        self.normalize = bool(normalize)
        self.reference_labels = [int(c) for c in np.asarray(reference_labels).reshape(-1)]
        self.num_classes = int(num_classes)
        self.dim = int(dim)
        missing = sorted(set(range(self.num_classes)) - set(self.reference_labels))
        if (
            missing
            or max(self.reference_labels) >= self.num_classes
            or min(self.reference_labels) < 0
        ):
            raise ValueError(
                f"Expected reference labels covering classes 0..{self.num_classes - 1}. "
                f"Received: reference_labels={self.reference_labels}"
            )
        self.references = self.add_weight(
            name="references",
            shape=(len(self.reference_labels), self.dim),
            initializer="zeros",
            trainable=False,
        )
        self._membership = np.eye(self.num_classes, dtype=bool)[
            self.reference_labels
        ]  # (K, classes)

    def call(self, embedded):
        references = keras.ops.cast(self.references, embedded.dtype)
        if self.normalize:
            embedded, references = unit_length(embedded), unit_length(references)
        distances = pairwise_distances(embedded, references)  # (N, K)
        large = keras.ops.cast(np.finfo(np.float32).max, distances.dtype)
        per_class = keras.ops.where(
            self._membership[None], distances[:, :, None], large
        )  # (N, K, classes)
        return -keras.ops.min(per_class, axis=1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.num_classes)

    def get_config(self):
        return {
            **super().get_config(),
            "reference_labels": self.reference_labels,
            "num_classes": self.num_classes,
            "dim": self.dim,
            "normalize": self.normalize,
        }


@keras.saving.register_keras_serializable(package="tfadv")
class NearestReferenceClassifier(keras.Model):
    """Classifies by the nearest reference image in a model's embedding space, as a Functional
    Keras model ending in logits (minus the distance to the nearest reference of each class):
    the attacks and `tfadv.models.as_classifier` take it like any classifier.

    Args:
        model: a tfadv model (the embedding is the input of its "logits" layer; weights shared),
            or an embedding model itself (no "logits" layer; then give `num_classes`).
        reference_images: float (K, H, W, C) in [0, 1], e.g. training images picked by
            `choose_references`; None leaves the reference embeddings to be loaded (`from_config`).
        reference_labels: int (K,), their classes (every class at least once).
        num_classes: default: the model's output size.
        normalize: distances between unit-length embeddings (the default, as `ContrastiveTrainer`
            trains them; False: raw Euclidean distances).
    """

    def __init__(
        self, model, reference_images, reference_labels, num_classes=None, normalize=True, **kwargs
    ):
        kwargs.setdefault("name", f"{model.name}_nearest_reference")
        embed = embedding_model(model) if _has_layer(model, LOGITS_LAYER) else model
        if num_classes is None:
            if embed is model:
                raise ValueError(
                    "Expected num_classes with an embedding model. Received: num_classes=None, "
                    f"model={model.name!r}"
                )
            num_classes = model.output_shape[-1]
        inputs = keras.Input(embed.input_shape[1:], name="images")
        head = ReferenceLogits(
            reference_labels, num_classes, embed.output_shape[-1], normalize, name=LOGITS_LAYER
        )
        super().__init__(inputs, head(embed(inputs, training=False)), **kwargs)
        if reference_images is not None:
            self.set_references(reference_images)

    @property
    def embedding(self) -> keras.Model:
        """The embedding model (shared weights)."""
        return self.layers[1]

    def set_references(self, reference_images) -> None:
        """(Re)computes the K reference embeddings from float (K, H, W, C) images in [0, 1]; call it
        again after the base model's weights change."""
        layer = self.get_layer(LOGITS_LAYER)
        images = np.asarray(reference_images, np.float32)
        if len(images) != len(layer.reference_labels):
            raise ValueError(
                f"Expected {len(layer.reference_labels)} reference images. Received: {len(images)}"
            )
        layer.references.assign(np.asarray(self.embedding(images, training=False)))

    def get_config(self):
        layer = self.get_layer(LOGITS_LAYER)
        return {
            "name": self.name,
            "model": keras.saving.serialize_keras_object(self.embedding),
            "reference_labels": layer.reference_labels,
            "num_classes": layer.num_classes,
            "normalize": layer.normalize,
        }

    @classmethod
    def from_config(cls, config):
        config = copy.deepcopy(config)
        model = keras.saving.deserialize_keras_object(config.pop("model"))
        return cls(model, None, **config)
