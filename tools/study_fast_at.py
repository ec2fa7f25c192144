"""Fast adversarial training (Wong et al. 2020, "Fast is better than free") against PGD-7
adversarial training, on the same model, data, optimiser and seed.

    python tools/study_fast_at.py --out=/work/runs/study_fast_at --epochs=15

Variants (--variants, all recipe adversarial_batch with every batch adversarial, eps --eps):
  pgd7          PGD-<--pgd_steps> from a random start, step 2.5 eps / steps (Madry et al.)
  fast          FGSM from a uniform random start, step alpha = --alpha_factor * eps (1.25: Wong
                et al.), with the catastrophic-overfitting guard (--guard_images training images
                PGD-10-checked at each epoch end; a fall of more than --guard_drop below the best
                epoch stops training and restores the previous epoch's weights;
                configs/adversarial_batch_fast.flags)
  fast_noguard  the same without the guard
  fgsm          plain FGSM (no random start, step eps), no guard: the setting prone to catastrophic
                overfitting

PGD-7 trains --epochs epochs; every fast variant trains each of --fast_epochs (a comma list, default
--epochs; e.g. 15,10: one run each, Wong et al. gave the fast method fewer epochs), run folders
--out/runs/<variant>_e<epochs> (reused unless --retrain).

Per run: seconds per epoch (training + validation + the guard's check, timed by a callback),
total training time, the PGD-10 accuracy on the guard's held training images after every epoch
(measured for every variant by an untimed probe), clean accuracy and PGD-20 accuracy on
--test_images test images, and the headline robust accuracy of `tfadv.evaluation.evaluate` (suite
--suite on the first --eval_images). The goal (issue 11): fast reaches at least 90% of PGD-7's
robust accuracy in at most 30% of its training time; study.md says whether it was met, on which
measure.

Tables: variants, goal (CSV + study.md); PNG: fast_at.png (held-batch robust accuracy and seconds
per epoch).
Times come from a shared 2-core machine: compare them within one run of this script.
"""

import numpy as np
import pandas as pd
import study_common as common

VARIANTS = ("pgd7", "fast", "fast_noguard", "fgsm")


def flags(argv=None):
    p = common.parser(__doc__)
    common.add_training_flags(p, augment="standard")
    common.add_evaluation_flags(p)
    p.set_defaults(epochs=15, test_images=0)
    p.add_argument(
        "--variants",
        type=common.str_list,
        default=["pgd7", "fast"],
        help=f"comma list of {', '.join(VARIANTS)}",
    )
    p.add_argument(
        "--fast_epochs",
        type=common.str_list,
        default=[],
        help="epochs of the fast variants, a comma list: one run each (default --epochs)",
    )
    p.add_argument(
        "--eps", type=float, default=0.03, help="training and evaluation eps, pixel scale"
    )
    p.add_argument("--pgd_steps", type=int, default=7)
    p.add_argument(
        "--alpha_factor", type=float, default=1.25, help="fast: FGSM step = factor * eps"
    )
    p.add_argument(
        "--guard_images",
        type=int,
        default=128,
        help="training images the guard (and the probe) PGD-10-check",
    )
    p.add_argument("--guard_drop", type=float, default=0.2)
    p.add_argument("--eval_pgd_steps", type=int, default=20)
    p.add_argument(
        "--robust_share",
        type=float,
        default=0.9,
        help="goal: fast robust accuracy >= share x PGD-7's",
    )
    p.add_argument(
        "--time_share", type=float, default=0.3, help="goal: fast training time <= share x PGD-7's"
    )
    return common.parse(p, argv, check)


def check(args):
    unknown = [v for v in args.variants if v not in VARIANTS]
    if unknown or not args.variants:
        raise ValueError(
            f"--variants={','.join(args.variants)}: expected some of {', '.join(VARIANTS)}"
        )
    if not 0 < args.eps <= 1:
        raise ValueError(f"--eps={args.eps}: must be in (0, 1]")
    if any(not str(e).isdigit() or int(e) <= 0 for e in args.fast_epochs):
        raise ValueError(
            f"--fast_epochs={','.join(map(str, args.fast_epochs))}: "
            "expected a comma list of epochs > 0"
        )
    args.fast_epochs = [int(e) for e in args.fast_epochs]
    if args.guard_images <= 0:
        raise ValueError(
            f"--guard_images={args.guard_images}: must be > 0 (it also sets the probe's images)"
        )
    if not 0 < args.guard_drop <= 1:
        raise ValueError(f"--guard_drop={args.guard_drop}: must be in (0, 1]")
    for name in ("pgd_steps", "eval_pgd_steps", "alpha_factor"):
        if getattr(args, name) <= 0:
            raise ValueError(f"--{name}={getattr(args, name)}: must be > 0")


