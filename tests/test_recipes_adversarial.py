"""The adversarial and distillation recipes end to end: every config on tiny synthetic data,
exports, TensorBoard contents, --teacher_dir, and the CLI under MirroredStrategy."""

import glob
import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
from absl import flags

from tfadv import models
from tfadv.experiment import flags as cli
from tfadv.experiment import run_folder
from tfadv.experiment.config import TrainConfig
from tfadv.experiment.run import run_training

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = (
    "adversarial_batch_fgsm",
    "adversarial_batch_pgd",
    "adversarial_epoch",
    "random_noise",
    "distill",
    "distill_variant",
)
TINY = (
    "--dataset=synthetic",
    "--model=tiny_cnn",
    "--epochs=1",
    "--train_limit=200",
    "--test_limit=100",
    "--batch_size=50",
    "--overwrite",
    "--verbose=0",
    "--robust_eval_size=32",
    "--warmup_epochs=0",
)


def flagfile_config(name, output_dir, *overrides) -> TrainConfig:
    """The TrainConfig the CLI would build from configs/NAME.flags plus the tiny overrides."""
    values = flags.FlagValues()
    cli.define_flags_from_dataclass(TrainConfig, {}, flag_values=values)
    values(
        [
            "test",
            f"--flagfile={os.path.join(REPO, 'configs', name + '.flags')}",
            *TINY,
            f"--output_dir={output_dir}",
            *overrides,
        ]
    )
    return cli.dataclass_from_flags(TrainConfig, values)


