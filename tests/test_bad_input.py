"""Every command refuses bad input in one clear line, before it writes anything.

One table of (command, arguments, expected fragment) rows, run as parallel subprocesses. For
each row: a non-zero exit, exactly one stderr line starting with "error:", no traceback, the
fragment in that line, and the row's folder (its working directory and output folder) exactly
as it was. Rows for another command (e.g. `tfadv.evaluate`) are added by naming its module in
COMMANDS. Placeholders in arguments: {out} (a fresh output folder), {fixtures} (files made
once, below), {run} (a finished tiny run folder), {configs} (the repository's configs/).
"""

import concurrent.futures
import os
import subprocess
import sys

import pytest

from conftest import REPO_ROOT, tiny_config

COMMANDS = {"train": "tfadv.train", "attack": "tfadv.attack", "evaluate": "tfadv.evaluate"}
TINY = (
    "--dataset=synthetic --model=tiny_cnn --epochs=1 --batch_size=32 --train_limit=160 "
    "--test_limit=64 --verbose=0"
)
DISTILL = f"{TINY} --recipe=distill"
ATTACK = "--model={run} --attack=pgd --eps=0.03 --limit=16 --verbose=0"
EVALUATE = (
    "--model={run} --suite=pgd(steps=2,early_stop=True) --sweep_eps=0.01 --limit=16 "
    "--output_dir={out} --verbose=0"
)

