"""Knowledge / defensive distillation: a frozen teacher's soft labels train a student.

    distiller = Distiller(teacher, student, temperature=50.0, alpha=1.0)
    distiller.compile(optimizer=keras.optimizers.Adam(1e-3))
    distiller.fit(train_ds, validation_data=val_ds, epochs=10)
    # distiller.student is the trained classifier (its own softmax temperature unchanged).

The teacher is any classifier `tfadv.models.as_classifier` accepts (its logits, inference
mode); the student ends in `TemperatureSoftmax` (every `tfadv.models` architecture does), as it
is trained through its logits. The Distiller works on logits, so the softmax temperature it
distils at is its own `temperature`, whatever the models' softmax layers are set to.
"""

import copy

import keras

from tfadv import models
from tfadv.defenses.reduction import weighted_mean
from tfadv.defenses.train_steps import OneNetworkSteps
from tfadv.models import as_classifier
from tfadv.runtime.validation import check_positive


def soft_labels(logits, temperature):
    """softmax(logits / T): the teacher's soft labels at temperature T (> 0)."""
    logits = keras.ops.convert_to_tensor(logits)
    return keras.ops.softmax(logits / keras.ops.cast(temperature, logits.dtype), axis=-1)


def soft_label_loss(teacher_logits, student_logits, temperature):
    """Per-example T^2 * KL(teacher || student), both softmaxed at temperature T.

    KL has the gradient of the cross-entropy on soft labels and is 0 when the student
    matches the teacher; T^2 keeps its gradient scale independent of T (Hinton et al.).
    """
    t = keras.ops.cast(temperature, student_logits.dtype)
    targets = soft_labels(keras.ops.stop_gradient(teacher_logits), t)
    log_student = keras.ops.log_softmax(student_logits / t, axis=-1)
    log_targets = keras.ops.log(keras.ops.maximum(targets, keras.backend.epsilon()))
    kl = keras.ops.sum(targets * (log_targets - log_student), axis=-1)
    return kl * t * t


@keras.saving.register_keras_serializable(package="tfadv")
class Distiller(OneNetworkSteps):
    """Trains `student` on the soft labels of a frozen `teacher` at a temperature.

    loss = alpha * T^2 * KL(softmax(z_teacher / T) || softmax(z_student / T))
         + (1 - alpha) * CE(hard labels, softmax(z_student))          (hard term at T = 1)

    Calling the Distiller calls the student (its probabilities at its own softmax
    temperature). Train and validation metrics: loss, soft_loss, hard_loss, accuracy
    (student top-1 on the hard labels). Compile with an optimizer only.

    Args:
        teacher: trained classifier (any `as_classifier` accepts); frozen here
            (`trainable = False`, always called with training=False).
        student: keras Model ending in TemperatureSoftmax; the only weights trained.
        temperature: distillation temperature T > 0.
        alpha: weight in [0, 1] of the soft-label term; 1 - alpha weighs the hard labels.
    """

    def __init__(self, teacher, student, temperature=1.0, alpha=1.0, **kwargs):
        super().__init__(**kwargs)
        self.temperature = check_positive("temperature", temperature)
        alpha = float(alpha)
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"Expected alpha in [0, 1]. Received: alpha={alpha!r}")
        if teacher is student:
            raise ValueError(
                "teacher and student must be different models (received the same object twice)"
            )
        self.alpha = alpha
        self.teacher = teacher
        self.student = student
        if isinstance(teacher, keras.Model):
            self.teacher.trainable = False
        # Same layers and weights, stopping before the softmax (weights are not duplicated).
        self.teacher_logits = as_classifier(teacher).logits
        self.student_logits = models.logits_model(student)
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.soft_loss_tracker = keras.metrics.Mean(name="soft_loss")
        self.hard_loss_tracker = keras.metrics.Mean(name="hard_loss")
        self.accuracy_metric = keras.metrics.SparseCategoricalAccuracy(name="accuracy")
        self.built = True  # teacher and student are built models

    @property
    def metrics(self):
        return [
            self.loss_tracker,
            self.soft_loss_tracker,
            self.hard_loss_tracker,
            self.accuracy_metric,
        ]

    def call(self, inputs, training=False):
        return self.student(inputs, training=training)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """Distillation loss of a batch (replica-local mean); `y_pred` are student logits.

        Also updates the loss trackers and the accuracy metric.
        """
        teacher_logits = self.teacher_logits(x)
        soft = soft_label_loss(teacher_logits, y_pred, self.temperature)
        hard = keras.losses.sparse_categorical_crossentropy(y, y_pred, from_logits=True)
        per_example = self.alpha * soft + (1.0 - self.alpha) * hard
        loss = weighted_mean(per_example, sample_weight)
        if self.student.losses:
            loss = loss + keras.ops.sum(self.student.losses)
        self.loss_tracker.update_state(loss)
        self.soft_loss_tracker.update_state(weighted_mean(soft, sample_weight))
        self.hard_loss_tracker.update_state(weighted_mean(hard, sample_weight))
        self.accuracy_metric.update_state(y, y_pred, sample_weight=sample_weight)
        return loss

    def trained_network(self):
        return self.student

    def predictions(self, x, training=False):
        return self.student_logits(x, training=training)

    def get_config(self):
        return {
            **super().get_config(),
            "teacher": keras.saving.serialize_keras_object(self.teacher),
            "student": keras.saving.serialize_keras_object(self.student),
            "temperature": self.temperature,
            "alpha": self.alpha,
        }

    @classmethod
    def from_config(cls, config):
        config = copy.deepcopy(config)  # deserializing consumes the nested dicts
        teacher = keras.saving.deserialize_keras_object(config.pop("teacher"))
        student = keras.saving.deserialize_keras_object(config.pop("student"))
        return cls(teacher, student, **config)
