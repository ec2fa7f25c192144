"""`python -m tfadv.attack` end to end on a tiny exported run (its one-line errors:
test_bad_input.py)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = dict(os.environ, PYTHONPATH=REPO_ROOT, TF_CPP_MIN_LOG_LEVEL="2")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    from tfadv.experiment.config import TrainConfig
    from tfadv.experiment.run import run_training

    output = tmp_path_factory.mktemp("runs") / "tiny"
    config = TrainConfig(
        dataset="synthetic",
        model="tiny_cnn",
        epochs=1,
        batch_size=32,
        train_limit=200,
        test_limit=48,
        output_dir=str(output),
        verbose=0,
    )
    run_training(config)
    return str(output)


def start(*args, cwd):
    return subprocess.Popen(
        [sys.executable, "-m", "tfadv.attack", *args],
        cwd=cwd,
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(proc):
    out, err = proc.communicate(timeout=300)
    return proc.returncode, out, err


def test_attack_cli_writes_examples_grid_and_summary(run_dir, tmp_path):
    """A targeted transfer run: examples generated on the exported SavedModel, evaluated on the
    run's Keras model, saved as TFRecord."""
    out_dir = tmp_path / "pgd"
    proc = start(
        f"--model={run_dir}",
        f"--surrogate={run_dir}/models/model",
        "--attack=pgd",
        "--eps=0.03",
        "--steps=3",
        "--target=least_likely",
        "--limit=40",
        "--batch_size=16",
        "--format=tfrecord",
        f"--output_dir={out_dir}",
        "--grid_images=4",
        "--verbose=0",
        cwd=REPO_ROOT,
    )
    code, out, err = finish(proc)
    assert code == 0, err[-2000:]
    assert sorted(os.listdir(out_dir)) == ["adversarial.tfrecord", "grid.png", "summary.json"]
    assert not [
        name for name in os.listdir(tmp_path) if name.startswith(".")
    ]  # no temporary folder left
    summary = json.loads((out_dir / "summary.json").read_text())
    assert summary["n"] == 40 and summary["attack"] == "pgd(steps=3, target=least_likely)"
    assert summary["surrogate"].endswith(os.path.join("models", "model"))
    assert f"clean accuracy:       {summary['clean_accuracy']:.4f}" in out
    assert f"adversarial accuracy: {summary['adversarial_accuracy']:.4f}" in out
    assert f"target success rate:  {summary['target_success_rate']:.4f}" in out
    from tfadv import attacks

    saved = attacks.load(str(out_dir / "adversarial.tfrecord"))
    assert saved.adversarial.shape == (40, 32, 32, 3) and saved.adversarial.max() <= 1.0
    assert np.mean(saved.adversarial_predictions == saved.labels) == summary["adversarial_accuracy"]
    assert np.mean(saved.adversarial_predictions == saved.targets) == summary["target_success_rate"]
    assert (out_dir / "grid.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
