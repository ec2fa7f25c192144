"""A latent-space defence: contrastive loss on the penultimate embedding, nearest-reference
classification, clean and adversarial accuracy against the base model, and 2-D projections.

    python tools/latent_study.py --out=/work/runs/latent --epochs=6 --eval_images=200

Trains the base model (cross-entropy) and the same architecture with cross-entropy + --weight x the
contrastive loss (margin --margin; `tfadv.defenses.ContrastiveTrainer`), then classifies each way:
its softmax head, and the nearest of --per_class reference training images per class in embedding
space (`tfadv.defenses.NearestReferenceClassifier`, attacked white-box through its logits = minus
distances). Table accuracy: clean, FGSM and the strong attack (PGD-20, 2 restarts, margin) at each
--eps on the test images. PNGs: embeddings.png (PCA of test embeddings without and with the loss)
and attacked_moves.png (clean -> PGD-attacked embeddings of --moving_images images, arrows coloured
by the attacked prediction). With --suite (default standard), each classifier is also scored by
`tfadv.evaluation.evaluate` at each --eps on the first --eval_images test images (the
nearest-reference classifier through its logits, minus distances).
"""

import argparse

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
    common.add_evaluation_flags(p, eval_images=200)
    p.add_argument("--per_class", type=int, default=5, help="reference images per class")
    p.add_argument("--eps", default="0.01,0.03", help="L-inf budgets, pixel scale, comma-separated")
    p.add_argument("--attack_batch_size", type=int, default=128)
    p.add_argument("--projection_images", type=int, default=400)
    p.add_argument("--moving_images", type=int, default=25)
    args = p.parse_args(argv)
    args.eps = [float(e) for e in args.eps.split(",")]
    return args


def strong_attack():
    """The strong attack (swap for the evaluation suite's here)."""
    from tfadv import attacks

    return attacks.Attack("pgd", steps=20, restarts=2, loss="margin")


def accuracy_row(args, label, key, model, x, y, names) -> dict:
    from tfadv import evaluation

    row = {"classifier": label, "clean": common.accuracy(model, x, y)}
    for eps in args.eps:
        for name, attack in (("FGSM", "fgsm"), ("strong", strong_attack())):
            row[f"{name} {eps:g}"] = evaluation.robust_accuracy(
                model, x, y, attack, eps, args.attack_batch_size, seed=args.seed
            )["adversarial_accuracy"]
        suite = common.suite_evaluation(args, key, model, x, y, eps, names)
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
        ContrastiveTrainer,
        NearestReferenceClassifier,
        choose_references,
        embeddings,
    )
    from tfadv.explain import embedding_figures as figures

    train, val, test, names = common.load_data(args)
    x, y = test.float_images(), test.labels
    trained = {
        "base": common.train_model(args, "base", train, val, len(names)),
        "contrastive": common.train_model(
            args,
            f"contrastive_m{args.margin:g}_w{args.weight:g}" + ("_unit" if args.normalize else ""),
            train,
            val,
            len(names),
            trainer=lambda m: ContrastiveTrainer(
                m, margin=args.margin, weight=args.weight, normalize=args.normalize
            ),
        ),
    }
    refs = choose_references(train.labels, args.per_class, seed=args.seed, num_classes=len(names))
    ref_images, ref_labels = train.take(refs).float_images(), train.labels[refs]
    rows, embedding_panels, move_panels = [], [], []
    for name, model in trained.items():
        nearest = NearestReferenceClassifier(
            model, ref_images, ref_labels, normalize=args.normalize
        )
        rows.append(accuracy_row(args, f"{name}: softmax head", f"{name}_head", model, x, y, names))
        rows.append(
            accuracy_row(
                args,
                f"{name}: nearest of {args.per_class} references per class",
                f"{name}_nearest",
                nearest,
                x,
                y,
                names,
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
        f"Latent-space defence: {args.model}, {args.epochs} epochs on {len(train)} images, contrastive margin {args.margin}, "
        f"weight {args.weight}, {'unit-length' if args.normalize else 'raw'} embedding; {args.per_class} references per class; "
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
