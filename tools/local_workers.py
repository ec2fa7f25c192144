"""Runs `python -m tfadv.train` as N workers of one MultiWorkerMirroredStrategy cluster on this
machine (free localhost ports, one TF_CONFIG per process), waits for them within a time limit,
and reports each worker's result and the training throughput.

    python tools/local_workers.py --workers=2 -- --flagfile=configs/standard_quickstart.flags \\
        --distribution=multi_worker --output_dir=saved_models/two_workers

On several machines, start the same command on each with TF_CONFIG naming all workers and this
machine's index (see the README). Exit code 0 when every worker succeeded.

Besides worker<i>.log, writes result.json (the command, the load average before and after,
each worker's exit code, images/s and clean accuracy, the wall time) and result.txt (the
printed lines) into --log_dir. --workers=1 without --distribution=multi_worker times one
ordinary process the same way.
"""

import argparse
import json
import os
import re
import socket
import subprocess
import sys
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


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
    train_args, count: int, log_dir: str, cwd: str = REPO_ROOT, extra_env=None
) -> list:
    """Starts the workers (`extra_env`: more environment variables); returns [(Popen, log path)]."""
    os.makedirs(log_dir, exist_ok=True)
    workers = []
    base = dict(
        os.environ,
        **(extra_env or {}),
        PYTHONPATH=REPO_ROOT,
        TF_CPP_MIN_LOG_LEVEL="3",
        PYTHONUNBUFFERED="1",
    )
    for index, tf_config in enumerate(tf_configs(count)):
        env = dict(base, TF_CONFIG=tf_config)
        log = os.path.join(log_dir, f"worker{index}.log")
        with open(log, "w") as out:
            command = [sys.executable, "-m", "tfadv.train", *train_args]
            workers.append(
                (
                    subprocess.Popen(
                        command, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT
                    ),
                    log,
                )
            )
    return workers


def wait_all(workers, timeout: float) -> list:
    """Exit codes of the workers; kills every worker still running after `timeout` seconds (code None)."""
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


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=1800)
    parser.add_argument("--log_dir", default="", help="worker logs (default: a temporary folder)")
    parser.add_argument(
        "--batch_size", type=int, default=0, help="global batch size, for images/second"
    )
    parser.add_argument("train_args", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    train_args = [a for a in args.train_args if a != "--"]
    log_dir = args.log_dir or os.path.join(REPO_ROOT, "saved_models", f"workers-{int(time.time())}")
    load_before = os.getloadavg()
    start = time.time()
    codes = wait_all(start_workers(train_args, args.workers, log_dir), args.timeout)
    seconds = time.time() - start
    lines, workers = [], []
    for index, code in enumerate(codes):
        text = open(os.path.join(log_dir, f"worker{index}.log")).read()
        accuracy = re.findall(r"clean test accuracy .*", text)
        step = median(step_times(text)[1:])  # the first epoch traces
        images_per_second = args.batch_size / step if step and args.batch_size else None
        rate = (
            f", {images_per_second:.0f} images/s (median epoch after the first)"
            if images_per_second
            else ""
        )
        lines.append(
            f"worker {index}: exit {code}{rate}; {accuracy[-1] if accuracy else 'no result'}"
        )
        workers.append(
            {
                "exit": code,
                "images_per_second": images_per_second,
                "result": accuracy[-1] if accuracy else None,
            }
        )
    lines.append(f"{args.workers} worker(s): {seconds:.1f} s wall; logs in {log_dir}")
    print("\n".join(lines))
    result = {
        "command": " ".join(["python", os.path.relpath(os.path.abspath(__file__)), *sys.argv[1:]]),
        "workers": workers,
        "wall_seconds": round(seconds, 1),
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
    }
    with open(os.path.join(log_dir, "result.json"), "w") as f:
        json.dump(result, f, indent=2)
    with open(os.path.join(log_dir, "result.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")
    return 0 if all(code == 0 for code in codes) else 1


if __name__ == "__main__":
    sys.exit(main())
