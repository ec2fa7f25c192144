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
ordinary process the same way. The work is `tfadv.experiment.workers`.
"""

import argparse
import json
import os
import sys
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)
from tfadv.experiment import workers as workers_lib  # noqa: E402


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
    started = workers_lib.start_workers(train_args, args.workers, log_dir, cwd=REPO_ROOT)
    codes = workers_lib.wait_all(started, args.timeout)
    seconds = time.time() - start
    lines, workers = [], []
    for index, code in enumerate(codes):
        with open(os.path.join(log_dir, f"worker{index}.log")) as f:
            found = workers_lib.worker_result(f.read(), args.batch_size)
        rate = (
            f", {found['images_per_second']:.0f} images/s (median epoch after the first)"
            if found["images_per_second"]
            else ""
        )
        lines.append(f"worker {index}: exit {code}{rate}; {found['result'] or 'no result'}")
        workers.append({"exit": code, **found})
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
