"""Defences compared on the CIFAR-10 mini archive, all trained for the same number of epochs.

    python tools/study_defenses.py --data_dir=../shared/data/cifar-10-mini-binary.tar.gz \\
        --epochs=8 --out=/work/runs/study_defenses

Trains (through `tfadv.experiment.run.run_training`, i.e. the recipes and their flags) a standard model,
FGSM and PGD-k per-batch adversarial training, per-epoch adversarial training, the
pre-generated random-noise copy and defensive distillation at T = 50, then evaluates on
the test set and prints two Markdown tables (also saved as CSV and .md under --out):

1. robustness: clean accuracy and accuracy under FGSM and PGD-10 at eps 0.01 and 0.03
   (L-inf, pixel scale, loss on logits).
2. distillation (van Everdingen's table): teacher (T=50), student (T=50), student (T=1):
   clean and FGSM accuracy with the loss on probabilities (what a naive attacker sees)
   and on logits, and the input-gradient norms of the cross-entropy on probabilities
   (fraction exactly zero, median) and on logits (median).

Finished runs are reused (their summary.json exists) unless --retrain.
"""

import argparse
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from tfadv import evaluation as evaluate  # noqa: E402
from tfadv.experiment import run, run_folder  # noqa: E402
from tfadv.experiment.config import TrainConfig  # noqa: E402

EPS_VALUES = (0.01, 0.03)
PGD_EVAL_STEPS = 10


def runs(args) -> dict:
    """name -> (label, TrainConfig overrides) of every trained defence."""
    k = args.pgd_train_steps
    return {
        "standard": ("standard", dict(recipe="standard")),
        "fgsm": ("FGSM adv. training (per batch, 50% adv.)", dict(recipe="adversarial_batch", attack="fgsm", adv_ratio=0.5)),
        "pgd": (
            f"PGD-{k} adv. training (per batch, 100% adv.)",
            dict(recipe="adversarial_batch", attack="pgd", attack_steps=k, adv_ratio=1.0),
        ),
        "per_epoch": (
            "FGSM adv. training (per epoch, 50% regenerated)",
            dict(recipe="adversarial_epoch", attack="fgsm", adv_fraction=0.5),
        ),
        "random_noise": ("random-sign noise copy (made once)", dict(recipe="random_noise", adv_fraction=1.0)),
        "distill": (
            "defensive distillation T=50 (student deployed at T=1)",
            dict(recipe="distill", teacher_temperature=50.0, student_temperature=50.0, deploy_temperature=1.0),
        ),
    }


def train(args, name, overrides) -> str:
    output_dir = os.path.join(args.out, name)
    if not args.retrain and os.path.exists(os.path.join(output_dir, run_folder.SUMMARY_FILE)):
        print(f"[{name}] reusing {output_dir}", flush=True)
        return output_dir
    config = TrainConfig(
        dataset="cifar10", data_dir=args.data_dir, model=args.model, epochs=args.epochs,
        batch_size=args.batch_size, learning_rate=args.learning_rate, lr_schedule="cosine",
        augment=args.augment, eps=0.03, robust_eval_size=args.robust_eval_size,
        output_dir=output_dir, overwrite=True, seed=args.seed, verbose=2, **overrides,
    )  # fmt: skip
    start = time.time()
    summary = run.run_training(config)
    print(f"[{name}] trained in {time.time() - start:.0f} s: {summary.test_accuracy}", flush=True)
    return output_dir


def robustness_row(label, model, x, y, seed) -> dict:
    row = {"model": label}
    for eps in EPS_VALUES:
        fgsm = evaluate.robust_accuracy(model, x, y, "fgsm", eps)
        pgd = evaluate.robust_accuracy(model, x, y, "pgd", eps, steps=PGD_EVAL_STEPS, seed=seed)
        row["clean"] = fgsm["clean_accuracy"]
        row[f"FGSM {eps}"] = fgsm["adversarial_accuracy"]
        row[f"PGD-{PGD_EVAL_STEPS} {eps}"] = pgd["adversarial_accuracy"]
    return row


