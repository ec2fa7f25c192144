"""tfadv.train end to end: CLI, export and reload, resume, repeatability, distribution (bad input:
test_bad_input.py)."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import REPO_ROOT, tiny_config
from tfadv import data, models
from tfadv.experiment import load_run
from tfadv.experiment.run import run_training

TINY_FLAGS = [
    "--dataset=synthetic",
    "--model=tiny_cnn",
    "--epochs=1",
    "--batch_size=32",
    "--train_limit=160",
    "--test_limit=64",
    "--verbose=0",
]


def run_cli(*args, module="tfadv.train", timeout=300):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def test_cli_end_to_end_export_reloads_with_same_predictions(tmp_path):
    out = tmp_path / "run"
    result = run_cli(
        "--flagfile=configs/standard_quickstart.flags", *TINY_FLAGS, f"--output_dir={out}"
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "clean test accuracy model (main)" in result.stdout
    for name in (
        "config.json",
        "summary.json",
        "models/model.keras",
        "models/model/saved_model.pb",
    ):
        assert (out / name).exists(), name
    config = json.loads((out / "config.json").read_text())
    assert (
        config["model"] == "tiny_cnn" and config["epochs"] == 1
    )  # command line overrides the flagfile
    assert list((out / "logs" / "model").rglob("events.out.tfevents*"))
    leftovers = [p.name for p in (out / "models").iterdir() if ".tmp-" in p.name]
    assert leftovers == []

    x = np.random.default_rng(0).uniform(0, 1, (16, 32, 32, 3)).astype("float32")
    keras_model = keras.saving.load_model(str(out / "models" / "model.keras"))
    loaded = tf.saved_model.load(str(out / "models" / "model"))
    probs = loaded.signatures["serving_default"](images=tf.constant(x))["probabilities"].numpy()
    logits = loaded.signatures["logits"](images=tf.constant(x))["logits"].numpy()
    np.testing.assert_allclose(probs, keras_model.predict(x, verbose=0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        logits, models.logits_model(keras_model)(x).numpy(), rtol=1e-5, atol=1e-5
    )
    np.testing.assert_allclose(probs, tf.nn.softmax(logits).numpy(), rtol=1e-5, atol=1e-6)
    summary = json.loads((out / "summary.json").read_text())
    exported = models.load(str(out / "models" / "model"))
    np.testing.assert_array_equal(exported(x).numpy().argmax(1), probs.argmax(1))
    test = data.load("synthetic", test_limit=64, train_limit=160).test  # the run's test split
    accuracy = float(
        (keras_model.predict(test.float_images(), verbose=0).argmax(1) == test.labels).mean()
    )
    assert summary["test_accuracy"]["model"] == pytest.approx(accuracy, abs=1e-9)
    run = load_run(str(out), limit=32)  # the public way to a run's model and data
    np.testing.assert_array_equal(run.data.labels, test.labels[:32])
    np.testing.assert_array_equal(run.data.images, test.images[:32])
    np.testing.assert_allclose(run.model.predict(x, verbose=0), probs, rtol=1e-5, atol=1e-6)
    assert run.summary == summary and run.config == config and len(run.class_names) == 10
    with pytest.raises(ValueError, match="Received: run="):
        load_run(str(tmp_path))


def test_training_learns_synthetic_data(tmp_path):
    config = tiny_config(
        tmp_path / "r",
        epochs=3,
        train_limit=2000,
        test_limit=300,
        batch_size=64,
        learning_rate=5e-3,
    )
    summary = run_training(config)
    assert summary.test_accuracy["model"] > 0.3  # chance is 0.1; this measured 0.57


class _InterruptAt(keras.callbacks.Callback):
    def __init__(self, epoch):
        super().__init__()
        self.interrupt_epoch = epoch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.interrupt_epoch:
            raise KeyboardInterrupt


class _RecordEpochs(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.epochs = []

    def on_epoch_begin(self, epoch, logs=None):
        self.epochs.append(epoch)


def test_resume_continues_an_interrupted_run(tmp_path):
    config = tiny_config(tmp_path / "r", epochs=3)
    with pytest.raises(KeyboardInterrupt):
        run_training(config, extra_callbacks=[_InterruptAt(2)])
    assert not (tmp_path / "r" / "models").exists()  # nothing exported from a broken run
    with pytest.raises(ValueError, match="resume=True"):
        run_training(config)
    recorder = _RecordEpochs()
    summary = run_training(
        tiny_config(tmp_path / "r", epochs=3, resume=True), extra_callbacks=[recorder]
    )
    assert recorder.epochs == [2]
    assert (tmp_path / "r" / "models" / "model.keras").exists() and summary.main == "model"


def test_same_seed_same_model(tmp_path):
    a = run_training(tiny_config(tmp_path / "a", seed=5))
    b = run_training(tiny_config(tmp_path / "b", seed=5))
    wa = keras.saving.load_model(str(tmp_path / "a/models/model.keras")).get_weights()
    wb = keras.saving.load_model(str(tmp_path / "b/models/model.keras")).get_weights()
    for x, y in zip(wa, wb, strict=True):
        np.testing.assert_array_equal(x, y)
    assert a.test_accuracy == b.test_accuracy


def test_mirrored_strategy_on_two_logical_cpus(tmp_path):
    # 135 training images in batches of 32: the last batch (7) does not split evenly over 2 replicas
    args = [*TINY_FLAGS, "--train_limit=150", "--distribution=mirrored", "--logical_cpus=2"]
    result = run_cli(*args, f"--output_dir={tmp_path / 'm'}")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "replicas: 2" in result.stdout
    assert (tmp_path / "m" / "models" / "model" / "saved_model.pb").exists()


def test_existing_output_dir_needs_overwrite(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "config.json").write_text("{}")
    (out / "keep.txt").write_text("user data")
    result = run_cli(*TINY_FLAGS, f"--output_dir={out}", timeout=120)
    assert result.returncode != 0 and "--overwrite" in result.stderr
    assert (out / "keep.txt").read_text() == "user data"
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("precious")
    with pytest.raises(ValueError, match="refuses to delete"):
        run_training(tiny_config(foreign, overwrite=True))
    assert (foreign / "thesis.tex").exists()


def test_cosine_schedule_is_per_epoch_and_logged(tmp_path):
    from tfadv.experiment.training import cosine_learning_rate

    rate = cosine_learning_rate(1e-3, 4)
    assert [round(rate(e), 7) for e in range(4)] == [1e-3, 8.536e-4, 5e-4, 1.464e-4]
    summary = run_training(tiny_config(tmp_path / "c", epochs=2, lr_schedule="cosine"))
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path / "c" / "logs" / "model" / "train")).Reload()
    logged = [float(tf.make_ndarray(e.tensor_proto)) for e in events.Tensors("epoch_learning_rate")]
    np.testing.assert_allclose(logged, [1e-3, 5e-4], rtol=1e-5)
    assert summary.main == "model"


def test_test_noise_wraps_the_main_model_of_any_recipe(tmp_path):
    summary = run_training(
        tiny_config(tmp_path / "n", test_noise="random_sign", test_noise_eps=0.05)
    )
    assert summary.main == "model_random_sign" and set(summary.exports) == {
        "model",
        "model_random_sign",
    }
    served = tf.saved_model.load(summary.exports["model_random_sign"]).signatures["serving_default"]
    x = tf.fill((8, 32, 32, 3), 0.5)
    a, b = served(images=x)["probabilities"].numpy(), served(images=x)["probabilities"].numpy()
    assert not np.allclose(a, b)  # the exported model keeps its noise on at inference
