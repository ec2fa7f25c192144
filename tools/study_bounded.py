"""Bounded activations against sticker (patch) attacks, in the layout of the Horváth table.

    python tools/study_bounded.py --out=/work/runs/bounded --epochs=10

One architecture (--model) with ReLU and with BoundedLeakyReLU (the `activation` option of
tfadv.experiment.config: "bounded_leaky_relu"), each without and with Gaussian noise in training
(--noise_placement, --noise_stddev), trained through the recipes (`study_common.train_run`, recipe
standard: seeded pipeline, resume, run folders in --out/runs) on a two-class subset of the CIFAR-10
mini archive (--two_classes; the subset is written to --out/data and the model keeps its ten
outputs) and on all ten classes. Each model is scored by the evaluation
(`tfadv.evaluation.evaluate`, --suite at --eps on the first --eval_images test images; reports in
--out/evaluations) and attacked with one universal adversarial patch (`tfadv.attacks.patch`,
untargeted, random places), optimised on --patch_train_images of its run's training images and
pasted at random places on the test images.

Tables (CSV + study.md):
1. attack_success: rows = model variant, columns = clean accuracy, the % of successful patch attacks
   (test images classified correctly when clean and wrongly with the patch) and the suite's robust
   accuracy at --eps, for 2 and 10 classes;
2. activations: per setting, variant and activation layer, the largest activation seen on clean and
   on patched test images (max over images) and the median per-image maximum: the mechanism the
   bound is meant to cut (a patch wins by driving a few activations very high).
PNGs: activations_<setting>.png (largest activation per layer, clean vs patched),
patch_examples.png.
"""

import numpy as np
import pandas as pd
import study_common as common

VARIANTS = (  # (label, activation, noise on?)
    ("ReLU", "relu", False),
    ("ReLU + noise", "relu", True),
    ("BoundedLeakyReLU", "bounded_leaky_relu", False),
    ("BoundedLeakyReLU + noise", "bounded_leaky_relu", True),
)


def flags(argv=None):
    p = common.parser(__doc__)
    p.add_argument(
        "--two_classes",
        default="3,5",
        help="the two classes of the two-class setting (3,5: cat, dog)",
    )
    p.add_argument(
        "--noise_placement",
        default="input",
        choices=("input", "after_first_conv", "before_classifier"),
    )
    p.add_argument("--noise_stddev", type=float, default=0.05)
    p.add_argument(
        "--eps", type=float, default=8 / 255, help="L-inf budget of the suite, pixel scale"
    )
    common.add_patch_flags(p)
    common.add_recipe_flags(p, eval_images=500)
    p.set_defaults(test_images=500)
    return common.parse(p, argv, check=_check)


def _check(args) -> None:
    args.two_classes = common.int_list(args.two_classes, "two_classes")
    if len(set(args.two_classes)) != 2 or not all(0 <= c <= 9 for c in args.two_classes):
        raise ValueError(f"--two_classes={args.two_classes}: expected two class ids in 0-9")
    if not 0 < args.eps <= 1:
        raise ValueError(f"--eps={args.eps}: must be in (0, 1]")


def activation_probe(model):
    """A Keras model with the same weights returning every activation layer's output; and their
    names."""
    import keras

    from tfadv.layers import BoundedLeakyReLU

    layers = [
        layer for layer in model.layers if isinstance(layer, (keras.layers.ReLU, BoundedLeakyReLU))
    ]
    layers.append(model.get_layer("logits"))
    return keras.Model(model.input, [layer.output for layer in layers]), [
        layer.name for layer in layers
    ]


def per_image_max(probe, images, batch_size=256) -> np.ndarray:
    """float32 (N, layers): each image's largest activation in each probed layer."""
    from tfadv.data.batching import map_batches

    def run(x):
        outputs = probe(x, training=False)
        return np.stack([np.asarray(o).reshape(len(x), -1).max(axis=1) for o in outputs], axis=1)

    return map_batches(run, images, batch_size=batch_size)


def activation_rows(setting, label, model, x, patched) -> list:
    probe, layer_names = activation_probe(model)
    clean_max, patched_max = per_image_max(probe, x), per_image_max(probe, patched)
    return [
        {
            "setting": setting,
            "model": label,
            "layer": layer,
            "clean_max": float(clean_max[:, j].max()),
            "patched_max": float(patched_max[:, j].max()),
            "clean_median_image_max": float(np.median(clean_max[:, j])),
            "patched_median_image_max": float(np.median(patched_max[:, j])),
        }
        for j, layer in enumerate(layer_names)
    ]


