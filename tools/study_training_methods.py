"""PGD adversarial training, TRADES, MART and adversarial weight perturbation (AWP) at equal
epochs and inner steps, on the same model, data, optimiser and seed (issue 20).

    python tools/study_training_methods.py --out=/work/runs/study_training_methods --epochs=15

Variants (--variants; every one trains --epochs epochs with --steps inner steps at eps --eps, no
eps warm-up or ramp, all batches adversarial):
  pgd           PGD-AT (recipe adversarial_batch, PGD-<steps> on the cross-entropy)
  trades1       TRADES, beta 1          trades6       TRADES, beta 6
  mart          MART, beta --mart_beta (PGD-<steps> on the cross-entropy)
  pgd_awp       PGD-AT + AWP (gamma --awp_gamma)
  trades6_awp   TRADES beta 6 + AWP

Per run: median seconds per epoch (training + validation, timed by a callback; a shared 2-core
machine: compare within one run of this script), clean accuracy and PGD-<--eval_pgd_steps>
accuracy on the first --test_images test images, the same PGD accuracy on the first
--test_images training images, the robust generalisation gap (training minus test PGD
accuracy), and the headline robust accuracy of `tfadv.evaluation.evaluate` (suite --suite on the
first --eval_images test images). Tables: variants.csv and study.md under --out.
"""

import numpy as np
import pandas as pd
import study_common as common

VARIANTS = ("pgd", "trades1", "trades6", "mart", "pgd_awp", "trades6_awp")


def flags(argv=None):
    p = common.parser(__doc__)
    common.add_training_flags(p, augment="standard")
    common.add_evaluation_flags(p)
    p.set_defaults(epochs=15)
    p.add_argument(
        "--variants",
        type=common.str_list,
        default=list(VARIANTS),
        help=f"comma list of {', '.join(VARIANTS)}",
    )
    p.add_argument(
        "--eps", type=float, default=0.03, help="training and evaluation eps, pixel scale"
    )
    p.add_argument("--steps", type=int, default=7, help="inner maximisation steps of every variant")
    p.add_argument("--mart_beta", type=float, default=6.0)
    p.add_argument("--awp_gamma", type=float, default=5e-3)
    p.add_argument("--eval_pgd_steps", type=int, default=20)
    return common.parse(p, argv, check)


def check(args):
    unknown = [v for v in args.variants if v not in VARIANTS]
    if unknown or not args.variants:
        raise ValueError(
            f"--variants={','.join(args.variants)}: expected some of {', '.join(VARIANTS)}"
        )
    if not 0 < args.eps <= 1:
        raise ValueError(f"--eps={args.eps}: must be in (0, 1]")
    for name in ("steps", "eval_pgd_steps"):
        if getattr(args, name) <= 0:
            raise ValueError(f"--{name}={getattr(args, name)}: must be > 0")
    if not 0 < args.awp_gamma < 1:
        raise ValueError(f"--awp_gamma={args.awp_gamma}: must be in (0, 1)")


def overrides(args, variant: str) -> dict:
    """TrainConfig fields of one variant."""
    shared = dict(
        attack="pgd", attack_steps=args.steps, eps=args.eps, warmup_epochs=0, eps_ramp_epochs=0
    )
    awp = dict(awp_gamma=args.awp_gamma) if variant.endswith("_awp") else {}
    base = variant.removesuffix("_awp")
    if base == "pgd":
        return {**shared, **awp, "recipe": "adversarial_batch", "adv_ratio": 1.0}
    if base == "mart":
        return {**shared, **awp, "recipe": "mart", "mart_beta": args.mart_beta}
    return {**shared, **awp, "recipe": "trades", "trades_beta": float(base[len("trades") :])}


def label(args, variant: str) -> str:
    base = variant.removesuffix("_awp")
    name = {"pgd": f"PGD-AT (PGD-{args.steps})", "mart": f"MART (beta {args.mart_beta:g})"}.get(
        base
    )
    name = name or f"TRADES (beta {base[len('trades') :]})"
    return name + (f" + AWP (gamma {args.awp_gamma:g})" if variant.endswith("_awp") else "")


def main(argv=None):
    args = flags(argv)
    common.start(args)
    from tfadv import attacks, evaluation

    train, _, test, names = common.load_data(args)
    n = args.test_images or len(test)
    x, y = test.float_images()[:n], test.labels[:n]
    train_x, train_y = train.float_images()[:n], train.labels[:n]
    pgd = attacks.Attack("pgd", steps=args.eval_pgd_steps)
    rows = []
    for variant in args.variants:
        info = common.train_run(args, variant, **overrides(args, variant))
        model = common.load_run_model(info)
        seconds = common.epoch_seconds(info)
        on_test = evaluation.robust_accuracy(model, x, y, pgd, args.eps, seed=args.seed)
        on_train = evaluation.robust_accuracy(
            model, train_x, train_y, pgd, args.eps, seed=args.seed
        )
        row = {
            "variant": variant,
            "training": label(args, variant),
            "epochs": len(seconds),
            "median s/epoch": float(np.median(seconds)) if seconds else float("nan"),
            "clean": on_test["clean_accuracy"],
            f"PGD-{args.eval_pgd_steps} test": on_test["adversarial_accuracy"],
            f"PGD-{args.eval_pgd_steps} train": on_train["adversarial_accuracy"],
            "robust gap (train - test)": on_train["adversarial_accuracy"]
            - on_test["adversarial_accuracy"],
        }
        common.log(
            f"[{variant}] {row['median s/epoch']:.1f} s/epoch, clean {row['clean']:.3f}, PGD test "
            f"{on_test['adversarial_accuracy']:.3f}, train {on_train['adversarial_accuracy']:.3f}"
        )
        row.update(
            common.suite_evaluation(
                args, variant, model, x, y, args.eps, names, source=f"{info['dir']}/summary.json"
            )
        )
        rows.append(row)
    table = pd.DataFrame(rows)
    section = common.write_table(
        args, table, "variants", f"Training methods at eps {args.eps:g}, {args.steps} inner steps"
    )
    header = (
        f"PGD-AT, TRADES, MART and AWP: {args.model} on the CIFAR-10 mini archive "
        f"({args.train_images or 'all'} training images), batch {args.batch_size}, "
        f"Adam {args.learning_rate:g} {args.lr_schedule}, augment {args.augment}, {args.epochs} "
        f"epochs, eps {args.eps:g} ({args.eps * 255:.1f}/255), {args.steps} inner steps; clean "
        f"and PGD-{args.eval_pgd_steps} on {len(y)} test and {len(train_y)} training images, "
        f"suite {args.suite} on the first {min(args.eval_images or len(y), len(y))} test images"
    )
    common.finish(args, [section], header)


if __name__ == "__main__":
    main()
