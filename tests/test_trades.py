"""TRADES, MART and adversarial weight perturbation: the losses against hand computations, AWP's
perturbation and its removal, what a step changes, exact resume, and a mirrored CLI run."""

import glob
import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import REPO_ROOT, tiny_config
from tfadv import defenses
from tfadv.defenses import awp
from tfadv.experiment.config import TrainConfig
from tfadv.experiment.run import run_training
from tfadv.layers import TemperatureSoftmax

TINY_FLAGS = [
    "--dataset=synthetic",
    "--model=tiny_cnn",
    "--epochs=2",
    "--batch_size=32",
    "--train_limit=160",
    "--test_limit=64",
    "--verbose=0",
    "--attack_steps=2",
    "--robust_eval_size=32",
    "--warmup_epochs=0",
    "--eps_ramp_epochs=0",
    "--awp_warmup_epochs=0",
]


@pytest.fixture(scope="module")
def mirrored_run(tmp_path_factory):
    """TRADES + AWP through the CLI under MirroredStrategy on two logical CPUs (a subprocess)."""
    out = tmp_path_factory.mktemp("runs") / "mirrored"
    env = {
        **os.environ,
        "PYTHONPATH": REPO_ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
        "TF_CPP_MIN_LOG_LEVEL": "2",
    }
    args = [
        "--flagfile=configs/trades_awp.flags",
        *TINY_FLAGS,
        "--distribution=mirrored",
        "--logical_cpus=2",
    ]
    proc = subprocess.Popen(
        [sys.executable, "-m", "tfadv.train", *args, f"--output_dir={out}"],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    yield proc, out
    if proc.poll() is None:
        proc.kill()
        proc.communicate()


def _tiny_model(temperature=2.0, seed=0):
    """2x2x1 images -> Flatten -> Dense(3) -> TemperatureSoftmax(T): logits are x @ W + b, with
    fixed weights large enough for confident, input-sensitive predictions."""
    inputs = keras.Input((2, 2, 1))
    dense = keras.layers.Dense(3, name="dense")
    model = keras.Model(
        inputs, TemperatureSoftmax(temperature)(dense(keras.layers.Flatten()(inputs)))
    )
    rng = np.random.default_rng(seed)
    dense.set_weights(
        [rng.normal(0, 4, (4, 3)).astype(np.float32), rng.normal(0, 1, 3).astype(np.float32)]
    )
    return model


def _log_softmax(z):
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def _fixed_batch():
    rng = np.random.default_rng(5)
    x = rng.random((4, 2, 2, 1)).astype(np.float32)
    x_adv = np.clip(x + rng.uniform(-0.3, 0.3, x.shape), 0, 1).astype(np.float32)
    return x, x_adv, np.array([0, 1, 2, 1])


def _hand_log_probs(model, images, temperature):
    kernel, bias = (w.astype(np.float64) for w in model.get_layer("dense").get_weights())
    return _log_softmax(
        (images.reshape(len(images), -1).astype(np.float64) @ kernel + bias) / temperature
    )


def _trainer_loss(trainer, x, x_adv, y):
    y_pred = (trainer.predictions(x, training=True), trainer.predictions(x_adv, training=True))
    return float(trainer.compute_loss(x, y, y_pred))


@pytest.mark.parametrize("beta", [1.0, 6.0])
def test_trades_loss_matches_a_hand_computation(beta):
    model = _tiny_model(temperature=2.0)
    x, x_adv, y = _fixed_batch()
    trainer = defenses.TradesTrainer(model, "pgd(steps=2)", eps=0.1, beta=beta)
    lp, lq = _hand_log_probs(model, x, 2.0), _hand_log_probs(model, x_adv, 2.0)
    ce = -lp[np.arange(4), y]
    kl = (np.exp(lp) * (lp - lq)).sum(axis=1)
    expected = np.mean(ce + beta * kl)
    assert kl.min() > 1e-3  # the robust term matters here
    np.testing.assert_allclose(_trainer_loss(trainer, x, x_adv, y), expected, rtol=0, atol=1e-6)


def test_mart_loss_matches_a_hand_computation():
    model = _tiny_model(temperature=1.0, seed=1)
    x, x_adv, y = _fixed_batch()
    beta = 6.0
    trainer = defenses.MartTrainer(model, "pgd(steps=2)", eps=0.1, beta=beta)
    lp, lq = _hand_log_probs(model, x, 1.0), _hand_log_probs(model, x_adv, 1.0)
    p, q = np.exp(lp), np.exp(lq)
    expected = []
    for i, label in enumerate(y):
        other = max(q[i, j] for j in range(3) if j != label)
        boosted = -lq[i, label] - np.log(1.0001 - other + 1e-12)
        kl = sum(p[i, j] * (np.log(p[i, j]) - np.log(q[i, j] + 1e-12)) for j in range(3))
        expected.append(boosted + beta * kl * (1.0000001 - p[i, label]))
    np.testing.assert_allclose(
        _trainer_loss(trainer, x, x_adv, y), np.mean(expected), rtol=0, atol=1e-6
    )


def _conv_model(seed=0):
    """Conv + batch norm + Dense, softmax output: kernels, biases and BN weights to tell apart."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((6, 6, 3))
    h = keras.layers.Conv2D(4, 3, name="conv")(inputs)
    h = keras.layers.BatchNormalization(name="bn")(h)
    h = keras.layers.Flatten()(keras.layers.ReLU()(h))
    return keras.Model(inputs, keras.layers.Dense(5, activation="softmax", name="out")(h))


def _batch(n=8, seed=0):
    rng = np.random.default_rng(seed)
    return tf.constant(rng.random((n, 6, 6, 3)), tf.float32), tf.constant(rng.integers(0, 5, n))


def _ce(x, y):
    return lambda forward: tf.reduce_mean(
        keras.losses.sparse_categorical_crossentropy(y, forward(x))
    )


def test_awp_perturbs_each_kernel_by_gamma_times_its_norm_along_the_gradient():
    model = _conv_model()
    x, y = _batch()
    gamma = 5e-3
    moving = [v.numpy().copy() for v in model.non_trainable_variables]
    delta = awp.perturbation(model, _ce(x, y), tf.constant(gamma))
    for before, variable in zip(moving, model.non_trainable_variables, strict=True):
        np.testing.assert_array_equal(
            before, variable.numpy()
        )  # the ascent pass left the BN statistics alone
    with tf.GradientTape() as tape:
        loss = _ce(x, y)(lambda images: model(images, training=True))
    gradients = tape.gradient(loss, model.trainable_variables)
    for variable, d, g in zip(model.trainable_variables, delta, gradients, strict=True):
        d = d.numpy()
        if len(variable.shape) < 2:  # biases, BN scale and offset
            np.testing.assert_array_equal(d, 0.0, err_msg=variable.path)
            continue
        w = variable.numpy()
        np.testing.assert_allclose(
            np.linalg.norm(d), gamma * np.linalg.norm(w), rtol=1e-6, err_msg=variable.path
        )
        g = g.numpy()
        np.testing.assert_allclose(
            d / np.linalg.norm(d), g / np.linalg.norm(g), atol=1e-6, err_msg=variable.path
        )


def test_awp_step_updates_the_unperturbed_weights_with_the_gradient_at_the_perturbed_point():
    model, twin = _conv_model(), _conv_model()
    x, y = _batch()
    gamma, rate = 0.05, 0.1
    before = [v.numpy().copy() for v in model.trainable_variables]
    delta = [d.numpy() for d in awp.perturbation(model, _ce(x, y), tf.constant(gamma))]
    assert max(np.abs(d).max() for d in delta) > 1e-3
    for variable, w, d in zip(twin.trainable_variables, before, delta, strict=True):
        variable.assign(w + d)
    with tf.GradientTape() as tape:
        loss = _ce(x, y)(
            lambda images: twin(images, training=True)
        )  # also updates twin's BN statistics once
    gradients = tape.gradient(loss, twin.trainable_variables)

    gamma_variable = keras.Variable(gamma, trainable=False)
    sgd = keras.optimizers.SGD(rate)
    sgd.build(model.trainable_variables)
    step_loss = tf.function(lambda: awp.train_step(model, sgd, _ce(x, y), gamma_variable))()
    np.testing.assert_allclose(float(step_loss), float(loss), rtol=1e-6)
    for variable, w, g in zip(model.trainable_variables, before, gradients, strict=True):
        np.testing.assert_allclose(
            variable.numpy(), w - rate * g.numpy(), rtol=0, atol=1e-6, err_msg=variable.path
        )
    for mine, twins in zip(
        model.non_trainable_variables, twin.non_trainable_variables, strict=True
    ):
        np.testing.assert_allclose(
            mine.numpy(), twins.numpy(), rtol=0, atol=1e-6, err_msg=mine.path
        )

    # at gamma 0 the step is a plain step at the current weights
    plain, reference = _conv_model(1), _conv_model(1)
    start = [v.numpy().copy() for v in plain.trainable_variables]
    with tf.GradientTape() as tape:
        loss = _ce(x, y)(lambda images: reference(images, training=True))
    gradients = tape.gradient(loss, reference.trainable_variables)
    awp.train_step(
        plain, keras.optimizers.SGD(rate), _ce(x, y), keras.Variable(0.0, trainable=False)
    )
    for variable, w, g in zip(plain.trainable_variables, start, gradients, strict=True):
        np.testing.assert_allclose(
            variable.numpy(), w - rate * g.numpy(), rtol=0, atol=1e-6, err_msg=variable.path
        )


@pytest.mark.parametrize("kind", ["trades_awp", "mart", "adversarial_awp"])
def test_one_step_changes_only_the_classifier_trainable_weights(kind):
    classifier = _conv_model()
    if kind == "adversarial_awp":
        trainer = defenses.AdversarialTrainer(
            classifier, "pgd(steps=2)", eps=0.05, ratio=1.0, awp_gamma=5e-3, seed=0
        )
        trainer.compile(
            optimizer=keras.optimizers.Adam(1e-2), loss="sparse_categorical_crossentropy"
        )
    else:
        cls = defenses.TradesTrainer if kind == "trades_awp" else defenses.MartTrainer
        trainer = cls(
            classifier,
            "pgd(steps=2)",
            eps=0.05,
            beta=6.0,
            awp_gamma=5e-3 if kind == "trades_awp" else 0.0,
            seed=0,
        )
        trainer.compile(optimizer=keras.optimizers.Adam(1e-2))
    x, y = _batch()
    trainer.optimizer.build(classifier.trainable_variables)
    trainable = {id(v) for v in classifier.trainable_variables}
    statistics = {id(v) for v in classifier.non_trainable_variables if "moving" in v.path}
    optimizer = {id(v) for v in trainer.optimizer.variables}
    before = {
        id(v): (v, v.numpy().copy()) for v in [*trainer.variables, *trainer.optimizer.variables]
    }
    trainer.train_on_batch(x, y)
    for key, (variable, value) in before.items():
        changed = not np.array_equal(value, variable.numpy())
        if key in trainable:
            assert changed, variable.path
        elif key not in statistics and key not in optimizer:
            assert not changed, variable.path  # eps, awp_gamma, metrics aside: nothing else moves
    assert {"eps"} <= {v.name for v in trainer.variables if id(v) not in trainable | statistics}


RESUME_CASES = {
    "trades_awp": dict(
        recipe="trades", trades_beta=6.0, awp_gamma=5e-3, awp_warmup_epochs=1, warmup_epochs=1
    ),
    "mart": dict(recipe="mart", mart_beta=6.0, eps_ramp_epochs=1),
    "adversarial_batch_awp": dict(recipe="adversarial_batch", adv_ratio=1.0, awp_gamma=5e-3),
}


class _InterruptAt(keras.callbacks.Callback):
    def __init__(self, epoch, batch):
        super().__init__()
        self.target, self.epoch = (epoch, batch), -1

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if (self.epoch, batch) == self.target:
            raise KeyboardInterrupt


@pytest.mark.parametrize("case", sorted(RESUME_CASES))
def test_interrupted_and_resumed_run_equals_the_uninterrupted_run(tmp_path, case):
    fields = dict(
        epochs=2,
        seed=3,
        attack="pgd",
        attack_steps=2,
        robust_eval_size=0,
        train_limit=96,
        **RESUME_CASES[case],
    )
    whole = run_training(tiny_config(tmp_path / "whole", **fields))
    with pytest.raises(KeyboardInterrupt):
        run_training(tiny_config(tmp_path / "cut", **fields), extra_callbacks=[_InterruptAt(1, 1)])
    resumed = run_training(tiny_config(tmp_path / "cut", resume=True, **fields))
    assert resumed.test_accuracy == whole.test_accuracy
    a = keras.saving.load_model(
        str(tmp_path / "whole" / "models" / "model.keras"), compile=False
    ).get_weights()
    b = keras.saving.load_model(
        str(tmp_path / "cut" / "models" / "model.keras"), compile=False
    ).get_weights()
    for u, v in zip(a, b, strict=True):
        np.testing.assert_array_equal(u, v)


@pytest.mark.parametrize(
    "fields, message",
    [
        (
            dict(recipe="standard", awp_gamma=5e-3),
            "adversarial weight perturbation is an option of recipes adversarial_batch, trades, "
            "mart, or such a teacher_recipe). Received: awp_gamma=0.005",
        ),
        (
            dict(recipe="trades", awp_gamma=1.5),
            "Expected awp_gamma in [0, 1) (0: off). Received: awp_gamma=1.5",
        ),
        (
            dict(recipe="trades", trades_beta=-1.0),
            "Expected trades_beta >= 0. Received: trades_beta=-1.0",
        ),
        (
            dict(recipe="mart", awp_warmup_epochs=-1),
            "Expected awp_warmup_epochs >= 0. Received: awp_warmup_epochs=-1",
        ),
        (
            dict(recipe="trades", attack="fgsm"),
            "with recipe trades (it maximises its KL term with pgd",
        ),
    ],
)
def test_config_checks_name_the_field(fields, message):
    with pytest.raises(
        ValueError, match=message.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")
    ):
        TrainConfig(**fields).validate()


def test_trainer_arguments_are_checked_and_echoed():
    model = _tiny_model()
    with pytest.raises(ValueError, match="Received: beta=-2"):
        defenses.TradesTrainer(model, "pgd", beta=-2)
    with pytest.raises(ValueError, match="Received: awp_gamma=2"):
        defenses.MartTrainer(model, "pgd", awp_gamma=2)
    with pytest.raises(ValueError, match="'pgd' value for TRADES"):
        defenses.TradesTrainer(model, "fgsm")


@pytest.mark.parametrize("norm, eps", [("inf", 0.03), ("2", 0.5)])
def test_kl_attack_stays_in_the_ball_and_raises_the_kl(norm, eps):
    """TRADES' inner maximisation (L-inf and L2): x' inside the eps-ball and [0, 1], and the KL
    to the clean prediction above that of the tiny random start."""
    from tfadv.defenses.trades import kl_attack, kl_divergence

    model = _conv_model()
    x, _ = _batch(16)
    log_f = lambda images: tf.math.log(tf.clip_by_value(model(images), 1e-7, 1.0))  # noqa: E731
    alpha = eps / 4
    start = kl_attack(log_f, x, eps, 0, alpha, seed=tf.constant([1, 2], tf.int64), norm=norm)
    adv = kl_attack(log_f, x, eps, 10, alpha, seed=tf.constant([1, 2], tf.int64), norm=norm)
    delta = (adv - x).numpy().reshape(16, -1)
    size = np.abs(delta).max(1) if norm == "inf" else np.linalg.norm(delta, axis=1)
    assert np.all(size <= eps + 1e-5), size.max()
    assert adv.numpy().min() >= 0.0 and adv.numpy().max() <= 1.0
    kl_start = kl_divergence(log_f(x), log_f(start)).numpy()
    kl_adv = kl_divergence(log_f(x), log_f(adv)).numpy()
    assert kl_adv.mean() > 10 * kl_start.mean(), (kl_adv.mean(), kl_start.mean())


def test_l2_trades_trainer_takes_an_l2_pgd_value():
    model = _tiny_model()
    trainer = defenses.TradesTrainer(model, "pgd(norm=2,steps=3)", eps=0.5, beta=6.0)
    assert trainer.norm.name == "2"


def test_trainers_serialise_and_reload(tmp_path):
    trainer = defenses.TradesTrainer(
        _tiny_model(), "pgd(steps=3)", eps=0.05, beta=1.0, awp_gamma=5e-3, seed=4
    )
    clone = defenses.TradesTrainer.from_config(trainer.get_config())
    assert (clone.beta, clone.awp_size, clone.seed, clone.steps) == (1.0, 5e-3, 4, 3)


def _tags(folder):
    tags = set()
    for path in glob.glob(os.path.join(folder, "events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            tags.update(v.tag for v in event.summary.value)
    return tags


def test_trades_awp_trains_under_mirrored_strategy_with_the_robust_monitor(mirrored_run):
    proc, out = mirrored_run
    output, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, output[-3000:]
    assert "replicas: 2" in output
    with open(out / "summary.json") as f:
        summary = json.load(f)
    assert "awp" in json.dumps(summary)
    assert "epoch_robust_accuracy" in _tags(str(out / "logs" / "model" / "validation"))
    assert (out / "models" / "model" / "saved_model.pb").exists()


def test_an_l2_trained_model_is_monitored_in_l2():
    from tfadv.experiment import training

    config = TrainConfig(recipe="trades", attack="pgd(norm=2)", eps=0.5)
    config.validate()
    assert training.monitor_attack(config).options["norm"] == "2"
    assert "norm" not in training.monitor_attack(TrainConfig(recipe="trades")).options
