"""Exports and result files stay whole: atomic folder replacement, and kills at random moments."""

import os
import random
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from conftest import REPO_ROOT
from tfadv.runtime import files

ENV = dict(os.environ, PYTHONPATH=REPO_ROOT, TF_CPP_MIN_LOG_LEVEL="3")


def _folder(path, version, count=3):
    path.mkdir()
    for i in range(count):
        (path / f"part{i}").write_text(version * (i + 1))


def test_exchange_swaps_two_folders_in_one_step(tmp_path):
    if files._renameat2 is None:
        pytest.skip("no renameat2 on this system (the two-rename fallback is tested below)")
    _folder(tmp_path / "a", "a")
    _folder(tmp_path / "b", "b")
    assert files.exchange(str(tmp_path / "a"), str(tmp_path / "b"))
    assert (tmp_path / "a" / "part0").read_text() == "b" and (
        tmp_path / "b" / "part2"
    ).read_text() == "aaa"
    with pytest.raises(OSError):
        files.exchange(str(tmp_path / "a"), str(tmp_path / "missing"))


@pytest.mark.parametrize("with_exchange", [True, False], ids=["renameat2", "two_renames"])
def test_atomic_dir_replaces_a_folder_and_leaves_no_temporaries(
    tmp_path, monkeypatch, with_exchange
):
    if not with_exchange:
        monkeypatch.setattr(files, "_renameat2", None)
    target = tmp_path / "export"
    files.atomic_dir(str(target), lambda tmp: _folder_contents(tmp, "old"))
    files.atomic_dir(str(target), lambda tmp: _folder_contents(tmp, "new"))
    assert sorted(os.listdir(tmp_path)) == ["export"]
    assert (target / "part2").read_text() == "newnewnew"

    def broken(tmp):
        _folder_contents(tmp, "bad")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        files.atomic_dir(str(target), broken)
    assert sorted(os.listdir(tmp_path)) == ["export"] and (target / "part0").read_text() == "new"


def _folder_contents(tmp, version):
    for i in range(3):
        with open(os.path.join(tmp, f"part{i}"), "w") as f:
            f.write(version * (i + 1))


def test_is_temporary_names_what_the_writers_leave():
    assert files.is_temporary(".tmp-abc.weights.h5") and files.is_temporary(".model.tmp-x1y2")
    assert files.is_temporary(".backup.old-123") and not files.is_temporary("model.keras")
    assert not files.is_temporary("summary.json")


WRITER = textwrap.dedent("""
    import os, sys, time
    from tfadv.runtime import files
    target, parts = sys.argv[1], 40
    version = 0
    print("ready", flush=True)
    while True:
        version += 1
        def write(tmp):
            for i in range(parts):
                with open(os.path.join(tmp, f"part{i:02d}"), "w") as f:
                    f.write(f"{version}\\n" * 2000)
                time.sleep(0.001)
        files.atomic_dir(target, write)
""")


def _check_whole(folder, parts=40):
    names = sorted(os.listdir(folder))
    assert names == [f"part{i:02d}" for i in range(parts)], names
    versions = {open(os.path.join(folder, n)).read() for n in names}
    assert len(versions) == 1  # every part from one version, none cut short
    text = versions.pop()
    assert text.count("\n") == 2000 and len(set(text.split())) == 1


def test_folder_rewritten_in_a_loop_is_whole_after_kills_at_random_moments(tmp_path):
    target = tmp_path / "export"
    rng = random.Random(0)
    for _ in range(8):
        proc = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(target)], env=ENV, stdout=subprocess.PIPE, text=True
        )
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.05, 0.6))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        if target.exists():
            _check_whole(target)
    assert target.exists()


EXPORTER = textwrap.dedent("""
    import sys
    import keras
    import tfadv
    from tfadv.experiment import run_folder
    from tfadv import models
    keras.utils.set_random_seed(0)  # every process exports the same weights
    model = models.build("tiny_cnn")
    run_folder.export_models(sys.argv[1], {"model": model})
    print("ready", flush=True)
    while True:
        run_folder.export_models(sys.argv[1], {"model": model})
""")


def test_export_killed_at_random_moments_leaves_a_loadable_export(tmp_path):
    """The run's own export (SavedModel folder and .keras file), killed while re-exporting:
    two processes at once, each killed at its own random moment."""
    import numpy as np
    import tensorflow as tf

    from tfadv import models

    rng = random.Random(1)
    runs = [tmp_path / f"run{i}" for i in range(2)]
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", EXPORTER, str(r)], env=ENV, stdout=subprocess.PIPE, text=True
        )
        for r in runs
    ]
    for proc in procs:
        assert proc.stdout.readline().strip() == "ready"
    for proc in procs:
        time.sleep(rng.uniform(0.0, 1.5))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    x = tf.fill((2, 32, 32, 3), 0.5)
    for run in runs:
        served = models.load(str(run / "models" / "model"))(x).numpy()
        kept = models.load(str(run / "models" / "model.keras")).predict(x, verbose=0)
        np.testing.assert_allclose(served, kept, rtol=1e-5, atol=1e-6)
        leftovers = [n for n in os.listdir(run / "models") if files.is_temporary(n)]
        assert len(leftovers) <= 1, leftovers  # at most the one write in progress when killed
