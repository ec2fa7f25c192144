"""Defences compared (Castro Ros Table 2; van Everdingen Tables 2-4 and the final model), each with
the papers' metric and the honest one.

    python tools/study_defenses.py --out=/work/runs/study_defenses --epochs=10

Every model is trained through `run_training` (the recipes) on the CIFAR-10 mini archive, one run
folder per defence in --out/runs/<name>, reused unless --retrain (all) or --retrain_only=a,b:

  baseline           standard training
  (noise control)    the baseline evaluated under random-sign noise of the same eps (no training)
  random_noise       random-noise "adversarial training": a random-sign copy of the training set
                     made once
  adversarial_epoch  per-epoch adversarial training: an FGSM copy of --epoch_fraction of the set,
                     regenerated each epoch
  fgsm_batch         per-batch FGSM adversarial training, --fgsm_ratio of each batch adversarial
  pgd_batch          per-batch PGD-<--pgd_steps> adversarial training (Madry et al.), every batch
                     adversarial
  distill            defensive distillation: teacher and student at --temperature, student deployed
                     at T = 1
  distill_variant    teacher at T = 1 raised to --variant_temperature, student trained and deployed
                     there
  final              a student distilled (recipe distill, --final_temperature, deployed at T = 1)
                     from the best adversarially trained teacher (highest suite robust accuracy
                     among adversarial_epoch, fgsm_batch and pgd_batch, or --final_teacher), behind
                     random-sign noise preprocessing at test time (--test_noise_eps; evaluated with
                     expectation over transformation)

For every model: clean accuracy (--test_images test images, default all 932), accuracy on its own
FGSM-perturbed test set at --eps (the papers' metric, loss on the logits; also with the loss on the
output probabilities, as a naive attacker sees it), and the headline robust accuracy of
`tfadv.evaluation.evaluate` (suite --suite on the first --eval_images test images at --eps, the
worst case over the suite and the masking checklist's attacks) with the checks that failed; and the
input-gradient norm histograms (initially correct vs incorrect) of the baseline, the adversarially
trained and the distilled models.

Tables (CSV + study.md): defences, distillation, gradients, training; PNGs: gradients_<model>.png;
full evaluation reports in --out/evaluations/.
"""

import os

import numpy as np
import pandas as pd
import study_common as common

RUNS = (
    "baseline",
    "random_noise",
    "adversarial_epoch",
    "fgsm_batch",
    "pgd_batch",
    "distill",
    "distill_variant",
    "final",
)
ADVERSARIAL = (
    "adversarial_epoch",
    "fgsm_batch",
    "pgd_batch",
)  # candidates for the final model's teacher


def flags(argv=None):
    p = common.parser(__doc__)
    common.add_training_flags(p)
    common.add_evaluation_flags(p)
    p.set_defaults(test_images=0, epochs=10)
    p.add_argument(
        "--eps", type=float, default=0.03, help="training and evaluation eps, pixel scale (L-inf)"
    )
    p.add_argument(
        "--models",
        type=common.str_list,
        default=list(RUNS),
        help=f"runs to include, comma list of {', '.join(RUNS)}",
    )
    p.add_argument(
        "--epochs_per_model",
        default="",
        help="per-run epochs, e.g. pgd_batch=5,distill=20 (default --epochs)",
    )
    p.add_argument(
        "--retrain_only",
        type=common.str_list,
        default=[],
        help="retrain these runs (comma list); --retrain retrains all",
    )
    p.add_argument(
        "--suite_models",
        type=common.str_list,
        default=["all"],
        help="entries scored by the suite (keys of the defences table) or all",
    )
    p.add_argument("--pgd_steps", type=int, default=7)
    p.add_argument(
        "--fgsm_ratio", type=float, default=0.5, help="fgsm_batch: adversarial share of each batch"
    )
    p.add_argument(
        "--epoch_fraction",
        type=float,
        default=0.5,
        help="adversarial_epoch: share of the set regenerated each epoch",
    )
    p.add_argument(
        "--warmup_epochs", type=int, default=0, help="adversarial recipes: clean epochs first"
    )
    p.add_argument(
        "--eps_ramp_epochs",
        type=int,
        default=0,
        help="adversarial recipes: epochs of linear eps ramp",
    )
    p.add_argument(
        "--temperature", type=float, default=50.0, help="distill: teacher and student temperature"
    )
    p.add_argument(
        "--variant_temperature",
        type=float,
        default=4.0,
        help="distill_variant: raised teacher and student temperature",
    )
    p.add_argument(
        "--final_temperature",
        type=float,
        default=50.0,
        help="final: soft-label and student temperature (deployed at T = 1)",
    )
    p.add_argument(
        "--final_teacher",
        default="",
        help=(
            f"final: teacher run ({', '.join(ADVERSARIAL)}); "
            "default: the best by suite robust accuracy"
        ),
    )
    p.add_argument(
        "--final_eval_images",
        type=int,
        default=200,
        help="final (random at test time, attacked with EOT: ~8x the cost): suite images",
    )
    p.add_argument(
        "--test_noise_eps",
        type=float,
        default=0.0,
        help="final: random-sign noise at test time (0: --eps)",
    )
    return common.parse(p, argv, check)