def _tags(folder):
    tags = set()
    for path in glob.glob(os.path.join(folder, "events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            tags.update(v.tag for v in event.summary.value)
    return tags


def _load(run, name):
    return keras.saving.load_model(os.path.join(run, "models", name + ".keras"))


def test_configs_parse_and_select_their_recipes(tmp_path):
    expected = {
        "adversarial_batch_fgsm": ("adversarial_batch", "fgsm"),
        "adversarial_batch_pgd": ("adversarial_batch", "pgd"),
        "adversarial_epoch": ("adversarial_epoch", "fgsm"),
        "random_noise": ("random_noise", "fgsm"),
    }
    for name in CONFIGS:
        values = flags.FlagValues()
        cli.define_flags_from_dataclass(TrainConfig, {}, flag_values=values)
        values(["test", f"--flagfile={os.path.join(REPO, 'configs', name + '.flags')}"])
        config = cli.dataclass_from_flags(TrainConfig, values).validate()
        assert config.dataset == "cifar10", name
        if name in expected:
            assert (config.recipe, config.attack) == expected[name]
    distill = flagfile_config("distill", tmp_path)
    assert (
        distill.recipe,
        distill.teacher_temperature,
        distill.student_temperature,
        distill.deploy_temperature,
    ) == (
        "distill",
        50.0,
        50.0,
        1.0,
    )
    variant = flagfile_config("distill_variant", tmp_path)
    assert (variant.recipe, variant.teacher_temperature, variant.student_temperature) == (
        "distill_variant",
        1.0,
        4.0,
    )


@pytest.mark.parametrize(
    "name", ["adversarial_batch_fgsm", "adversarial_batch_pgd", "adversarial_epoch", "random_noise"]
)
def test_adversarial_configs_train_export_and_log(tmp_path, name):
    run = str(tmp_path / name)
    summary = run_training(flagfile_config(name, run))
    assert summary.main == "model" and os.path.exists(
        os.path.join(run, "models", "model", "saved_model.pb")
    )
    validation, train = (
        _tags(os.path.join(run, "logs", "model", "validation")),
        _tags(os.path.join(run, "logs", "model", "train")),
    )
    assert {"epoch_accuracy", "epoch_robust_accuracy", "epoch_robust_subset_accuracy"} <= validation
    if name != "random_noise":
        assert "epoch_eps" in train
    assert "adversarial_examples" in _tags(os.path.join(run, "logs", "model", "images"))


def test_a_config_runs_on_the_cifar10_binary_archive(tmp_path, mini_archive):
    run = str(tmp_path / "cifar")
    config = flagfile_config(
        "adversarial_epoch", run, "--dataset=cifar10", f"--data_dir={mini_archive}"
    )
    summary = run_training(config)
    assert "cifar10" in summary.dataset and os.path.exists(
        os.path.join(run, "models", "model", "saved_model.pb")
    )


class BackgroundRun:
    """A `python -m tfadv.train` run started at once and awaited when first needed."""

    def __init__(self, output_dir, *args):
        self.output_dir = str(output_dir)
        env = {
            **os.environ,
            "PYTHONPATH": REPO + os.pathsep + os.environ.get("PYTHONPATH", ""),
            "TF_CPP_MIN_LOG_LEVEL": "2",
        }
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tfadv.train", *args, f"--output_dir={self.output_dir}"],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.output = None

    def wait(self):
        if self.output is None:
            self.output, _ = self.proc.communicate(timeout=600)
        assert self.proc.returncode == 0, self.output[-3000:]
        with open(os.path.join(self.output_dir, "summary.json")) as f:
            return json.load(f)


@pytest.fixture(scope="module", autouse=True)
def distill_run(tmp_path_factory):
    """Defensive distillation through the CLI under MirroredStrategy on two logical CPUs, with
    an adversarially trained (PGD-2, half of each batch) teacher and test-time noise; started
    in the background when the module starts, so the in-process tests overlap with it."""
    run = BackgroundRun(
        tmp_path_factory.mktemp("runs") / "distill",
        "--flagfile=configs/distill.flags",
        *TINY,
        "--distribution=mirrored",
        "--logical_cpus=2",
        "--teacher_recipe=adversarial_batch",
        "--attack=pgd",
        "--attack_steps=2",
        "--adv_ratio=0.5",
        "--test_noise=random_sign",
        "--test_noise_eps=0.02",
    )
    yield run
    if run.proc.poll() is None:
        run.proc.kill()
        run.proc.communicate()


def test_cli_distillation_with_adversarial_teacher_under_mirrored_strategy(distill_run):
    summary = distill_run.wait()
    run = distill_run.output_dir
    assert set(summary["exports"]) == {
        "teacher",
        "student_T50",
        "student_T1",
        "student_T1_random_sign",
    }
    assert summary["main"] == "student_T1_random_sign" and "(main)" in distill_run.output
    for name, path in summary["exports"].items():
        assert os.path.exists(os.path.join(path, "saved_model.pb")), name
    # the teacher stage was per-batch adversarial training (eps and robust accuracy logged)
    assert "epoch_eps" in _tags(os.path.join(run, "logs", "teacher", "train"))
    assert "epoch_robust_accuracy" in _tags(os.path.join(run, "logs", "teacher", "validation"))
    assert {"epoch_soft_loss", "epoch_accuracy"} <= _tags(
        os.path.join(run, "logs", "student", "train")
    )


def test_distill_exports_the_student_at_each_temperature(distill_run):
    distill_run.wait()
    run = distill_run.output_dir
    hot, cold = _load(run, "student_T50"), _load(run, "student_T1")
    assert models.get_temperature(hot) == 50.0 and models.get_temperature(cold) == 1.0
    assert models.get_temperature(_load(run, "teacher")) == 50.0
    for a, b in zip(hot.weights, cold.weights, strict=True):
        if "temperature" not in a.path:
            np.testing.assert_array_equal(a.numpy(), b.numpy())
    x = np.random.default_rng(0).random((64, 32, 32, 3), dtype=np.float32)
    p_hot, p_cold = hot.predict(x, verbose=0), cold.predict(x, verbose=0)
    np.testing.assert_array_equal(p_hot.argmax(1), p_cold.argmax(1))
    assert (p_cold.max(1) >= p_hot.max(1) - 1e-6).all()  # T = 1 is sharper
    noisy = run_folder.load_model(run, "student_T1_random_sign")
    assert noisy.get_layer("test_noise").eps == 0.02


def test_variant_loads_the_teacher_from_an_earlier_run(tmp_path, distill_run):
    distill_run.wait()
    teacher_file = os.path.join(distill_run.output_dir, "models", "teacher.keras")
    run = str(tmp_path / "variant")
    summary = run_training(flagfile_config("distill_variant", run, f"--teacher_dir={teacher_file}"))
    assert (
        set(summary.exports) == {"teacher", "teacher_T4", "student_T4"}
        and summary.main == "student_T4"
    )
    assert not os.path.exists(os.path.join(run, "logs", "teacher"))  # not trained again
    original, exported = keras.saving.load_model(teacher_file), _load(run, "teacher")
    assert models.get_temperature(exported) == models.get_temperature(original) == 50.0
    for a, b in zip(original.weights, exported.weights, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert models.get_temperature(_load(run, "teacher_T4")) == 4.0
    assert models.get_temperature(_load(run, "student_T4")) == 4.0


def test_bad_distillation_input_is_a_user_error(tmp_path, distill_run):
    with pytest.raises(ValueError, match="teacher_recipe"):
        flagfile_config("distill", tmp_path / "a", "--teacher_recipe=nope").validate()
    with pytest.raises(ValueError, match="test_noise_eps"):
        flagfile_config("distill", tmp_path / "b", "--test_noise=gaussian").validate()
    distill_run.wait()
    saved_model = os.path.join(distill_run.output_dir, "models", "teacher")
    with pytest.raises(ValueError, match="teacher_dir"):
        run_training(flagfile_config("distill", tmp_path / "c", f"--teacher_dir={saved_model}"))
    assert not os.path.exists(tmp_path / "c")  # checked before the run folder is made
    missing = tmp_path / "nope"
    with pytest.raises(
        FileNotFoundError, match=f"does not exist. Received: teacher_dir='{missing}'$"
    ):
        run_training(flagfile_config("distill", tmp_path / "d", f"--teacher_dir={missing}"))
    assert not os.path.exists(tmp_path / "d")


def test_per_epoch_copy_that_rounds_to_no_image_trains_on_the_clean_set(tmp_path):
    """--adv_fraction=0.001 of 200 images is 0 images: the regeneration callback has nothing to
    do."""
    summary = run_training(
        flagfile_config("adversarial_epoch", tmp_path / "run", "--adv_fraction=0.001")
    )
    assert summary.notes["adv_fraction"] == 0.001
    history = _tags(os.path.join(tmp_path, "run", "logs", "model", "train"))
    assert (
        "epoch_regeneration_seconds" in history and "epoch_loss" in history
    )  # the epoch ran with its callback