ROWS = [
    # train: numbers and plain choices (checked before TensorFlow loads)
    (
        "train",
        f"{TINY} --recipe=adversarial_batch --eps=nan",
        "Expected a finite number. Received: --eps=nan",
    ),
    ("train", f"{TINY} --eps=inf", "Expected a finite number. Received: --eps=inf"),
    ("train", f"{TINY} --eps=2", "Expected eps in [0, 1] (pixel scale). Received: --eps=2.0"),
    ("train", f"{TINY} --eps=-0.1", "Received: --eps=-0.1"),
    ("train", f"{TINY} --learning_rate=nan", "--learning_rate=nan"),
    (
        "train",
        f"{TINY} --learning_rate=0",
        "Expected learning_rate > 0. Received: --learning_rate=0.0",
    ),
    ("train", f"{TINY} --student_temperature=-inf", "--student_temperature=-inf"),
    ("train", f"{TINY} --attack_alpha=nan", "--attack_alpha=nan"),
    ("train", f"{TINY} --test_noise_eps=inf", "--test_noise_eps=inf"),
    ("train", f"{TINY} --epochs=0", "--epochs=0"),
    ("train", f"{TINY} --batch_size=-4", "--batch_size=-4"),
    ("train", f"{TINY} --adv_ratio=1.5", "--adv_ratio=1.5"),
    ("train", f"{TINY} --adv_fraction=0", "--adv_fraction=0.0"),
    ("train", f"{TINY} --distill_alpha=2", "--distill_alpha=2.0"),
    ("train", f"{TINY} --validation_fraction=1", "--validation_fraction=1.0"),
    ("train", f"{TINY} --seed=-1", "--seed=-1"),
    ("train", f"{TINY} --train_limit=-5", "--train_limit=-5"),
    ("train", f"{TINY} --temperature=0", "--temperature=0.0"),
    ("train", f"{TINY} --noise_stddev=-1", "--noise_stddev=-1.0"),
    ("train", f"{TINY} --attack_steps=0", "--attack_steps=0"),
    (
        "train",
        f"{TINY} --test_noise=random_sign",
        "Expected test_noise_eps > 0 with --test_noise='random_sign'. Received: "
        "--test_noise_eps=0.0",
    ),
    ("train", f"{TINY} --test_noise=salt", "--test_noise='salt'"),
    ("train", f"{TINY} --lr_schedule=step", "--lr_schedule='step'"),
    ("train", f"{TINY} --distribution=tpu", "--distribution='tpu'"),
    ("train", f"{TINY} --jit_compile=maybe", "--jit_compile='maybe'"),
    ("train", f"{TINY} --verbose=7", "--verbose=7"),
    ("train", f"{TINY} --attack_loss_on=softmax", "--attack_loss_on='softmax'"),
    # train: files, teachers and the run folder
    (
        "train",
        f"{DISTILL} --teacher_dir=/nonexistent/teacher",
        "does not exist. Received: --teacher_dir='/nonexistent/teacher'",
    ),
    ("train", f"{TINY} --flagfile={{fixtures}}/does_not_exist.flags", "does_not_exist.flags"),
    ("train", f"{TINY} --bogus_flag=1", "bogus_flag"),
    ("train", f"{TINY} --output_dir={{fixtures}}/a_file/sub", "not writable"),
    ("train", f"{TINY} --output_dir={{fixtures}}/foreign --overwrite", "refuses to delete"),
    ("train", f"{TINY} --output_dir={{fixtures}}/foreign --resume", "not a tfadv run folder"),
    ("train", f"{TINY} --output_dir={{run}}", "already exists"),
    (
        "train",
        f"{TINY} --output_dir={{run}} --resume --epochs=3",
        "start a new run). Received: --epochs=3",
    ),
    ("train", f"{TINY} --output_dir={{run}} --resume --seed=1", "Received: --seed=1"),
    # train: names and models (these load TensorFlow: a few rows, each kind of check once;
    # the library test below covers more names in one process)
    ("train", f"{TINY} --model=resnet999", "--model='resnet999'"),
    ("train", f"{TINY} --recipe=magic", "--recipe='magic'"),
    ("train", f"{TINY} --dataset=imagenet_but_not", "unknown dataset"),
    ("train", f"{TINY} --recipe=adversarial_batch --attack=pgd(steps=0)", "steps=0"),
    ("train", f"{DISTILL} --teacher_dir={{fixtures}}/corrupt.keras", "cannot load the Keras model"),
    ("train", f"{DISTILL} --teacher_dir={{fixtures}}/gray28.keras", "takes (28, 28, 1) images"),
    (
        "train",
        f"{TINY} --dataset=cifar10 --data_dir={{fixtures}}/broken.tar.gz",
        "corrupt or truncated",
    ),
    # attack: numbers and paths (checked before TensorFlow loads)
    ("attack", f"{ATTACK} --eps=nan", "--eps=nan"),
    ("attack", f"{ATTACK} --eps=inf", "--eps=inf"),
    ("attack", f"{ATTACK} --eps=5", "--eps=5.0"),
    ("attack", f"{ATTACK} --eps=-0.1", "--eps=-0.1"),
    ("attack", f"{ATTACK} --alpha=nan", "--alpha=nan"),
    ("attack", f"{ATTACK} --alpha=-0.01", "--alpha=-0.01"),
    ("attack", f"{ATTACK} --attack=patch --steps=2 --step_size=inf", "--step_size=inf"),
    ("attack", f"{ATTACK} --attack=patch --patch_size=0", "--patch_size=0"),
    ("attack", f"{ATTACK} --steps=0", "--steps=0"),
    ("attack", f"{ATTACK} --restarts=0", "--restarts=0"),
    ("attack", f"{ATTACK} --batch_size=0", "--batch_size=0"),
    ("attack", f"{ATTACK} --limit=-1", "--limit=-1"),
    ("attack", f"{ATTACK} --grid_images=-1", "--grid_images=-1"),
    ("attack", f"{ATTACK} --attack=fgsm_targeted --target=-1", "--target=-1"),
    ("attack", f"{ATTACK} --model_output=maybe", "--model_output='maybe'"),
    (
        "attack",
        f"{ATTACK} --model=/nonexistent/model.keras",
        "does not exist. Received: --model='/nonexistent/model.keras'",
    ),
    (
        "attack",
        f"{ATTACK} --surrogate=/nonexistent",
        "does not exist. Received: --surrogate='/nonexistent'",
    ),
    ("attack", f"{ATTACK} --output_dir={{fixtures}}/foreign", "already exists"),
    ("attack", f"{ATTACK} --split=holdout", "holdout"),
    ("attack", f"{ATTACK} --bogus=1", "bogus"),
    # attack: attacks and models (these load TensorFlow)
    ("attack", f"{ATTACK} --attack=jsma", "Unknown attack 'jsma'"),
    ("attack", f"{ATTACK} --attack=fgsm_targeted --target=99", "--target=99"),
    ("attack", f"{ATTACK} --model={{fixtures}}/corrupt.keras", "cannot load the Keras model"),
    (
        "attack",
        f"{ATTACK} --model={{fixtures}}/gray28.keras --dataset=synthetic",
        "takes (28, 28, 1) images",
    ),
    ("attack", f"{ATTACK} --surrogate={{fixtures}}/five_classes.keras", "--surrogate="),
    ("attack", f"{ATTACK} --model_name=ghost", "no model 'ghost'"),
    # evaluate: numbers, paths and choices (checked before TensorFlow loads)
    ("evaluate", f"{EVALUATE} --eps=nan", "Received: --eps=nan"),
    ("evaluate", f"{EVALUATE} --eps=inf", "Received: --eps=inf"),
    ("evaluate", f"{EVALUATE} --eps=2", "Received: --eps=2.0"),
    ("evaluate", f"{EVALUATE} --eps=-0.1", "Received: --eps=-0.1"),
    ("evaluate", EVALUATE, "--eps=None: the evaluation budget is required"),
    ("evaluate", f"{EVALUATE} --eps=0.03 --norm=l1", "--norm='l1'"),
    ("evaluate", f"{EVALUATE} --eps=0.03 --sweep_eps=0.1,x", "--sweep_eps='0.1,x'"),
    ("evaluate", f"{EVALUATE} --eps=0.03 --sweep_eps=2", "--sweep_eps='2'"),
    ("evaluate", f"{EVALUATE} --eps=0.03 --batch_size=0", "--batch_size=0"),
    ("evaluate", f"{EVALUATE} --eps=0.03 --eot_samples=0", "--eot_samples=0"),
    ("evaluate", f"{EVALUATE} --eps=0.03 --limit=-1", "--limit=-1"),
    ("evaluate", f"{EVALUATE} --eps=0.03 --split=holdout", "holdout"),
    ("evaluate", f"{EVALUATE} --eps=0.03 --model_output=maybe", "--model_output='maybe'"),
    (
        "evaluate",
        f"{EVALUATE} --eps=0.03 --model=/nonexistent",
        "does not exist. Received: --model='/nonexistent'",
    ),
    ("evaluate", f"{EVALUATE} --eps=0.03 --model={{run}}:ghost", "no model 'ghost'"),
    ("evaluate", f"{EVALUATE} --eps=0.03 --output_dir={{fixtures}}/foreign", "already exists"),
    ("evaluate", f"{EVALUATE} --eps=0.03 --bogus=1", "bogus"),
    ("evaluate", "--eps=0.03 --output_dir={out}", "at least one model is required"),
    # evaluate: suites and models (these load TensorFlow)
    ("evaluate", f"{EVALUATE} --eps=0.03 --suite=jsma", "Unknown attack 'jsma'"),
    ("evaluate", f"{EVALUATE} --eps=0.03 --suite=patch", "another threat model"),
    (
        "evaluate",
        f"{EVALUATE} --eps=0.03 --model={{fixtures}}/corrupt.keras",
        "cannot load the Keras model",
    ),
    (
        "evaluate",
        f"{EVALUATE} --eps=0.03 --model={{fixtures}}/gray28.keras --dataset=synthetic",
        "takes (28, 28, 1) images",
    ),
    (
        "evaluate",
        f"{EVALUATE} --eps=0.03 --model={{fixtures}}/five_classes.keras --dataset=synthetic",
        "has 5 classes",
    ),
]


