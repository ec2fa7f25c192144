"""Is a killed-and-resumed run the same run? Trains once without interruption, once killed with
SIGKILL at a chosen moment and continued with --resume, and compares the two run folders:
summary.json's test accuracies and a checksum of every exported model's weights.

    python tools/check_resume.py --kill_at="Epoch 3/" --delay=1.0 -- \\
        --flagfile=configs/standard_quickstart.flags --epochs=5 --seed=3 --train_limit=600

--kill_at is a regular expression matched against the killed run's output lines (Keras prints
"Epoch 3/5" as epoch 3 starts; the run prints "exporting" before it exports); the kill comes
--delay seconds after the first match. Everything after "--" goes to `python -m tfadv.train`.
Exit code 0 when the runs agree, 1 when they differ. The work is
`tfadv.experiment.kill_resume.kill_and_resume`.
"""

import argparse
import json
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from tfadv.experiment.kill_resume import kill_and_resume  # noqa: E402


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
    try:
        result = kill_and_resume(train_args, work, args.kill_at, args.delay)
    except RuntimeError as e:
        raise SystemExit(str(e)) from None
    print(f"train args: {' '.join(train_args)}")
    print(
        f"killed (exit {result.killed_code}) {args.delay:g} s after /{args.kill_at}/, "
        f"then --resume; logs in {work}"
    )
    print(f"uninterrupted ({result.seconds:.0f} s): {json.dumps(result.uninterrupted)}")
    print(f"resumed:              {json.dumps(result.resumed)}")
    print("SAME" if result.same else "DIFFERENT")
    return 0 if result.same else 1


if __name__ == "__main__":
    sys.exit(main())
