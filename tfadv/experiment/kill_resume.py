"""Is a killed-and-resumed run the same run? Trains once without interruption, once killed with
SIGKILL at a chosen moment and continued with --resume, and compares the two run folders:
summary.json's test accuracies and a checksum of every exported model's weights.
tools/check_resume.py is its command line; experiment/resume_check.py kills in-process instead.

    result = kill_and_resume(train_args, work_dir, kill_at="Epoch 3/", delay=1.0)
    result.same     # True when the two runs agree

`kill_at` is a regular expression matched against the killed run's output lines (Keras prints
"Epoch 3/5" as epoch 3 starts; the run prints "exporting" before it exports); the kill comes
`delay` seconds after the first match.
"""

import dataclasses
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time

from tfadv.experiment.workers import SOURCE_ROOT


@dataclasses.dataclass
class KillResult:
    """Both runs' figures ({"test_accuracy", "weights"}), the killed run's exit code, the
    uninterrupted run's wall time (s), and whether they agree."""

    uninterrupted: dict
    resumed: dict
    killed_code: int
    seconds: float

    @property
    def same(self) -> bool:
        return self.uninterrupted == self.resumed


def train_command(args, output_dir, *extra) -> list:
    return [
        sys.executable,
        "-m",
        "tfadv.train",
        *args,
        "--verbose=2",
        f"--output_dir={output_dir}",
        *extra,
    ]


def environment() -> dict:
    return dict(os.environ, PYTHONPATH=SOURCE_ROOT, TF_CPP_MIN_LOG_LEVEL="3", PYTHONUNBUFFERED="1")


def run(command, log, cwd=SOURCE_ROOT) -> None:
    """Runs `command` to its end, output in `log`; RuntimeError if it fails."""
    with open(log, "w") as out:
        code = subprocess.run(
            command, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, env=environment()
        ).returncode
    if code != 0:
        raise RuntimeError(f"failed ({code}): {' '.join(command)}; see {log}")


def run_and_kill(command, log, pattern, delay, timeout=3600, cwd=SOURCE_ROOT) -> int:
    """Starts `command`, SIGKILLs it `delay` s after a line matches `pattern`; returns its exit
    code (RuntimeError if it ended before the kill)."""
    proc = subprocess.Popen(
        command,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=environment(),
        text=True,
    )
    matched = threading.Event()
    killed = {}

    def kill_later():
        matched.wait()
        time.sleep(delay)
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            killed["at"] = time.time()

    threading.Thread(target=kill_later, daemon=True).start()
    start = time.time()
    with open(log, "w") as out:
        for line in proc.stdout:
            out.write(line)
            if not matched.is_set() and re.search(pattern, line):
                matched.set()
            if time.time() - start > timeout:
                proc.kill()
    proc.wait()
    if "at" not in killed:
        raise RuntimeError(
            f"the run ended ({proc.returncode}) before the kill: pattern {pattern!r} + {delay} s;"
            f" see {log}"
        )
    return proc.returncode


def weights_checksum(path: str) -> str:
    """tfadv.models.weights_checksum of an exported .keras model."""
    import keras

    from tfadv import models

    return models.weights_checksum(keras.saving.load_model(path, compile=False))


def figures(run_dir: str) -> dict:
    """{"test_accuracy": from summary.json, "weights": {model: checksum}} of a run folder."""
    with open(os.path.join(run_dir, "summary.json")) as f:
        summary = json.load(f)
    models_dir = os.path.join(run_dir, "models")
    checksums = {
        name.removesuffix(".keras"): weights_checksum(os.path.join(models_dir, name))
        for name in sorted(os.listdir(models_dir))
        if name.endswith(".keras")
    }
    return {"test_accuracy": summary["test_accuracy"], "weights": checksums}


def kill_and_resume(train_args, work_dir: str, kill_at: str, delay: float) -> KillResult:
    """Trains `train_args` into work_dir/uninterrupted, then into work_dir/resumed killed
    `delay` s after a line matches `kill_at` and continued with --resume (logs beside them)."""
    os.makedirs(work_dir, exist_ok=True)
    whole = os.path.join(work_dir, "uninterrupted")
    resumed = os.path.join(work_dir, "resumed")
    start = time.time()
    run(
        train_command(train_args, whole, "--overwrite"), os.path.join(work_dir, "uninterrupted.log")
    )
    seconds = time.time() - start
    code = run_and_kill(
        train_command(train_args, resumed, "--overwrite"),
        os.path.join(work_dir, "killed.log"),
        kill_at,
        delay,
    )
    run(train_command(train_args, resumed, "--resume"), os.path.join(work_dir, "resume.log"))
    return KillResult(figures(whole), figures(resumed), code, seconds)
