"""How much the attack's loss matters: robust accuracy under FGSM and PGD with each loss.

    python tools/study_losses.py --model=saved_models/distill --model_name=student_T1 \
        [--eps=0.01,0.03] [--steps=10] [--limit=0] [--out=docs/results/losses]

For each eps, FGSM and PGD-`steps` (random start, seed 0) with cross-entropy on the output
probabilities (the naive attacker's view), cross-entropy on the logits, the margin
(Carlini-Wagner) loss and DLR, all on the model's logits. A saturated softmax (a distilled model
deployed at T=1) hides from the first; inflated logits (a model trained hot) saturate the
second; margin and DLR depend on neither. Writes losses.csv and losses.md; prints the table.
"""

import argparse
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
from tfadv.runtime import onednn  # noqa: E402

onednn.enable_by_default()  # before TensorFlow loads (see tfadv.runtime.onednn)

import pandas as pd  # noqa: E402

from tfadv import data, evaluation  # noqa: E402
from tfadv.experiment import load_model, load_run  # noqa: E402
from tfadv.runtime import devices  # noqa: E402
from tfadv.runtime.files import write_text  # noqa: E402

VIEWS = (  # (column label, loss, loss_on)
    ("CE on probabilities", "ce", "probabilities"),
    ("CE on logits", "ce", "logits"),
    ("margin", "margin", "logits"),
    ("DLR", "dlr", "logits"),
)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="run folder, .keras file or SavedModel")
    parser.add_argument("--model_name", default="", help="model inside a run folder")
    parser.add_argument(
        "--data_dir", default="", help="CIFAR-10 binary archive (default: the run's)"
    )
    parser.add_argument("--eps", default="0.01,0.03", help="comma list, pixel scale")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--limit", type=int, default=0, help="first N test images (0: all)")
    parser.add_argument("--out", default="", help="folder for losses.csv / losses.md")
    args = parser.parse_args()
    devices.set_seed(0, deterministic=False)
    if os.path.exists(os.path.join(args.model, "config.json")):  # a run folder
        run = load_run(args.model, limit=1, name=args.model_name)
        model, config = run.model, run.config
    else:
        model, config = load_model(args.model, args.model_name), {}
    test = data.load("cifar10", data_dir=args.data_dir or config.get("data_dir")).test.head(
        args.limit
    )
    x, y = test.float_images(), test.labels
    rows = []
    for eps in (float(e) for e in args.eps.split(",")):
        for attack, options in (("fgsm", {}), ("pgd", {"steps": args.steps, "seed": 0})):
            row = {"eps": eps, "attack": "FGSM" if attack == "fgsm" else f"PGD-{args.steps}"}
            for label, loss, loss_on in VIEWS:
                start = time.time()
                result = evaluation.robust_accuracy(
                    model, x, y, attack, eps, loss=loss, loss_on=loss_on, **options
                )
                row[label] = result["adversarial_accuracy"]
                print(
                    f"eps={eps:g} {row['attack']:7s} {label:20s} "
                    f"{row[label]:.3f}  ({time.time() - start:.1f} s)",
                    flush=True,
                )
            row["clean"] = result["clean_accuracy"]
            rows.append(row)
    table = pd.DataFrame(rows)[["eps", "attack", "clean", *(label for label, _, _ in VIEWS)]]
    markdown = table.to_markdown(index=False, floatfmt=".3f")
    print(markdown)
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        table.to_csv(os.path.join(args.out, "losses.csv"), index=False)
        write_text(os.path.join(args.out, "losses.md"), markdown + "\n")
        write_text(os.path.join(args.out, "flags.json"), json.dumps(vars(args), indent=2) + "\n")


if __name__ == "__main__":
    main()
