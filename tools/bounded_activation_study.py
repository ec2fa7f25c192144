"""Bounded activations against sticker (patch) attacks, in the layout of the Horváth table.

    python tools/bounded_activation_study.py --out=/work/runs/bounded --epochs=10

One architecture (--model) with ReLU and with BoundedLeakyReLU (`activation="bounded_leaky_relu"`),
each without and with Gaussian noise in training (--noise_placement, --noise_stddev), trained on a
two-class subset of the CIFAR-10 mini archive (--two_classes) and on all ten classes. Each model is
attacked with one universal adversarial patch (`tfadv.attacks.patch`, untargeted, random places),
optimised on --patch_train_images training images and pasted at random places on the test images.

Tables (CSV + study.md):
1. attack_success: rows = model variant, columns = clean accuracy and the % of successful attacks
   (test images classified correctly when clean and wrongly with the patch) for 2 and 10 classes;
2. activations: per setting, variant and activation layer, the largest activation seen on clean and
   on patched test images (max over images) and the median per-image maximum: the mechanism the
   bound is meant to cut (a patch wins by driving a few activations very high).
PNGs: activations_<setting>.png (largest activation per layer, clean vs patched), patch_examples.png.
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
    p.add_argument("--patch_size", type=int, default=8, help="patch side in pixels (of 32)")
    p.add_argument("--patch_steps", type=int, default=200)
    p.add_argument("--patch_step_size", type=float, default=0.02)
    p.add_argument(
        "--patch_train_images",
        type=int,
        default=500,
        help="training images the patch is optimised on",
    )
    p.set_defaults(test_images=500)
    args = p.parse_args(argv)
    args.two_classes = [int(c) for c in args.two_classes.split(",")]
    if len(args.two_classes) != 2:
        p.error(f"--two_classes needs two class ids. Received: {args.two_classes}")
    return args


def activation_probe(model):
    """A Keras model with the same weights returning every activation layer's output; and their names."""
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


def run_setting(args, setting, classes):
    from tfadv import attacks

    train, val, test, names = common.load_data(args, classes)
    num_classes = len(names)
    x, y = test.float_images(), test.labels
    patch_source = train.head(args.patch_train_images)
    rows, activation_rows, examples = [], [], None
    for label, activation, noisy in VARIANTS:
        name = f"{setting}_{activation}{'_noise' if noisy else ''}"
        noise = dict(noise=args.noise_placement, noise_stddev=args.noise_stddev) if noisy else {}
        model = common.train_model(
            args, name, train, val, num_classes, activation=activation, **noise
        )
        common.log(
            f"[{name}] patch attack ({args.patch_steps} steps on {len(patch_source)} images)"
        )
        trained = attacks.patch(
            model,
            patch_source.float_images(),
            patch_source.labels,
            size=args.patch_size,
            steps=args.patch_steps,
            step_size=args.patch_step_size,
            seed=args.seed,
        )
        patched = attacks.apply_patch(x, trained.patch, seed=args.seed).images.numpy()
        clean_pred, patched_pred = (
            attacks.predict_classes(model, x),
            attacks.predict_classes(model, patched),
        )
        correct = clean_pred == y
        success = (
            float((patched_pred[correct] != y[correct]).mean()) if correct.any() else float("nan")
        )
        rows.append(
            {
                "model": label,
                "setting": setting,
                "clean_accuracy": float(correct.mean()),
                "attack_success_%": 100 * success,
            }
        )
        probe, layer_names = activation_probe(model)
        clean_max, patched_max = per_image_max(probe, x), per_image_max(probe, patched)
        for j, layer in enumerate(layer_names):
            activation_rows.append(
                {
                    "setting": setting,
                    "model": label,
                    "layer": layer,
                    "clean_max": float(clean_max[:, j].max()),
                    "patched_max": float(patched_max[:, j].max()),
                    "clean_median_image_max": float(np.median(clean_max[:, j])),
                    "patched_median_image_max": float(np.median(patched_max[:, j])),
                }
            )
        if examples is None:
            examples = (x[:8], patched[:8], y[:8], clean_pred[:8], patched_pred[:8], names, label)
        common.log(f"[{name}] clean {correct.mean():.3f}, patch success {100 * success:.1f}%")
    return rows, activation_rows, examples


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


def main(argv=None):
    args = flags(argv)
    common.start(args)
    from tfadv.evaluation import plots

    settings = (("2_classes", args.two_classes), ("10_classes", None))
    rows, activation_rows, examples = [], [], None
    for setting, classes in settings:
        r, a, e = run_setting(args, setting, classes)
        rows += r
        activation_rows += a
        examples = e if setting == "10_classes" else examples
    frame = pd.DataFrame(rows)
    table = pd.DataFrame({"model": [v[0] for v in VARIANTS]})
    for (
        setting,
        _,
    ) in (
        settings
    ):  # Horváth layout: one row per model, per setting clean accuracy and % attacks won
        part = frame[frame["setting"] == setting].set_index("model")
        title = setting.replace("_", " ")
        table[f"{title}: clean accuracy"] = table["model"].map(part["clean_accuracy"])
        table[f"{title}: % successful attacks"] = table["model"].map(part["attack_success_%"])
    activations = pd.DataFrame(activation_rows)
    for setting, _ in settings:
        common.save_figure(
            args,
            activation_figure(activations[activations["setting"] == setting], setting),
            f"activations_{setting}",
        )
    x, patched, y, clean_pred, patched_pred, names, label = examples
    common.save_figure(
        args,
        plots.example_grid(
            x,
            patched,
            y,
            clean_pred,
            patched_pred,
            names,
            title=f"10 classes, {label}: universal patch",
        ),
        "patch_examples",
    )
    header = (
        f"Bounded activations vs patch attacks: {args.model}, {args.epochs} epochs, noise {args.noise_placement} "
        f"stddev {args.noise_stddev} in training only; patch {args.patch_size}x{args.patch_size}, {args.patch_steps} steps "
        f"on {args.patch_train_images} training images, random places; {args.test_images or 'all'} test images"
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
