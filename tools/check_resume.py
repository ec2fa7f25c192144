"""Is a killed-and-resumed run the same run? Trains once without interruption, once killed with
SIGKILL at a chosen moment and continued with --resume, and compares the two run folders:
summary.json's test accuracies and a checksum of every exported model's weights.

    python tools/check_resume.py --kill_at="Epoch 3/" --delay=1.0 -- \\
        --flagfile=configs/standard_quickstart.flags --epochs=5 --seed=3 --train_limit=600

--kill_at is a regular expression matched against the killed run's output lines (Keras prints
"Epoch 3/5" as epoch 3 starts; the run prints "exporting" before it exports); the kill comes
--delay seconds after the first match. Everything after "--" goes to `python -m tfadv.train`.
Exit code 0 when the runs agree, 1 when they differ.
"""

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def train_command(args, output_dir, *extra):
    return [
        sys.executable,
        "-m",
        "tfadv.train",
        *args,
        "--verbose=2",
        f"--output_dir={output_dir}",
        *extra,
    ]


def environment():
    return dict(os.environ, PYTHONPATH=REPO_ROOT, TF_CPP_MIN_LOG_LEVEL="3", PYTHONUNBUFFERED="1")


def run(command, log):
    with open(log, "w") as out:
        code = subprocess.run(
            command, cwd=REPO_ROOT, stdout=out, stderr=subprocess.STDOUT, env=environment()
        ).returncode
    if code != 0:
        raise SystemExit(f"failed ({code}): {' '.join(command)}; see {log}")


def run_and_kill(command, log, pattern, delay, timeout=3600):
    """Starts `command`, SIGKILLs it `delay` s after a line matches `pattern`; returns what it saw."""
    proc = subprocess.Popen(
        command,
        cwd=REPO_ROOT,
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
        raise SystemExit(
            f"the run ended ({proc.returncode}) before the kill: pattern {pattern!r} + {delay} s; see {log}"
        )
    return proc.returncode


def weights_checksum(path: str) -> str:
    """tfadv.models.weights_checksum of an exported .keras model."""
    import keras

    from tfadv import models

    return models.weights_checksum(keras.saving.load_model(path, compile=False))


def figures(run_dir: str) -> dict:
    with open(os.path.join(run_dir, "summary.json")) as f:
        summary = json.load(f)
    models_dir = os.path.join(run_dir, "models")
    checksums = {
        name.removesuffix(".keras"): weights_checksum(os.path.join(models_dir, name))
        for name in sorted(os.listdir(models_dir))
        if name.endswith(".keras")
    }
    return {"test_accuracy": summary["test_accuracy"], "weights": checksums}


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--kill_at", default=r"Epoch 3/", help="regex on the killed run's output")
    parser.add_argument(
        "--delay", type=float, default=1.0, help="seconds from the match to the kill"
    )
    parser.add_argument(
        "--work_dir", default="", help="where the two run folders go (default: a temporary folder)"
    )
    parser.add_argument("train_args", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    train_args = [a for a in args.train_args if a != "--"]
    work = args.work_dir or tempfile.mkdtemp(prefix="check-resume-")
    os.makedirs(work, exist_ok=True)
    whole, resumed = os.path.join(work, "uninterrupted"), os.path.join(work, "resumed")
    start = time.time()
    run(train_command(train_args, whole, "--overwrite"), os.path.join(work, "uninterrupted.log"))
    whole_seconds = time.time() - start
    code = run_and_kill(
        train_command(train_args, resumed, "--overwrite"),
        os.path.join(work, "killed.log"),
        args.kill_at,
        args.delay,
    )
    run(train_command(train_args, resumed, "--resume"), os.path.join(work, "resume.log"))
    a, b = figures(whole), figures(resumed)
    print(f"train args: {' '.join(train_args)}")
    print(
        f"killed (exit {code}) {args.delay:g} s after /{args.kill_at}/, then --resume; logs in {work}"
    )
    print(f"uninterrupted ({whole_seconds:.0f} s): {json.dumps(a)}")
    print(f"resumed:              {json.dumps(b)}")
    same = a == b
    print("SAME" if same else "DIFFERENT")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
