"""Class imbalance and adversarial robustness (Possas slides): for each class an under-sampled and
an over-sampled training set, plus the balanced baseline; white-box and black-box FGSM per class.

    python tools/study_imbalance.py --out=/work/runs/study_imbalance --epochs=10
    # a small run:
    python tools/study_imbalance.py --out=... --classes=cat,dog --epochs=1 --train_images=200

Every model (--model, vgg_small by default) is trained through run_training on the CIFAR-10 mini
archive: "balanced", and for every class C of --classes (default all ten) "under_C"
(`imbalance="under:C:<--under>"`: that class keeps --under of its training images) and "over_C"
(`"over:C:<--over>"`: that class repeated to --over times its images); run folders in
--out/runs/<name>, reused unless --retrain. On the test images (--test_images, default all 932):

- white-box FGSM at --eps (ascent on the true class's cross-entropy, on the logits) on each model;
- black-box FGSM: the examples made on the balanced model, classified by each model
  (what `tfadv.attacks.transfer(balanced, model, ...)` measures);
- per-class accuracy in the slides' layout: rows classes; columns black-box under / black-box over,
  balanced, white-box under / white-box over, where "under" / "over" is the model whose class C was
  under- / over-sampled, read at class C's row (the balanced column: the balanced model under its
  own FGSM, which is both its white-box and its black-box case);
- confusion matrices (clean, white-box, black-box) of the under-sampled runs and which class
  absorbs the under-sampled one;
- the findings checked: over-sampling more robust than under-sampling (for the varied class), and
  white-box stronger than black-box;
- the evaluation suite (`tfadv.evaluation.evaluate`) on --suite_models (default the balanced model;
  "all" scores every model) at --eps on the first --eval_images test images.

Tables (CSV + study.md): slides, clean, models, absorption, per_class (long); PNGs:
confusion_under_<class>.png, confusion_balanced.png.
"""

import os

import numpy as np
import pandas as pd
import study_common as common


def flags(argv=None):
    p = common.parser(__doc__)
    common.add_training_flags(p)
    common.add_evaluation_flags(p)
    p.set_defaults(model="vgg_small", test_images=0, epochs=10)
    p.add_argument(
        "--classes",
        type=common.str_list,
        default=[],
        help="classes to vary (indices or names, comma list; default all)",
    )
    p.add_argument(
        "--under",
        type=float,
        default=0.1,
        help="under-sampling: share of the class's training images kept",
    )
    p.add_argument(
        "--over",
        type=float,
        default=2.0,
        help="over-sampling: factor the class's training images are repeated to",
    )
    p.add_argument("--eps", type=float, default=0.01, help="FGSM eps, pixel scale")
    p.add_argument(
        "--suite_models",
        type=common.str_list,
        default=["balanced"],
        help="models scored by the suite: names (balanced, under_3, ...) or all",
    )
    return common.parse(p, argv, check)


def check(args):
    from tfadv import data

    names = data.load("cifar10", data_dir=args.data_dir).class_names
    chosen = []
    for c in args.classes or [str(i) for i in range(len(names))]:
        if c in names:
            chosen.append(names.index(c))
        elif c.isdigit() and int(c) < len(names):
            chosen.append(int(c))
        else:
            raise ValueError(
                f"--classes: unknown class {c!r}; "
                f"expected indices 0-{len(names) - 1} or names {', '.join(names)}"
            )
    args.classes = [str(c) for c in dict.fromkeys(chosen)]
    if not 0 < args.under <= 1:
        raise ValueError(f"--under={args.under}: must be in (0, 1]")
    if not args.over >= 1:
        raise ValueError(f"--over={args.over}: must be >= 1")
    if not 0 < args.eps <= 1:
        raise ValueError(f"--eps={args.eps}: must be in (0, 1]")


