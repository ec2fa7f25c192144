"""Adversarial training pieces: eps schedule, the per-batch trainer, the per-epoch and noise sets,
monitoring, test-time noise wrapping."""

import glob
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfadv import attacks, defenses, evaluation, models
from tfadv.data import ImageSet
from tfadv.layers import RandomSignNoise

EPS = 0.05


@pytest.fixture(scope="module")
def batch():
    rng = np.random.default_rng(0)
    return rng.random((24, 16, 16, 3), dtype=np.float32), rng.integers(0, 4, 24)


def _classifier(seed=0):
    keras.utils.set_random_seed(seed)
    return models.build("tiny_cnn", (16, 16, 3), 4)


def _loss(model, x, y):
    """The training-mode loss, leaving the model (BatchNorm statistics) unchanged."""
    weights = model.get_weights()
    loss = float(keras.losses.SparseCategoricalCrossentropy()(y, model(x, training=True)))
    model.set_weights(weights)
    return loss


def _trainer(classifier, attack="fgsm", eps=EPS, ratio=1.0, **options):
    trainer = defenses.AdversarialTrainer(
        classifier, attacks.Attack(attack, **options), eps=eps, ratio=ratio
    )
    trainer.compile(
        optimizer=keras.optimizers.SGD(0.1),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return trainer


def test_eps_at_warmup_then_linear_ramp():
    values = [defenses.eps_at(e, 0.03, warmup_epochs=2, ramp_epochs=3) for e in range(7)]
    np.testing.assert_allclose(values, [0, 0, 0.01, 0.02, 0.03, 0.03, 0.03], atol=1e-12)
    assert [defenses.eps_at(e, 0.03) for e in range(2)] == [0.03, 0.03]


@pytest.mark.parametrize("ratio", [1.0, 0.5])
def test_train_step_reports_the_loss_on_the_adversarial_batch(batch, ratio):
    x, y = batch
    classifier = _classifier()
    n_adv = int(round(ratio * len(x)))
    adv_head = attacks.fgsm(classifier, x[:n_adv], y[:n_adv], EPS)  # deterministic
    trained_on = np.concatenate([adv_head, x[n_adv:]])
    expected, clean = _loss(classifier, trained_on, y), _loss(classifier, x, y)
    assert expected > clean + 1e-3  # the attack raises the loss
    trainer = _trainer(classifier, ratio=ratio)
    before = [w.numpy().copy() for w in classifier.trainable_weights]
    logs = trainer.train_on_batch(x, y, return_dict=True)
    assert logs["loss"] == pytest.approx(expected, rel=1e-4)
    assert any(
        not np.array_equal(b, w.numpy())
        for b, w in zip(before, classifier.trainable_weights, strict=True)
    )


def test_eps_zero_is_clean_training(batch):
    x, y = batch
    classifier = _classifier()
    clean = _loss(classifier, x, y)
    logs = _trainer(classifier, eps=0.0).train_on_batch(x, y, return_dict=True)
    assert logs["loss"] == pytest.approx(clean, rel=1e-5)


def test_eps_schedule_in_fit_logs_the_eps_in_force(batch):
    x, y = batch
    classifier = _classifier()
    trainer = _trainer(classifier, "pgd", eps=0.0, steps=2)
    schedule = defenses.EpsSchedule(trainer.eps, 0.04, warmup_epochs=1, ramp_epochs=2)
    history = trainer.fit(x, y, batch_size=12, epochs=4, callbacks=[schedule], verbose=0)
    np.testing.assert_allclose(history.history["eps"], [0.0, 0.02, 0.04, 0.04], atol=1e-7)
    assert trainer(x).shape == (len(x), 4)


def test_trainer_config_round_trip():
    trainer = defenses.AdversarialTrainer(
        _classifier(), "pgd(steps=3, loss=margin)", eps=0.02, ratio=0.25
    )
    config = trainer.get_config()
    clone = defenses.AdversarialTrainer.from_config(config)
    assert clone.attack == attacks.Attack("pgd", steps=3, loss="margin")
    assert clone.ratio == 0.25 and float(clone.eps.numpy()) == pytest.approx(0.02)


def test_invalid_trainer_arguments():
    with pytest.raises(ValueError, match="ratio"):
        defenses.AdversarialTrainer(_classifier(), "fgsm", ratio=1.5)
    with pytest.raises(ValueError, match="eps"):
        defenses.AdversarialTrainer(_classifier(), "fgsm", eps=float("nan"))
    with pytest.raises(ValueError, match="steps"):
        defenses.AdversarialTrainer(_classifier(), attacks.Attack("fgsm", steps=3))
    with pytest.raises(ValueError, match="nope"):
        defenses.AdversarialTrainer(_classifier(), "nope")


def _imageset(n=40, seed=0):
    rng = np.random.default_rng(seed)
    return ImageSet(rng.integers(0, 256, (n, 16, 16, 3), dtype=np.uint8), rng.integers(0, 4, n))


def test_training_set_with_copy_reads_the_current_copy_every_epoch():
    clean = _imageset(10)
    data = defenses.TrainingSetWithCopy(clean, copy_size=4, batch_size=5, seed=0)
    ds = data.dataset()
    iterator = iter(ds)  # created before the copy is written: values are read lazily
    data.set_copy(np.full((4, 16, 16, 3), 0.5, np.float32), np.array([3, 3, 3, 3]))
    images, labels = map(
        np.concatenate, zip(*[(x.numpy(), y.numpy()) for x, y in iterator], strict=True)
    )
    assert images.shape == (14, 16, 16, 3)
    is_copy = (images == 0.5).all(axis=(1, 2, 3))
    assert is_copy.sum() == 4 and (labels[is_copy] == 3).all()
    clean_seen = np.sort((images[~is_copy] * 255).round().astype(np.uint8).reshape(10, -1), axis=0)
    np.testing.assert_array_equal(clean_seen, np.sort(clean.images.reshape(10, -1), axis=0))
    with pytest.raises(ValueError, match="shape"):
        data.set_copy(np.zeros((3, 16, 16, 3), np.float32), np.zeros(3))


def test_regenerate_callback_makes_a_new_adversarial_copy_each_epoch():
    clean = _imageset(40)
    classifier = _classifier()
    data = defenses.TrainingSetWithCopy(clean, copy_size=20, batch_size=8)
    eps = tf.Variable(EPS)
    regenerate = defenses.RegenerateAdversarialCopy(
        data, attacks.Attack("fgsm"), eps, classifier=classifier, seed=0
    )
    copies = []
    for epoch in range(2):
        regenerate.on_epoch_begin(epoch)
        images, labels = data.copy_images(), data.copy_labels()
        assert images.shape == (20, 16, 16, 3)
        # each copy image is an eps-ball perturbation of the clean image with the same label
        distance = np.abs(images[:, None] - clean.float_images()[None]).max(axis=(2, 3, 4))
        nearest = distance.argmin(axis=1)
        assert (distance.min(axis=1) <= EPS + 1e-6).all()
        assert (distance.min(axis=1) > EPS / 2).all()  # changed, not a clean copy
        np.testing.assert_array_equal(labels, clean.labels[nearest])
        copies.append(set(nearest))
    assert copies[0] != copies[1]  # a fresh random subset per epoch
    eps.assign(0.0)  # warm-up: the copy is clean
    regenerate.on_epoch_begin(2)
    distance = np.abs(data.copy_images()[:, None] - clean.float_images()[None]).max(axis=(2, 3, 4))
    assert (distance.min(axis=1) == 0).all()


def test_random_sign_copy_lies_at_plus_minus_eps_clipped():
    clean = _imageset(30)
    x = clean.float_images()
    noisy = defenses.generate(
        _classifier(), attacks.Attack("random_sign"), x, clean.labels, EPS, batch_size=8, seed=3
    )
    delta = noisy - x
    inside = (x >= EPS) & (x <= 1 - EPS)
    np.testing.assert_allclose(np.abs(delta[inside]), EPS, atol=1e-6)
    np.testing.assert_allclose(
        noisy[~inside], np.clip(x[~inside] + np.sign(delta[~inside]) * EPS, 0, 1), atol=1e-6
    )
    assert 0.45 < (delta[inside] > 0).mean() < 0.55
    assert noisy.min() >= 0 and noisy.max() <= 1


def test_choose_subset():
    assert len(defenses.choose_subset(10, 1.0, 0)) == 10
    a, b = (
        defenses.choose_subset(100, 0.3, 0, epoch=0),
        defenses.choose_subset(100, 0.3, 0, epoch=1),
    )
    assert len(a) == 30 and len(set(a)) == 30 and not np.array_equal(a, b)
    np.testing.assert_array_equal(a, defenses.choose_subset(100, 0.3, 0, epoch=0))


def test_robust_monitor_logs_accuracy_and_writes_an_image_grid(tmp_path, batch):
    x, y = batch
    classifier = _classifier()
    monitor = evaluation.RobustMonitor(
        classifier,
        x,
        y,
        attacks.Attack("fgsm"),
        tf.Variable(EPS),
        log_dir=str(tmp_path),
        grid_size=4,
    )
    logs = {}
    monitor.on_epoch_end(0, logs)
    monitor.on_train_end()
    clean = float((np.asarray(classifier(x)).argmax(1) == y).mean())
    adv = float((np.asarray(classifier(attacks.fgsm(classifier, x, y, EPS))).argmax(1) == y).mean())
    assert logs["val_robust_subset_accuracy"] == pytest.approx(clean)
    assert logs["val_robust_accuracy"] == pytest.approx(adv)
    events = glob.glob(os.path.join(str(tmp_path), "events.out.tfevents.*"))
    images = [
        value
        for event in tf.compat.v1.train.summary_iterator(events[0])
        for value in event.summary.value
        if value.tag == "adversarial_examples"
    ]
    picture = tf.io.decode_png(tf.make_ndarray(images[0].tensor)[2])
    assert (
        picture.shape[0] > 100 and picture.shape[1] > 200
    )  # a rendered 3 x 4 grid, not a placeholder


def test_with_test_noise_wraps_and_exports(tmp_path, batch):
    x, _ = batch
    classifier = _classifier()
    models.set_temperature(classifier, 3.0)
    wrapped = defenses.with_test_noise(classifier, "random_sign", 0.02, seed=1)
    assert isinstance(wrapped.get_layer("test_noise"), RandomSignNoise)
    clf = models.as_classifier(wrapped)  # the adapter finds the logits behind the noise
    assert clf.logits_source == "temperature_softmax" and float(clf.temperature()) == 3.0
    clean, noisy = np.asarray(classifier(x)), np.asarray(wrapped(x))
    assert not np.allclose(clean, noisy)  # noise is on at inference
    np.testing.assert_allclose(clean, noisy, atol=0.05)  # small noise, same network
    path = models.export_saved_model(wrapped, str(tmp_path / "wrapped"))
    assert models.load(path)(x).shape == clean.shape
    gaussian = defenses.with_test_noise(classifier, "gaussian", 0.02)
    assert gaussian.get_layer("test_noise").active_at_inference
    with pytest.raises(ValueError, match="uniform"):
        defenses.with_test_noise(classifier, "uniform", 0.02)
    with pytest.raises(ValueError, match="eps"):
        defenses.with_test_noise(classifier, "gaussian", 0.0)
