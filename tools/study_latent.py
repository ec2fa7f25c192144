"""A latent-space defence: contrastive loss on the penultimate embedding, nearest-reference
classification, clean and adversarial accuracy against the base model, and 2-D projections.

    python tools/study_latent.py --out=/work/runs/latent --epochs=6 --eval_images=200

A smoke run: --epochs=1 --train_images=200 --test_images=50 --eval_images=20 --suite=fast
--projection_images=50 --moving_images=5.

Trains, through the recipes (`study_common.train_run`: seeded pipeline, resume, exported run
folders in --out/runs), the base model (recipe standard, cross-entropy) and the same architecture
with cross-entropy + --weight x the contrastive loss (margin --margin; recipe contrastive, i.e.
`tfadv.defenses.ContrastiveTrainer`; also
`python -m tfadv.train --flagfile=configs/contrastive.flags`), both at a constant learning rate
without augmentation by default (--lr_schedule, --augment), then classifies each way: its softmax
head, and the nearest of --per_class reference training images per class in embedding space
(`tfadv.defenses.NearestReferenceClassifier`, attacked white-box through its logits = minus
distances). Table accuracy: clean, FGSM and the strong attack (PGD-20, 2 restarts, margin) at each
--eps on the test images. PNGs: embeddings.png (PCA of test embeddings without and with the loss)
and attacked_moves.png (clean -> PGD-attacked embeddings of --moving_images images, arrows coloured
by the attacked prediction). With --suite (default standard), each classifier is also scored by
`tfadv.evaluation.evaluate` at each --eps on the first --eval_images test images (the
nearest-reference classifier through its logits, minus distances; reports in --out/evaluations).

Until this study trained through the recipes it was tools/latent_study.py, which trained both
models with a plain Adam fit (no seeded pipeline); numbers made with it are marked so in
docs/results.md."""

import argparse
import os

import pandas as pd
import study_common as common


def flags(argv=None):
    p = common.parser(__doc__)
    p.add_argument("--margin", type=float, default=1.0)
    p.add_argument("--weight", type=float, default=0.5, help="weight of the contrastive term")
    p.add_argument(
        "--normalize",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="contrastive loss and nearest references on unit-length embeddings",
    )
    common.add_training_flags(p, lr_schedule="constant")
    common.add_evaluation_flags(p, eval_images=200)
    p.add_argument("--per_class", type=int, default=5, help="reference images per class")
    p.add_argument("--eps", default="0.01,0.03", help="L-inf budgets, pixel scale, comma-separated")
    p.add_argument("--attack_batch_size", type=int, default=128)
    p.add_argument("--projection_images", type=int, default=400)
    p.add_argument("--moving_images", type=int, default=25)
    return common.parse(p, argv, check=_check)


def _check(args) -> None:
    args.eps = common.float_list(args.eps)
    if not args.eps or any(not 0 < e <= 1 for e in args.eps):
        raise ValueError(f"--eps={args.eps}: each must be in (0, 1]")
    if args.margin <= 0 or args.weight < 0:
        raise ValueError(
            f"--margin={args.margin}, --weight={args.weight}: need margin > 0, weight >= 0"
        )
    for name in ("per_class", "projection_images", "moving_images", "attack_batch_size"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name}={getattr(args, name)}: must be >= 1")


def strong_attack():
    """The strong attack (swap for the evaluation suite's here)."""
    from tfadv import attacks

    return attacks.Attack("pgd", steps=20, restarts=2, loss="margin")


def accuracy_row(args, label, key, model, x, y, names, source=None) -> dict:
    """Clean, FGSM and strong-attack accuracy at each --eps, and the suite's (reports reused
    unless older than `source`, the run's summary.json)."""
    from tfadv import evaluation

    row = {"classifier": label, "clean": common.accuracy(model, x, y)}
    for eps in args.eps:
        for name, attack in (("FGSM", "fgsm"), ("strong", strong_attack())):
            row[f"{name} {eps:g}"] = evaluation.robust_accuracy(
                model, x, y, attack, eps, args.attack_batch_size, seed=args.seed
            )["adversarial_accuracy"]
        suite = common.suite_evaluation(args, key, model, x, y, eps, names, source)
        if suite:
            row[f"suite {eps:g} ({suite_images(args, y)} images)"] = suite["suite robust"]
    common.log(f"[{label}] {row}")
    return row


