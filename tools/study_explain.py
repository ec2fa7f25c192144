"""Seeing why: saliency and occlusion maps of clean, PGD and patched images, and consistency-based
detection of the patch (sticker) attack.

    python tools/study_explain.py --out=/work/runs/explain --epochs=10

Trains (or reuses) a standard model through the recipes (`study_common.train_run`, recipe
standard: seeded pipeline, resume, run folder in --out/runs), scores it with the evaluation
(`tfadv.evaluation.evaluate`, --suite at --eps on the first --eval_images test images; report in
--out/evaluations), attacks the test images with PGD (--eps; PGD-20, 2 restarts, margin loss: the
images the maps look at) and with one universal patch (optimised on --patch_train_images of the
run's training images, pasted at random places), and writes:

- overlays: saliency_pgd.png, saliency_patch.png, occlusion_pgd.png, occlusion_patch.png (clean and
  adversarial images side by side, each with its map);
- model: clean accuracy and the suite's robust accuracy at --eps;
- map_statistics: how much of the saliency falls inside the patch square, on the patched image and
  on the same square of the clean image, and the largest occlusion drop of clean, PGD and patched
  images;
- detection: the consistency detector (`tfadv.explain.ConsistencyDetector`) for each covering
  square size (--detector_sizes), score and candidate choice, its threshold fitted for
  --fpr on the run's clean validation images: TPR on the patched test images (all, and those the
  patch fooled), FPR on the clean test images, ROC AUC, and the TPR on PGD images (not a sticker: a
  control); roc.png for the default detector (max_drop over the grid, square = patch size).
"""

import numpy as np
import pandas as pd
import study_common as common

PGD = dict(steps=20, restarts=2, loss="margin")  # the PGD images' attack


def flags(argv=None):
    p = common.parser(__doc__)
    p.add_argument(
        "--eps", type=float, default=8 / 255, help="L-inf budget of the PGD images, pixel scale"
    )
    common.add_patch_flags(p)
    p.add_argument(
        "--map_size", type=int, default=6, help="occlusion square of the overlay maps, pixels"
    )
    p.add_argument("--map_stride", type=int, default=2)
    p.add_argument(
        "--detector_sizes",
        default="8,10",
        help="covering squares tried by the detector (comma-separated)",
    )
    p.add_argument("--detector_stride", type=int, default=2)
    p.add_argument("--top_k", type=int, default=5)
    p.add_argument(
        "--fpr",
        type=float,
        default=0.05,
        help="target false-positive rate on clean validation images",
    )
    p.add_argument(
        "--val_images",
        type=int,
        default=0,
        help="clean validation images for the threshold (0: all of the run's)",
    )
    p.add_argument("--overlay_images", type=int, default=6)
    common.add_recipe_flags(p, eval_images=500)
    p.set_defaults(test_images=500)
    return common.parse(p, argv, check=_check)


def _check(args) -> None:
    args.detector_sizes = common.int_list(args.detector_sizes, "detector_sizes")
    if not 0 < args.eps <= 1:
        raise ValueError(f"--eps={args.eps}: must be in (0, 1]")
    if not 0 < args.fpr < 1:
        raise ValueError(f"--fpr={args.fpr}: must be in (0, 1)")


def overlays(args, model, names, x, y, adversarial, kind, maps_fn, map_name):
    from tfadv import attacks
    from tfadv.explain import figures

    k = args.overlay_images
    clean_maps, adv_maps = maps_fn(x[:k]), maps_fn(adversarial[:k])
    fig = figures.map_overlays(
        x[:k],
        adversarial[:k],
        clean_maps,
        adv_maps,
        labels=y[:k],
        clean_predictions=attacks.predict_classes(model, x[:k]),
        adversarial_predictions=attacks.predict_classes(model, adversarial[:k]),
        class_names=names,
        map_name=map_name,
        title=f"{map_name}: clean vs {kind}",
    )
    common.save_figure(args, fig, f"{map_name}_{kind}")


def map_statistics(args, model, x, y, patched, positions, pgd):
    from tfadv import explain

    inside = np.zeros(x.shape[:3], bool)
    for i, (r, c) in enumerate(positions):
        inside[i, r : r + args.patch_size, c : c + args.patch_size] = True
    rows = []
    for kind, images in (("clean", x), ("PGD", pgd), ("patched", patched)):
        saliency = explain.saliency(model, images)
        share = (saliency * inside).sum((1, 2)) / np.maximum(saliency.sum((1, 2)), 1e-12)
        occluded = explain.occlusion(model, images, size=args.map_size, stride=args.map_stride)
        rows.append(
            {
                "images": kind,
                "saliency share in the patch square": float(share.mean()),
                "square's share of the image": float(inside.mean()),
                "mean saliency": float(saliency.mean()),
                "mean largest occlusion drop": float(
                    occluded.drops.reshape(len(images), -1).max(1).mean()
                ),
                "accuracy": common.accuracy(model, images, y),
            }
        )
        common.log(f"maps of {kind} images done")
    return pd.DataFrame(rows)