def _make_fixtures(folder):
    """Bad model files, a foreign folder, a broken archive, a file, and one good tiny run."""
    from tfadv import models
    from tfadv.experiment.run import run_training

    folder.mkdir()
    (folder / "corrupt.keras").write_bytes(b"PK\x03\x04 this is not a keras archive")
    models.save_keras(
        models.build("tiny_cnn", input_shape=(28, 28, 1)), str(folder / "gray28.keras")
    )
    models.save_keras(models.build("tiny_cnn", num_classes=5), str(folder / "five_classes.keras"))
    (folder / "foreign").mkdir()
    (folder / "foreign" / "thesis.tex").write_text("precious")
    (folder / "broken.tar.gz").write_bytes(b"\x1f\x8b\x08\x00" + b"\x00" * 64)
    (folder / "a_file").write_text("x")
    run_training(tiny_config(folder / "run"))


def _tree(path) -> dict:
    """{relative path: (size, mtime) of a file, None for a folder} of everything below `path`.

    The writability probe folders that rows running in parallel create and remove at once in the
    shared run folder (`run_folder.check_writable`) are left out: they are not a row's output."""
    found = {}
    for parent, folders, files in os.walk(path):
        folders[:] = [name for name in folders if not name.startswith(".tfadv-probe-")]
        for name in folders:
            found[os.path.relpath(os.path.join(parent, name), path)] = None
        for name in files:
            stat = os.lstat(os.path.join(parent, name))
            found[os.path.relpath(os.path.join(parent, name), path)] = (
                stat.st_size,
                stat.st_mtime_ns,
            )
    return found


