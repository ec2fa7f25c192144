"""Error rates by clean confidence (Possas et al.): fast and iterative, inverse and least-likely
perturbations on equal numbers of high, medium and low confidence images.

    python tools/study_confidence.py --out=/work/runs/study_confidence --model=/work/runs/mini_std
    python tools/study_confidence.py --out=... --keras_application=InceptionV3 \\
        --weights=/data/inception_v3_weights_tf_dim_ordering_tf_kernels.h5 \\
        --images=/data/imagenet_val_1000.npz \\
        --per_bucket=100 --batch_size=16 --suite=none

The classifier: --model (a run folder, RUN:NAME, a .keras file or a SavedModel; or an architecture
name, then trained here on the CIFAR-10 mini archive through run_training), or
--keras_application=NAME with --weights=FILE: `keras.applications.NAME(weights=FILE)` (ImageNet
weights from a local .h5 file, nothing is downloaded; --weights=none gives random weights, only to
check the plumbing) behind the resizing to its input size (--image_size, default the
application's) and its own preprocessing, taking images in [0, 1] like every tfadv model.

The images: the CIFAR-10 mini test split, or --images=FILE.npz with `images` (N, H, W, 3; uint8, or
float in [0, 1]), `labels` (N,) int class ids of the classifier (ImageNet: 0-999) and optionally
`class_names`. For ImageNet, e.g. 2,000 validation images resized to 299x299 and saved with
np.savez(path, images=uint8_array, labels=ids).

From the first --pool images (0: all), the study takes --per_bucket images from each bucket of clean
top-1 probability (high >= 30%, medium 15-30%, low < 15%; in a seeded random order), reports how
many each bucket found (a 10-class CIFAR model's softmax rarely gives < 15%), then at each --eps
perturbs them with FGSM ("fast") and BIM-<--steps> ("iterative"), ascending the true class's loss
("inverse", untargeted) or descending toward the least likely class ("least-likely", targeted), and
tabulates top-1 and top-5 error per bucket (`tfadv.evaluation.metrics.confidence_table`: the
paper's layout). With --suite, the classifier is also scored by `tfadv.evaluation.evaluate` on the
first --eval_images pool images at the largest eps.

Tables: buckets, confidence (one per eps), CSV + study.md; PNGs: confidence_error.png,
confidence_histogram.png.
"""

import numpy as np
import pandas as pd
import study_common as common

# name -> (preprocessing, input size): "tf" maps [0, 1] to [-1, 1]; "caffe" is BGR minus the
# ImageNet means on [0, 255]; "torch" is the ImageNet mean/std on [0, 1]; "raw255" is [0, 255]
# (EfficientNet rescales inside).
APPLICATIONS = {
    "InceptionV3": ("tf", 299),
    "Xception": ("tf", 299),
    "InceptionResNetV2": ("tf", 299),
    "MobileNetV2": ("tf", 224),
    "ResNet50V2": ("tf", 224),
    "ResNet50": ("caffe", 224),
    "VGG16": ("caffe", 224),
    "VGG19": ("caffe", 224),
    "DenseNet121": ("torch", 224),
    "EfficientNetB0": ("raw255", 224),
}
VIEWS = ("fast inverse", "fast least-likely", "iterative inverse", "iterative least-likely")


def flags(argv=None):
    p = common.parser(__doc__)
    common.add_training_flags(p, augment="standard")
    common.add_evaluation_flags(p)
    p.set_defaults(model="/work/runs/mini_std", test_images=0, epochs=30)
    p.add_argument(
        "--keras_application",
        default="",
        help=f"one of {', '.join(APPLICATIONS)} (instead of --model)",
    )
    p.add_argument(
        "--weights",
        default="",
        help="--keras_application: local weights file (.h5), or none for random weights",
    )
    p.add_argument(
        "--image_size",
        type=int,
        default=0,
        help="--keras_application: input size (0: the application's)",
    )
    p.add_argument(
        "--images",
        default="",
        help=".npz with images, labels (and class_names) instead of the CIFAR-10 test split",
    )
    p.add_argument(
        "--pool", type=int, default=0, help="first N images searched for the buckets (0: all)"
    )
    p.add_argument(
        "--per_bucket", type=int, default=100, help="images taken from each confidence bucket"
    )
    p.add_argument(
        "--eps",
        type=common.float_list,
        default="0.0078,0.0157,0.0314",
        help="perturbation sizes, pixel scale (2, 4, 8 / 255)",
    )
    p.add_argument(
        "--steps", type=int, default=10, help="iterations of the iterative (BIM) perturbations"
    )
    p.add_argument(
        "--alpha", type=float, default=0.0, help="BIM step (0: the library's, 2.5 eps / steps)"
    )
    p.add_argument(
        "--loss_on",
        default="logits",
        choices=("logits", "probabilities"),
        help="where the attacks take the cross-entropy",
    )
    return common.parse(p, argv, check)