def suite_images(args, y) -> int:
    return min(args.eval_images or len(y), len(y))


def main(argv=None):
    args = flags(argv)
    common.start(args)
    from tfadv import attacks
    from tfadv.defenses import (
        NearestReferenceClassifier,
        choose_references,
        embeddings,
    )
    from tfadv.experiment.splits import load_split
    from tfadv.explain import embedding_figures as figures

    runs = {
        "base": common.train_run(args, "base", recipe="standard"),
        "contrastive": common.train_run(
            args,
            f"contrastive_m{args.margin:g}_w{args.weight:g}" + ("_unit" if args.normalize else ""),
            recipe="contrastive",
            contrastive_margin=args.margin,
            contrastive_weight=args.weight,
            contrastive_normalize=args.normalize,
        ),
    }
    trained = {name: common.load_run_model(info) for name, info in runs.items()}
    test, names = load_split(runs["base"]["dir"], split="test", limit=args.test_images)
    train = common.run_split(runs["base"], "train")
    x, y = test.float_images(), test.labels
    refs = choose_references(train.labels, args.per_class, seed=args.seed, num_classes=len(names))
    ref_images, ref_labels = train.take(refs).float_images(), train.labels[refs]
    rows, embedding_panels, move_panels = [], [], []
    for name, model in trained.items():
        source = os.path.join(runs[name]["dir"], "summary.json")
        nearest = NearestReferenceClassifier(
            model, ref_images, ref_labels, normalize=args.normalize
        )
        rows.append(
            accuracy_row(args, f"{name}: softmax head", f"{name}_head", model, x, y, names, source)
        )
        rows.append(
            accuracy_row(
                args,
                f"{name}: nearest of {args.per_class} references per class",
                f"{name}_nearest",
                nearest,
                x,
                y,
                names,
                source,
            )
        )
        k = args.projection_images
        embedded = embeddings(model, x[:k])
        pca = figures.fit_pca_2d(embedded)
        embedding_panels.append(
            {"title": f"{name}", "points": figures.project_2d(embedded, pca), "labels": y[:k]}
        )
        m = args.moving_images
        adversarial = attacks.run_attack(
            nearest, (x[:m], y[:m]), strong_attack(), max(args.eps), seed=args.seed
        )
        move_panels.append(
            {
                "title": f"{name}: PGD eps {max(args.eps):g} on nearest-reference",
                "points": figures.project_2d(embedded, pca),
                "labels": y[:k],
                "moved_from": figures.project_2d(embedded[:m], pca),
                "moved_to": figures.project_2d(embeddings(model, adversarial.adversarial), pca),
                "moved_labels": adversarial.adversarial_predictions,
            }
        )
    common.save_figure(
        args,
        figures.embedding_figure(
            embedding_panels, names, "test embeddings (PCA), without and with the contrastive loss"
        ),
        "embeddings",
    )
    common.save_figure(
        args,
        figures.embedding_figure(move_panels, names, "attacked points moving between clusters"),
        "attacked_moves",
    )
    header = (
        f"Latent-space defence: {args.model}, {args.epochs} epochs on {len(train)} "
        f"images (recipes standard and contrastive), contrastive margin {args.margin}, "
        f"weight {args.weight}, {'unit-length' if args.normalize else 'raw'} embedding; "
        f"{args.per_class} references per class; "
        f"{len(x)} test images (suite {args.suite} on the first {suite_images(args, y)})"
    )
    common.finish(
        args,
        [
            common.write_table(
                args, pd.DataFrame(rows), "accuracy", "Clean and adversarial accuracy"
            )
        ],
        header,
    )


if __name__ == "__main__":
    main()
