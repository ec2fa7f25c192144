"""Queries per second of the TFLite exports against the Keras model and its SavedModel, and Square's
query rate on the int8 export against the float model.

    python tools/bench_tflite.py [--model=baseline_cnn] [--n=256] [--rounds=5] [--queries=100] \\
        [--out=docs/results/tflite]

One process, one model (trained --epochs on synthetic images; the int8 export calibrated on 200
of its training images, seed 0), the same --n test images for every row:
1. forward: images per second through each model's compiled query path (the one the attacks use:
   `tfadv.attacks.probabilities_of`; for a TFLite model a tf.numpy_function around the interpreter)
   at batch --n, and one image at a time (per-image latency); for the TFLite models also the bare
   interpreter from NumPy. Median over --rounds, after one warm-up.
2. Square (L-inf, eps 1/255 so that few examples succeed and stop early, --queries queries) on the
   test images the float model classifies correctly, on the float Keras model and on the int8
   export: model evaluations per second = images x queries / time, an upper bound by the fraction
   broken (printed). The target of issue 22: int8 at least half the
   float model's rate.
Also the agreement of each export's predictions with the Keras model's and the file sizes.
Writes bench.csv, bench.md and bench.log to --out.
"""

import argparse
import os
import statistics
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

LINES = []


def say(text: str) -> None:
    print(text, flush=True)
    LINES.append(text)


def timed(fn, rounds: int) -> float:
    """Median seconds of fn() over `rounds`, after one warm-up call."""
    fn()
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="baseline_cnn")
    parser.add_argument("--n", type=int, default=256)
    parser.add_argument("--singles", type=int, default=64, help="images queried one at a time")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--out", default="docs/results/tflite")
    args = parser.parse_args(argv)

    import keras
    import pandas as pd
    import tensorflow as tf

    from tfadv import attacks, data, models

    say(f"command: python tools/bench_tflite.py {' '.join(argv or sys.argv[1:])}".rstrip())
    load = os.getloadavg()[0]
    say(
        f"TensorFlow {tf.__version__}, Keras {keras.__version__}, {os.cpu_count()} CPU cores; "
        f"load average {load:.1f} at the start (the machine is shared with other sessions: "
        "absolute rates are noisy, the ratios measured in one process are the point)"
    )
    keras.utils.set_random_seed(0)
    train = data.make_synthetic(2048, seed=0)
    test = data.make_synthetic(args.n, seed=1)
    x, y = test.float_images().astype(np.float32), test.labels.astype(np.int64)
    model = models.build(args.model)
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy")
    model.fit(train.float_images(), train.labels, epochs=args.epochs, batch_size=64, verbose=0)
    reference = np.argmax(model.predict(x, verbose=0), -1)
    accuracy = np.mean(reference == y)
    say(
        f"{args.model} trained {args.epochs} epochs on 2048 synthetic images; "
        f"test accuracy {accuracy:.3f}"
    )

    folder = tempfile.mkdtemp(prefix="bench_tflite_")
    saved = models.load(models.export_saved_model(model, os.path.join(folder, "model")))
    exported = models.export_precisions(
        model, folder, "model", representative_images=train.float_images()
    )
    subjects = {"keras": (models.as_classifier(model), None), "saved_model": (saved, None)}
    for name, (path, size) in exported.items():
        subjects[name.replace("model_", "tflite_")] = (models.load(path), size)

    rows = []
    singles = x[: args.singles]
    for name, (clf, size) in subjects.items():
        predicted = np.argmax(np.asarray(attacks.probabilities_of(clf, x)), -1)
        batch = timed(lambda clf=clf: attacks.probabilities_of(clf, x), args.rounds)
        single = timed(
            lambda clf=clf: [attacks.probabilities_of(clf, image[None]) for image in singles], 1
        )
        row = {
            "model": name,
            "size_bytes": size,
            "agreement_with_keras": float(np.mean(predicted == reference)),
            "accuracy": float(np.mean(predicted == y)),
            "images_per_s_batch": args.n / batch,
            "images_per_s_one_by_one": len(singles) / single,
        }
        if name.startswith("tflite"):
            interpreter = clf.model.fn
            row["interpreter_images_per_s_batch"] = args.n / timed(
                lambda f=interpreter: f(x), args.rounds
            )
        rows.append(row)
        values = [f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()]
        say(f"forward {name}: " + ", ".join(values[1:]))

    square_rows = []
    eps = 1 / 255
    right = reference == y  # the images the float model classifies correctly, for both models
    xs, ys = x[right], y[right]
    for name in ("keras", "tflite_int8"):
        clf = subjects[name][0]

        def run(clf=clf):
            return attacks.square(clf, xs, ys, eps, queries=args.queries, seed=0)

        seconds = timed(run, max(1, args.rounds // 2))
        broken = float(
            np.mean(np.argmax(np.asarray(attacks.probabilities_of(clf, run())), -1) != ys)
        )
        rate = len(xs) * args.queries / seconds
        square_rows.append(
            {"model": name, "seconds": seconds, "queries_per_s": rate, "broken": broken}
        )
        say(
            f"square {name}: {seconds:.2f} s for {len(xs)} images "
            f"x {args.queries} queries = {rate:.0f} queries/s "
            f"(upper bound; {broken:.3f} of the images misclassified at the end)"
        )
    ratio = square_rows[1]["queries_per_s"] / square_rows[0]["queries_per_s"]
    say(
        "square int8 / float query rate: "
        f"{ratio:.2f} (target >= 0.5: {'met' if ratio >= 0.5 else 'NOT met'})"
    )

    os.makedirs(args.out, exist_ok=True)
    forward, square = pd.DataFrame(rows), pd.DataFrame(square_rows)
    square["model"] = "square_" + square["model"]
    table = pd.concat([forward, square], ignore_index=True)
    table.to_csv(os.path.join(args.out, "bench.csv"), index=False, float_format="%.6g")
    with open(os.path.join(args.out, "bench.md"), "w") as f:
        f.write(
            "# TFLite exports queried as deployed "
            f"({args.model}, {args.n} synthetic test images)\n\n"
        )
        command = LINES[0].removeprefix("command: ")
        f.write(
            f"Made by `{command}`; see bench.log. The machine is shared (2 cores, other sessions "
        )
        f.write("running): absolute rates are noisy.\n\n")
        f.write(forward.to_markdown(index=False, floatfmt=".4g") + "\n\n")
        f.write(f"Square (L-inf, eps 1/255, {args.queries} queries per image):\n\n")
        f.write(square.to_markdown(index=False, floatfmt=".4g") + "\n\n")
        f.write(
            "Square's query rate on int8 / on the float Keras model: "
            f"{ratio:.2f} (target >= 0.5).\n"
        )
    with open(os.path.join(args.out, "bench.log"), "w") as f:
        f.write("\n".join(LINES) + "\n")


if __name__ == "__main__":
    main()
