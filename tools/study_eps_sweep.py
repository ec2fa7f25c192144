"""FGSM vs PGD accuracy over eps (Castro Ros Table 1), on the initially correct test images, with
the evaluation suite's robust accuracy at a few eps for the honest column.

    python tools/study_eps_sweep.py --out=/work/runs/study_eps_sweep --model=/work/runs/mini_std
    python tools/study_eps_sweep.py --out=... --model=/work/runs/mini_std,/work/runs/mini_fgsm
    python tools/study_eps_sweep.py --out=... --model=baseline_cnn --epochs=30     # trains it first

--model: trained models (a run folder, RUN:NAME for one model of a run, a .keras file or a
SavedModel), comma-separated, or an architecture name, trained here through run_training (standard
recipe; cached in --out/runs/<name>). For each model, on its initially correct images among the
first --test_images test images: accuracy under FGSM and under PGD-<--pgd_steps> (random start,
step 2.5 eps / steps, --pgd_restarts; loss --loss on the logits) at every --attack_eps; and at every
--suite_eps the headline robust accuracy of `tfadv.evaluation.evaluate` (suite --suite on the
first --eval_images test images, worst case over the suite and the masking checklist's attacks)
over the same model's initially correct images among them.

Tables: table1 (Castro Ros layout: rows eps, a column per model and attack; CSV + study.md),
sweep.csv (long form), suite;
PNG: eps_sweep.png.
"""

import os

import pandas as pd
import study_common as common

DEFAULT_EPS = "0.001,0.002,0.005,0.01,0.02,0.03,0.05,0.1,0.2,0.3,0.5"


def flags(argv=None):
    p = common.parser(__doc__)
    common.add_training_flags(p, augment="standard")
    common.add_evaluation_flags(p)
    p.set_defaults(model="/work/runs/mini_std", test_images=0, epochs=30)
    p.add_argument(
        "--attack_eps",
        type=common.float_list,
        default=DEFAULT_EPS,
        help="eps values of the FGSM / PGD sweep, pixel scale",
    )
    p.add_argument(
        "--suite_eps",
        type=common.float_list,
        default="0.01,0.03",
        help="eps values scored by the evaluation suite",
    )
    p.add_argument("--pgd_steps", type=int, default=20)
    p.add_argument("--pgd_restarts", type=int, default=1)
    p.add_argument("--loss", default="ce", help="loss of FGSM and PGD: ce, margin, dlr")
    return common.parse(p, argv, check)


def check(args):
    for name in ("attack_eps", "suite_eps"):
        values = getattr(args, name)
        if any(not 0 <= e <= 1 for e in values):
            raise ValueError(f"--{name}={','.join(map(str, values))}: every eps must be in [0, 1]")
    if not args.attack_eps:
        raise ValueError("--attack_eps: give at least one eps")
    if args.pgd_steps <= 0 or args.pgd_restarts <= 0:
        raise ValueError(
            f"--pgd_steps={args.pgd_steps}, --pgd_restarts={args.pgd_restarts}: must be > 0"
        )
    from tfadv import attacks

    if args.loss not in attacks.LOSSES:
        raise ValueError(f"--loss={args.loss}: expected one of {', '.join(attacks.LOSSES)}")


def models_from_flag(args) -> list:
    """[(label, model, source path)] from --model (paths, or architectures trained here)."""
    out = []
    for spec in common.str_list(args.model):
        if common._is_model_path(spec):
            out.append(common.model_from_spec(spec))
        else:
            info = common.train_run(args, spec, model=spec, recipe="standard")
            out.append(
                (spec, common.load_run_model(info), os.path.join(info["dir"], "summary.json"))
            )
    return out


