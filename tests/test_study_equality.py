"""tools/study_equality.py without running an evaluation: bad arguments fail in one line, the
comparison counts the images whose outcome differs, and the kill point is found in a CLI log."""

import importlib.util
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO_ROOT

TOOL = os.path.join(REPO_ROOT, "tools", "study_equality.py")


@pytest.fixture(scope="module")
def tool():
    spec = importlib.util.spec_from_file_location("study_equality", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    "bad, expected",
    [
        ("--eps=2", "Expected eps in (0, 1]. Received: eps=2.0"),
        ("--limit=0", "Expected limit >= 1. Received: limit=0"),
        ("--chunk_size=0", "Expected chunk_size >= 1. Received: chunk_size=0"),
    ],
)
def test_bad_arguments_one_line(tmp_path, bad, expected):
    args = [f"--model={tmp_path}", "--eps=0.03", f"--out={tmp_path / 'out'}", bad]
    done = subprocess.run([sys.executable, TOOL, *args], capture_output=True, text=True)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [f"study_equality.py: error: {expected}"]
    assert not os.path.exists(tmp_path / "out")


def test_missing_model_is_refused(tmp_path):
    args = [f"--model={tmp_path / 'nope'}", "--eps=0.03", f"--out={tmp_path}"]
    done = subprocess.run([sys.executable, TOOL, *args], capture_output=True, text=True)
    assert done.returncode == 2 and "Expected a run folder" in done.stderr


def test_compare_counts_differing_outcomes(tool):
    reference = {
        "broken_by": np.array([-2, -1, 0, 1, 2]),
        "margins": np.array([-1.0, 2.0, -0.5, -0.25, -3.0], np.float32),
        "labels": np.array([0, 1, 2, 3, 4]),
        "clean_predictions": np.array([1, 1, 2, 3, 4]),
    }
    same = tool.compare("a", "", reference, reference, 1.0, [0])
    assert (same["status"], same["differing_images"], same["max_margin_difference"]) == (
        "same",
        0,
        "0",
    )
    other = dict(reference, broken_by=np.array([-2, 0, 0, 2, 2]))
    other["margins"] = reference["margins"] + np.array([0, -2.5, 0, 0, 0], np.float32)
    row = tool.compare("b", "", other, reference, 1.0, [0, 0])
    assert row["status"] == "DIFFERS" and row["differing_images"] == 2
    assert row["details"] == [(1, -1, 0), (3, 1, 2)] and row["max_margin_difference"] == "2.5"
    assert row["robust_accuracy"] == "0.0000" and row["clean_accuracy"] == "0.8000"
    # a failed run (no store) is a failure, a killed run's -9 is not
    assert tool.compare("c", "", None, reference, 1.0, [1])["status"] == "FAILED"
    assert tool.compare("d", "", reference, reference, 1.0, [-9, 0])["status"] == "same"
    assert tool.compare("e", "", reference, reference, 1.0, [0, 1])["status"] == "DIFFERS"


def test_units_in_log(tool, tmp_path):
    log = tmp_path / "cli.log"
    log.write_text(
        "[    0.1 s] chunk at image 0 (64 images): clean accuracy 0.5\n"
        "[    0.2 s] chunk at image 64 (64 images): clean accuracy 0.5\n"
        "other output\n"
        "[    2.8 s] chunks at images 0, 64: pgd(steps=20) on 60 images, broke 50\n"
        "[    5.0 s] chunks at images 0, 64: square(queries=500) on 10 images, broke 0\n"
    )
    found = tool.units_in_log(str(log))
    assert [units for units, _ in found] == [1, 2, 4, 6]
    assert found[2][1].startswith("chunks at images 0, 64: pgd(steps=20)")