def detection_row(args, size, score, candidates, report, pgd_report) -> dict:
    return {
        "square": size,
        "score": score,
        "candidates": candidates if candidates == "grid" else f"top {args.top_k}",
        "threshold": report.threshold,
        "TPR patched": report.tpr,
        "TPR patch fooled": report.tpr_successful,
        "FPR clean test": report.fpr,
        "AUC patched": report.auc,
        "TPR PGD": pgd_report.tpr,
        "AUC PGD": pgd_report.auc,
    }


def detection(args, model, val_x, x, y, patched, pgd):
    from tfadv import explain
    from tfadv.explain import figures

    rows, default_report = [], None
    for size in args.detector_sizes:
        base = explain.ConsistencyDetector(model, size=size, stride=args.detector_stride)
        kinds = (("val", val_x), ("clean", x), ("patched", patched), ("pgd", pgd))
        maps = {kind: base.maps(images) for kind, images in kinds}
        common.log(f"detector maps for square {size} done")
        fooled = maps["patched"].predictions != y
        for score in explain.SCORES:
            for candidates in explain.CANDIDATES:
                detector = explain.ConsistencyDetector(
                    model,
                    size=size,
                    stride=args.detector_stride,
                    score=score,
                    candidates=candidates,
                    top_k=args.top_k,
                )
                detector.threshold = explain.threshold_for_fpr(
                    detector.scores_from_maps(maps["val"]), args.fpr
                )
                scores = {kind: detector.scores_from_maps(m) for kind, m in maps.items()}
                report = detector.report(scores["clean"], scores["patched"], fooled)
                pgd_report = detector.report(scores["clean"], scores["pgd"])
                rows.append(detection_row(args, size, score, candidates, report, pgd_report))
                default = (size, score, candidates) == (args.patch_size, "max_drop", "grid")
                if default_report is None and default:
                    default_report = report
    default_report = default_report or report
    fig = figures.roc_figure(
        default_report.roc_fpr,
        default_report.roc_tpr,
        default_report.auc,
        title=f"patched vs clean test images, threshold for FPR {args.fpr} on validation",
        operating_point=(default_report.fpr, default_report.tpr),
    )
    common.save_figure(args, fig, "roc")
    return pd.DataFrame(rows)


def main(argv=None):
    args = flags(argv)
    common.start(args)
    from tfadv import attacks, explain

    _, _, _, names = common.load_data(args)
    info = common.train_run(args, "standard")
    model = common.load_run_model(info)
    test = common.run_split(info, "test", args.test_images)
    val = common.run_split(info, "val", args.val_images)
    x, y = test.float_images(), test.labels
    scored = common.suite_evaluation(args, "standard", model, x, y, args.eps, names, info["dir"])
    common.log(f"PGD at eps {args.eps:.4f} on {len(x)} test images")
    pgd = attacks.run_attack(
        model, (x, y), attacks.Attack("pgd", **PGD), args.eps, seed=args.seed, progress=True
    ).adversarial
    source = common.run_split(info, "train", args.patch_train_images)
    patched, positions = common.universal_patch(args, model, source, x)
    map_fns = {
        "saliency": lambda images: explain.saliency(model, images),
        "occlusion": lambda images: (
            explain.occlusion(model, images, size=args.map_size, stride=args.map_stride).upsampled
        ),
    }
    for kind, adversarial in (("pgd", pgd), ("patch", patched)):
        for map_name, maps_fn in map_fns.items():
            overlays(args, model, names, x, y, adversarial, kind, maps_fn, map_name)
    clean = common.accuracy(model, x, y)
    evaluation = pd.DataFrame(
        [
            {
                "model": "standard",
                "clean accuracy": clean,
                f"suite robust (eps {args.eps:.4g})": scored.get("suite robust", float("nan")),
                "report": scored.get("report", ""),
            }
        ]
    )
    stats = map_statistics(args, model, x, y, patched, positions, pgd)
    detections = detection(args, model, val.float_images(), x, y, patched, pgd)
    header = (
        f"Saliency, occlusion and sticker detection: {args.model}, recipe standard, {args.epochs} "
        f"epochs on {args.train_images or 'all'} training images; {len(x)} test images; PGD-20 x 2 "
        f"(margin) at eps {args.eps:.4f}; universal patch {args.patch_size}x{args.patch_size} "
        f"({args.patch_steps} steps, {len(source)} training images), clean accuracy {clean:.3f}"
    )
    common.finish(
        args,
        [
            common.write_table(
                args,
                evaluation,
                "model",
                "The model, scored by the evaluation "
                f"(suite {args.suite}, first {args.eval_images or 'all'} images)",
            ),
            common.write_table(args, stats, "map_statistics", "Where the maps look"),
            common.write_table(
                args,
                detections,
                "detection",
                "Consistency detection "
                f"(threshold for FPR {args.fpr} on {len(val)} clean validation images)",
            ),
        ],
        header,
    )


if __name__ == "__main__":
    main()
