"""`tfadv.evaluate` at scale: the report's suite comes from the evaluation store, `--resume`
continues a killed or finished evaluation (appended attacks, more images), a changed setting is
refused in one line, two workers on localhost (TF_CONFIG) give the outcomes of one process, and
the report carries the passes spent and a RobustBench-style JSON."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO_ROOT, tiny_config
from tfadv.evaluation.store import EvaluationStore

SUITE = "pgd(steps=3, early_stop=True),square(queries=20)"
BASE = ["--eps=0.03", "--sweep_eps=0.01", "--chunk_size=16", "--verbose=0", f"--suite={SUITE}"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from tfadv.experiment.run import run_training

    folder = tmp_path_factory.mktemp("scale") / "run"
    run_training(tiny_config(folder, epochs=2, train_limit=320, test_limit=48))
    return folder


def _job(run, out, **fields):
    from tfadv.experiment.evaluation_job import EvaluationJob, run_evaluation_job

    fields = {
        "eps": 0.03,
        "suite": SUITE,
        "sweep_eps": "0.01",
        "chunk_size": 16,
        "verbose": 0,
        **fields,
    }
    job = EvaluationJob(models=[str(run)], output_dir=str(out), **fields)
    return run_evaluation_job(job)


def _summary(out):
    with open(os.path.join(out, "summary.json")) as f:
        return json.load(f)["models"]["run"]


def _units(out):
    """The suite's chunk units (the sections' units, store/<model>/sections/, are left out)."""
    found = {}
    for parent, _, files in os.walk(os.path.join(out, "store")):
        if os.path.basename(parent) == "sections":
            continue
        for name in files:
            if name.endswith(".npz"):
                found[os.path.join(parent, name)] = os.stat(os.path.join(parent, name)).st_mtime_ns
    return found


def test_resume_grow_and_refuse(run, tmp_path):
    out = tmp_path / "eval"
    _job(run, out, limit=32)
    first = _summary(out)
    assert os.path.isdir(out / "store" / "run")
    entry = json.loads((out / "robustbench.json").read_text())["run"]
    assert entry["n_examples"] == 32 and entry["clean_acc"] == pytest.approx(
        first["clean_accuracy"]
    )
    assert (
        entry["autoattack_acc"] == pytest.approx(first["suite_robust_accuracy"])
        and entry["gradients"] > 0
    )
    assert "Suite cost:" in (out / "report.md").read_text()
    # a kill loses the units written last: --resume redoes them and nothing else, same numbers
    units = _units(out)
    lost = sorted(units, key=units.get)[-2:]
    for path in lost:
        os.remove(path)
    _job(run, out, limit=32, resume=True)
    after = _units(out)
    assert sorted(p for p in after if after[p] != units.get(p)) == sorted(lost)
    assert _summary(out)["robust_accuracy"] == first["robust_accuracy"]
    # more images and an appended attack: the new chunk runs every attack, the old ones only the new
    # attack
    _job(run, out, limit=48, resume=True, suite=SUITE + ",fgsm")
    grown = _units(out)
    assert all(grown[p] == after[p] for p in after)
    new = sorted(
        os.path.relpath(p, out / "store" / "run" / "chunks") for p in set(grown) - set(after)
    )
    assert new == [
        "c0000000/a2.npz",
        "c0000016/a2.npz",
        "c0000032/a0.npz",
        "c0000032/a1.npz",
        "c0000032/a2.npz",
        "c0000032/clean.npz",
    ]
    summary = _summary(out)["suite"]
    assert summary["n"] == 48
    assert (
        summary["attacks"][2]["ran_on"]
        == round(48 * summary["robust_accuracy"]) + summary["attacks"][2]["broke"]
    )
    # a changed eps is refused in one line
    with pytest.raises(
        ValueError, match=r"eps=0\.03.*cannot continue.*Received: eps=0\.05"
    ) as raised:
        _job(run, out, limit=48, resume=True, eps=0.05)
    assert "\n" not in str(raised.value)


def _cli(args, env_extra=None):
    env = dict(os.environ, PYTHONPATH=REPO_ROOT, TF_CPP_MIN_LOG_LEVEL="3", **(env_extra or {}))
    return subprocess.Popen(
        [sys.executable, "-m", "tfadv.evaluate", *args],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_two_workers_on_localhost_equal_one_process(run, tmp_path):
    from tfadv.experiment.workers import tf_configs

    one = _cli([f"--model={run}", *BASE, f"--output_dir={tmp_path / 'one'}"])
    configs = tf_configs(2)
    two = [
        _cli(
            [
                f"--model={run}",
                *BASE,
                f"--output_dir={tmp_path / 'two'}",
                "--distribution=multi_worker",
            ],
            {"TF_CONFIG": config},
        )
        for config in configs
    ]
    outputs = [process.communicate(timeout=400)[0] for process in (one, *two)]
    for process, output in zip((one, *two), outputs, strict=True):
        assert process.returncode == 0, output[-3000:]
    assert "worker 1 of 2" in outputs[2] and "written:" in outputs[1]
    stores = {}
    for name in ("one", "two"):
        store = EvaluationStore(str(tmp_path / name / "store" / "run"))
        store.settings = json.loads((tmp_path / name / "store" / "run" / "store.json").read_text())
        stores[name] = store.table().sort_values(["index", "attack_index"]).reset_index(drop=True)
    assert len(stores["one"]) > 0
    np.testing.assert_array_equal(
        stores["one"][["index", "broken", "prediction"]],
        stores["two"][["index", "broken", "prediction"]],
    )
    assert (
        _summary(tmp_path / "one")["robust_accuracy"]
        == _summary(tmp_path / "two")["robust_accuracy"]
    )
