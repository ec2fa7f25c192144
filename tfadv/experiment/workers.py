"""Local workers: `python -m tfadv.train` (or any tfadv command) as N workers of one
MultiWorkerMirroredStrategy cluster on this machine (free localhost ports, one TF_CONFIG per
process), waited for within a time limit. tools/local_workers.py is its command line.

    workers = start_workers(["--flagfile=configs/x.flags", "--distribution=multi_worker"], 2, logs)
    codes = wait_all(workers, timeout=1800)       # exit codes, None for a worker killed at timeout
"""

import json
import os
import re
import socket
import subprocess
import sys
import time

SOURCE_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
"""The folder holding the tfadv package: the workers' PYTHONPATH."""


def free_ports(count: int) -> list:
    """`count` localhost ports free right now (kept bound until all are chosen)."""
    sockets = []
    for _ in range(count):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        sockets.append(s)
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def tf_configs(count: int) -> list:
    """One TF_CONFIG (JSON) per worker of a localhost cluster."""
    cluster = {"worker": [f"127.0.0.1:{port}" for port in free_ports(count)]}
    return [
        json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}})
        for i in range(count)
    ]


def start_workers(
    args, count: int, log_dir: str, cwd: str = SOURCE_ROOT, extra_env=None, module="tfadv.train"
) -> list:
    """Starts `count` processes `python -m module *args` in one cluster, each writing
    log_dir/worker<i>.log (`extra_env`: more environment variables); returns [(Popen, log path)]."""
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ValueError(f"Expected count to be an integer >= 1. Received: count={count!r}")
    os.makedirs(log_dir, exist_ok=True)
    base = dict(
        os.environ,
        **(extra_env or {}),
        PYTHONPATH=SOURCE_ROOT,
        TF_CPP_MIN_LOG_LEVEL="3",
        PYTHONUNBUFFERED="1",
    )
    workers = []
    for index, tf_config in enumerate(tf_configs(count)):
        log = os.path.join(log_dir, f"worker{index}.log")
        with open(log, "w") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", module, *args],
                cwd=cwd,
                env=dict(base, TF_CONFIG=tf_config),
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        workers.append((proc, log))
    return workers


def wait_all(workers, timeout: float) -> list:
    """Exit codes of the workers; kills every worker still running after `timeout` seconds
    (its code is then None)."""
    deadline = time.time() + timeout
    codes = []
    for proc, _ in workers:
        try:
            codes.append(proc.wait(timeout=max(deadline - time.time(), 0.1)))
        except subprocess.TimeoutExpired:
            codes.append(None)
    for proc, _ in workers:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return codes


def step_times(log_text: str) -> list:
    """Seconds per training step of every epoch Keras reported (verbose=2)."""
    found = re.findall(r"- (\d+(?:\.\d+)?)(ms|s)/step", log_text)
    return [float(value) / (1000.0 if unit == "ms" else 1.0) for value, unit in found]


def median(values):
    ordered = sorted(values)
    return ordered[len(ordered) // 2] if ordered else None


def worker_result(log_text: str, batch_size: int = 0) -> dict:
    """One worker's images/s (median epoch after the first, which traces; None without
    `batch_size`) and its last "clean test accuracy" line (None if it has none)."""
    accuracy = re.findall(r"clean test accuracy .*", log_text)
    step = median(step_times(log_text)[1:])
    return {
        "images_per_second": batch_size / step if step and batch_size else None,
        "result": accuracy[-1] if accuracy else None,
    }
