"""Multi-worker training: two `python -m tfadv.train` workers of one MultiWorkerMirroredStrategy
cluster on localhost (free ports, a TF_CONFIG each, bounded time), for what is computed per
replica: adversarial examples in the train step (adversarial_batch, with the robust monitor),
and in one run a per-epoch adversarial copy (a teacher trained by adversarial_epoch) and that
teacher's soft labels (the distillation student). The chief alone writes the run folder; the
workers agree bit for bit. (Standard and random_noise training take the same paths as the
teacher's; distill_variant differs from distill only in temperatures.)"""

import json
import os
import re

import pytest

from conftest import REPO_ROOT
from tfadv.experiment import workers as local_workers

TINY = [
    "--dataset=synthetic",
    "--model=tiny_cnn",
    "--epochs=1",
    "--batch_size=32",
    "--train_limit=200",
    "--test_limit=64",
    "--verbose=2",
    "--distribution=multi_worker",
    "--robust_eval_size=0",
]
RECIPES = {
    "adversarial_batch": [
        "--recipe=adversarial_batch",
        "--attack=pgd",
        "--attack_steps=2",
        "--augment=standard",
        "--epochs=2",
        "--robust_eval_size=16",
        "--monitor_attack=pgd(steps=2)",
    ],
    "distill_adversarial_epoch_teacher": [
        "--recipe=distill",
        "--teacher_recipe=adversarial_epoch",
        "--attack=fgsm_random",
        "--adv_fraction=0.5",
        "--teacher_temperature=10",
        "--student_temperature=10",
    ],
}
TIMEOUT = 420


@pytest.fixture(scope="module")
def clusters(tmp_path_factory):
    """Every recipe's two-worker cluster, all started at once; {recipe: (exit codes, outputs,
    folder)}."""
    root = tmp_path_factory.mktemp("multi_worker")
    started = {}
    for name, args in RECIPES.items():
        folder = root / name
        for sub in ("cwd", "scratch"):
            (folder / sub).mkdir(parents=True)
        argv = [*TINY, *args, f"--output_dir={folder / 'run'}"]
        workers = local_workers.start_workers(
            argv,
            2,
            str(folder / "logs"),
            cwd=str(folder / "cwd"),
            extra_env={"TMPDIR": str(folder / "scratch")},
        )
        started[name] = (workers, folder)
    results = {}
    for name, (workers, folder) in started.items():
        codes = local_workers.wait_all(workers, TIMEOUT)
        outputs = [open(log).read() for _, log in workers]
        results[name] = (codes, outputs, folder)
    return results


@pytest.mark.parametrize("recipe", sorted(RECIPES))
def test_two_workers_train_agree_and_only_the_chief_writes(clusters, recipe):
    codes, outputs, folder = clusters[recipe]
    assert codes == [0, 0], [out[-3000:] for out in outputs]
    accuracies = [
        dict(re.findall(r"clean test accuracy (\S+)(?: \(main\))?: ([0-9.]+)", out))
        for out in outputs
    ]
    assert accuracies[0] == accuracies[1] and accuracies[0]  # the workers agree on every model
    weights = [
        dict(
            re.findall(r"(\S+) ([0-9a-f]{16})", " ".join(re.findall(r"^weights: (.*)$", out, re.M)))
        )
        for out in outputs
    ]
    assert weights[0] == weights[1] and sorted(weights[0]) == sorted(accuracies[0])  # bit for bit
    for index, out in enumerate(outputs):
        assert "replicas: 2" in out and f"worker: worker {index} of 2 replicas" in out
    summary = json.loads((folder / "run" / "summary.json").read_text())
    assert {name: f"{value:.4f}" for name, value in summary["test_accuracy"].items()} == accuracies[
        0
    ]
    assert summary["weights"] == weights[0]
    assert sorted(os.listdir(folder / "run" / "models")) == sorted(
        [f"{name}.keras" for name in summary["exports"]] + list(summary["exports"])
    )
    assert (
        os.listdir(folder / "cwd") == [] and os.listdir(folder / "scratch") == []
    )  # worker 1 wrote nothing that stayed


SPLIT_GENERATION = """
import numpy as np
import tensorflow as tf
tf.config.set_logical_device_configuration(tf.config.list_physical_devices("CPU")[0],
    [tf.config.LogicalDeviceConfiguration()] * 2)
import keras
from tfadv import attacks, data, defenses, models
keras.utils.set_random_seed(0)
strategy = tf.distribute.MirroredStrategy([d.name for d in tf.config.list_logical_devices("CPU")])
with strategy.scope():
    model = models.build("tiny_cnn")
train = data.make_synthetic(70, seed=0)  # 2 chunks of 2 x 16 images, then a short one
x, y = train.float_images(), train.labels
plain = defenses.generate(model, attacks.Attack("fgsm"), x, y, 0.03, batch_size=16)
split = defenses.generate_per_replica(strategy, model, attacks.Attack("fgsm"), x, y, 0.03,
    batch_size=16)
random = [defenses.generate_per_replica(strategy, model, attacks.Attack("fgsm_random"), x, y, 0.03,
    batch_size=16, seed=(1, 2)) for _ in range(2)]
print(split.shape, float(np.mean(plain == split)), float(np.abs(random[0] - x).max()),
    bool((random[0] == random[1]).all()))
"""


def test_per_epoch_copy_is_generated_per_replica_and_gathered_in_order():
    """Two replicas (logical CPUs) each attack their share; the gathered copy is FGSM of every
    image, in order."""
    import subprocess
    import sys

    env = dict(os.environ, PYTHONPATH=REPO_ROOT, TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run(
        [sys.executable, "-c", SPLIT_GENERATION],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    shape, same, distance, repeatable = (
        result.stdout.split(")")[0] + ")",
        *result.stdout.split(")")[1].split(),
    )
    assert shape == "(70, 32, 32, 3)" and float(same) == 1.0
    assert abs(float(distance) - 0.03) < 1e-6 and repeatable == "True"