def distillation_row(label, temperature, model, x, y) -> dict:
    row = {"model": label, "T": temperature}
    for eps in EPS_VALUES:
        for loss_on in ("probabilities", "logits"):
            result = evaluate.robust_accuracy(model, x, y, "fgsm", eps, loss_on=loss_on)
            row["clean"] = result["clean_accuracy"]
            row[f"FGSM {eps} ({loss_on})"] = result["adversarial_accuracy"]
    on_probs = evaluate.gradient_norms(model, x, y, loss_on="probabilities")
    on_logits = evaluate.gradient_norms(model, x, y, loss_on="logits")
    row["grad = 0 (probs)"] = float((on_probs == 0).mean())
    row["median grad norm (probs)"] = float(np.median(on_probs))
    row["median grad norm (logits)"] = float(np.median(on_logits))
    return row


def markdown(frame: pd.DataFrame) -> str:
    def cell(v):
        if isinstance(v, float):
            return f"{v:.3g}" if (v != 0 and (abs(v) < 1e-2 or abs(v) >= 1e3)) else f"{v:.3f}"
        return str(v)

    lines = ["| " + " | ".join(frame.columns) + " |", "|" + "---|" * len(frame.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_dir", default=os.path.join("..", "shared", "data", "cifar-10-mini-binary.tar.gz"))
    parser.add_argument("--out", default="/work/runs/study_defenses")
    parser.add_argument("--model", default="baseline_cnn")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument("--learning_rate", type=float, default=1e-3)
    parser.add_argument("--augment", default="none")
    parser.add_argument("--pgd_train_steps", type=int, default=3)
    parser.add_argument("--robust_eval_size", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", default="", help="comma list of run names (default: all)")
    parser.add_argument("--retrain", action="store_true", help="train again even if a finished run exists")
    args = parser.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    start = time.time()

    plan = runs(args)
    chosen = [n for n in plan if not args.only or n in args.only.split(",")]
    folders = {name: train(args, name, plan[name][1]) for name in chosen}
    train_seconds = time.time() - start

    data = run.load_data(TrainConfig(dataset="cifar10", data_dir=args.data_dir, seed=args.seed))
    x, y = data.test.float_images(), data.test.labels
    rows = []
    for name in chosen:
        main_name = "student_T1" if name == "distill" else ""
        rows.append(robustness_row(plan[name][0], run_folder.load_model(folders[name], main_name), x, y, args.seed))
    table1 = pd.DataFrame(rows)

    table2 = None
    if "distill" in folders:
        named = (("teacher", "teacher", 50), ("student", "student_T50", 50), ("student", "student_T1", 1))
        table2 = pd.DataFrame(
            [distillation_row(label, t, run_folder.load_model(folders["distill"], model), x, y) for label, model, t in named]
        )

    header = (
        f"{args.model} on the CIFAR-10 mini archive ({len(data.train)} train / {len(data.test)} test images), "
        f"{args.epochs} epochs each, batch {args.batch_size}, Adam {args.learning_rate} cosine, augment={args.augment}, "
        f"training eps 0.03; evaluation on all {len(x)} test images, L-inf eps in pixel scale."
    )
    text = [header, "", "1. Robustness (loss on logits; PGD-10 with random start, step 2.5 * eps / 10)", "", markdown(table1)]
    table1.to_csv(os.path.join(args.out, "robustness.csv"), index=False)
    if table2 is not None:
        text += ["", "2. Defensive distillation (T = 50)", "", markdown(table2)]
        table2.to_csv(os.path.join(args.out, "distillation.csv"), index=False)
    text += ["", f"training {train_seconds:.0f} s, total {time.time() - start:.0f} s"]
    print("\n".join(text))
    with open(os.path.join(args.out, "study.md"), "w") as f:
        f.write("\n".join(text) + "\n")
    with open(os.path.join(args.out, "study_args.json"), "w") as f:
        json.dump({**vars(args), "runs": {n: plan[n][1] for n in chosen}}, f, indent=2)


if __name__ == "__main__":
    main()
