"""Exact resume: a run interrupted anywhere and continued with resume=True ends with the same
weights and the same summary figures as the run that was never interrupted.

Every recipe is killed in each of its stages after a finished epoch, in the export and in the
evaluation (tfadv.experiment.resume_check: the run folder as a kill at that moment leaves it, or
a run that raises there); the uninterrupted runs are shared by a module fixture. One real
`kill -9` of the CLI tests the on-disk state (atomic backups, temporaries left behind)."""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import REPO_ROOT, tiny_config
from tfadv import data as data_lib
from tfadv.experiment import resume, resume_check
from tfadv.runtime import files

KP = resume_check.KillPoint
ADVERSARIAL = dict(
    attack="pgd", attack_steps=2, adv_ratio=0.5, eps_ramp_epochs=1, robust_eval_size=0
)
# Fast AT (configs/adversarial_batch_fast.flags at tiny scale) whose guard stops in epoch 1 of 3,
# below the best (epoch 0) by more than guard_drop: a resumed run that forgot the guard's best
# epoch would train on.
FAST_STOPPING = dict(
    recipe="adversarial_batch",
    attack="fgsm_random",
    attack_alpha=0,
    eps=0.03,
    adv_ratio=1.0,
    robust_eval_size=0,
    guard_images=64,
    guard_drop=0.02,
    learning_rate=0.003,
    seed=3,
)
# name: (settings, epochs, kill points); every stage is killed after at least one finished epoch
CASES = {
    "standard_noise_augment": (
        dict(noise="after_first_conv", noise_stddev=0.2, augment="all"),
        2,
        [
            KP("model", "epoch", 1)
        ],  # killed in export and evaluation below (and in tools/study_resume.py)
    ),
    "adversarial_batch": (
        dict(recipe="adversarial_batch", **ADVERSARIAL),
        2,
        [KP("model", "epoch", 1)],
    ),
    "adversarial_epoch": (
        dict(
            recipe="adversarial_epoch", attack="fgsm_random", adv_fraction=0.5, robust_eval_size=0
        ),
        2,
        [KP("model", "epoch", 1)],
    ),
    "random_noise": (
        dict(recipe="random_noise", adv_fraction=0.5, robust_eval_size=0),
        2,
        [KP("model", "epoch", 1)],
    ),
    "distill_adversarial_batch_teacher": (
        dict(
            recipe="distill", teacher_recipe="adversarial_batch", augment="standard", **ADVERSARIAL
        ),
        2,
        [KP("teacher", "epoch", 1), KP("student", "epoch", 1)],
    ),
    "distill_variant_random_noise_teacher": (
        dict(
            recipe="distill_variant",
            teacher_recipe="random_noise",
            adv_fraction=0.5,
            student_temperature=4.0,
        ),
        2,
        [KP("teacher", "epoch", 1), KP("student", "epoch", 1)],
    ),
    "adversarial_batch_fast_guard_stops_after_resume": (
        FAST_STOPPING,
        3,
        [KP("model", "epoch", 1), KP("model", "stage_end")],
    ),
}


def _expected_epochs(point, names, epochs):
    """{stage: epochs} the resumed run must train: the rest of the killed stage, all of the later
    ones."""
    if point.moment != "epoch":
        return {}
    later = names[names.index(point.stage) + 1 :]
    return {point.stage: epochs - point.epoch, **{stage: epochs for stage in later}}


def _config(case, output_dir):
    settings, epochs, _ = CASES[case]
    return tiny_config(output_dir, **{"epochs": epochs, "seed": 3, **settings})


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """case -> (the uninterrupted run's summary, {kill point: copy of its folder}), run once per
    case."""
    runs = {}

    def get(case):
        if case not in runs:
            work = str(tmp_path_factory.mktemp(case))
            runs[case] = resume_check.reference_with_snapshots(
                _config(case, work), CASES[case][2], work
            )
        return runs[case]

    return get


@pytest.mark.parametrize("case", sorted(CASES))
def test_killed_and_resumed_run_equals_the_uninterrupted_run(tmp_path, case, uninterrupted):
    """The run folder as a kill at each point leaves it (copied from the uninterrupted run),
    resumed: the same weights checksums and test accuracies, after training only what was left."""
    config = _config(case, tmp_path)
    reference, copies = uninterrupted(case)
    names = resume_check.stages(config)
    for point in CASES[case][2]:
        resumed, trained = resume_check.resume_in(config, copies[point])
        assert (resumed.weights, resumed.test_accuracy) == (
            reference.weights,
            reference.test_accuracy,
        ), point
        expected = _expected_epochs(point, names, config.epochs)
        if (
            "guard" in case
        ):  # the guard stops in epoch 1 of 3: resumed in it, the run trains only it;
            expected = (
                {"model": 1} if point.moment == "epoch" else {}
            )  # resumed after the stop: nothing
        assert {k: v for k, v in trained.items() if v} == expected, point


@pytest.mark.parametrize(
    ("case", "moment"),
    [("distill_variant_random_noise_teacher", "export"), ("standard_noise_augment", "evaluation")],
)
def test_run_interrupted_in_export_or_evaluation_resumes_to_the_same_run(
    tmp_path, case, moment, uninterrupted
):
    """A run that raises in the export (after the first of its three models) or in the test-accuracy
    computation, resumed in its folder: the uninterrupted run's figures; nothing is trained
    again."""
    config = _config(case, tmp_path)
    reference, _ = uninterrupted(case)
    folder = resume_check.interrupt(config, KP("run", moment), str(tmp_path))
    assert not os.path.exists(os.path.join(folder, "summary.json"))
    models_written = sorted(
        n for n in os.listdir(os.path.join(folder, "models")) if n.endswith(".keras")
    )
    assert len(models_written) == (1 if moment == "export" else len(reference.weights))
    assert len(reference.weights) == (3 if moment == "export" else 1)
    resumed, trained = resume_check.resume_in(config, folder)
    assert (resumed.weights, resumed.test_accuracy) == (reference.weights, reference.test_accuracy)
    assert trained == {}


