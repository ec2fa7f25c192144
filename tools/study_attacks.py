"""The attack study on the shared CIFAR-10 mini archive: eps sweeps, one-pixel and patch attacks.

    python tools/study_attacks.py --model=saved_models/standard_mini [--output=study_attacks.csv]

With baseline_cnn trained by `python -m tfadv.train --flagfile=configs/standard_mini.flags`:
  * eps sweep (L-inf, loss on the logits) of FGSM, PGD-10 (random start, alpha = eps/4)
    and the random-sign control, over all test images and over the clean-correct ones;
  * the one-pixel attack (differential evolution, untargeted) on the first test images;
  * a universal patch trained on training images (random positions) and pasted at random
    positions on test images, next to a random patch of the same size (the control).
Prints Markdown tables and writes one CSV with every row. Takes a few minutes on 2 CPUs.
"""

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from tfadv import attacks, data, evaluation  # noqa: E402
from tfadv.experiment import load_model  # noqa: E402
from tfadv.runtime import devices as runtime  # noqa: E402

EPS_255 = (0, 1, 2, 4, 8, 16)
SWEEP_ATTACKS = {"fgsm": {}, "pgd": {"steps": 10, "seed": 0}, "random_sign": {"seed": 0}}


def markdown(frame: pd.DataFrame, floats: str = "{:.3f}") -> str:
    """A GitHub Markdown table (pandas' to_markdown needs the optional tabulate package)."""
    cells = [
        [floats.format(v) if isinstance(v, float) else str(v) for v in row]
        for row in frame.itertuples(index=False)
    ]
    lines = ["| " + " | ".join(map(str, frame.columns)) + " |", "|" + "---|" * len(frame.columns)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in cells])


def eps_sweep(model, x, y) -> pd.DataFrame:
    tables = []
    for name, options in SWEEP_ATTACKS.items():
        start = time.time()
        table = evaluation.eps_sweep(model, x, y, name, [e / 255 for e in EPS_255], **options)
        table["seconds"] = time.time() - start
        tables.append(table)
        print(f"  {name}: {time.time() - start:.0f} s", flush=True)
    return pd.concat(tables, ignore_index=True)


def success_row(name: str, setting: str, clean_pred, adv_pred, labels, seconds: float) -> dict:
    correct = clean_pred == labels
    return {
        "attack": name,
        "setting": setting,
        "n": len(labels),
        "n_correct": int(correct.sum()),
        "clean_accuracy": float(correct.mean()),
        "adversarial_accuracy": float((adv_pred == labels).mean()),
        "success_on_correct": float((adv_pred[correct] != labels[correct]).mean()),
        "seconds": seconds,
    }


def predict(model, images) -> np.ndarray:
    return attacks.predict_classes(model, images)


def one_pixel_rows(model, x, y, args) -> list:
    rows = []
    clean = predict(model, x)
    for pixels in (1, 3):
        start = time.time()
        adv = attacks.one_pixel(
            model,
            x,
            y,
            pixels=pixels,
            population=args.population,
            max_queries=args.max_queries,
            seed=0,
        ).numpy()
        setting = f"{pixels} px, pop {args.population}, {args.max_queries} queries/image"
        rows.append(
            success_row("one_pixel", setting, clean, predict(model, adv), y, time.time() - start)
        )
        print(f"  one_pixel {pixels}: {time.time() - start:.0f} s", flush=True)
    return rows


def patch_rows(model, train_x, train_y, x, y) -> list:
    rows = []
    clean = predict(model, x)
    rng = np.random.default_rng(0)
    for size in (4, 8):
        start = time.time()
        trained = attacks.patch(
            model, train_x, train_y, size=size, steps=150, step_size=0.02, batch_size=64, seed=0
        )
        on_test = attacks.apply_patch(x, trained.patch, seed=1)
        seconds = time.time() - start
        area = f"{size}x{size} ({100 * size * size / (x.shape[1] * x.shape[2]):.1f}% of the image)"
        rows.append(
            success_row(
                "patch",
                f"{area}, trained",
                clean,
                predict(model, on_test.images.numpy()),
                y,
                seconds,
            )
        )
        control = attacks.apply_patch(
            x, rng.random((size, size, x.shape[-1]), dtype=np.float32), seed=1
        )
        rows.append(
            success_row(
                "patch",
                f"{area}, random control",
                clean,
                predict(model, control.images.numpy()),
                y,
                0.0,
            )
        )
        print(f"  patch {size}: {seconds:.0f} s", flush=True)
    return rows


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--model", default="saved_models/standard_mini", help="run folder or .keras file"
    )
    parser.add_argument("--data_dir", default="../shared/data/cifar-10-mini-binary.tar.gz")
    parser.add_argument(
        "--limit", type=int, default=0, help="test images for the eps sweep (0: all)"
    )
    parser.add_argument("--one_pixel_images", type=int, default=100)
    parser.add_argument("--population", type=int, default=40)
    parser.add_argument("--max_queries", type=int, default=400)
    parser.add_argument(
        "--patch_images",
        type=int,
        default=200,
        help="test images patched; as many training images train it",
    )
    parser.add_argument("--output", default="study_attacks.csv")
    args = parser.parse_args()

    runtime.set_seed(0, deterministic=False)
    model = load_model(args.model)
    dataset = data.load("cifar10", data_dir=args.data_dir)
    test = dataset.test.head(args.limit)
    x, y = test.float_images(), test.labels
    print(f"model {args.model}; {dataset.summary()}", flush=True)

    print("eps sweep", flush=True)
    sweep = eps_sweep(model, x, y)
    print("one-pixel", flush=True)
    n = args.one_pixel_images
    others = one_pixel_rows(model, x[:n], y[:n], args)
    print("patch", flush=True)
    n = args.patch_images
    train = dataset.train.head(n)
    others += patch_rows(model, train.float_images(), train.labels, x[:n], y[:n])
    others = pd.DataFrame(others)

    columns = [
        "attack",
        "eps_255",
        "clean_accuracy",
        "adversarial_accuracy",
        "adversarial_accuracy_on_correct",
    ]
    wide = sweep.pivot(index="eps_255", columns="attack", values="adversarial_accuracy")[
        list(SWEEP_ATTACKS)
    ]
    wide_correct = sweep.pivot(
        index="eps_255", columns="attack", values="adversarial_accuracy_on_correct"
    )
    table = pd.DataFrame({"eps (x/255)": [f"{e:g}" for e in wide.index]})
    for name in SWEEP_ATTACKS:
        table[f"{name} acc (all)"] = wide[name].to_numpy()
        table[f"{name} acc (clean-correct)"] = wide_correct[name].to_numpy()
    print(
        "\n## Accuracy under attack, "
        f"{len(y)} test images (clean accuracy {sweep['clean_accuracy'].iloc[0]:.3f})\n"
    )
    print(markdown(table))
    print("\n## One-pixel and patch attacks (success = clean-correct images misclassified)\n")
    print(
        markdown(
            others.drop(columns=["seconds"]).assign(seconds=others["seconds"].round(0).astype(int))
        )
    )
    combined = pd.concat(
        [sweep[columns + ["n", "n_correct", "seconds"]], others], ignore_index=True
    )
    combined.to_csv(args.output, index=False)
    print(f"\nwritten: {args.output}")


if __name__ == "__main__":
    main()