def main(argv=None):
    args = flags(argv)
    common.start(args)
    from tfadv import attacks, evaluation
    from tfadv.evaluation import plots

    _, _, test, names = common.load_data(args)
    x, y = test.float_images(), test.labels
    fgsm = attacks.Attack("fgsm", loss=args.loss)
    pgd = attacks.Attack("pgd", steps=args.pgd_steps, restarts=args.pgd_restarts, loss=args.loss)
    frames, suite_rows = [], []
    for label, model, source in models_from_flag(args):
        correct = attacks.predict_classes(model, x) == y
        xc, yc = x[correct], y[correct]
        common.log(
            f"[{label}] {len(yc)} of {len(y)} test images initially "
            f"correct (clean accuracy {correct.mean():.3f})"
        )
        for attack, name in ((fgsm, "FGSM"), (pgd, f"PGD-{args.pgd_steps}")):
            sweep = evaluation.eps_sweep(
                model,
                xc,
                yc,
                attack,
                args.attack_eps,
                seed=args.seed if attack.takes_seed else None,
            )
            frames.append(sweep.assign(model=label, attack=name, n_correct=len(yc)))
            common.log(
                f"[{label}] {name}: "
                + ", ".join(
                    f"{e:g} {a:.3f}"
                    for e, a in zip(sweep["eps"], sweep["adversarial_accuracy"], strict=True)
                )
            )
        for eps in args.suite_eps if args.suite != "none" else ():
            result = common.suite_evaluation(args, label, model, x, y, eps, names, source=source)
            suite_rows.append(
                {
                    "model": label,
                    "attack": f"suite {args.suite} (headline)",
                    "eps": eps,
                    "adversarial_accuracy": result["suite robust on correct"],
                    "masking checks failed": result["masking checks failed"],
                    "report": result["report"],
                }
            )
    sweep = pd.concat(frames, ignore_index=True)[
        ["model", "attack", "eps", "eps_255", "adversarial_accuracy", "n_correct"]
    ]
    suite = pd.DataFrame(suite_rows)
    long = pd.concat(
        [sweep, suite.drop(columns=["masking checks failed", "report"], errors="ignore")],
        ignore_index=True,
    )
    table1 = long.pivot_table(
        index="eps", columns=["model", "attack"], values="adversarial_accuracy", sort=False
    )
    table1.columns = [f"{m}: {a}" for m, a in table1.columns]
    table1 = table1.reset_index().sort_values("eps")
    table1.insert(1, "eps_255", table1["eps"] * 255)
    sweep.to_csv(os.path.join(args.out, "sweep.csv"), index=False)
    sections = [
        common.write_table(
            args,
            table1,
            "table1",
            "Accuracy on the initially correct test images (Castro Ros Table 1 layout)",
        ),
        sweep_findings(sweep, args),
    ]
    if len(suite):
        sections.append(
            common.write_table(
                args,
                suite,
                "suite",
                "Evaluation suite (headline robust accuracy over the initially correct images)",
            )
        )
        sections.append(suite_findings(sweep, suite, args))
    common.save_figure(
        args,
        plots.eps_curves(
            long,
            "accuracy on the initially correct test images "
            f"(PGD-{args.pgd_steps}, loss {args.loss})",
        ),
        "eps_sweep",
    )
    header = (
        f"Eps sweep: FGSM vs PGD-{args.pgd_steps} "
        f"({args.pgd_restarts} restart(s), loss {args.loss} on the logits) on the initially "
        f"correct images among {len(y)} test images of the CIFAR-10 mini archive; "
        f"suite {args.suite} on the first {min(args.eval_images or len(y), len(y))} at eps "
        f"{', '.join(f'{e:g}' for e in args.suite_eps)}. Plot: [eps_sweep.png](eps_sweep.png)"
    )
    common.finish(args, sections, header)


def sweep_findings(sweep, args) -> str:
    """Castro Ros's finding (PGD stronger than FGSM) and FGSM's non-monotone tail, per model."""
    lines = ["## Findings", ""]
    for model, part in sweep.groupby("model", sort=False):
        fgsm = part[part["attack"] == "FGSM"].set_index("eps")["adversarial_accuracy"]
        pgd = part[part["attack"] == f"PGD-{args.pgd_steps}"].set_index("eps")[
            "adversarial_accuracy"
        ]
        stronger, ties = int((pgd < fgsm).sum()), int((pgd == fgsm).sum())
        rises = [
            f"{e:g}"
            for e, prev, cur in zip(
                fgsm.index[1:], fgsm.to_numpy()[:-1], fgsm.to_numpy()[1:], strict=True
            )
            if cur > prev + 1e-9
        ]
        lines.append(
            f"- {model} ({int(part['n_correct'].iloc[0])} initially correct images): "
            f"PGD-{args.pgd_steps} leaves fewer images correct than FGSM at {stronger} of "
            f"{len(fgsm)} eps ({ties} ties, never more: {bool((pgd <= fgsm).all())}); "
            + (
                "FGSM accuracy rises again as eps grows at eps "
                f"{', '.join(rises)} (a single step overshoots)."
                if rises
                else "FGSM accuracy never rises with eps."
            )
        )
    return "\n".join(lines) + "\n"


def suite_findings(sweep, suite, args) -> str:
    """How far PGD alone is from the suite's worst case at the suite's eps."""
    lines = [
        "## PGD alone vs the suite",
        "",
        "(PGD on the initially correct images among --test_images, "
        "the suite on those among the first --eval_images.)",
        "",
    ]
    for _, row in suite.iterrows():
        at = (
            (sweep["model"] == row["model"])
            & (sweep["attack"] == f"PGD-{args.pgd_steps}")
            & ((sweep["eps"] - row["eps"]).abs() < 1e-9)
        )
        if at.any():
            pgd = sweep[at]["adversarial_accuracy"].iloc[0]
            lines.append(
                f"- {row['model']}, eps {row['eps']:g}: PGD-{args.pgd_steps} leaves {pgd:.3f}, "
                f"the suite {row['adversarial_accuracy']:.3f} (PGD alone overstates "
                f"robust accuracy by {pgd - row['adversarial_accuracy']:+.3f}); "
                f"masking checks failed: {row['masking checks failed']}."
            )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