def check(args):
    unknown = [m for m in args.models if m not in RUNS]
    if unknown:
        raise ValueError(f"--models: unknown {unknown}; expected some of {', '.join(RUNS)}")
    if not 0 <= args.eps <= 1:
        raise ValueError(f"--eps={args.eps}: must be in [0, 1]")
    args.epochs_per_model = epochs_map(args.epochs_per_model)
    if any(r not in RUNS for r in args.retrain_only):
        raise ValueError(
            f"--retrain_only={','.join(args.retrain_only)}: expected runs among {', '.join(RUNS)}"
        )
    if args.final_teacher and args.final_teacher not in ADVERSARIAL:
        raise ValueError(
            f"--final_teacher={args.final_teacher}: expected one of {', '.join(ADVERSARIAL)}"
        )
    if (
        "final" in args.models
        and not args.final_teacher
        and not any(m in args.models for m in ADVERSARIAL)
    ):
        raise ValueError(
            "--models: final needs an adversarially trained teacher "
            f"among {', '.join(ADVERSARIAL)} (or --final_teacher)"
        )
    for name in ("fgsm_ratio", "epoch_fraction"):
        if not 0 < getattr(args, name) <= 1:
            raise ValueError(f"--{name}={getattr(args, name)}: must be in (0, 1]")
    for name in ("temperature", "variant_temperature", "final_temperature", "pgd_steps"):
        if getattr(args, name) <= 0:
            raise ValueError(f"--{name}={getattr(args, name)}: must be > 0")
    if args.final_eval_images < 0:
        raise ValueError(
            f"--final_eval_images={args.final_eval_images}: must be >= 0 (0: --eval_images)"
        )
    if args.test_noise_eps < 0:
        raise ValueError(f"--test_noise_eps={args.test_noise_eps}: must be >= 0")


def epochs_map(value) -> dict:
    """'pgd_batch=5,distill=20' (or that dict, from flags.json) -> {run: epochs}, checked."""
    pairs = (
        value.items()
        if isinstance(value, dict)
        else (item.partition("=")[::2] for item in common.str_list(value))
    )
    out = {}
    for name, epochs in pairs:
        if name not in RUNS or not str(epochs).isdigit() or int(epochs) <= 0:
            raise ValueError(
                f"--epochs_per_model={name}={epochs}: "
                f"expected RUN=EPOCHS with RUN in {', '.join(RUNS)} and EPOCHS > 0"
            )
        out[name] = int(epochs)
    return out


