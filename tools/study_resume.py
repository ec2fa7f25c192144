"""The resume study: every recipe, killed in each of its stages at every kill point, resumed and
compared with the uninterrupted run (tfadv.experiment.resume_check), at tiny scale.

    python tools/study_resume.py --out=docs/results/resume [--epochs=3] [--only=standard,distill]

For each configuration below: one uninterrupted run that copies its run folder at each kill
point (in every epoch after the first, of every stage; after a stage's last epoch; in the
export; in the evaluation), each copy resumed with resume=True; in addition, mode "raise": a
run that raises in the export and one that raises in the evaluation, each resumed in its folder.
Writes table.csv and table.md (recipe, stage, kill point, epochs, uninterrupted and resumed
weights checksums, equal). Exit code 0 when every row is equal.
"""

import argparse
import csv
import os
import sys
import tempfile
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import tfadv  # noqa: E402, F401  (before TensorFlow loads: tfadv's oneDNN default)

TINY = dict(
    dataset="synthetic",
    model="tiny_cnn",
    batch_size=32,
    train_limit=160,
    test_limit=64,
    verbose=0,
    seed=3,
)
PGD = dict(attack="pgd", attack_steps=2, adv_ratio=0.5, eps_ramp_epochs=1, robust_eval_size=0)
FAST = dict(
    recipe="adversarial_batch",
    attack="fgsm_random",
    attack_alpha=0,
    eps=0.03,
    adv_ratio=1.0,
    robust_eval_size=0,
    guard_images=64,
)
# name: (settings, epochs or None for --epochs)
CONFIGS = {
    "standard": (
        dict(recipe="standard", noise="after_first_conv", noise_stddev=0.2, augment="all"),
        None,
    ),
    "adversarial_batch": (dict(recipe="adversarial_batch", **PGD), None),
    "adversarial_batch_fast": (dict(FAST, learning_rate=0.01, seed=0), None),
    "adversarial_batch_fast_guard_stops": (
        dict(FAST, guard_drop=0.02, learning_rate=0.003, seed=3),
        3,
    ),
    "adversarial_epoch": (
        dict(
            recipe="adversarial_epoch", attack="fgsm_random", adv_fraction=0.5, robust_eval_size=0
        ),
        None,
    ),
    "random_noise": (dict(recipe="random_noise", adv_fraction=0.5, robust_eval_size=0), None),
    "distill": (dict(recipe="distill", teacher_recipe="standard", student_temperature=20.0), None),
    "distill_variant": (
        dict(
            recipe="distill_variant",
            teacher_recipe="random_noise",
            adv_fraction=0.5,
            student_temperature=4.0,
        ),
        None,
    ),
}
COLUMNS = [
    "recipe",
    "config",
    "stage",
    "kill point",
    "mode",
    "epochs",
    "epochs trained after resume",
    "uninterrupted checksum",
    "resumed checksum",
    "equal",
]


def rows_of(name, config, rows):
    out = []
    for row in rows:
        for model in row.reference:
            out.append(
                {
                    "recipe": config.recipe,
                    "config": name,
                    "stage": row.point.stage,
                    "kill point": row.point.describe(),
                    "mode": row.mode,
                    "epochs": config.epochs,
                    "epochs trained after resume": " ".join(
                        f"{s}:{n}" for s, n in row.resumed_epochs.items()
                    )
                    or "-",
                    "uninterrupted checksum": f"{model} {row.reference[model]}",
                    "resumed checksum": f"{model} {row.resumed.get(model)}",
                    "equal": "yes" if row.equal else "NO",
                }
            )
    return out


def write(out_dir, table, command):
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "table.csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, COLUMNS)
        writer.writeheader()
        writer.writerows(table)
    lines = [
        "# Exact resume: killed, resumed, compared",
        "",
        f"Made by `{command}` "
        "(tfadv.experiment.resume_check; tiny_cnn, 160 synthetic images, batch 32).",
        "Mode snapshot: the uninterrupted run's folder copied at "
        "the kill point (what a kill then leaves) and resumed;",
        "mode raise: a run interrupted by an exception at "
        "that point and resumed in its folder. Checksums:",
        "`tfadv.models.weights_checksum` of each exported model, "
        "as in summary.json `weights`; equal means every",
        "model's checksum and every test accuracy agree.",
        "",
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "---|" * len(COLUMNS),
    ]
    lines += ["| " + " | ".join(str(row[c]) for c in COLUMNS) + " |" for row in table]
    equal = sum(row["equal"] == "yes" for row in table)
    lines += ["", f"{equal} of {len(table)} rows equal."]
    with open(os.path.join(out_dir, "table.md"), "w") as f:
        f.write("\n".join(lines) + "\n")


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--out",
        "--out_dir",
        dest="out_dir",
        default=os.path.join(REPO_ROOT, "docs", "results", "resume"),
        help="output folder of table.md and table.csv (--out_dir: its former name)",
    )
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument(
        "--only", default="", help="comma-separated names of CONFIGS (default: all)"
    )
    parser.add_argument(
        "--work_dir", default="", help="where the runs go (default: a temporary folder)"
    )
    args = parser.parse_args()
    from tfadv.experiment import resume_check
    from tfadv.experiment.config import TrainConfig

    names = [n for n in args.only.split(",") if n] or list(CONFIGS)
    unknown = sorted(set(names) - set(CONFIGS))
    if unknown:
        raise SystemExit(f"--only: unknown {unknown}; expected some of {sorted(CONFIGS)}")
    work = args.work_dir or tempfile.mkdtemp(prefix="resume-table-")
    table = []
    for name in names:
        settings, epochs = CONFIGS[name]
        start = time.time()
        config = TrainConfig(**{**TINY, "epochs": epochs or args.epochs, **settings})
        folder = os.path.join(work, name)
        points = resume_check.kill_points(config)
        if (
            name == "adversarial_batch_fast_guard_stops"
        ):  # the guard stops in epoch 2 of 3: no later epoch
            points = [p for p in points if not (p.moment == "epoch" and p.epoch > 1)]
        rows = resume_check.check(config, points, os.path.join(folder, "snapshot"))
        reference = rows[0]
        rows += resume_check.check(
            config,
            resume_check.kill_points(config, moments=("export", "evaluation")),
            os.path.join(folder, "raise"),
            mode="raise",
            reference=_Summary(reference.reference, reference.reference_accuracy),
        )
        table += rows_of(name, config, rows)
        print(
            f"{name}: {sum(r.equal for r in rows)} of {len(rows)} "
            f"kill points equal ({time.time() - start:.0f} s)",
            flush=True,
        )
    only = f" --only={args.only}" if args.only else ""
    write(args.out_dir, table, f"python tools/study_resume.py --epochs={args.epochs}{only}")
    return 0 if all(row["equal"] == "yes" for row in table) else 1


class _Summary:
    """The uninterrupted run's figures, as resume_check.check takes them
    (weights, test_accuracy)."""

    def __init__(self, weights, test_accuracy):
        self.weights, self.test_accuracy = weights, test_accuracy


if __name__ == "__main__":
    sys.exit(main())