def check(args):
    import os

    if args.keras_application:
        if args.keras_application not in APPLICATIONS:
            raise ValueError(
                f"--keras_application={args.keras_application}: "
                f"expected one of {', '.join(APPLICATIONS)}"
            )
        if not args.weights:
            raise ValueError(
                "--keras_application needs --weights=FILE "
                "(a local file; nothing can be downloaded) or --weights=none"
            )
        if args.weights != "none" and not os.path.isfile(args.weights):
            raise ValueError(f"--weights={args.weights}: no such file")
    if args.images and not os.path.isfile(args.images):
        raise ValueError(f"--images={args.images}: no such file")
    if (
        args.per_bucket <= 0
        or args.steps <= 0
        or args.pool < 0
        or args.image_size < 0
        or args.alpha < 0
    ):
        raise ValueError(
            f"--per_bucket={args.per_bucket}, --steps={args.steps}: "
            "must be > 0; --pool, --image_size, --alpha: >= 0"
        )
    if not args.eps or any(not 0 < e <= 1 for e in args.eps):
        raise ValueError(f"--eps={','.join(map(str, args.eps))}: every eps must be in (0, 1]")


def application_model(name: str, weights: str, input_shape, size: int = 0):
    """keras.applications.<name>(weights) behind resizing to its input size and its preprocessing;
    takes float images in [0, 1] of `input_shape`."""
    import keras

    mode, default_size = APPLICATIONS[name]
    size = size or default_size
    net = getattr(keras.applications, name)(
        weights=None if weights == "none" else weights, input_shape=(size, size, 3)
    )
    inputs = keras.Input(tuple(input_shape), name="images")
    h = (
        keras.layers.Resizing(size, size, name="resize")(inputs)
        if tuple(input_shape[:2]) != (size, size)
        else inputs
    )
    if mode == "tf":
        h = keras.layers.Rescaling(2.0, offset=-1.0, name="preprocess")(h)
    elif mode == "torch":
        mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
        h = keras.layers.Normalization(mean=mean, variance=std**2, name="preprocess")(h)
    elif mode == "caffe":
        h = keras.layers.Rescaling(255.0)(h)
        h = keras.layers.Lambda(
            lambda t: t[..., ::-1] - np.array([103.939, 116.779, 123.68], np.float32),
            name="preprocess",
        )(h)
    else:
        h = keras.layers.Rescaling(255.0, name="preprocess")(h)
    return keras.Model(inputs, net(h), name=f"{name}_on_unit_images")


def load_images(args):
    """(float images in [0, 1], labels, class names or None)."""
    if not args.images:
        x, y, names = common.test_split(args)
    else:
        with np.load(args.images, allow_pickle=False) as f:
            images, y = f["images"], np.asarray(f["labels"], np.int64)
            names = [str(n) for n in f["class_names"]] if "class_names" in f.files else None
        x = (
            images.astype(np.float32) / 255.0
            if images.dtype == np.uint8
            else images.astype(np.float32)
        )
        if x.ndim != 4 or len(x) != len(y) or x.min() < 0 or x.max() > 1:
            common.fail(
                f"--images={args.images}: "
                "expected images (N, H, W, C) as uint8 or in [0, 1] and N labels"
            )
    return (x[: args.pool], y[: args.pool], names) if args.pool else (x, y, names)


def classifier(args, input_shape):
    """(label, model, source path or None)."""
    import os

    if args.keras_application:
        common.log(
            f"building keras.applications.{args.keras_application} with weights {args.weights}"
        )
        return (
            args.keras_application,
            application_model(args.keras_application, args.weights, input_shape, args.image_size),
            None,
        )
    spec = common.str_list(args.model)[0]
    if common._is_model_path(spec):
        return common.model_from_spec(spec)
    info = common.train_run(args, spec, model=spec, recipe="standard")
    return spec, common.load_run_model(info), os.path.join(info["dir"], "summary.json")