def run_overrides(args, name: str, teacher_dir: str = "") -> dict:
    """TrainConfig fields of one run."""
    adversarial = dict(
        eps=args.eps, warmup_epochs=args.warmup_epochs, eps_ramp_epochs=args.eps_ramp_epochs
    )
    table = {
        "baseline": dict(recipe="standard"),
        "random_noise": dict(recipe="random_noise", eps=args.eps, adv_fraction=1.0),
        "adversarial_epoch": dict(
            recipe="adversarial_epoch",
            attack="fgsm",
            adv_fraction=args.epoch_fraction,
            **adversarial,
        ),
        "fgsm_batch": dict(
            recipe="adversarial_batch", attack="fgsm", adv_ratio=args.fgsm_ratio, **adversarial
        ),
        "pgd_batch": dict(
            recipe="adversarial_batch",
            attack="pgd",
            attack_steps=args.pgd_steps,
            adv_ratio=1.0,
            **adversarial,
        ),
        "distill": dict(
            recipe="distill",
            teacher_temperature=args.temperature,
            student_temperature=args.temperature,
            deploy_temperature=1.0,
        ),
        "distill_variant": dict(
            recipe="distill_variant",
            teacher_temperature=1.0,
            student_temperature=args.variant_temperature,
        ),
        "final": dict(
            recipe="distill",
            teacher_dir=teacher_dir,
            student_temperature=args.final_temperature,
            deploy_temperature=1.0,
            test_noise="random_sign",
            test_noise_eps=args.test_noise_eps or args.eps,
        ),
    }
    overrides = table[name]
    if name in args.epochs_per_model:
        overrides["epochs"] = args.epochs_per_model[name]
    return overrides


def entries(args) -> list:
    """(key, run, model name in the run, label) of every row of the defences table."""
    t, tv, tf = (
        f"{args.temperature:g}",
        f"{args.variant_temperature:g}",
        f"{args.final_temperature:g}",
    )
    rows = [
        ("baseline", "baseline", "", "baseline (standard training)"),
        (
            "noise_control",
            "baseline",
            "",
            f"baseline under random-sign noise +-{args.eps:g} (control)",
        ),
        (
            "random_noise",
            "random_noise",
            "",
            "random-noise adversarial training (random-sign copy made once)",
        ),
        (
            "adversarial_epoch",
            "adversarial_epoch",
            "",
            f"per-epoch FGSM adversarial training ({args.epoch_fraction:g} of the set regenerated)",
        ),
        (
            "fgsm_batch",
            "fgsm_batch",
            "",
            f"per-batch FGSM adversarial training ({args.fgsm_ratio:g} of each batch)",
        ),
        (
            "pgd_batch",
            "pgd_batch",
            "",
            f"per-batch PGD-{args.pgd_steps} adversarial training (every batch)",
        ),
        ("distill_teacher", "distill", "teacher", f"distillation: teacher (T={t})"),
        (f"distill_student_T{t}", "distill", f"student_T{t}", f"distillation: student at T={t}"),
        ("distill_student_T1", "distill", "student_T1", "distillation: student deployed at T=1"),
        ("variant_teacher_T1", "distill_variant", "teacher", "variant: teacher (T=1)"),
        (
            f"variant_teacher_T{tv}",
            "distill_variant",
            f"teacher_T{tv}",
            f"variant: teacher raised to T={tv}",
        ),
        (
            f"variant_student_T{tv}",
            "distill_variant",
            f"student_T{tv}",
            f"variant: student (T={tv})",
        ),
        (
            "final_no_noise",
            "final",
            "student_T1",
            f"final: student (T={tf} -> 1) of the best adversarial teacher, no test noise",
        ),
        (
            "final",
            "final",
            "student_T1_random_sign",
            "final: the same behind random-sign noise at test time",
        ),
    ]
    return [row for row in rows if row[1] in args.models]


def train(args, name: str, teacher_dir: str = "") -> dict:
    retrain = args.retrain or name in args.retrain_only
    return common.train_run(args, name, retrain=retrain, **run_overrides(args, name, teacher_dir))