def plan(args) -> list:
    """[(run name, variant, epochs)]: PGD-7 at --epochs, each fast variant at each --fast_epochs."""
    out = []
    for variant in args.variants:
        for epochs in [args.epochs] if variant == "pgd7" else (args.fast_epochs or [args.epochs]):
            out.append((f"{variant}_e{epochs}", variant, epochs))
    return out


def overrides(args, variant: str, epochs: int) -> dict:
    fast_epochs = epochs
    common_fields = dict(
        recipe="adversarial_batch", eps=args.eps, adv_ratio=1.0, warmup_epochs=0, eps_ramp_epochs=0
    )
    table = {
        "pgd7": dict(attack="pgd", attack_steps=args.pgd_steps, epochs=epochs),
        "fast": dict(
            attack="fgsm_random",
            attack_alpha=args.alpha_factor * args.eps,
            epochs=fast_epochs,
            guard_images=args.guard_images,
            guard_drop=args.guard_drop,
        ),
        "fast_noguard": dict(
            attack="fgsm_random", attack_alpha=args.alpha_factor * args.eps, epochs=fast_epochs
        ),
        "fgsm": dict(attack="fgsm", epochs=fast_epochs),
    }
    return {**common_fields, **table[variant]}


def label(args, variant: str) -> str:
    return {
        "pgd7": f"PGD-{args.pgd_steps} adversarial training",
        "fast": f"fast: FGSM-RS (alpha {args.alpha_factor:g} eps) + guard",
        "fast_noguard": f"FGSM-RS (alpha {args.alpha_factor:g} eps), no guard",
        "fgsm": "plain FGSM (no random start), no guard",
    }[variant]


def held_batch(args):
    """The guard's held training images: the first --guard_images of the run's training split."""
    from tfadv.experiment import run
    from tfadv.experiment.config import TrainConfig

    config = TrainConfig(
        dataset="cifar10", data_dir=args.data_dir, train_limit=args.train_images, seed=args.seed
    )
    held = run.load_data(config).train.head(args.guard_images)
    return held.float_images(), held.labels


def main(argv=None):
    args = flags(argv)
    common.start(args)
    from tfadv import attacks, evaluation
    from tfadv.defenses import OverfittingGuard

    held_x, held_y = held_batch(args)
    _, _, test, names = common.load_data(args)
    x, y = test.float_images(), test.labels
    rows, curves = [], {}
    for run_name, variant, epochs in plan(args):
        probe = OverfittingGuard(
            held_x, held_y, args.eps, drop=1.0, seed=args.seed, log_prefix="probe"
        )  # never stops: measures
        info = common.train_run(args, run_name, probes=[probe], **overrides(args, variant, epochs))
        model = common.load_run_model(info)
        seconds = common.epoch_seconds(info)
        probe_history = info["probes"][0]["history"] if info["probes"] else []
        guard_rows = [r for r in info["epochs"] if "guard_robust_accuracy" in r]
        stopped = next((r["epoch"] for r in info["epochs"] if r.get("guard_stopped")), None)
        pgd = evaluation.robust_accuracy(
            model, x, y, attacks.Attack("pgd", steps=args.eval_pgd_steps), args.eps, seed=args.seed
        )
        row = {
            "run": run_name,
            "variant": variant,
            "training": label(args, variant),
            "epochs": epochs,
            "epochs run": len(seconds),
            "guard stopped at epoch": stopped if stopped is not None else "",
            "median s/epoch": float(np.median(seconds)) if seconds else float("nan"),
            "train s": float(np.sum(seconds)) if seconds else float("nan"),
            "guard checks": len(guard_rows),
            "clean": pgd["clean_accuracy"],
            f"PGD-{args.eval_pgd_steps}": pgd["adversarial_accuracy"],
        }
        common.log(
            f"[{run_name}] {row['epochs run']} epochs, "
            f"{row['median s/epoch']:.1f} s/epoch, clean {row['clean']:.3f}, "
            f"PGD-{args.eval_pgd_steps} {row[f'PGD-{args.eval_pgd_steps}']:.3f}"
        )
        row.update(
            common.suite_evaluation(
                args, run_name, model, x, y, args.eps, names, source=f"{info['dir']}/summary.json"
            )
        )
        rows.append(row)
        curves[run_name] = (variant, seconds, probe_history)
    table = pd.DataFrame(rows)
    sections = [
        common.write_table(
            args,
            table,
            "variants",
            f"Fast vs PGD-{args.pgd_steps} adversarial training at eps {args.eps:g}",
        )
    ]
    if "pgd7" in args.variants and "fast" in args.variants:
        goal, text = goal_table(args, table)
        sections.append(
            common.write_table(
                args,
                goal,
                "goal",
                "The goal: >= 90% of PGD-7's robust accuracy in <= 30% of its time",
            )
        )
        sections.append(text)
    common.save_figure(args, figure(args, curves), "fast_at")
    sections.append(
        "Figure: [fast_at.png](fast_at.png) "
        "(PGD-10 accuracy on the held training images after each epoch; seconds per epoch).\n"
    )
    header = (
        f"Fast adversarial training: {args.model} on the CIFAR-10 mini archive, "
        f"batch {args.batch_size}, Adam {args.learning_rate:g} {args.lr_schedule}, "
        f"augment {args.augment}, eps {args.eps:g} ({args.eps * 255:.1f}/255), {args.epochs} "
        f"epochs (fast variants {', '.join(map(str, args.fast_epochs or [args.epochs]))}); "
        f"guard: PGD-10 on {len(held_y)} training images, drop {args.guard_drop:g}; "
        f"clean and PGD-{args.eval_pgd_steps} on {len(y)} test images, "
        f"suite {args.suite} on the first {min(args.eval_images or len(y), len(y))}"
    )
    common.finish(args, sections, header)