def select(confidence, per_bucket: int, seed: int):
    """{bucket: indices}: up to per_bucket images per Possas bucket, in a seeded random order."""
    from tfadv.evaluation.metrics import POSSAS_BUCKETS

    order = np.random.default_rng(seed).permutation(len(confidence))
    chosen = {}
    for bucket, low, high in POSSAS_BUCKETS:
        inside = order[(confidence[order] >= low) & (confidence[order] < high)]
        chosen[bucket] = (inside[:per_bucket], len(inside))
    return chosen


def perturbations(args):
    from tfadv import attacks

    bim = {"steps": args.steps, **({"alpha": args.alpha} if args.alpha else {})}
    return {
        "fast inverse": attacks.Attack("fgsm", loss_on=args.loss_on),
        "fast least-likely": attacks.Attack("fgsm", loss_on=args.loss_on, target="least_likely"),
        "iterative inverse": attacks.Attack("bim", loss_on=args.loss_on, **bim),
        "iterative least-likely": attacks.Attack(
            "bim", loss_on=args.loss_on, target="least_likely", **bim
        ),
    }


def main(argv=None):
    args = flags(argv)
    common.start(args)
    from tfadv import attacks
    from tfadv.evaluation import metrics

    x, y, names = load_images(args)
    label, model, source = classifier(args, x.shape[1:])
    probabilities = metrics.predict_probabilities(model, x, args.batch_size)
    num_classes = probabilities.shape[1]
    if names is None or len(names) != num_classes:
        names = None
    confidence = probabilities.max(axis=1)
    chosen = select(confidence, args.per_bucket, args.seed)
    bucket_rows = []
    for bucket, (indices, available) in chosen.items():
        bucket_rows.append(
            {
                "bucket": bucket,
                "available": available,
                "selected": len(indices),
                "asked": args.per_bucket,
                "mean confidence": float(confidence[indices].mean())
                if len(indices)
                else float("nan"),
                "clean accuracy": float(np.mean(probabilities[indices].argmax(1) == y[indices]))
                if len(indices)
                else float("nan"),
            }
        )
        common.log(
            f"[{label}] bucket {bucket}: "
            f"{available} of {len(y)} images available, {len(indices)} selected"
        )
    buckets = pd.DataFrame(bucket_rows)
    selected = np.concatenate([indices for indices, _ in chosen.values()])
    xs, ys, clean = x[selected], y[selected], probabilities[selected]
    tables = []
    for eps in args.eps:
        perturbed = {}
        for view, attack in perturbations(args).items():
            result = attacks.run_attack(
                model,
                (xs, ys),
                attack,
                eps,
                batch_size=args.batch_size,
                seed=args.seed if attack.takes_seed else None,
            )
            perturbed[view] = metrics.predict_probabilities(
                model, result.adversarial, args.batch_size
            )
            common.log(
                f"[{label}] eps {eps:g} {view}: "
                f"top-1 error {metrics.top_k_error(perturbed[view], ys, 1):.3f}"
            )
        tables.append(metrics.confidence_table(clean, ys, perturbed).assign(eps=eps))
    table = pd.concat(tables, ignore_index=True)
    sections = [
        common.write_table(
            args,
            buckets,
            "buckets",
            "Images per clean-confidence bucket "
            f"({len(y)} searched, {args.per_bucket} asked per bucket)",
        )
    ]
    table.to_csv(f"{args.out}/confidence.csv", index=False)
    for eps, part in table.groupby("eps", sort=False):
        sections.append(
            f"## Top-1 / top-5 error at eps {eps:g} ({eps * 255:.1f}/255)\n\n"
            f"{common.markdown(part.drop(columns='eps'))}\n"
        )
    sections.append(findings(table, buckets))
    common.save_figure(args, error_figure(table, label), "confidence_error")
    common.save_figure(args, histogram(confidence, label), "confidence_histogram")
    if args.suite != "none":
        eps = max(args.eps)
        result = common.suite_evaluation(args, label, model, x, y, eps, names, source=source)
        sections.append(
            common.write_table(
                args,
                pd.DataFrame([{"model": label, "eps": eps, **result}]),
                "suite",
                "Evaluation suite (headline robust accuracy)",
            )
        )
    header = (
        f"Confidence study: {label}, {len(selected)} images "
        f"({', '.join(f'{r.bucket} {r.selected}' for r in buckets.itertuples())}) from {len(y)}; "
        f"fast = FGSM, iterative = BIM-{args.steps}; "
        "inverse = untargeted (true class), least-likely = targeted; "
        f"cross-entropy on the {args.loss_on}; eps {', '.join(f'{e:g}' for e in args.eps)}"
    )
    common.finish(args, sections, header)