def score(args, key, run_name, label, model, info, x, y, names) -> dict:
    """Clean, own-FGSM (paper) and suite (honest) accuracy of one entry."""
    from tfadv import evaluation

    row = {
        "model": label,
        "key": key,
        "run": run_name,
        "epochs (all stages)": len(info["epochs"]) or float("nan"),
    }
    fgsm = evaluation.robust_accuracy(model, x, y, "fgsm", args.eps)
    row["clean"] = fgsm["clean_accuracy"]
    if key == "noise_control":
        noise = evaluation.robust_accuracy(model, x, y, "random_sign", args.eps, seed=args.seed)
        row.update(
            {
                "own perturbed (paper)": noise["adversarial_accuracy"],
                "perturbation": "random sign",
                "FGSM on probabilities": float("nan"),
            }
        )
        common.log(
            f"[{key}] clean {row['clean']:.3f}, random sign {row['own perturbed (paper)']:.3f}"
        )
        return row
    probabilities = evaluation.robust_accuracy(
        model, x, y, "fgsm", args.eps, loss_on="probabilities"
    )
    row.update(
        {
            "own perturbed (paper)": fgsm["adversarial_accuracy"],
            "perturbation": "FGSM (logits)",
            "FGSM on probabilities": probabilities["adversarial_accuracy"],
        }
    )
    common.log(
        f"[{key}] clean {row['clean']:.3f}, own FGSM {row['own perturbed (paper)']:.3f} "
        f"(on probabilities {row['FGSM on probabilities']:.3f})"
    )
    if "all" in args.suite_models or key in args.suite_models:
        images = args.final_eval_images if key == "final" else 0
        row.update(
            common.suite_evaluation(
                args,
                key,
                model,
                x,
                y,
                args.eps,
                names,
                source=os.path.join(info["dir"], "summary.json"),
                images=images,
            )
        )
    return row


def best_teacher(args, rows: list) -> tuple:
    """(run, reason): the adversarially trained run with the highest suite robust accuracy (or FGSM
    accuracy when there is no suite), or --final_teacher."""
    if args.final_teacher:
        return args.final_teacher, "chosen by --final_teacher"
    candidates = [r for r in rows if r["key"] in ADVERSARIAL]
    metric = (
        "suite robust" if all("suite robust" in r for r in candidates) else "own perturbed (paper)"
    )
    best = max(candidates, key=lambda r: r[metric])
    ranking = ", ".join(
        f"{r['key']} {r[metric]:.3f}" for r in sorted(candidates, key=lambda r: -r[metric])
    )
    return best["key"], f"highest {metric} among the adversarially trained models ({ranking})"


def main(argv=None):
    args = flags(argv)
    common.start(args)
    _, _, test, names = common.load_data(args)
    x, y = test.float_images(), test.labels
    runs, rows = {}, []
    for name in [m for m in RUNS if m in args.models and m != "final"]:
        runs[name] = train(args, name)
    for key, run_name, model_name, label in entries(args):
        if run_name == "final":
            continue
        model = common.load_run_model(runs[run_name], model_name)
        rows.append(score(args, key, run_name, label, model, runs[run_name], x, y, names))
    teacher_note = ""
    if "final" in args.models:
        teacher, reason = best_teacher(args, rows)
        if teacher not in runs:
            runs[teacher] = train(args, teacher)
        teacher_note = f"Final model's teacher: {teacher} ({reason})."
        common.log(teacher_note)
        runs["final"] = train(args, "final", teacher_dir=runs[teacher]["dir"])
        for key, run_name, model_name, label in entries(args):
            if run_name == "final":
                model = common.load_run_model(runs["final"], model_name)
                rows.append(score(args, key, run_name, label, model, runs["final"], x, y, names))
    table = pd.DataFrame(rows)

    gradient_rows = []
    for key, run_name, model_name, label in entries(args):
        if key in (
            "noise_control",
            "final",
        ):  # the same network as another row / random at inference
            continue
        model = common.load_run_model(runs[run_name], model_name)
        gradient_rows.append(
            common.gradient_figure(
                args, key, model, x, y, f"{label}: input-gradient norms, {len(y)} test images"
            )
        )
    gradients = pd.DataFrame(gradient_rows)

    sections = [
        common.write_table(
            args,
            table,
            "defences",
            f"Defences at eps {args.eps:g}: the papers' metric and the honest robust accuracy",
        )
    ]
    sections.append(findings(args, table, teacher_note))
    distilled = table[table["run"].isin(["distill", "distill_variant", "final"])]
    if len(distilled):
        merged = distilled.merge(
            gradients, left_on="key", right_on="model", how="left", suffixes=("", "_g")
        ).drop(columns=["model_g"], errors="ignore")
        keep = [
            c
            for c in merged.columns
            if c
            in (
                "model",
                "clean",
                "own perturbed (paper)",
                "FGSM on probabilities",
                "suite robust",
                "masking checks failed",
            )
            or c.startswith(("grad = 0", "median grad"))
        ]
        sections.append(
            common.write_table(
                args,
                merged[keep],
                "distillation",
                "Distillation (van Everdingen Tables 2-4): accuracy and input-gradient norms",
            )
        )
    if len(gradients):
        sections.append(
            common.write_table(
                args,
                gradients,
                "gradients",
                "Input-gradient norms (histograms: gradients_<model>.png)",
            )
        )
    sections.append(
        common.write_table(args, training_table(args, runs), "training", "Training runs")
    )
    header = (
        f"Defences: {args.model} on the CIFAR-10 mini archive, {args.epochs} epochs unless "
        f"--epochs_per_model ({args.epochs_per_model or 'none'}), batch {args.batch_size}, "
        f"Adam {args.learning_rate:g} {args.lr_schedule}, augment {args.augment}, "
        f"eps {args.eps:g} ({args.eps * 255:.1f}/255) for training and evaluation; "
        f"clean and own-FGSM accuracy on {len(y)} test images, suite {args.suite} on the first "
        f"{min(args.eval_images or len(y), len(y))} (the final model with test noise, attacked "
        f"with EOT: {min(args.final_eval_images or len(y), args.eval_images or len(y), len(y))})"
    )
    common.finish(args, sections, header)