def goal_table(args, table: pd.DataFrame):
    """One row per fast run and robustness measure: share of PGD-7's robust accuracy and of its
    time."""
    pgd = table[table["variant"] == "pgd7"].iloc[0]
    measures = [(f"PGD-{args.eval_pgd_steps} accuracy", f"PGD-{args.eval_pgd_steps}")]
    if "suite robust" in table:
        measures.insert(0, ("suite robust accuracy (headline)", "suite robust"))
    rows, lines = [], []
    for _, fast in table[table["variant"] == "fast"].iterrows():
        time_ratio = fast["train s"] / pgd["train s"]
        epoch_ratio = fast["median s/epoch"] / pgd["median s/epoch"]
        for name, column in measures:
            ratio = fast[column] / pgd[column] if pgd[column] > 0 else float("nan")
            rows.append(
                {
                    "fast run": fast["run"],
                    "robustness measure": name,
                    "PGD-7": pgd[column],
                    "fast": fast[column],
                    "fast / PGD-7": ratio,
                    "time fast / PGD-7 (total)": time_ratio,
                    "per epoch": epoch_ratio,
                    "robust goal met": bool(ratio >= args.robust_share),
                    "time goal met": bool(time_ratio <= args.time_share),
                    "goal met": bool(ratio >= args.robust_share and time_ratio <= args.time_share),
                }
            )
        first = rows[-len(measures)]
        verdict = "met" if first["goal met"] else "not met"
        lines.append(
            f"- {fast['run']}: goal {verdict} on the {first['robustness measure']}: "
            f"{first['fast / PGD-7']:.0%} of PGD-{args.pgd_steps}'s robust accuracy "
            f"({first['fast']:.3f} vs {first['PGD-7']:.3f}; goal >= {args.robust_share:.0%}) "
            f"in {time_ratio:.0%} of its training time ({fast['train s']:.0f} s over "
            f"{fast['epochs run']} epochs vs {pgd['train s']:.0f} s over {pgd['epochs run']}; "
            f"{epoch_ratio:.0%} per epoch; goal <= {args.time_share:.0%})."
        )
        if fast["guard stopped at epoch"] != "":
            lines.append(
                f"  The guard stopped it at epoch {fast['guard stopped at epoch']} "
                "(catastrophic overfitting) and restored the epoch before."
            )
    return pd.DataFrame(rows), "\n".join(lines) + "\n"


def figure(args, curves: dict):
    from tfadv.evaluation.plots import plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for run_name, (variant, seconds, history) in curves.items():
        name = f"{label(args, variant)}, {run_name.rsplit('_e', 1)[1]} epochs"
        if history:
            axes[0].plot(range(1, len(history) + 1), history, marker="o", markersize=3, label=name)
        if seconds:
            axes[1].plot(range(1, len(seconds) + 1), seconds, marker="o", markersize=3, label=name)
    axes[0].set_title(
        f"PGD-10 accuracy on {args.guard_images} held training images (eps {args.eps:g})",
        fontsize=9,
    )
    axes[0].set_ylabel("robust accuracy")
    axes[0].set_ylim(-0.02, 1.02)
    axes[1].set_title("seconds per epoch (training + validation + guard)", fontsize=9)
    axes[1].set_ylabel("s")
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


if __name__ == "__main__":
    main()
