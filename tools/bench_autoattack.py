"""Robust accuracy and seconds of PGD, APGD-CE, APGD-DLR, APGD-T and Square on one model.

    python tools/bench_autoattack.py --model=/work/runs/mini_std/models/model.keras \
        --data_dir=/work/shared/data/cifar-10-mini-binary.tar.gz [--n=256] [--eps=8/255]

Every attack sees the whole batch (no early exit between attacks) with seed 0; robust accuracy
counts an image as robust when its adversarial prediction is its label. Seconds include the
first call's tracing. Prints one line per attack and a JSON summary at the end.
"""

import argparse
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
from tfadv.runtime import onednn  # noqa: E402

onednn.enable_by_default()  # before TensorFlow loads (see tfadv.runtime.onednn)

import keras  # noqa: E402
import numpy as np  # noqa: E402

from tfadv import attacks, data  # noqa: E402

ATTACKS = (
    ("PGD-10", "pgd", {"steps": 10}),
    ("PGD-100", "pgd", {"steps": 100}),
    ("APGD-CE 100", "apgd", {"steps": 100}),
    ("APGD-DLR 100", "apgd", {"steps": 100, "loss": "dlr"}),
    ("APGD-T 9x100", "apgd_t", {"steps": 100, "n_targets": 9}),
    ("Square 1000", "square", {"queries": 1000}),
    ("Square 5000", "square", {"queries": 5000}),
)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--data_dir", required=True)
    parser.add_argument("--n", type=int, default=256)
    parser.add_argument("--eps", default="8/255")
    args = parser.parse_args()
    top, _, bottom = args.eps.partition("/")
    eps = float(top) / float(bottom or 1)
    model = keras.saving.load_model(args.model)
    test = data.load("cifar10", data_dir=args.data_dir).test.head(args.n)
    x, y = test.float_images(), test.labels
    correct = attacks.predict_classes(model, x) == y
    print(f"clean accuracy {correct.mean():.4f} on {len(y)} images, eps {eps:.5f}", flush=True)
    rows = {"clean": {"robust_accuracy": float(correct.mean()), "seconds": 0.0}}
    for label, name, options in ATTACKS:
        start = time.perf_counter()
        adv = attacks.get(name, **options)(model, x, y, eps, seed=0).numpy()
        seconds = time.perf_counter() - start
        robust = attacks.predict_classes(model, adv) == y
        assert np.abs(adv - x).max() <= eps + 1e-6 and 0 <= adv.min() and adv.max() <= 1
        rows[label] = {"robust_accuracy": float(robust.mean()), "seconds": round(seconds, 1)}
        print(f"{label:14s} robust accuracy {robust.mean():.4f}  {seconds:7.1f} s", flush=True)
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
