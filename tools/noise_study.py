"""Noise as a defence, honestly: Gaussian noise in three places, noise kept on at test time attacked
with expectation over transformation (EOT), and randomized-smoothing certification.

    python tools/noise_study.py --out=/work/runs/noise --epochs=10

Part 1 (the Castro Ros figures): the base model and models trained with Gaussian noise (stddev
--noise_stddev) at the input, after the first convolution and before the classifier, noise off at
test time; accuracy over eps under FGSM and under the strong attack (`strong_accuracy`: PGD-20,
2 restarts, margin loss, for now). The same trained noisy models with the noise kept on at test
time (`noise_at_inference=True`, same weights) are attacked once naively and once with EOT
(gradients averaged over --eot_samples noise draws): a defence that only holds against the naive
attack is gradient obfuscation. Accuracy of a noisy model is one noisy prediction per image.

Part 2 (Cohen et al. 2019): a model trained with Gaussian noise at the input (--smoothing_sigma) is
smoothed with the same sigma and certified on --certify_images test images with n0 = --n0 and
n = --n samples at alpha = --alpha: certified accuracy over the L2 radius (the paper used n = 100,000).

Tables: accuracy_vs_eps, certified_accuracy (CSV + study.md); PNGs: accuracy_vs_eps.png,
certified_accuracy.png.
"""

import time

import numpy as np
import pandas as pd
import study_common as common

PLACEMENTS = ("input", "after_first_conv", "before_classifier")


def flags(argv=None):
    p = common.parser(__doc__)
    p.add_argument(
        "--eps",
        default="0,0.005,0.01,0.02,0.03",
        help="L-inf budgets, pixel scale, comma-separated",
    )
    p.add_argument("--noise_stddev", type=float, default=0.05)
    p.add_argument("--eot_samples", type=int, default=8)
    p.add_argument("--attack_batch_size", type=int, default=128)
    p.add_argument("--smoothing_sigma", type=float, default=0.25)
    p.add_argument("--certify_images", type=int, default=100)
    p.add_argument("--n0", type=int, default=100, help="selection samples per image")
    p.add_argument("--n", type=int, default=1000, help="estimation samples per image")
    p.add_argument("--alpha", type=float, default=0.001)
    p.add_argument(
        "--smoothing_batch_size", type=int, default=1000, help="noisy copies per forward pass"
    )
    p.add_argument("--radius_grid", default="0,0.125,0.25,0.375,0.5,0.75,1.0")
    p.add_argument(
        "--certify_base",
        action="store_true",
        help="also certify the base model (trained without noise)",
    )
    p.add_argument(
        "--parts",
        default="1,2",
        help="1: accuracy over eps, 2: certification (e.g. --parts=2 with a larger --n)",
    )
    args = p.parse_args(argv)
    args.parts = [int(part) for part in args.parts.split(",")]
    args.eps = [float(e) for e in args.eps.split(",")]
    args.radius_grid = [float(r) for r in args.radius_grid.split(",")]
    return args


def _view(model, eot_samples: int):
    """The model, or its expectation-over-transformation view (gradients averaged over draws)."""
    from tfadv import models

    return models.expectation(model, eot_samples) if eot_samples > 1 else model


def strong_attack():
    """The strong attack (an Attack value) while the evaluation suite is being written."""
    from tfadv import attacks

    return attacks.Attack("pgd", steps=20, restarts=2, loss="margin")


def strong_accuracy(model, x, y, eps, eot_samples, seed, batch_size) -> float:
    """Accuracy under the strong attack. Swapping in the evaluation suite changes this one line."""
    return attack_accuracy(_view(model, eot_samples), x, y, strong_attack(), eps, seed, batch_size)


def fgsm_accuracy(model, x, y, eps, eot_samples, seed, batch_size) -> float:
    from tfadv import attacks

    return attack_accuracy(
        _view(model, eot_samples), x, y, attacks.Attack("fgsm"), eps, seed, batch_size
    )


def attack_accuracy(model, x, y, attack, eps, seed, batch_size) -> float:
    from tfadv import evaluation

    if eps == 0:
        return common.accuracy(model, x, y)
    return evaluation.robust_accuracy(model, x, y, attack, eps, batch_size, seed=seed)[
        "adversarial_accuracy"
    ]


def with_inference_noise(args, model, placement, num_classes):
    """The same network and weights with its noise layer on at test time."""
    from tfadv import models

    twin = models.build(
        args.model,
        model.input_shape[1:],
        num_classes,
        noise=placement,
        noise_stddev=args.noise_stddev,
        noise_at_inference=True,
        seed=args.seed,
    )
    twin.set_weights(model.get_weights())
    return twin


