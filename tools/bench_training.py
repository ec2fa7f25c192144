"""Cost of per-batch adversarial training (PGD-AT, TRADES, MART, AWP) relative to clean training,
measured in one process.

    python tools/bench_training.py --model=baseline_cnn --images=512 --steps=3,7
    python tools/bench_training.py --methods=clean,pgd7,pgd7_awp,trades7,trades7_awp,mart7

Modes: clean, fgsm, pgd<k> (`AdversarialTrainer(ratio=1)`), pgd<k>_awp (the same with
awp_gamma=5e-3), trades<k>, trades<k>_awp (`TradesTrainer`, beta 6), mart<k> (`MartTrainer`).
The default is clean, fgsm, pgd<k> for every k in --steps and, for the largest k, the AWP,
TRADES and MART modes. Times one `fit` epoch at a time with a callback (epoch begin to epoch
end: no fit set-up), after one warm-up epoch per mode, with the modes interleaved over the
repeats so that load from other processes hits all alike.

Prints seconds per epoch (median) and the ratio to clean training, next to the ideal: the
forward-backward passes over the batch the method must make, in clean training steps, if one
attack step cost one training step: FGSM 2, PGD-k k + 1, TRADES and MART k + 2 (the training
loss runs the network on x and x'), and AWP one more pass per training pass (its ascent on
the same loss: PGD-AT + AWP k + 2, TRADES + AWP k + 4); TRADES' inference pass for f(x) is
not counted. Next to the prediction from the measured cost c of one attack step alone (an
FGSM pass over the same batches, relative to a clean training epoch): training passes + k * c.
The last column (measured / predicted) near 1 means the trainer adds nothing beyond its passes.
"""

import argparse
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from tfadv.runtime import onednn  # noqa: E402

# before TensorFlow loads, as importing tfadv first does (see tfadv.runtime.onednn)
onednn.enable_by_default()

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


def parse_mode(mode):
    """(method, k, awp) of a mode name such as 'clean', 'fgsm', 'pgd7', 'trades7_awp', 'mart7'."""
    awp = mode.endswith("_awp")
    base = mode[: -len("_awp")] if awp else mode
    for method in ("clean", "fgsm", "pgd", "trades", "mart"):
        if base.startswith(method) and (base[len(method) :].isdigit() or base == method):
            k = int(base[len(method) :] or (1 if method == "fgsm" else 0))
            return method, k, awp
    raise ValueError(
        "Expected a mode such as clean, fgsm, pgd7, pgd7_awp, "
        f"trades7, trades7_awp, mart7. Received: {mode!r}"
    )


def passes(method, k, awp):
    """(ideal cost in clean training steps, training passes): see the module docstring."""
    training = {"clean": 1, "fgsm": 1, "pgd": 1, "trades": 2, "mart": 2}[method]
    training *= 2 if awp else 1
    return training + k, training


def build(mode, args, shape, classes):
    """(name, compiled model, ideal cost ratio, training passes) for a mode (see parse_mode)."""
    method, k, awp = parse_mode(mode)
    keras.utils.set_random_seed(args.seed)
    classifier = models.build(args.model, shape, classes)
    gamma = args.awp_gamma if awp else 0.0
    attack = attacks.Attack("pgd", steps=k) if k and method != "fgsm" else "fgsm"
    if method == "clean":
        model = classifier
    elif method in ("fgsm", "pgd"):
        model = defenses.AdversarialTrainer(
            classifier, attack, eps=args.eps, ratio=1.0, awp_gamma=gamma
        )
    else:
        trainer = defenses.TradesTrainer if method == "trades" else defenses.MartTrainer
        model = trainer(classifier, attack, eps=args.eps, beta=6.0, awp_gamma=gamma)
    jit = runtime.resolve_jit_compile(args.jit_compile)
    if method in ("trades", "mart"):
        model.compile(optimizer=keras.optimizers.Adam(1e-3), jit_compile=jit)
    else:
        model.compile(
            optimizer=keras.optimizers.Adam(1e-3),
            loss=keras.losses.SparseCategoricalCrossentropy(),
            metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
            jit_compile=jit,
        )
    return (mode, model, *passes(method, k, awp))


def default_modes(steps):
    ks = [int(k) for k in steps.split(",") if k]
    top = max(ks)
    return [
        "clean",
        "fgsm",
        *[f"pgd{k}" for k in ks],
        f"pgd{top}_awp",
        f"trades{top}",
        f"trades{top}_awp",
        f"mart{top}",
    ]


def label(mode):
    method, k, awp = parse_mode(mode)
    name = {
        "clean": "clean",
        "fgsm": "FGSM",
        "pgd": f"PGD-{k}",
        "trades": f"TRADES-{k}",
        "mart": f"MART-{k}",
    }[method]
    return name + (" + AWP" if awp else "")


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="baseline_cnn")
    parser.add_argument("--images", type=int, default=512, help="training images per epoch")
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument("--steps", default="3,7", help="comma list of PGD step counts k")
    parser.add_argument(
        "--methods", default="", help="comma list of modes (default: see the docstring)"
    )
    parser.add_argument("--awp_gamma", type=float, default=5e-3)
    parser.add_argument("--eps", type=float, default=0.03)
    parser.add_argument(
        "--repeats", type=int, default=5, help="timed epochs per mode (interleaved)"
    )
    parser.add_argument("--jit_compile", default="auto")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    runtime.set_seed(args.seed, deterministic=False)

    images = data.make_synthetic(args.images, seed=args.seed)
    dataset = data.to_dataset(images, args.batch_size, shuffle=True, seed=args.seed)
    shape, classes = images.images.shape[1:], int(images.labels.max()) + 1
    modes = [m for m in args.methods.split(",") if m] if args.methods else default_modes(args.steps)
    if "clean" not in modes:
        modes.insert(0, "clean")
    runs = [build(mode, args, shape, classes) for mode in modes]
    timers = {name: EpochTimer() for name, *_ in runs}
    for _name, model, *_ in runs:  # warm-up: tracing and first-epoch costs
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
        for name, model, *_ in runs:
            model.fit(dataset, epochs=1, verbose=0, callbacks=[timers[name]])
        attack_seconds.append(attack_epoch())

    clean = float(np.median(timers["clean"].seconds))
    c = float(np.median(attack_seconds)) / clean
    print(
        f"{args.model}, {args.images} images, batch {args.batch_size}, median of "
        f"{args.repeats} interleaved epochs, oneDNN {'on' if onednn.is_enabled() else 'off'}"
    )
    print(
        "one attack step alone (FGSM pass): "
        f"{np.median(attack_seconds):.3f} s / epoch = c = {c:.2f} clean epochs"
    )
    print(
        "| training | s / epoch | ratio to clean | ideal | "
        "ratio / ideal | predicted | measured / predicted |"
    )
    print("|---|---|---|---|---|---|---|")
    for name, _, ideal, training in runs:
        seconds = float(np.median(timers[name].seconds))
        ratio, predicted = seconds / clean, training + (ideal - training) * c
        print(
            f"| {label(name)} | {seconds:.3f} | {ratio:.2f} | {ideal:.0f} | {ratio / ideal:.2f} "
            f"| {predicted:.2f} | {ratio / predicted:.2f} |"
        )


if __name__ == "__main__":
    main()
