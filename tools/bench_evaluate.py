"""Times tfadv's evaluation against the Adversarial Robustness Toolbox and CleverHans.

    python tools/bench_evaluate.py \
        --models=saved_models/standard_mini,saved_models/adversarial_batch_fgsm \
        [--data_dir=../shared/data/cifar-10-mini-binary.tar.gz] [--n=500] [--eps=0.0313725] \
        [--out=docs/results/bench_evaluate]

1. The standard suite without FAB-T (APGD-CE 100 steps, APGD-T 9 targets x 100 steps, Square 5000
   queries; ART has no FAB) against ART 1.20's AutoAttack machinery set to the same attacks and
   budgets: ART's own `auto_attack.run_attack` (what its AutoAttack runs per attack: only on the
   samples still robust) with AutoProjectedGradientDescent (cross-entropy, 100 iterations, 1 random
   start, initial step 2 * eps as in the reference), then AutoProjectedGradientDescent targeted with
   the DLR loss toward each of the 9 most likely other classes (100 iterations each), then
   SquareAttack (5000 iterations, p_init 0.8, 1 restart). ART's AutoAttack class itself cannot be
   configured to these budgets (with targeted=True it also runs every attack untargeted and targets
   all classes in index order), hence its per-attack runner. Same model, same images, same eps.
2. Early exit: PGD-10 robust accuracy of each model with tfadv (each image leaves the batch at its
   first successful step) against CleverHans 4.0's PGD-10 over every image, then scored.

Also prints the floor: the bare model evaluations that no implementation of the suite at these
budgets can skip (every image that survives all three attacks takes 1,000 gradients and 5,000
forward passes), so ART / floor is the best ratio any implementation could reach on this machine.

Prints seconds, robust accuracies and ratios (ART / tfadv, CleverHans / tfadv, tfadv / floor,
ART / floor); writes bench.csv and bench.md to --out. Libraries that are not installed are skipped.
"""

import argparse
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
from tfadv.runtime import onednn  # noqa: E402

onednn.enable_by_default()  # before TensorFlow loads (see tfadv.runtime.onednn)


import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import tensorflow as tf  # noqa: E402

from tfadv import attacks, data, evaluation, models  # noqa: E402
from tfadv.experiment import load_model  # noqa: E402
from tfadv.runtime import devices  # noqa: E402
from tfadv.runtime.files import write_text  # noqa: E402

BATCH = 256
# the standard suite without FAB-T: ART has no FAB (its AutoAttack puts DeepFool in its place)
SAME_AS_ART = "apgd(steps=100, loss=ce),apgd_t(steps=100, n_targets=9),square(queries=5000)"


def art_suite(clf, x, y, eps, num_classes):
    """ART's per-attack AutoAttack runner over APGD-CE, APGD-T (top-9 targets, DLR) and Square;
    (robust accuracy, {attack: seconds})."""
    from art.attacks.evasion import AutoProjectedGradientDescent, SquareAttack
    from art.attacks.evasion.auto_attack import run_attack
    from art.estimators.classification import TensorFlowV2Classifier

    estimator = TensorFlowV2Classifier(
        model=lambda images, training=False: clf.logits(images),
        nb_classes=num_classes,
        input_shape=x.shape[1:],
        loss_object=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        clip_values=(0.0, 1.0),
    )
    one_hot = np.eye(num_classes, dtype=np.float32)[y]
    seconds, start = {}, time.time()
    predicted = estimator.predict(x, batch_size=BATCH).argmax(1)
    robust = predicted == y
    x_adv = x.copy()
    apgd = dict(
        norm=np.inf,
        eps=eps,
        eps_step=eps,
        max_iter=100,
        nb_random_init=1,
        batch_size=BATCH,
        verbose=False,
    )
    ce = AutoProjectedGradientDescent(estimator, targeted=False, loss_type="cross_entropy", **apgd)
    x_adv, robust = run_attack(x_adv, one_hot, robust, ce, estimator, norm=np.inf, eps=eps)
    seconds["apgd-ce"], start = time.time() - start, time.time()
    clean_logits = estimator.predict(x, batch_size=BATCH)
    ranked = np.argsort(-clean_logits, axis=1)
    dlr = AutoProjectedGradientDescent(
        estimator, targeted=True, loss_type="difference_logits_ratio", **apgd
    )
    for k in range(1, min(10, num_classes)):
        if not robust.any():
            break
        target = np.eye(num_classes, dtype=np.float32)[ranked[:, k]]
        x_adv, robust = run_attack(x_adv, target, robust, dlr, estimator, norm=np.inf, eps=eps)
    seconds["apgd-t"], start = time.time() - start, time.time()
    if robust.any():
        square = SquareAttack(
            estimator,
            norm=np.inf,
            eps=eps,
            max_iter=5000,
            p_init=0.8,
            nb_restarts=1,
            batch_size=BATCH,
            verbose=False,
        )
        x_adv, robust = run_attack(x_adv, one_hot, robust, square, estimator, norm=np.inf, eps=eps)
    seconds["square"] = time.time() - start
    return float(robust.mean()), seconds