def main(argv=None):
    args = flags(argv)
    common.start(args)
    from tfadv import attacks, data
    from tfadv.evaluation import metrics, plots

    _, _, test, names = common.load_data(args)
    x, y = test.float_images(), test.labels
    k = len(names)
    classes = [int(c) for c in args.classes]
    plan = {"balanced": (None, "none")}
    for c in classes:
        plan[f"under_{c}"] = (c, f"under:{c}:{args.under:g}")
        plan[f"over_{c}"] = (c, f"over:{c}:{args.over:g}")
    runs = {
        name: common.train_run(args, name, recipe="standard", imbalance=spec)
        for name, (_, spec) in plan.items()
    }

    fgsm = attacks.Attack("fgsm")
    balanced = common.load_run_model(runs["balanced"])
    black_box = attacks.run_attack(
        balanced, (x, y), fgsm, args.eps
    ).adversarial  # crafted on the balanced model
    predictions, model_rows, long_rows = {}, [], []
    base_counts = train_counts(args, k)
    for name, (c, spec) in plan.items():
        model = balanced if name == "balanced" else common.load_run_model(runs[name])
        clean = attacks.predict_classes(model, x)
        white = attacks.run_attack(model, (x, y), fgsm, args.eps).adversarial_predictions
        black = attacks.predict_classes(model, black_box)
        predictions[name] = {"clean": clean, "white-box": white, "black-box": black}
        row = {
            "model": name,
            "varied class": names[c] if c is not None else "",
            "train images of that class": ""
            if c is None
            else data.parse_imbalance(spec, names).target_count(int(base_counts[c])),
            "clean": float(np.mean(clean == y)),
            "white-box FGSM": float(np.mean(white == y)),
            "black-box FGSM": float(np.mean(black == y)),
        }
        row.update(
            {
                f"{view} at that class": _at(p, y, c) if c is not None else float("nan")
                for view, p in predictions[name].items()
            }
        )
        kept = (y == c) & (clean == y) if c is not None else np.zeros(len(y), bool)
        row["white-box kept at that class"] = (
            float(np.mean(white[kept] == y[kept])) if kept.any() else float("nan")
        )
        if "all" in args.suite_models or name in args.suite_models:
            row.update(
                common.suite_evaluation(
                    args,
                    name,
                    model,
                    x,
                    y,
                    args.eps,
                    names,
                    source=os.path.join(runs[name]["dir"], "summary.json"),
                )
            )
        model_rows.append(row)
        for view, p in predictions[name].items():
            per_class = metrics.per_class_accuracy(y, p, k, names)
            long_rows += [
                {
                    "model": name,
                    "view": view,
                    "class": r["name"],
                    "n": r["n"],
                    "accuracy": r["accuracy"],
                }
                for _, r in per_class.iterrows()
            ]
        common.log(
            f"[{name}] clean {row['clean']:.3f}, white-box {row['white-box FGSM']:.3f}, "
            f"black-box {row['black-box FGSM']:.3f}"
        )
    models = pd.DataFrame(model_rows)
    slides, clean = slides_tables(predictions, y, names, classes)
    absorption = absorption_table(args, predictions, y, names, classes)
    sections = [
        common.write_table(
            args,
            slides,
            "slides",
            f"Per-class accuracy under FGSM eps {args.eps:g} (the slides' layout; "
            "under/over = the model whose class was under/over-sampled, at that class's row)",
        ),
        common.write_table(args, clean, "clean", "Per-class clean accuracy, same layout"),
        findings(slides, models, classes, names),
        common.write_table(
            args,
            absorption,
            "absorption",
            "Which class absorbs the under-sampled one "
            "(row of the confusion matrix, largest off-diagonal count)",
        ),
        common.write_table(
            args,
            models,
            "models",
            "Every model: overall accuracy, at its varied class, and the suite",
        ),
    ]
    pd.DataFrame(long_rows).to_csv(os.path.join(args.out, "per_class.csv"), index=False)
    for name in ["balanced", *(f"under_{c}" for c in classes)]:
        matrices = {
            f"{view} ({np.mean(p == y):.2f})": metrics.confusion_matrix(y, p, k)
            for view, p in predictions[name].items()
        }
        title = f"{name}: confusion matrices (rows true, columns predicted), FGSM eps {args.eps:g}"
        common.save_figure(
            args,
            plots.heatmaps(
                matrices,
                names,
                names,
                title,
                row_title="true class",
                column_title="predicted class",
            ),
            f"confusion_{name}",
        )
    sections.append(
        "Confusion matrices: "
        + ", ".join(
            f"[confusion_{n}.png](confusion_{n}.png)"
            for n in ["balanced", *(f"under_{c}" for c in classes)]
        )
        + "\n"
    )
    header = (
        f"Imbalance: {args.model}, {args.epochs} epochs on {int(base_counts.sum())} "
        f"balanced training images (batch {args.batch_size}, "
        f"Adam {args.learning_rate:g} {args.lr_schedule}, augment {args.augment}); under-sampling "
        f"keeps {args.under:g} of a class, over-sampling repeats it to {args.over:g}x; "
        f"classes varied: {', '.join(names[c] for c in classes)}; "
        f"FGSM eps {args.eps:g} on {len(y)} test images; suite {args.suite} on "
        f"{', '.join(args.suite_models)} ({min(args.eval_images or len(y), len(y))} images)"
    )
    common.finish(args, sections, header)


def train_counts(args, k: int) -> np.ndarray:
    """Training images per class of the balanced run (its split, before any imbalance)."""
    from tfadv.experiment import run
    from tfadv.experiment.config import TrainConfig

    return run.load_data(
        TrainConfig(
            dataset="cifar10", data_dir=args.data_dir, train_limit=args.train_images, seed=args.seed
        )
    ).train.class_counts(k)


