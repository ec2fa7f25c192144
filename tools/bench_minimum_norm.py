"""Minimum-norm attacks, tfadv against Foolbox 3.3.4: distances, success rates and times.

    python tools/bench_minimum_norm.py [--images=100] [--epochs=3] [--rounds=2] [--attacks=all]
        [--model=RUN_FOLDER[:name]] [--data_dir=../shared/data/cifar-10-mini-binary.tar.gz]
        [--out=docs/results/minimum_norm/bench]

One model (by default baseline_cnn trained --epochs on the CIFAR-10 mini archive, seed 0; with
--model a trained tfadv run folder's main or named model and the test split as that run saw it)
and the first --images test images it classifies correctly, the same for both libraries, in one
process.
Foolbox attacks the model's logits (`foolbox.TensorFlowModel(clf.logits, bounds=(0, 1))`, run
eagerly, as Foolbox's TensorFlow backend works); tfadv runs its compiled searches. Budgets are
matched attack by attack (steps, candidates, overshoot, binary-search steps, step sizes). Both
libraries' outputs are scored alike: an image counts as broken if the model misclassifies the
returned image, its distance is the norm of (returned - clean), inf when not broken; medians
are over all images (inf included). Each round runs both libraries once
(the machine is shared: interleaving spreads its drift over both); the time kept per library
is the fastest round; which library goes first alternates from attack to attack and round to
round. tfadv's first call (tracing included) is timed apart and left out.
Writes summary.csv, summary.md and distances.csv to --out.
"""

import argparse
import csv
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
from tfadv.runtime import onednn  # noqa: E402

onednn.enable_by_default()

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from tfadv import attacks, data, models  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_DATA = os.path.join(
    os.path.dirname(os.path.dirname(HERE)), "shared", "data", "cifar-10-mini-binary.tar.gz"
)
DEEPFOOL = dict(steps=50, candidates=10, overshoot=0.02)
CW = dict(steps=100, binary_search_steps=9, stepsize=0.01, confidence=0.0, initial_const=1e-3)
FMN = dict(steps=100, max_stepsize=1.0, gamma=0.05)


def configs(fb):
    """(name, norm, tfadv search, its options, Foolbox attack)."""
    return [
        (
            "deepfool_l2",
            "2",
            attacks.deepfool_search,
            dict(norm="2", **DEEPFOOL),
            fb.attacks.L2DeepFoolAttack(**DEEPFOOL),
        ),
        (
            "deepfool_linf",
            "inf",
            attacks.deepfool_search,
            dict(norm="inf", **DEEPFOOL),
            fb.attacks.LinfDeepFoolAttack(**DEEPFOOL),
        ),
        (
            "cw_l2",
            "2",
            attacks.carlini_wagner_l2_search,
            dict(CW),
            fb.attacks.L2CarliniWagnerAttack(**CW),
        ),
        ("fmn_l2", "2", attacks.fmn_search, dict(norm="2", **FMN), fb.attacks.L2FMNAttack(**FMN)),
        (
            "fmn_linf",
            "inf",
            attacks.fmn_search,
            dict(norm="inf", **FMN),
            fb.attacks.LInfFMNAttack(**FMN),
        ),
        ("fmn_l1", "1", attacks.fmn_search, dict(norm="1", **FMN), fb.attacks.L1FMNAttack(**FMN)),
    ]


def _load() -> str:
    """The 1, 5 and 15 minute load averages, as printed in the summary."""
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def lp(delta, norm):
    flat = delta.reshape(len(delta), -1).astype(np.float64)
    return {"inf": np.abs(flat).max(1), "2": np.sqrt((flat**2).sum(1)), "1": np.abs(flat).sum(1)}[
        norm
    ]


def scored(clf, x, y, adv, norm):
    """Per image: the distance of `adv` if the model misclassifies it, else inf."""
    wrong = np.argmax(attacks.logits_of(clf, adv).numpy(), axis=1) != y
    return np.where(wrong, lp(np.asarray(adv) - x, norm), np.inf)


def train_model(data_dir, epochs):
    keras.utils.set_random_seed(0)
    dataset = data.load("cifar10", data_dir=data_dir)
    model = models.build("baseline_cnn")
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    model.fit(
        dataset.train.float_images(), dataset.train.labels, epochs=epochs, batch_size=64, verbose=2
    )
    return model, dataset


