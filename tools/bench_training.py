"""Cost of per-batch adversarial training relative to clean training, measured in one process.

    python tools/bench_training.py --model=baseline_cnn --images=512 --steps=3,7

For clean training, FGSM adversarial training and PGD-k adversarial training (every batch
fully adversarial, `AdversarialTrainer(ratio=1)`), times one `fit` epoch at a time with a
callback (epoch begin to epoch end: no fit set-up), after one warm-up epoch per mode, with
the modes interleaved over the repeats so that load from other processes hits all alike.
Prints seconds per epoch (median) and the ratio to clean training, next to the ideal
if one attack step cost one training step (FGSM ~ 2, PGD-k ~ k + 1), and next to the
prediction from the measured cost c of one attack step alone (an FGSM pass over the same
batches, relative to a clean training epoch): FGSM ~ 1 + c, PGD-k ~ 1 + k * c. The last
column (measured / predicted) near 1 means the trainer adds nothing beyond the attack.
"""

import argparse
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from tfadv.runtime import onednn  # noqa: E402

onednn.enable_by_default()  # before TensorFlow loads, as importing tfadv first does (see tfadv.runtime.onednn)

import keras  # noqa: E402
import numpy as np  # noqa: E402

from tfadv import attacks, data, defenses, models  # noqa: E402
from tfadv.runtime import devices as runtime  # noqa: E402


class EpochTimer(keras.callbacks.Callback):
    """Wall-clock seconds from on_epoch_begin to on_epoch_end, per epoch."""

    def __init__(self):
        super().__init__()
        self.seconds = []

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self._start)


def build(mode, args, shape, classes):
    """(name, compiled model, ideal cost ratio) for "clean", "fgsm" or "pgd<k>"."""
    keras.utils.set_random_seed(args.seed)
    classifier = models.build(args.model, shape, classes)
    if mode == "clean":
        model, ideal = classifier, 1.0
    elif mode == "fgsm":
        model, ideal = defenses.AdversarialTrainer(classifier, "fgsm", eps=args.eps, ratio=1.0), 2.0
    else:
        k = int(mode[3:])
        options = {"steps": k}
        model = defenses.AdversarialTrainer(classifier, attacks.Attack("pgd", **options), eps=args.eps, ratio=1.0)
        ideal = k + 1.0
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(),
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
        jit_compile=runtime.resolve_jit_compile(args.jit_compile),
    )
    return mode, model, ideal


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="baseline_cnn")
    parser.add_argument("--images", type=int, default=512, help="training images per epoch")
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument("--steps", default="3,7", help="comma list of PGD step counts k")
    parser.add_argument("--eps", type=float, default=0.03)
    parser.add_argument("--repeats", type=int, default=5, help="timed epochs per mode (interleaved)")
    parser.add_argument("--jit_compile", default="auto")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    runtime.set_seed(args.seed, deterministic=False)

    images = data.make_synthetic(args.images, seed=args.seed)
    dataset = data.to_dataset(images, args.batch_size, shuffle=True, seed=args.seed)
    shape, classes = images.images.shape[1:], int(images.labels.max()) + 1
    modes = ["clean", "fgsm", *[f"pgd{int(k)}" for k in args.steps.split(",") if k]]
    runs = [build(mode, args, shape, classes) for mode in modes]
    timers = {name: EpochTimer() for name, _, _ in runs}
    for _name, model, _ in runs:  # warm-up: tracing and first-epoch costs
        model.fit(dataset, epochs=1, verbose=0)
    attack_model = runs[0][1]
    attack_seconds = []

    def attack_epoch():  # one FGSM pass (forward + input gradient) over the epoch's batches
        start = time.perf_counter()
        for x, y in dataset:
            attacks.fgsm(attack_model, x, y, args.eps).numpy()
        return time.perf_counter() - start

    attack_epoch()  # warm-up
    for _ in range(args.repeats):
        for name, model, _ in runs:
            model.fit(dataset, epochs=1, verbose=0, callbacks=[timers[name]])
        attack_seconds.append(attack_epoch())

    clean = float(np.median(timers["clean"].seconds))
    c = float(np.median(attack_seconds)) / clean
    print(
        f"{args.model}, {args.images} images, batch {args.batch_size}, median of {args.repeats} interleaved epochs, "
        f"oneDNN {'on' if onednn.is_enabled() else 'off'}"
    )
    print(f"one attack step alone (FGSM pass): {np.median(attack_seconds):.3f} s / epoch = c = {c:.2f} clean epochs")
    print("| training | s / epoch | ratio to clean | ideal | ratio / ideal | predicted 1 + k c | measured / predicted |")
    print("|---|---|---|---|---|---|---|")
    for name, _, ideal in runs:
        seconds = float(np.median(timers[name].seconds))
        label = {"clean": "clean", "fgsm": "FGSM"}.get(name, f"PGD-{name[3:]}")
        ratio, predicted = seconds / clean, 1 + (ideal - 1) * c
        print(
            f"| {label} | {seconds:.3f} | {ratio:.2f} | {ideal:.0f} | {ratio / ideal:.2f} "
            f"| {predicted:.2f} | {ratio / predicted:.2f} |"
        )


if __name__ == "__main__":
    main()