def _at(p, y, c) -> float:
    at = y == c
    return float(np.mean(p[at] == c)) if at.any() else float("nan")


def slides_tables(predictions, y, names, classes):
    rows, clean_rows = [], []
    for c, name in enumerate(names):

        def get(model, view, c=c):
            return (
                _at(predictions[model][view], y, c)
                if (model == "balanced" or c in classes)
                else float("nan")
            )

        rows.append(
            {
                "class": name,
                "n": int(np.sum(y == c)),
                "black-box under": get(f"under_{c}", "black-box"),
                "black-box over": get(f"over_{c}", "black-box"),
                "balanced": get("balanced", "white-box"),
                "white-box under": get(f"under_{c}", "white-box"),
                "white-box over": get(f"over_{c}", "white-box"),
            }
        )
        clean_rows.append(
            {
                "class": name,
                "n": int(np.sum(y == c)),
                "clean under": get(f"under_{c}", "clean"),
                "clean balanced": get("balanced", "clean"),
                "clean over": get(f"over_{c}", "clean"),
            }
        )
    return pd.DataFrame(rows), pd.DataFrame(clean_rows)


def absorption_table(args, predictions, y, names, classes) -> pd.DataFrame:
    from tfadv.evaluation import metrics

    rows = []
    for c in classes:
        row = {"under-sampled class": names[c], "n": int(np.sum(y == c))}
        for model, tag in ((f"under_{c}", "under"), ("balanced", "balanced")):
            for view in (
                ("clean", "white-box") if tag == "balanced" else ("clean", "white-box", "black-box")
            ):
                counts = metrics.confusion_matrix(y, predictions[model][view], len(names))[
                    c
                ].astype(float)
                correct = counts[c]
                counts[c] = -1
                target = int(np.argmax(counts))
                share = counts[target] / max(1, row["n"])
                row[f"{tag} {view}: accuracy"] = correct / max(1, row["n"])
                row[f"{tag} {view}: absorbed by"] = (
                    f"{names[target]} ({share:.0%})" if counts[target] > 0 else "none"
                )
        rows.append(row)
    return pd.DataFrame(rows)


def slides_clean_note(models: pd.DataFrame) -> str:
    under = models[models["model"].str.startswith("under_")]["clean at that class"].mean()
    over = models[models["model"].str.startswith("over_")]["clean at that class"].mean()
    return (
        f"mean clean accuracy at the varied class {over:.3f} "
        f"over-sampled vs {under:.3f} under-sampled"
    )


def findings(slides: pd.DataFrame, models: pd.DataFrame, classes, names) -> str:
    varied = slides[slides["class"].isin([names[c] for c in classes])]
    lines = ["## Findings", ""]
    for view in ("white-box", "black-box"):
        diff = (varied[f"{view} over"] - varied[f"{view} under"]).to_numpy()
        wins, ties = int(np.sum(diff > 0)), int(np.sum(diff == 0))
        holds = "holds" if wins > len(diff) / 2 else "does not hold"
        lines.append(
            f"- Over-sampling more robust than under-sampling ({view} FGSM, at the varied class): "
            f"{holds} for this run: over > under for {wins} of {len(diff)} classes ({ties} ties), "
            f"mean difference {np.nanmean(diff):+.3f}."
        )
    under_kept = models[models["model"].str.startswith("under_")]["white-box kept at that class"]
    over_kept = models[models["model"].str.startswith("over_")]["white-box kept at that class"]
    lines.append(
        "- Caveat: over-sampling also raises the class's "
        f"clean accuracy ({slides_clean_note(models)}); "
        "the share of the class's correctly classified test images that white-box FGSM leaves "
        f"correct is {np.nanmean(over_kept):.3f} over-sampled vs {np.nanmean(under_kept):.3f} "
        "under-sampled (mean over the classes with any correct image; n/a when none)."
    )
    varied_models = models[models["model"] != "balanced"]
    white, black = varied_models["white-box FGSM"], varied_models["black-box FGSM"]
    white_at, black_at = (
        varied_models["white-box at that class"],
        varied_models["black-box at that class"],
    )
    overall, at_class = white < black, white_at < black_at
    holds = "holds" if overall.mean() > 0.5 else "does not hold"
    lines.append(
        f"- White-box stronger than black-box: {holds} for this run: lower accuracy under "
        f"white-box FGSM for {int(overall.sum())} of {len(overall)} imbalanced models overall "
        f"({int((white == black).sum())} ties; mean {white.mean():.3f} vs {black.mean():.3f}) "
        f"and for {int(at_class.sum())} of {len(at_class)} at their "
        f"varied class ({int((white_at == black_at).sum())} ties)."
    )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