def load_run_model(spec):
    """(model, test ImageSet, description) of --model=RUN_FOLDER[:name] (via
    tfadv.experiment.load_run)."""
    from tfadv import experiment

    folder, name = spec, ""
    if not os.path.isdir(spec) and ":" in spec:
        folder, name = spec.rsplit(":", 1)
    run = experiment.load_run(folder, split="test", name=name)
    config = run.config
    keys = ("recipe", "model", "epochs")
    if config.get("recipe") != "standard":  # the training attack matters only when trained on it
        keys += ("attack", "eps")
    recipe = ", ".join(f"{k} {config[k]}" for k in keys if k in config)
    description = (
        f"the model `{name or run.summary.get('main', 'model')}` of the run folder `{folder}` "
        f"({recipe}) on its own test split"
    )
    return run.model, run.data, description


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--attacks", default="all", help="comma-separated names, or all")
    parser.add_argument(
        "--model",
        default="",
        help="RUN_FOLDER[:name]: bench a trained tfadv run's model (default: train baseline_cnn)",
    )
    parser.add_argument("--data_dir", default=DEFAULT_DATA)
    parser.add_argument(
        "--out",
        default=os.path.join(os.path.dirname(HERE), "docs", "results", "minimum_norm", "bench"),
    )
    args = parser.parse_args(argv)
    args.load_before = _load()
    import foolbox as fb

    print(
        f"tfadv vs Foolbox {fb.__version__}, TensorFlow {tf.__version__}, "
        f"Keras {keras.__version__}; {os.cpu_count()} CPU cores, load average {args.load_before}",
        flush=True,
    )
    if args.model:
        model, test, args.model_description = load_run_model(args.model)
    else:
        model, dataset = train_model(args.data_dir, args.epochs)
        test = dataset.test
        args.model_description = (
            f"baseline_cnn trained {args.epochs} epochs on the CIFAR-10 mini archive (seed 0)"
        )
    print(f"model: {args.model_description}", flush=True)
    clf = models.as_classifier(model)
    x_all, y_all = test.float_images(), test.labels
    predicted = np.argmax(attacks.logits_of(clf, x_all).numpy(), axis=1)
    print(
        f"clean test accuracy {np.mean(predicted == y_all):.4f} on {len(y_all)} images", flush=True
    )
    keep = np.flatnonzero(predicted == y_all)[: args.images]
    x, y = x_all[keep], y_all[keep].astype(np.int64)
    fmodel = fb.TensorFlowModel(clf.logits, bounds=(0, 1))
    x_t, y_t = tf.constant(x), tf.constant(y)

    rows, per_image = [], {}
    chosen = (
        configs(fb)
        if args.attacks == "all"
        else [c for c in configs(fb) if c[0] in args.attacks.split(",")]
    )
    for index, (name, norm, search, options, fb_attack) in enumerate(chosen):
        start = time.perf_counter()
        search(model, x, y, **options)
        first_call = time.perf_counter() - start
        times = {"tfadv": [], "foolbox": []}
        results = {}
        for r in range(args.rounds):
            order = ["foolbox", "tfadv"] if (index + r) % 2 == 0 else ["tfadv", "foolbox"]
            for lib in order:
                start = time.perf_counter()
                if lib == "tfadv":
                    adv = search(model, x, y, **options).adversarial.numpy()
                else:
                    adv = fb_attack(fmodel, x_t, y_t, epsilons=None)[0].numpy()
                times[lib].append(time.perf_counter() - start)
                results[lib] = adv
            print(
                f"{name} round {r}: " + ", ".join(f"{lib} {times[lib][-1]:.2f} s" for lib in order),
                flush=True,
            )
        d = {lib: scored(clf, x, y, results[lib], norm) for lib in ("tfadv", "foolbox")}
        inside = float(results["tfadv"].min()) >= 0 and float(results["tfadv"].max()) <= 1
        row = {
            "attack": name,
            "norm": norm,
            "images": len(y),
            "tfadv_success": np.isfinite(d["tfadv"]).mean(),
            "foolbox_success": np.isfinite(d["foolbox"]).mean(),
            "tfadv_median": np.median(d["tfadv"]),
            "foolbox_median": np.median(d["foolbox"]),
            "tfadv_s": min(times["tfadv"]),
            "foolbox_s": min(times["foolbox"]),
            "tfadv_first_call_s": first_call,
        }
        row["median_ratio"] = row["tfadv_median"] / row["foolbox_median"]
        row["speedup"] = row["foolbox_s"] / row["tfadv_s"]
        rows.append(row)
        per_image[name] = d
        print(
            f"{name}: success tfadv {row['tfadv_success']:.3f} "
            f"foolbox {row['foolbox_success']:.3f}; median tfadv {row['tfadv_median']:.5f} "
            f"foolbox {row['foolbox_median']:.5f} (ratio {row['median_ratio']:.4f}); "
            f"time tfadv {row['tfadv_s']:.2f} s foolbox {row['foolbox_s']:.2f} s "
            f"(speedup {row['speedup']:.2f}x; "
            f"tfadv first call {first_call:.2f} s); tfadv inside [0, 1]: {inside}",
            flush=True,
        )
    write(args.out, rows, per_image, keep, args)


def write(out, rows, per_image, keep, args):
    import foolbox as fb

    os.makedirs(out, exist_ok=True)
    fields = list(rows[0])
    with open(os.path.join(out, "summary.csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, fields)
        writer.writeheader()
        writer.writerows(
            {k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()} for row in rows
        )
    with open(os.path.join(out, "distances.csv"), "w", newline="") as f:
        writer = csv.writer(f)
        names = list(per_image)
        writer.writerow(
            ["test_index"] + [f"{n}_{lib}" for n in names for lib in ("tfadv", "foolbox")]
        )
        for i, index in enumerate(keep):
            writer.writerow(
                [int(index)]
                + [f"{per_image[n][lib][i]:.6g}" for n in names for lib in ("tfadv", "foolbox")]
            )
    command = "python tools/bench_minimum_norm.py " + " ".join(sys.argv[1:])
    lines = [
        f"# Minimum-norm attacks: tfadv vs Foolbox {fb.__version__}",
        "",
        f"`{command.strip()}`: {args.model_description}, the first "
        f"{rows[0]['images']} test images it classifies correctly, budgets matched; fastest of "
        f"{args.rounds} interleaved round(s) per library on {os.cpu_count()} CPU cores (load "
        f"average before {args.load_before}, after {_load()}); tfadv's first call (tracing) "
        "left out.",
        "",
        "| attack | norm | success tfadv | success Foolbox | median tfadv | median Foolbox "
        "| median ratio | tfadv s | Foolbox s | speedup |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['attack']} | {r['norm']} | {r['tfadv_success']:.3f} "
            f"| {r['foolbox_success']:.3f} | {r['tfadv_median']:.5f} | {r['foolbox_median']:.5f} "
            f"| {r['median_ratio']:.4f} | {r['tfadv_s']:.2f} | {r['foolbox_s']:.2f} "
            f"| {r['speedup']:.2f}x |"
        )
    with open(os.path.join(out, "summary.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines), flush=True)


if __name__ == "__main__":
    main()
