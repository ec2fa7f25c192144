"""Noise as a defence, honestly: Gaussian noise in three places, noise kept on at test time attacked
with expectation over transformation (EOT), and randomized-smoothing certification.

    python tools/study_noise.py --out=/work/runs/noise --epochs=10

Part 1 (the Castro Ros figures): the base model and models trained through the recipes
(`study_common.train_run`, recipe standard: seeded pipeline, resume, exported run folders in
--out/runs) with Gaussian noise (stddev --noise_stddev, the `noise` option of
tfadv.experiment.config) at the input, after the first convolution and before the classifier,
noise off at test time. The same trained weights with the noise kept on at test time (the
architecture option `noise_at_inference=True`) are attacked once naively and once with EOT
(`tfadv.models.expectation`, gradients averaged over --eot_samples draws): a defence that only
holds against the naive attack is gradient obfuscation. Each variant at each eps of --eps: FGSM
(the thesis's attack; with the noise on, naive and through EOT) on the --test_images, and at
eps > 0 the evaluation (`tfadv.evaluation.evaluate`, --suite on the first --eval_images; reports
in --out/evaluations), which attacks a model random at inference through EOT itself and reports
the suite without EOT beside it (each scored as the mean accuracy over fresh draws). FGSM
accuracy of a noisy model is one noisy prediction per image.

Part 2 (Cohen et al. 2019): a model trained with Gaussian noise at the input (--smoothing_sigma) is
smoothed with the same sigma and certified on --certify_images test images with n0 = --n0 and
n = --n samples at alpha = --alpha: certified accuracy over the L2 radius (the paper used
n = 100,000).

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
    common.add_recipe_flags(p, eval_images=300)
    return common.parse(p, argv, check=_check)


def _check(args) -> None:
    args.eps = common.float_list(args.eps)
    args.radius_grid = common.float_list(args.radius_grid)
    args.parts = common.int_list(args.parts, "parts")
    if not set(args.parts) <= {1, 2} or not args.parts:
        raise ValueError(f"--parts={args.parts}: expected a comma list of 1 and 2")
    if any(not 0 <= e <= 1 for e in args.eps):
        raise ValueError(f"--eps={args.eps}: each must be in [0, 1]")
    if args.noise_stddev <= 0 or args.smoothing_sigma <= 0:
        raise ValueError("--noise_stddev and --smoothing_sigma: must be > 0")
    if args.eot_samples < 1:
        raise ValueError(f"--eot_samples={args.eot_samples}: must be >= 1")


def with_inference_noise(args, model, placement):
    """The same network and weights with its noise layer on at test time."""
    from tfadv import models

    twin = models.build(
        args.model,
        model.input_shape[1:],
        model.output_shape[-1],
        noise=placement,
        noise_stddev=args.noise_stddev,
        noise_at_inference=True,
        seed=args.seed,
    )
    twin.set_weights(model.get_weights())
    return twin


def variants(args):
    """(label, noise at test, key, model, run folder) of every model part 1 attacks."""
    base = common.train_run(args, "base")
    out = [("base", "none", "base", common.load_run_model(base), base["dir"])]
    for placement in PLACEMENTS:
        info = common.train_run(
            args, f"noise_{placement}", noise=placement, noise_stddev=args.noise_stddev
        )
        model = common.load_run_model(info)
        noisy = with_inference_noise(args, model, placement)
        label, key = f"noise {placement}", f"noise_{placement}"
        out += [
            (label, "off", key, model, info["dir"]),
            (label, "on", f"{key}-on", noisy, info["dir"]),
        ]
    return out


def fgsm_accuracy(args, model, x, y, eps) -> float:
    from tfadv import evaluation

    if eps == 0:
        return common.accuracy(model, x, y)
    result = evaluation.robust_accuracy(
        model, x, y, "fgsm", eps, args.attack_batch_size, seed=args.seed
    )
    return result["adversarial_accuracy"]


def part1(args, x, y, names):
    """Per variant and eps: FGSM (naive: one noisy draw; with the noise on also through EOT) and the
    evaluation, which attacks a model random at inference through EOT over --eot_samples draws
    and reports the suite without EOT beside it."""
    from tfadv import models

    rows, nan = [], float("nan")
    eot = f"FGSM EOT {args.eot_samples}"
    for label, at_test, key, model, source in variants(args):
        view = models.expectation(model, args.eot_samples) if at_test == "on" else None
        for eps in args.eps:
            start = time.time()
            row = {"model": label, "noise at test": at_test, "eps": eps}
            row["eps_255"] = round(eps * 255, 2)
            row["FGSM"] = fgsm_accuracy(args, model, x, y, eps)
            row[eot] = fgsm_accuracy(args, view, x, y, eps) if view is not None else nan
            scored = {}
            if eps > 0:
                scored = common.suite_evaluation(
                    args, key, model, x, y, eps, names, source, eot_samples=args.eot_samples
                )
            row["suite robust"] = scored.get("suite robust", nan)
            row["suite without EOT"] = scored.get("suite without eot", nan)
            row["masking checks failed"] = scored.get("masking checks failed", "")
            rows.append(row)
            common.log(
                f"[{label}, noise at test {at_test}] eps {eps:.4f}: FGSM {row['FGSM']:.3f}, {eot} "
                f"{row[eot]:.3f}, suite {row['suite robust']:.3f} ({time.time() - start:.0f} s)"
            )
    return pd.DataFrame(rows)


def accuracy_figure(args, frame):
    from tfadv.evaluation.plots import plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharey=True)
    eot = f"FGSM EOT {args.eot_samples}"
    panels = (
        (axes[0], (("FGSM", "naive"), (eot, f"EOT {args.eot_samples}")), "FGSM"),
        (
            axes[1],
            (("suite robust", "EOT"), ("suite without EOT", "naive")),
            f"evaluation (suite {args.suite}, {args.eval_images or 'all'} images)",
        ),
    )
    for ax, columns, title in panels:
        for (label, at_test), part in frame.groupby(["model", "noise at test"], sort=False):
            for column, attacked in columns:
                points = part.dropna(subset=[column])
                if len(points) == 0:
                    continue
                name = f"{label}, test noise {at_test}" + (
                    f" ({attacked} attack)" if at_test == "on" else ""
                )
                ax.plot(points["eps_255"], points[column], marker="o", markersize=3, label=name)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("eps (x 1/255, L-inf)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("accuracy")
    axes[0].legend(fontsize=6)
    fig.tight_layout()
    return fig


def part2(args, x, y):
    from tfadv.defenses import SmoothedClassifier, certified_accuracy
    from tfadv.defenses import smoothing_figures as figures

    sigma = args.smoothing_sigma
    trained = common.train_run(
        args, f"smoothing_input_{sigma:g}", noise="input", noise_stddev=sigma
    )
    runs = {f"trained with noise {sigma}": trained}
    if args.certify_base:
        runs["base (no noise in training)"] = common.train_run(args, "base")
    x, y = x[: args.certify_images], y[: args.certify_images]
    rows, curves = [], {}
    for label, info in runs.items():
        model = common.load_run_model(info)
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
        abstain = float(np.mean(result.classes < 0))
        common.log(
            f"[{label}] {seconds:.0f} s ({seconds / len(x):.2f} s per image); "
            f"abstained {abstain:.3f}"
        )
        for radius, value in zip(args.radius_grid, curve, strict=True):
            rows.append(
                {
                    "model": label,
                    "sigma": sigma,
                    "radius": radius,
                    "certified_accuracy": float(value),
                    "base_clean_accuracy": common.accuracy(model, x, y),
                    "abstain_rate": abstain,
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
    x, y, names = common.test_split(args)
    sections = []
    if 1 in args.parts:
        table1 = part1(args, x, y, names)
        common.save_figure(args, accuracy_figure(args, table1), "accuracy_vs_eps")
        sections.append(
            common.write_table(
                args, table1, "accuracy_vs_eps", "Accuracy over eps (L-inf, pixel scale)"
            )
        )
    if 2 in args.parts:
        table2 = part2(args, x, y)
        sections.append(
            common.write_table(
                args,
                table2,
                "certified_accuracy",
                "Randomized smoothing: certified accuracy over L2 radius",
            )
        )
    header = (
        f"Noise as a defence: {args.model}, recipe standard, {args.epochs} epochs on "
        f"{args.train_images or 'all'} training images, noise stddev {args.noise_stddev}; FGSM on "
        f"{len(x)} test images, suite {args.suite} on the first {args.eval_images or 'all'} "
        f"(EOT over {args.eot_samples} draws); smoothing sigma {args.smoothing_sigma} on "
        f"{min(args.certify_images, len(x))} images, n0={args.n0}, n={args.n}, alpha={args.alpha}"
    )
    common.finish(args, sections, header)


if __name__ == "__main__":
    main()