def per_image_seconds(fn, x, reps):
    """Median seconds per image of the compiled `fn` on the batch x (3 blocks of `reps` calls)."""
    images = tf.constant(x)
    fn(images)
    blocks = []
    for _ in range(3):
        start = time.time()
        for _ in range(reps):
            out = fn(images)
        out.numpy()
        blocks.append((time.time() - start) / reps / len(x))
    return float(np.median(blocks))


def floor_seconds(clf, x, robust, gradients, queries):
    """The model evaluations no implementation of the suite at these budgets can skip: every
    image that survives it costs `gradients` forward+backward passes (APGD-CE's steps and
    APGD-T's steps per target) and `queries` forward passes (Square). Bare compiled passes,
    timed at the robust images' batch and at 256 images; the cheaper per-image cost counts.
    Returns (seconds, per-image forward s, per-image gradient s)."""
    if not robust.any():
        return 0.0, float("nan"), float("nan")
    forward = tf.function(lambda images: clf.logits(images), reduce_retracing=True)

    @tf.function(reduce_retracing=True)
    def gradient(images):
        with tf.GradientTape() as tape:  # cross-entropy toward class 0: the cost of any label
            tape.watch(images)
            logits = clf.logits(images)
            loss = tf.keras.losses.sparse_categorical_crossentropy(
                tf.zeros(tf.shape(logits)[:1], tf.int64), logits, from_logits=True
            )
        return tape.gradient(loss, images)

    batches = [x[robust], np.resize(x, (BATCH, *x.shape[1:]))]
    fwd = min(per_image_seconds(forward, b, 30) for b in batches)
    grad = min(per_image_seconds(gradient, b, 10) for b in batches)
    count = int(robust.sum())
    return count * (gradients * grad + queries * fwd), fwd, grad


def cleverhans_pgd(clf, x, y, eps):
    from cleverhans.tf2.attacks.projected_gradient_descent import projected_gradient_descent

    start = time.time()
    adv = np.concatenate(
        [
            projected_gradient_descent(
                clf.logits,
                x[i : i + BATCH],
                eps,
                2.5 * eps / 10,
                10,
                np.inf,
                clip_min=0.0,
                clip_max=1.0,
                y=y[i : i + BATCH],
                rand_init=True,
            ).numpy()
            for i in range(0, len(x), BATCH)
        ]
    )
    accuracy = float(np.mean(attacks.predict_classes(clf, adv) == y))
    return accuracy, time.time() - start


def early_exit_rounds(clf, x, y, eps, rounds, row):
    """PGD-10 robust accuracy: tfadv (early exit) and CleverHans (every image), interleaved
    rounds."""
    suite = "pgd(steps=10, early_stop=True)"
    evaluation.run_suite(clf, x[:8], y[:8], eps, suite)  # compile
    cleverhans_pgd(clf, x[:8], y[:8], eps)
    ratios, ours, theirs = [], [], []
    for _ in range(rounds):
        start = time.time()
        early = evaluation.run_suite(clf, x, y, eps, suite, batch_size=BATCH, seed=0)
        ours.append(time.time() - start)
        accuracy, seconds = cleverhans_pgd(clf, x, y, eps)
        theirs.append(seconds)
        ratios.append(seconds / ours[-1])
    row.update(
        tfadv_pgd10_robust=early.robust_accuracy,
        tfadv_pgd10_s=float(np.median(ours)),
        cleverhans_pgd10_robust=accuracy,
        cleverhans_pgd10_s=float(np.median(theirs)),
        cleverhans_over_tfadv=float(np.median(ratios)),
        cleverhans_over_tfadv_range=f"{min(ratios):.2f}-{max(ratios):.2f}",
    )