def run_setting(args, setting, classes, names):
    from tfadv import attacks

    data_dir = common.class_subset(args, classes) if classes else args.data_dir
    rows, activations, examples = [], [], None
    for label, activation, noisy in VARIANTS:
        name = f"{setting}_{activation}{'_noise' if noisy else ''}"
        noise = dict(noise=args.noise_placement, noise_stddev=args.noise_stddev) if noisy else {}
        info = common.train_run(args, name, data_dir=data_dir, activation=activation, **noise)
        model = common.load_run_model(info)
        test = common.run_split(info, "test", args.test_images)
        x, y = test.float_images(), test.labels
        source = common.run_split(info, "train", args.patch_train_images)
        patched, _ = common.universal_patch(args, model, source, x)
        clean_pred = attacks.predict_classes(model, x)
        patched_pred = attacks.predict_classes(model, patched)
        correct = clean_pred == y
        success = (
            float((patched_pred[correct] != y[correct]).mean()) if correct.any() else float("nan")
        )
        scored = common.suite_evaluation(args, name, model, x, y, args.eps, names, info["dir"])
        rows.append(
            {
                "model": label,
                "setting": setting,
                "clean_accuracy": float(correct.mean()),
                "attack_success_%": 100 * success,
                "suite_robust": scored.get("suite robust", float("nan")),
            }
        )
        activations += activation_rows(setting, label, model, x, patched)
        if examples is None:
            examples = (x[:8], patched[:8], y[:8], clean_pred[:8], patched_pred[:8], label)
        common.log(f"[{name}] clean {correct.mean():.3f}, patch success {100 * success:.1f}%")
    return rows, activations, examples


def activation_figure(frame, setting):
    from tfadv.evaluation.plots import plt

    models = list(dict.fromkeys(frame["model"]))
    fig, axes = plt.subplots(
        1, len(models), figsize=(3.6 * len(models), 3.2), squeeze=False, sharey=True
    )
    for ax, model in zip(axes[0], models, strict=True):
        part = frame[frame["model"] == model]
        where = np.arange(len(part))
        ax.bar(where - 0.2, part["clean_max"], 0.4, label="clean")
        ax.bar(where + 0.2, part["patched_max"], 0.4, label="patched")
        ax.set_xticks(where, part["layer"], rotation=60, fontsize=6)
        ax.set_title(model, fontsize=8)
    axes[0, 0].set_ylabel("largest activation (test images)")
    axes[0, -1].legend(fontsize=7)
    fig.suptitle(f"{setting}: largest activation per layer, clean vs patched", fontsize=9)
    fig.tight_layout()
    return fig


def horvath_table(args, frame, settings) -> pd.DataFrame:
    """One row per model; per setting clean accuracy, % attacks won and the suite's robust
    accuracy."""
    table = pd.DataFrame({"model": [v[0] for v in VARIANTS]})
    for setting, _ in settings:
        part = frame[frame["setting"] == setting].set_index("model")
        title = setting.replace("_", " ")
        table[f"{title}: clean accuracy"] = table["model"].map(part["clean_accuracy"])
        table[f"{title}: % successful attacks"] = table["model"].map(part["attack_success_%"])
        table[f"{title}: suite robust (eps {args.eps:.4g})"] = table["model"].map(
            part["suite_robust"]
        )
    return table


def main(argv=None):
    args = flags(argv)
    common.start(args)
    from tfadv.evaluation import plots

    _, _, _, names = common.load_data(args)
    settings = (("2_classes", args.two_classes), ("10_classes", None))
    rows, activations, examples = [], [], None
    for setting, classes in settings:
        r, a, e = run_setting(args, setting, classes, names)
        rows += r
        activations += a
        examples = e if setting == "10_classes" else examples
    table = horvath_table(args, pd.DataFrame(rows), settings)
    activations = pd.DataFrame(activations)
    for setting, _ in settings:
        common.save_figure(
            args,
            activation_figure(activations[activations["setting"] == setting], setting),
            f"activations_{setting}",
        )
    x, patched, y, clean_pred, patched_pred, label = examples
    grid = plots.example_grid(
        x,
        patched,
        y,
        clean_pred,
        patched_pred,
        names,
        title=f"10 classes, {label}: universal patch",
    )
    common.save_figure(args, grid, "patch_examples")
    header = (
        f"Bounded activations vs patch attacks: {args.model}, recipe standard, {args.epochs} "
        f"epochs, noise {args.noise_placement} stddev {args.noise_stddev} in training only; "
        f"patch {args.patch_size}x{args.patch_size}, "
        f"{args.patch_steps} steps on {args.patch_train_images} training images, random places; "
        f"{args.test_images or 'all'} test images; "
        f"suite {args.suite} at eps {args.eps:.4g} on the first {args.eval_images or 'all'}"
    )
    common.finish(
        args,
        [
            common.write_table(
                args, table, "attack_success", "% of successful patch attacks (Horváth layout)"
            ),
            common.write_table(
                args,
                activations,
                "activations",
                "Largest activations on clean vs patched test images",
            ),
        ],
        header,
    )


if __name__ == "__main__":
    main()