def test_cli_killed_with_sigkill_resumes_to_the_same_run(tmp_path):
    """A real `kill -9` soon after epoch 2 of 3 starts (tiny_cnn with input noise and augmentation),
    resumed with the README's quickstart config, which sets --overwrite (not consulted with
    --resume)."""
    assert (
        "--overwrite"
        in open(os.path.join(REPO_ROOT, "configs", "standard_quickstart.flags")).read().split()
    )
    args = [
        "--flagfile=configs/standard_quickstart.flags",
        "--model=tiny_cnn",
        "--epochs=3",
        "--train_limit=400",
        "--test_limit=100",
        "--batch_size=32",
        "--augment=standard",
        "--noise=input",
        "--noise_stddev=0.05",
        "--seed=3",
    ]
    tool = os.path.join(REPO_ROOT, "tools", "check_resume.py")
    command = [
        sys.executable,
        tool,
        f"--work_dir={tmp_path}",
        "--kill_at=Epoch 2/",
        "--delay=0.2",
        "--",
        *args,
    ]
    result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "SAME" in result.stdout
    killed = open(tmp_path / "killed.log").read()
    assert "Epoch 2/3" in killed and "clean test accuracy" not in killed  # it died mid-run
    assert "resuming at epoch 2 of 3" in open(tmp_path / "resume.log").read()
    assert not [p for p in (tmp_path / "resumed").rglob("*") if files.is_temporary(p.name)]


def test_pipeline_batches_are_a_function_of_seed_and_epoch():
    train = data_lib.make_synthetic(40, seed=0)
    epoch = data_lib.epoch_variable()
    ds = data_lib.to_dataset(
        train, 8, shuffle=True, augment=("flip", "crop", "color"), seed=5, epoch=epoch
    )

    def first_epoch_batches(e):
        epoch.assign(e)
        return np.concatenate([x.numpy() for x, _ in ds])

    e2 = first_epoch_batches(2)
    e0 = first_epoch_batches(0)
    np.testing.assert_array_equal(
        first_epoch_batches(2), e2
    )  # the history of iterations does not matter
    assert not np.array_equal(e0, e2)
    labels = np.concatenate([y.numpy() for _, y in ds])
    assert sorted(labels) == sorted(train.labels)  # a permutation of the set
    fresh = data_lib.to_dataset(
        train, 8, shuffle=True, augment=("flip", "crop", "color"), seed=5, epoch=2
    )
    np.testing.assert_array_equal(np.concatenate([x.numpy() for x, _ in fresh]), e2)


def test_pipeline_without_epoch_counts_passes():
    train = data_lib.make_synthetic(24, seed=0)
    ds = data_lib.to_dataset(train, 8, shuffle=True, seed=1)
    passes = [np.concatenate([y.numpy() for _, y in ds]) for _ in range(2)]
    assert not np.array_equal(*passes)  # a new order each pass, as with reshuffle_each_iteration
    for k, labels in enumerate(passes):
        fixed = data_lib.to_dataset(train, 8, shuffle=True, seed=1, epoch=k)
        np.testing.assert_array_equal(np.concatenate([y.numpy() for _, y in fixed]), labels)


def test_pipeline_refuses_to_be_made_inside_a_strategy_scope():
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    with strategy.scope(), pytest.raises(ValueError, match="outside strategy.scope"):
        data_lib.epoch_variable()


def test_epoch_start_reseeds_generators_from_seed_and_epoch():
    from tfadv import models

    model = models.build("tiny_cnn", noise="input", noise_stddev=0.5, seed=1)
    x = tf.fill((2, 32, 32, 3), 0.5)
    callback = resume.EpochStart(seed=7)
    callback.set_model(model)
    callback.on_epoch_begin(3)
    first = model(x, training=True).numpy()
    model(x, training=True)  # advances the generator
    callback.on_epoch_begin(3)
    np.testing.assert_array_equal(model(x, training=True).numpy(), first)
    callback.on_epoch_begin(4)
    assert not np.array_equal(model(x, training=True).numpy(), first)
    assert len(resume.generator_states(model)) == 1


def test_backup_is_written_whole_and_restored(tmp_path):
    from tfadv import models

    model = models.build("tiny_cnn")
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy")
    x, y = (
        np.random.default_rng(0).uniform(0, 1, (8, 32, 32, 3)).astype("float32"),
        np.arange(8) % 10,
    )
    model.fit(x, y, epochs=1, verbose=0)
    backup = resume.Backup(str(tmp_path / "backup"))
    backup.set_model(model)
    backup.on_epoch_end(4)
    assert sorted(os.listdir(tmp_path)) == ["backup"]  # no temporary left
    expected = [resume.CALLBACKS_FILE, resume.ARRAYS_FILE, resume.WEIGHTS_FILE, resume.STATE_FILE]
    assert sorted(os.listdir(tmp_path / "backup")) == sorted(expected)
    fresh = models.build("tiny_cnn")
    fresh.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy")
    assert resume.restore(fresh, str(tmp_path / "backup")) == 5
    for a, b in zip(model.get_weights(), fresh.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    assert int(fresh.optimizer.iterations.numpy()) == int(model.optimizer.iterations.numpy()) == 1
    assert resume.restore(fresh, str(tmp_path / "absent")) == 0
