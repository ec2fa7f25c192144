"""Distiller: soft labels, wiring (student trains, teacher frozen), the loss, config round trip."""

import keras
import numpy as np
import pytest

from tfadv import models
from tfadv.defenses import Distiller, soft_label_loss, soft_labels


def _softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


@pytest.fixture(scope="module")
def batch():
    rng = np.random.default_rng(0)
    return rng.random((16, 16, 16, 3), dtype=np.float32), rng.integers(0, 4, 16)


def _pair(teacher_seed=1, student_seed=2):
    keras.utils.set_random_seed(teacher_seed)
    teacher = models.build("tiny_cnn", (16, 16, 3), 4, temperature=5.0)
    keras.utils.set_random_seed(student_seed)
    student = models.build("tiny_cnn", (16, 16, 3), 4, temperature=5.0)
    return teacher, student


def test_soft_labels_are_softmax_at_temperature():
    z = np.array([[4.0, 1.0, -2.0], [0.0, 0.0, 30.0]], np.float32)
    for t in (1.0, 4.0, 50.0):
        np.testing.assert_allclose(soft_labels(z, t), _softmax(z / t), rtol=1e-5, atol=1e-7)
    # higher temperature -> softer (higher entropy), same ranking
    hot, cold = np.asarray(soft_labels(z, 50.0)), np.asarray(soft_labels(z, 1.0))
    assert (hot.max(axis=1) < cold.max(axis=1)).all()
    assert (hot.argmax(axis=1) == cold.argmax(axis=1)).all()


def test_soft_label_loss_is_t_squared_kl():
    rng = np.random.default_rng(1)
    zt, zs = rng.normal(size=(5, 6)).astype(np.float32), rng.normal(size=(5, 6)).astype(np.float32)
    t = 3.0
    p, q = _softmax(zt / t), _softmax(zs / t)
    expected = t * t * (p * (np.log(p) - np.log(q))).sum(axis=1)
    np.testing.assert_allclose(soft_label_loss(zt, zs, t), expected, rtol=1e-4)
    np.testing.assert_allclose(soft_label_loss(zt, zt, t), 0.0, atol=1e-5)


def test_train_step_trains_student_only_and_reports_the_loss(batch):
    x, y = batch
    teacher, student = _pair()
    distiller = Distiller(teacher, student, temperature=5.0, alpha=0.75)
    distiller.compile(optimizer=keras.optimizers.SGD(0.1))
    teacher_before = [w.numpy().copy() for w in teacher.weights]
    student_before = [w.numpy().copy() for w in student.trainable_weights]
    # The loss by hand, before the step changes the weights.
    zt = np.asarray(models.logits_model(teacher)(x))
    zs = np.asarray(models.logits_model(student)(x, training=True))  # BatchNorm on batch statistics
    soft = 25.0 * (_softmax(zt / 5) * (np.log(_softmax(zt / 5)) - np.log(_softmax(zs / 5)))).sum(1)
    hard = -np.log(_softmax(zs)[np.arange(len(y)), y])
    logs = distiller.train_on_batch(x, y, return_dict=True)
    assert logs["soft_loss"] == pytest.approx(soft.mean(), rel=1e-4)
    assert logs["hard_loss"] == pytest.approx(hard.mean(), rel=1e-4)
    assert logs["loss"] == pytest.approx(0.75 * soft.mean() + 0.25 * hard.mean(), rel=1e-4)
    for before, w in zip(teacher_before, teacher.weights, strict=True):
        np.testing.assert_array_equal(before, w.numpy())
    changed = [
        not np.array_equal(b, w.numpy())
        for b, w in zip(student_before, student.trainable_weights, strict=True)
    ]
    assert all(changed), changed
    assert not teacher.trainable
    assert set(distiller.metrics_names) == {"loss", "soft_loss", "hard_loss", "accuracy"}


def test_fit_reduces_the_soft_loss_and_evaluate_reports_student_accuracy(batch):
    x, y = batch
    teacher, student = _pair()
    distiller = Distiller(teacher, student, temperature=5.0)
    distiller.compile(optimizer=keras.optimizers.Adam(1e-2))
    history = distiller.fit(x, y, epochs=20, batch_size=16, verbose=0)
    assert history.history["soft_loss"][-1] < 0.1 * history.history["soft_loss"][0]
    result = distiller.evaluate(x, y, verbose=0, return_dict=True)
    expected = float((np.asarray(student(x)).argmax(1) == y).mean())
    assert result["accuracy"] == pytest.approx(expected)
    # the student (in training mode, as it was fit) now agrees with the teacher on most images
    agree = (
        np.asarray(student(x, training=True)).argmax(1) == np.asarray(teacher(x)).argmax(1)
    ).mean()
    assert agree >= 0.8


def test_get_config_round_trip_and_keras_file(batch, tmp_path):
    x, _ = batch
    teacher, student = _pair()
    distiller = Distiller(teacher, student, temperature=7.0, alpha=0.5)
    config = distiller.get_config()
    assert config["temperature"] == 7.0 and config["alpha"] == 0.5
    clone = Distiller.from_config(config)
    assert clone.get_config() == config
    assert not clone.teacher.trainable and clone.student.trainable
    path = str(tmp_path / "distiller.keras")
    distiller.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded, Distiller)
    np.testing.assert_allclose(
        loaded.predict(x, verbose=0), distiller.predict(x, verbose=0), atol=1e-6
    )
    np.testing.assert_allclose(
        loaded.teacher.predict(x, verbose=0), teacher.predict(x, verbose=0), atol=1e-6
    )


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"temperature": 0.0}, "temperature"),
        ({"temperature": -1.0}, "temperature"),
        ({"alpha": 1.5}, "alpha"),
    ],
)
def test_invalid_arguments_raise_value_error_echoing_the_value(kwargs, message):
    teacher, student = _pair()
    with pytest.raises(ValueError, match=message):
        Distiller(teacher, student, **kwargs)


def test_teacher_and_student_must_differ():
    teacher, _ = _pair()
    with pytest.raises(ValueError, match="different models"):
        Distiller(teacher, teacher)