def installed(module: str) -> bool:
    try:
        __import__(module)
        return True
    except ImportError:
        return False


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", required=True, help="comma list of run folders or model files")
    parser.add_argument("--data_dir", default="../shared/data/cifar-10-mini-binary.tar.gz")
    parser.add_argument("--n", type=int, default=500, help="first N test images")
    parser.add_argument("--eps", type=float, default=8 / 255)
    parser.add_argument("--skip_art", action="store_true")
    parser.add_argument(
        "--rounds", type=int, default=4, help="interleaved rounds of the PGD-10 comparison"
    )
    parser.add_argument("--out", default="")
    args = parser.parse_args()
    devices.set_seed(0, deterministic=False)
    test = data.load("cifar10", data_dir=args.data_dir).test.head(args.n)
    x, y = test.float_images(), test.labels
    rows = []
    for path in args.models.split(","):
        clf = models.as_classifier(load_model(path))
        name = os.path.basename(os.path.normpath(path))
        row = {
            "model": name,
            "n": len(y),
            "clean": float(np.mean(attacks.predict_classes(clf, x) == y)),
        }
        evaluation.run_suite(
            clf,
            x[:8],
            y[:8],
            args.eps,
            "apgd(steps=2),apgd_t(steps=2, n_targets=1),square(queries=10)",
        )  # compile
        start = time.time()
        suite = evaluation.run_suite(clf, x, y, args.eps, SAME_AS_ART, batch_size=BATCH, seed=0)
        row.update(tfadv_suite_robust=suite.robust_accuracy, tfadv_suite_s=time.time() - start)
        print(
            f"[{name}] tfadv suite (standard without FAB-T): "
            f"robust {suite.robust_accuracy:.4f} in {row['tfadv_suite_s']:.1f} s",
            flush=True,
        )
        print(suite.table().to_string(index=False), flush=True)
        ours = dict(zip(("apgd-ce", "apgd-t", "square"), suite.table()["seconds"], strict=True))
        floor, fwd, grad = floor_seconds(
            clf, x, suite.robust, gradients=100 + 9 * 100, queries=5000
        )
        row.update(
            floor_s=floor, tfadv_over_floor=row["tfadv_suite_s"] / floor if floor else float("nan")
        )
        if floor:
            print(
                f"[{name}] floor: {int(suite.robust.sum())} robust images x (1,000 gradients at "
                f"{grad * 1e3:.2f} ms + 5,000 forward passes at {fwd * 1e3:.3f} ms per image) "
                f"= {floor:.1f} s; tfadv = {row['tfadv_over_floor']:.2f} x floor",
                flush=True,
            )
        if not args.skip_art and installed("art"):
            robust, seconds = art_suite(clf, x, y, args.eps, 10)
            total = sum(seconds.values())
            row.update(
                art_suite_robust=robust,
                art_suite_s=total,
                art_over_tfadv=total / row["tfadv_suite_s"],
            )
            row["art_over_floor"] = (
                total / floor if floor else float("nan")
            )  # the best ratio any implementation can reach
            for (
                key,
                value,
            ) in seconds.items():  # per attack: both libraries ran it on the same images
                row[f"{key} art/tfadv"] = value / ours[key] if ours[key] > 0.01 else float("nan")
            print(
                f"[{name}] ART AutoAttack runner: "
                f"robust {robust:.4f} in {total:.1f} s = {row['art_over_tfadv']:.2f} x tfadv; "
                f"per attack ART s {json.dumps({k: round(v, 1) for k, v in seconds.items()})}, "
                f"tfadv s {json.dumps({k: round(v, 1) for k, v in ours.items()})}",
                flush=True,
            )
        if installed("cleverhans"):
            early_exit_rounds(clf, x, y, args.eps, args.rounds, row)
        early = {
            k: round(v, 4) if isinstance(v, float) else v
            for k, v in row.items()
            if "pgd10" in k or "cleverhans" in k
        }
        print(f"[{name}] PGD-10: {json.dumps(early)}", flush=True)
        rows.append(row)
    table = pd.DataFrame(rows)
    markdown = table.to_markdown(index=False, floatfmt=".3f")
    print(markdown)
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        table.to_csv(os.path.join(args.out, "bench.csv"), index=False)
        write_text(os.path.join(args.out, "bench.md"), markdown + "\n")


if __name__ == "__main__":
    main()