def findings(args, table: pd.DataFrame, teacher_note: str) -> str:
    """How each defence looks by the papers' metric and by the suite, relative to the baseline."""
    lines = ["## Findings", ""]
    if teacher_note:
        lines += [teacher_note, ""]
    base = table[table["key"] == "baseline"]
    honest = "suite robust" in table.columns
    if base.empty:
        return "\n".join(lines + ["(no baseline in --models: nothing to compare)", ""])
    base = base.iloc[0]
    for _, row in table.iterrows():
        if row["key"] in ("baseline", "noise_control"):
            continue
        paper = row["own perturbed (paper)"] - base["own perturbed (paper)"]
        text = (
            f"- {row['model']}: own-FGSM accuracy "
            f"{row['own perturbed (paper)']:.3f} ({paper:+.3f} vs the baseline)"
        )
        if (
            honest
            and not pd.isna(row.get("suite robust"))
            and not pd.isna(base.get("suite robust"))
        ):
            gain = row["suite robust"] - base["suite robust"]
            text += f"; suite robust accuracy {row['suite robust']:.3f} ({gain:+.3f})"
            if paper > gain + 0.05:
                text += ": the papers' metric overstates the gain"
            if row.get("masking checks failed", "none") not in ("none", None) and not pd.isna(
                row.get("masking checks failed")
            ):
                text += f"; masking checks failed: {row['masking checks failed']}"
        lines.append(text + ".")
    control = table[table["key"] == "noise_control"]
    if not control.empty:
        noise = control.iloc[0]["own perturbed (paper)"]
        verdict = (
            "the gradient's direction, not the size of the change, does the damage"
            if noise > base["own perturbed (paper)"] + 0.05
            else (
                "noise of that size hurts about as much as FGSM here: "
                "the comparison says little at this scale"
            )
        )
        lines.append(
            f"- Control: random-sign noise of the same size leaves the baseline at {noise:.3f} "
            f"(clean {base['clean']:.3f}, own FGSM {base['own perturbed (paper)']:.3f}): {verdict}."
        )
    return "\n".join(lines) + "\n"


def training_table(args, runs: dict) -> pd.DataFrame:
    rows = []
    for name, info in runs.items():
        seconds = common.epoch_seconds(info)
        overrides = run_overrides(args, name, teacher_dir="(best)" if name == "final" else "")
        rows.append(
            {
                "run": name,
                "recipe": overrides["recipe"],
                "epochs run": len(seconds),
                "median s/epoch": float(np.median(seconds)) if seconds else float("nan"),
                "train s (epochs)": float(np.sum(seconds)) if seconds else float("nan"),
                "run s (total)": info["seconds"],
                "reused": info["reused"],
                "folder": info["dir"],
            }
        )
    return pd.DataFrame(rows)


if __name__ == "__main__":
    main()