def part1(args, train, val, x, y, num_classes):
    variants = [("base", "none", common.train_model(args, "base", train, val, num_classes), 1)]
    for placement in PLACEMENTS:
        model = common.train_model(
            args,
            f"noise_{placement}",
            train,
            val,
            num_classes,
            noise=placement,
            noise_stddev=args.noise_stddev,
        )
        variants.append((f"noise {placement}", "off", model, 1))
        noisy = with_inference_noise(args, model, placement, num_classes)
        variants.append((f"noise {placement}", "on (naive attack)", noisy, 1))
        variants.append(
            (f"noise {placement}", f"on (EOT {args.eot_samples})", noisy, args.eot_samples)
        )
    rows = []
    for label, at_test, model, eot in variants:
        for eps in args.eps:
            start = time.time()
            row = {
                "model": label,
                "noise at test": at_test,
                "eps": eps,
                "eps_255": round(eps * 255, 2),
            }
            row["FGSM"] = fgsm_accuracy(model, x, y, eps, eot, args.seed, args.attack_batch_size)
            row["strong"] = strong_accuracy(
                model, x, y, eps, eot, args.seed, args.attack_batch_size
            )
            rows.append(row)
            common.log(
                f"[{label}, noise at test {at_test}] eps {eps:.4f}: FGSM {row['FGSM']:.3f}, strong {row['strong']:.3f} ({time.time() - start:.0f} s)"
            )
    return pd.DataFrame(rows)


def accuracy_figure(frame):
    from tfadv.evaluation.plots import plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharey=True)
    for ax, column, title in zip(
        axes, ("FGSM", "strong"), ("FGSM", "strong attack (PGD-20 x 2, margin)"), strict=True
    ):
        for (label, at_test), part in frame.groupby(["model", "noise at test"], sort=False):
            ax.plot(
                part["eps_255"],
                part[column],
                marker="o",
                markersize=3,
                label=f"{label}, test noise {at_test}",
            )
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("eps (x 1/255, L-inf)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("accuracy")
    axes[1].legend(fontsize=6)
    fig.tight_layout()
    return fig


def part2(args, train, val, x, y, num_classes):
    from tfadv.defenses import SmoothedClassifier, certified_accuracy
    from tfadv.defenses import smoothing_figures as figures

    sigma = args.smoothing_sigma
    models = {
        f"trained with noise {sigma}": common.train_model(
            args,
            f"smoothing_input_{sigma}",
            train,
            val,
            num_classes,
            noise="input",
            noise_stddev=sigma,
        )
    }
    if args.certify_base:
        models["base (no noise in training)"] = common.train_model(
            args, "base", train, val, num_classes
        )
    x, y = x[: args.certify_images], y[: args.certify_images]
    rows, curves = [], {}
    for label, model in models.items():
        smoothed = SmoothedClassifier(model, sigma, batch_size=args.smoothing_batch_size)
        start = time.time()
        common.log(
            f"[{label}] certifying {len(x)} images: n0={args.n0}, n={args.n}, alpha={args.alpha}"
        )
        result = smoothed.certify(x, n0=args.n0, n=args.n, alpha=args.alpha, seed=args.seed)
        seconds = time.time() - start
        correct = result.classes == y
        curve = certified_accuracy(result.radii, correct, args.radius_grid)
        curves[f"{label} (sigma {sigma})"] = curve
        common.log(
            f"[{label}] {seconds:.0f} s ({seconds / len(x):.2f} s per image); abstained {np.mean(result.classes < 0):.3f}"
        )
        for radius, value in zip(args.radius_grid, curve, strict=True):
            rows.append(
                {
                    "model": label,
                    "sigma": sigma,
                    "radius": radius,
                    "certified_accuracy": float(value),
                    "base_clean_accuracy": common.accuracy(model, x, y),
                    "abstain_rate": float(np.mean(result.classes < 0)),
                    "n0": args.n0,
                    "n": args.n,
                    "alpha": args.alpha,
                    "images": len(x),
                    "seconds_per_image": seconds / len(x),
                }
            )
    fig = figures.certified_accuracy_figure(
        args.radius_grid, curves, title=f"randomized smoothing, n={args.n}, alpha={args.alpha}"
    )
    common.save_figure(args, fig, "certified_accuracy")
    return pd.DataFrame(rows)


def main(argv=None):
    args = flags(argv)
    common.start(args)
    train, val, test, names = common.load_data(args)
    x, y = test.float_images(), test.labels
    sections = []
    if 1 in args.parts:
        table1 = part1(args, train, val, x, y, len(names))
        common.save_figure(args, accuracy_figure(table1), "accuracy_vs_eps")
        sections.append(
            common.write_table(
                args, table1, "accuracy_vs_eps", "Accuracy over eps (L-inf, pixel scale)"
            )
        )
    if 2 in args.parts:
        table2 = part2(args, train, val, x, y, len(names))
        sections.append(
            common.write_table(
                args,
                table2,
                "certified_accuracy",
                "Randomized smoothing: certified accuracy over L2 radius",
            )
        )
    header = (
        f"Noise as a defence: {args.model}, {args.epochs} epochs on {len(train)} images, noise stddev {args.noise_stddev}; "
        f"{len(x)} test images attacked (strong = PGD-20, 2 restarts, margin; EOT over {args.eot_samples} draws); "
        f"smoothing sigma {args.smoothing_sigma} on {min(args.certify_images, len(x))} images, n0={args.n0}, n={args.n}, alpha={args.alpha}"
    )
    common.finish(args, sections, header)


if __name__ == "__main__":
    main()