def findings(table: pd.DataFrame, buckets: pd.DataFrame) -> str:
    """Is the error under attack higher for the low-confidence images (the paper's finding)?"""
    lines = ["## Findings", ""]
    present = [
        b
        for b in ("high", "medium", "low")
        if int(buckets.loc[buckets["bucket"] == b, "selected"].iloc[0]) > 0
    ]
    if len(present) < 2:
        return "\n".join(
            lines
            + [
                f"Only the {', '.join(present) or 'no'} bucket has images: "
                "no comparison across confidence.",
                "",
            ]
        )
    for eps, part in table.groupby("eps", sort=False):
        for view in VIEWS:
            errors = {
                b: float(part.loc[part["bucket"] == b, f"{view} top1"].iloc[0]) for b in present
            }
            pairs = list(zip(present, present[1:], strict=False))
            if all(errors[a] < errors[b] for a, b in pairs):
                trend = "rises as confidence falls"
            elif all(errors[a] <= errors[b] for a, b in pairs):
                trend = "never lower at lower confidence" + (
                    " (saturated: all equal)" if len(set(errors.values())) == 1 else ""
                )
            else:
                trend = "lower at some lower confidence: the finding does not hold here"
            lines.append(
                f"- eps {eps:g}, {view}: top-1 error "
                + ", ".join(f"{b} {e:.3f}" for b, e in errors.items())
                + f" ({trend})"
            )
    small = buckets[(buckets["selected"] > 0) & (buckets["selected"] < 30)]
    if len(small):
        lines.append(
            f"\nFew images in {', '.join(small['bucket'])} "
            f"({', '.join(map(str, small['selected']))}): those cells are noisy."
        )
    return "\n".join(lines) + "\n"


def error_figure(table: pd.DataFrame, label: str):
    from tfadv.evaluation.plots import plt

    eps_values = list(dict.fromkeys(table["eps"]))
    fig, axes = plt.subplots(
        1, len(eps_values), figsize=(4.2 * len(eps_values), 3.6), squeeze=False, sharey=True
    )
    columns = ["clean", *VIEWS]
    for ax, eps in zip(axes[0], eps_values, strict=True):
        part = table[(table["eps"] == eps) & (table["bucket"] != "all")]
        width = 0.8 / len(columns)
        for k, column in enumerate(columns):
            ax.bar(np.arange(len(part)) + k * width, part[f"{column} top1"], width, label=column)
        ax.set_xticks(
            np.arange(len(part)) + 0.4 - width / 2,
            [f"{b} (n={n})" for b, n in zip(part["bucket"], part["n"], strict=True)],
            fontsize=8,
        )
        ax.set_title(f"eps {eps:g} ({eps * 255:.1f}/255)", fontsize=9)
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3, axis="y")
    axes[0][0].set_ylabel("top-1 error")
    axes[0][-1].legend(fontsize=7)
    fig.suptitle(f"{label}: top-1 error by clean confidence", fontsize=10)
    fig.tight_layout()
    return fig


def histogram(confidence, label: str):
    from tfadv.evaluation.plots import plt

    fig, ax = plt.subplots(figsize=(5, 3.4))
    ax.hist(confidence, bins=np.linspace(0, 1, 41), color="tab:blue", alpha=0.8)
    for edge in (0.15, 0.30):
        ax.axvline(edge, color="tab:red", linestyle="--", linewidth=1)
    ax.set_xlabel("clean top-1 probability")
    ax.set_ylabel("images")
    ax.set_title(f"{label}: clean confidence (buckets at 15% and 30%)", fontsize=9)
    fig.tight_layout()
    return fig


if __name__ == "__main__":
    main()