def _run_row(row, folder, fixtures):
    command, args, _ = row
    cwd, out = folder / "cwd", folder / "out"
    cwd.mkdir(parents=True)
    values = {
        "out": out,
        "fixtures": fixtures,
        "run": fixtures / "run",
        "configs": os.path.join(REPO_ROOT, "configs"),
    }
    argv = [a.format(**values) for a in args.split()]
    if command == "train" and not any(a.startswith("--output_dir") for a in argv):
        argv.append(f"--output_dir={out}")
    env = dict(os.environ, PYTHONPATH=REPO_ROOT, TF_CPP_MIN_LOG_LEVEL="3")
    before = (_tree(folder), _tree(fixtures))
    result = subprocess.run(
        [sys.executable, "-m", COMMANDS[command], *argv],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    return result, before, (_tree(folder), _tree(fixtures))


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad_input")
    fixtures = root / "fixtures"
    _make_fixtures(fixtures)
    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        futures = [
            pool.submit(_run_row, row, root / f"row{i}", fixtures) for i, row in enumerate(ROWS)
        ]
        return [f.result() for f in futures]


def test_the_table_covers_at_least_40_bad_inputs_of_each_kind():
    assert len(ROWS) >= 40
    assert {command for command, _, _ in ROWS} == set(COMMANDS)
    assert all(sum(c == command for c, _, _ in ROWS) >= 20 for command in COMMANDS)
    assert len({(command, args) for command, args, _ in ROWS}) == len(ROWS)


@pytest.mark.parametrize(
    "index", range(len(ROWS)), ids=[f"{c}:{a.split()[-1][:40]}" for c, a, _ in ROWS]
)
def test_bad_input_is_one_line_and_writes_nothing(results, index):
    command, args, fragment = ROWS[index]
    result, before, after = results[index]
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2, (result.returncode, result.stderr[-3000:])
    assert "Traceback" not in result.stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr[-3000:]
    assert fragment in lines[0], lines[0]
    assert (
        after == before
    )  # nothing new in the row's folder (cwd, output) nor in the shared fixtures


def _library_calls():
    """(call, fragment): library entry points given bad numbers; each must raise ValueError naming
    the argument."""
    import numpy as np

    from tfadv import attacks, defenses, models
    from tfadv.data import make_synthetic, parse_augment, parse_imbalance, to_dataset
    from tfadv.experiment.attack_job import AttackJob, check
    from tfadv.experiment.config import TrainConfig

    model = models.build("tiny_cnn")
    x, y = np.full((2, 32, 32, 3), 0.5, np.float32), np.array([1, 2])
    return [
        (lambda: TrainConfig(eps=float("nan")).validate(), "eps=nan"),
        (lambda: TrainConfig(seed=-3).validate(), "seed=-3"),
        (lambda: check(AttackJob(model=REPO_ROOT, eps=float("inf"))), "eps=inf"),
        (lambda: attacks.pgd(model, x, y, float("nan")), "eps=nan"),
        (lambda: attacks.fgsm(model, x, y, 1.5), "eps=1.5"),
        (lambda: attacks.Attack("pgd", alpha=float("nan")), "alpha=nan"),
        (lambda: attacks.Attack("pgd", steps=0), "steps=0"),
        (lambda: attacks.fgsm(model, x, y, 0.03, target=10), "target"),
        (
            lambda: attacks.fgsm(model, np.full((2, 28, 28, 1), 0.5, np.float32), y, 0.03),
            "images.shape=(2, 28, 28, 1)",
        ),
        (lambda: defenses.AdversarialTrainer(model, "fgsm", eps=float("inf")), "eps=inf"),
        (lambda: defenses.AdversarialTrainer(model, "fgsm", ratio=float("nan")), "ratio=nan"),
        (lambda: defenses.EpsSchedule(None, float("nan")), "eps=nan"),
        (
            lambda: defenses.Distiller(model, models.build("tiny_cnn"), temperature=float("nan")),
            "temperature=nan",
        ),
        (lambda: defenses.with_test_noise(model, "random_sign", float("nan")), "eps=nan"),
        (lambda: to_dataset(make_synthetic(4), 0), "batch_size=0"),
        (lambda: models.load("/nonexistent/model.keras"), "does not exist"),
        (
            lambda: TrainConfig(recipe="adversarial_batch", attack="one_pixel").validate(),
            "attack='one_pixel'",
        ),
        (lambda: TrainConfig(teacher_recipe="distill").validate(), "teacher_recipe='distill'"),
        (lambda: parse_augment("flip,rotate"), "augment='flip,rotate'"),
        (lambda: parse_imbalance("under:3", [str(c) for c in range(10)]), "imbalance='under:3'"),
        (lambda: attacks.Attack("fgsm", steps=3), "takes no option(s) ['steps']"),
        (lambda: attacks.Attack("fgsm_targeted", target="sideways"), "target='sideways'"),
        (lambda: attacks.Attack("pgd", norm="3"), "norm='3'"),
        (lambda: attacks.Attack("pgd", loss="hinge"), "hinge"),
    ]


def test_library_entry_points_refuse_bad_numbers_naming_the_argument():
    for call, fragment in _library_calls():
        with pytest.raises((ValueError, FileNotFoundError)) as error:
            call()
        assert fragment in str(error.value), (fragment, str(error.value))
