"""Shared plumbing of the studies (tools/study_*.py): flags, data, training, scoring, tables.

Each study: define flags (`parser`, defaults for a real run; `parse` for one-line errors and
--from_flags), `start(args)` (output folder and flags.json), trains through the recipes
(`train_run`: seeded pipeline, resume, exported run folders in --out/runs), scores through
`tfadv.evaluation.evaluate` (`suite_evaluation`, reports in --out/evaluations), adds the table
it is about; tables go out as CSV + Markdown (`write_table`).

Every study trains through the recipes (a study whose training is not a recipe gets one in
tfadv/experiment/recipes/, e.g. recipe contrastive for tools/study_latent.py). Studies are named
tools/study_<topic>.py, benchmarks tools/bench_<topic>.py.
"""

import argparse
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

DEFAULT_DATA = os.path.join(
    os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
    "shared",
    "data",
    "cifar-10-mini-binary.tar.gz",
)
_START = time.time()


def parser(description: str) -> argparse.ArgumentParser:
    """The flags every study has: data, output folder, scale, seed."""
    p = argparse.ArgumentParser(
        description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--data_dir", default=DEFAULT_DATA, help="CIFAR-10 binary archive (.tar.gz or folder)"
    )
    p.add_argument(
        "--out", required=True, help="output folder (tables, PNGs, flags.json, run folders)"
    )
    p.add_argument("--model", default="baseline_cnn", help="architecture (tfadv.models.REGISTRY)")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch_size", type=int, default=128)
    p.add_argument("--learning_rate", type=float, default=1e-3)
    p.add_argument(
        "--train_images", type=int, default=0, help="training images used (0: all 4,194)"
    )
    p.add_argument(
        "--test_images", type=int, default=500, help="test images evaluated / attacked (0: all 932)"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--retrain", action="store_true", help="train again even if the run exists in --out/runs"
    )
    return p


def start(args) -> None:
    """Creates the output folder, seeds everything, writes the resolved flags to flags.json."""
    from tfadv.runtime import devices
    from tfadv.runtime.files import write_json

    os.makedirs(args.out, exist_ok=True)
    devices.set_seed(args.seed, deterministic=False)
    write_json(os.path.join(args.out, "flags.json"), {**vars(args), "argv": sys.argv})
    log(f"flags -> {os.path.join(args.out, 'flags.json')}")


def log(message: str) -> None:
    print(f"[{time.time() - _START:7.1f} s] {message}", flush=True)


def load_data(args, classes=None):
    """(train ImageSet, val ImageSet, test ImageSet, class names) from the archive; with `classes`
    only those classes, relabelled 0..len(classes)-1. Limits apply after the class filter."""
    from tfadv import data

    dataset = data.load("cifar10", data_dir=args.data_dir, seed=args.seed)
    names = dataset.class_names
    splits = [dataset.train, dataset.val, dataset.test]
    if classes is not None:
        mapping = {c: i for i, c in enumerate(classes)}
        splits = [s.take(np.isin(s.labels, classes)) for s in splits]
        splits = [
            type(s)(s.images, np.array([mapping[c] for c in s.labels], np.int64)) for s in splits
        ]
        names = [names[c] for c in classes]
    train, val, test = splits
    return train.head(args.train_images), val, test.head(args.test_images), names


def accuracy(model, images, labels) -> float:
    from tfadv import attacks

    return float((attacks.predict_classes(model, images) == labels).mean())


def markdown(frame: pd.DataFrame) -> str:
    def cell(v):
        if isinstance(v, (float, np.floating)):
            return (
                "nan"
                if np.isnan(v)
                else (f"{v:.3g}" if (v != 0 and (abs(v) < 1e-2 or abs(v) >= 1e3)) else f"{v:.3f}")
            )
        return str(v)

    lines = ["| " + " | ".join(map(str, frame.columns)) + " |", "|" + "---|" * len(frame.columns)]
    lines += [
        "| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)
    ]
    return "\n".join(lines)


def write_table(args, frame: pd.DataFrame, name: str, title: str) -> str:
    """Writes <out>/<name>.csv and returns a Markdown section (title + table)."""
    frame.to_csv(os.path.join(args.out, f"{name}.csv"), index=False)
    return f"## {title}\n\n{markdown(frame)}\n"


def finish(args, sections, header: str) -> None:
    """Writes <out>/study.md from the sections and prints it."""
    from tfadv.runtime.files import write_text

    text = f"# {header}\n\n" + "\n".join(sections) + f"\ntotal {time.time() - _START:.0f} s\n"
    write_text(os.path.join(args.out, "study.md"), text)
    print(text, flush=True)
    log(f"done: {os.path.join(args.out, 'study.md')}")


def save_figure(args, fig, name: str) -> str:
    from tfadv.evaluation.plots import save_png

    path = save_png(fig, os.path.join(args.out, f"{name}.png"))
    log(f"figure -> {path}")
    return path


# ---- Issue 11 (the seeds' experiments as studies): reruns from flags.json, one-line flag errors,
# training through tfadv.experiment.run.run_training (cached run folders, seconds per epoch),
# trained models given as paths, and every model scored by tfadv.evaluation.evaluate.

TIMES_FILE = "epoch_times.json"  # written by train_run next to a run's summary.json


def fail(message: str) -> None:
    """One line on stderr, exit code 2 (bad flags)."""
    print(f"error: {message}", file=sys.stderr, flush=True)
    sys.exit(2)


def float_list(text) -> list:
    """'0.01,0.03' -> [0.01, 0.03] (a list, e.g. from flags.json, passes through)."""
    if isinstance(text, (list, tuple)):
        return [float(v) for v in text]
    try:
        return [float(v) for v in str(text).split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a comma list of numbers, got {text!r}"
        ) from None


def int_list(text, flag: str) -> list:
    """'8,10' -> [8, 10] (a list passes through); a ValueError naming --`flag` otherwise."""
    try:
        return [int(v) for v in str_list(text)]
    except ValueError:
        raise ValueError(f"--{flag}={text}: expected a comma list of whole numbers") from None


def str_list(text) -> list:
    """'a,b' -> ['a', 'b'] (a list passes through; '' -> [])."""
    if isinstance(text, (list, tuple)):
        return [str(v) for v in text]
    return [v.strip() for v in str(text).split(",") if v.strip()]


def add_training_flags(p, augment: str = "none", lr_schedule: str = "cosine") -> None:
    """Flags of the runs trained through run_training
    (besides parser()'s epochs, batch size, ...)."""
    p.add_argument(
        "--augment", default=augment, help="none, standard (flip,crop), all, or a comma list"
    )
    p.add_argument("--lr_schedule", default=lr_schedule, choices=("constant", "cosine"))
    p.add_argument(
        "--monitor_images",
        type=int,
        default=0,
        help=(
            "adversarial recipes: validation images PGD-checked per epoch for TensorBoard (0: off)"
        ),
    )


def add_recipe_flags(p, eval_images: int = 500) -> None:
    """Training and evaluation flags of the studies that left the plain Adam fit (noise, bounded,
    explain): recipe standard at its old constant learning rate, suite fast."""
    add_training_flags(p, lr_schedule="constant")
    add_evaluation_flags(p, suite="fast", eval_images=eval_images)


def add_evaluation_flags(p, suite: str = "standard", eval_images: int = 500) -> None:
    """The shared evaluation path: every (defended) model scored by tfadv.evaluation.evaluate."""
    p.add_argument(
        "--suite",
        default=suite,
        help=(
            "suite of tfadv.evaluation.evaluate: "
            "standard, fast, a comma list of attack specs, or none"
        ),
    )
    p.add_argument(
        "--eval_images",
        type=int,
        default=eval_images,
        help="first N test images scored by the suite (0: all)",
    )
    p.add_argument(
        "--reevaluate",
        action="store_true",
        help="rerun the suite even where its report exists in --out/evaluations",
    )


def parse(p: argparse.ArgumentParser, argv=None, check=None):
    """Parses the flags. --from_flags=OUT/flags.json takes a study's resolved flags as defaults
    (flags given as well override them). A bad flag, or a ValueError from check(args), is one
    line 'error: ...' and exit code 2."""
    import json

    p.add_argument(
        "--from_flags",
        default="",
        help="rerun from a study's flags.json (flags given too override it)",
    )
    p.error = fail  # argparse's own errors: one line, exit 2
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--from_flags", default="")
    known, _ = pre.parse_known_args(argv)
    if known.from_flags:
        try:
            with open(known.from_flags) as f:
                saved = json.load(f)
        except (OSError, ValueError) as e:
            fail(f"--from_flags={known.from_flags}: {e}")
        actions = {a.dest: a for a in p._actions}
        values = {
            k: v for k, v in saved.items() if k in actions and k not in ("help", "from_flags")
        }
        p.set_defaults(**values)
        for name in values:
            actions[name].required = False
    args = p.parse_args(argv)
    from tfadv.runtime.quiet import native_stderr_silenced

    with native_stderr_silenced():  # TensorFlow's start-up chatter (the checks load it)
        import tensorflow  # noqa: F401
    try:
        check_common(args)
        if check is not None:
            check(args)
    except (ValueError, FileNotFoundError, argparse.ArgumentTypeError) as e:
        fail(str(e).strip().splitlines()[0])
    return args


def check_common(args) -> None:
    """Checks of the shared flags (raises ValueError naming the flag)."""
    for name in ("epochs", "batch_size"):
        if getattr(args, name, 1) <= 0:
            raise ValueError(f"--{name}={getattr(args, name)}: must be > 0")
    for name in ("train_images", "test_images", "eval_images", "monitor_images"):
        if getattr(args, name, 0) < 0:
            raise ValueError(f"--{name}={getattr(args, name)}: must be >= 0")
    if getattr(args, "data_dir", None) and not os.path.exists(args.data_dir):
        raise ValueError(f"--data_dir={args.data_dir}: no such file or folder")
    if getattr(args, "suite", "none") != "none":
        from tfadv.evaluation import suite_attacks

        try:
            suite_attacks(args.suite)
        except ValueError as e:
            raise ValueError(f"--suite={args.suite}: {str(e).splitlines()[0]}") from None
    if getattr(args, "model", None) is not None and not _is_model_path(args.model):
        from tfadv import models

        for name in str_list(args.model):
            if not _is_model_path(name) and name not in models.REGISTRY:
                raise ValueError(
                    f"--model={name}: neither an architecture "
                    f"({', '.join(sorted(models.REGISTRY))}) nor an existing model path"
                )


def _is_model_path(spec: str) -> bool:
    return os.path.exists(str(spec).rsplit(":", 1)[0]) or os.path.exists(str(spec))


def _epoch_timer():
    """A Keras callback recording each epoch's seconds (epoch begin to end, after the callbacks
    listed before it, e.g. the overfitting guard) and its numeric logs, per fit call ("stage")."""
    import keras  # tfadv is imported by then (start()), so its oneDNN default is in force

    class EpochTimer(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.rows, self.stage, self._start = [], 0, 0.0

        def on_train_begin(self, logs=None):
            self.stage += 1

        def on_epoch_begin(self, epoch, logs=None):
            self._start = time.time()

        def on_epoch_end(self, epoch, logs=None):
            numeric = {
                k: float(v)
                for k, v in (logs or {}).items()
                if np.ndim(v) == 0 and np.isfinite(float(v))
            }
            self.rows.append(
                {
                    "stage": self.stage,
                    "epoch": epoch + 1,
                    "seconds": time.time() - self._start,
                    **numeric,
                }
            )

    return EpochTimer()


def train_run(args, name: str, retrain: bool | None = None, probes=(), **overrides) -> dict:
    """Trains (or reuses) the run --out/runs/<name> through run_training(TrainConfig(...)): the
    CIFAR-10 archive of --data_dir, --model, --epochs, --batch_size, --learning_rate,
    --lr_schedule, --augment, --train_images, --seed, then `overrides` (recipe, attack, ...).

    A finished run (summary.json present) is reused unless --retrain (or retrain=True).
    `probes` are extra callbacks run after the epoch timer (not timed). Returns {dir, summary,
    epochs (seconds and logs per epoch), probes (their summary()), seconds, reused}.
    """
    from tfadv.experiment import run, run_folder
    from tfadv.experiment.config import TrainConfig
    from tfadv.runtime.files import write_json

    output_dir = os.path.join(args.out, "runs", name)
    summary_path = os.path.join(output_dir, run_folder.SUMMARY_FILE)
    retrain = args.retrain if retrain is None else retrain
    if os.path.exists(summary_path) and not retrain:
        log(f"[{name}] reusing {output_dir}")
        times = run_folder.read_json(os.path.join(output_dir, TIMES_FILE))
        summary = run_folder.read_json(summary_path)
        return {
            "dir": output_dir,
            "summary": summary,
            "epochs": times.get("epochs", []),
            "probes": times.get("probes", []),
            "seconds": summary.get("seconds", float("nan")),
            "reused": True,
        }
    fields = dict(
        dataset="cifar10",
        data_dir=args.data_dir,
        model=args.model,
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        lr_schedule=getattr(args, "lr_schedule", "cosine"),
        augment=getattr(args, "augment", "none"),
        train_limit=args.train_images,
        robust_eval_size=getattr(args, "monitor_images", 0),
        seed=args.seed,
        verbose=2,
        output_dir=output_dir,
        overwrite=True,
    )
    fields.update(overrides)
    config = TrainConfig(**fields)
    shown = ", ".join(f"{k}={v}" for k, v in overrides.items())
    log(f"[{name}] training {config.epochs} epoch(s): {shown}")
    timer = _epoch_timer()
    summary = run.run_training(config, extra_callbacks=[timer, *probes])
    probe_summaries = [p.summary() for p in probes]
    write_json(
        os.path.join(output_dir, TIMES_FILE),
        {"epochs": timer.rows, "probes": probe_summaries, "seconds": summary.seconds},
    )
    log(
        f"[{name}] done in {summary.seconds:.0f} s: clean test accuracy "
        + ", ".join(f"{k} {v:.3f}" for k, v in summary.test_accuracy.items())
    )
    import dataclasses

    return {
        "dir": output_dir,
        "summary": dataclasses.asdict(summary),
        "epochs": timer.rows,
        "probes": probe_summaries,
        "seconds": summary.seconds,
        "reused": False,
    }


def epoch_seconds(info: dict, stage: int | None = None) -> list:
    """Seconds of each epoch of a train_run result (of one fit call `stage`, 1-based, or all)."""
    return [row["seconds"] for row in info["epochs"] if stage is None or row["stage"] == stage]


def load_run_model(info_or_dir, name: str = ""):
    from tfadv.experiment import load_model

    path = info_or_dir["dir"] if isinstance(info_or_dir, dict) else info_or_dir
    return load_model(path, name)


def model_from_spec(spec: str):
    """'PATH' or 'PATH:NAME' (a run folder and one of its models, a .keras file or a SavedModel)
    -> (label, model, path for staleness checks)."""
    from tfadv.experiment import load_model

    path, name = (spec, "")
    if not os.path.exists(spec) and ":" in spec:
        path, name = spec.rsplit(":", 1)
    model = load_model(path, name)
    label = os.path.basename(os.path.normpath(path)) + (f":{name}" if name else "")
    return label, model, path


def test_split(args, classes=None):
    """(float images, labels, class names) of the first --test_images test images."""
    _, _, test, names = load_data(args, classes)
    return test.float_images(), test.labels, names


def suite_evaluation(
    args,
    key: str,
    model,
    x,
    y,
    eps: float,
    class_names=None,
    source: str | None = None,
    images: int = 0,
    eot_samples: int = 8,
) -> dict:
    """Scores one model with tfadv.evaluation.evaluate (suite --suite, the masking checklist) on the
    first --eval_images (or `images`, when smaller) of (x, y) at `eps`; the report goes to
    --out/evaluations/<key>-eps<eps>/ and is reused when present (and newer than `source`, the
    model's file) unless --reevaluate. A model random at inference is attacked through EOT over
    `eot_samples` draws (the evaluation's own handling).

    Returns {} with --suite=none, else: suite robust (the headline worst case over all attacks,
    over all images), suite robust on correct, suite alone, eval clean, masking checks failed,
    eval seconds, report; for a random model also suite with EOT and suite without EOT (mean
    accuracy over fresh draws of the suite's images, attacked with and without EOT).
    """
    if args.suite == "none":
        return {}
    from tfadv.evaluation import suite_attacks
    from tfadv.evaluation.report_files import folder_name
    from tfadv.experiment import run_folder

    folder = os.path.join(args.out, "evaluations", f"{folder_name(key)}-eps{eps:g}")
    summary_path = os.path.join(folder, "summary.json")
    n = min(n for n in (args.eval_images, images, len(y)) if n)
    suite = [a.describe() for a in suite_attacks(args.suite)]
    saved = run_folder.read_json(summary_path) if not args.reevaluate else {}
    fresh = saved.get("n") == n and saved.get("suite") == suite and key in saved.get("models", {})
    fresh = fresh and saved.get("settings", {}).get("eot_samples") == eot_samples
    if fresh and source is not None and os.path.exists(source):
        fresh = os.path.getmtime(summary_path) >= os.path.getmtime(source)
    if fresh:
        headline = saved["models"][key]
        log(f"[{key}] reusing the evaluation {folder}")
    else:
        from tfadv import evaluation

        start = time.time()
        log(f"[{key}] evaluating: suite {args.suite}, eps {eps:g}, {n} images")
        report = evaluation.evaluate(
            {key: model},
            x[:n],
            y[:n],
            eps,
            suite=args.suite,
            class_names=class_names,
            seed=args.seed,
            eot_samples=eot_samples,
        )
        report.write(folder, overwrite=True)
        headline = report.summary()["models"][key]
        log(
            f"[{key}] evaluated in {time.time() - start:.0f} s: robust "
            f"{headline['robust_accuracy']:.3f}, failed checks {headline['masking_checks_failed']}"
        )
    randomness = headline.get("randomness") or {}
    return {
        **{
            f"suite {name.replace('suite_', '').replace('_', ' ')}": randomness[name]
            for name in ("suite_with_eot", "suite_without_eot")
            if name in randomness
        },
        "eval clean": headline["clean_accuracy"],
        "suite robust": headline["robust_accuracy"],
        "suite robust on correct": headline["robust_accuracy_on_correct"],
        "suite alone": headline["suite_robust_accuracy"],
        "masking checks failed": headline["masking_checks_failed"],
        "eval seconds": headline["seconds"],
        "report": os.path.relpath(os.path.join(folder, "report.md"), args.out),
    }


def gradient_figure(args, key: str, model, x, y, title: str = "") -> dict:
    """Input-gradient norm histograms (tfadv.evaluation.plots.gradient_histograms: initially
    correct images in one colour, incorrect in another) on the loss over probabilities (for models
    that output them) and logits, saved as gradients_<key>.png; returns summary numbers."""
    from tfadv import attacks, evaluation, models
    from tfadv.evaluation import plots

    views = (
        attacks.LOSS_ON if models.as_classifier(model).output == "probabilities" else ("logits",)
    )
    norms = {view: evaluation.gradient_norms(model, x, y, loss_on=view) for view in views}
    correct = attacks.predict_classes(model, x) == y
    save_figure(args, plots.gradient_histograms(norms, correct, title or key), f"gradients_{key}")
    row = {"model": key}
    for view, values in norms.items():
        row[f"grad = 0 ({view})"] = float(np.mean(values == 0))
        row[f"median grad norm ({view}), correct"] = (
            float(np.median(values[correct])) if correct.any() else float("nan")
        )
        row[f"median grad norm ({view}), incorrect"] = (
            float(np.median(values[~correct])) if (~correct).any() else float("nan")
        )
    return row


def run_split(info, split: str = "test", limit: int = 0):
    """The `split` (test, val or train) of a train_run result's data as its run saw it (limits,
    validation share, seed): an ImageSet, first `limit` images (0: all)."""
    from tfadv.experiment import load_split

    return load_split(info["dir"], split, limit)


def class_subset(args, classes) -> str:
    """A CIFAR-10 binary folder holding only `classes` of --data_dir (labels kept, 0-9), written
    once under --out/data, for train_run(..., data_dir=class_subset(...)): the recipes then train
    and test on those classes (the model keeps its ten outputs)."""
    from tfadv.data import cifar_binary
    from tfadv.runtime.files import atomic_file, write_text

    folder = os.path.join(args.out, "data", "classes_" + "_".join(map(str, classes)))
    bins = os.path.join(folder, cifar_binary.FOLDER)
    if os.path.exists(os.path.join(bins, cifar_binary.TEST_FILE)):
        return folder
    os.makedirs(bins, exist_ok=True)
    train, test, names = cifar_binary.load_cifar10_binary(args.data_dir)
    write_text(os.path.join(bins, cifar_binary.META_FILE), "\n".join(names) + "\n")
    for file, split in ((cifar_binary.TRAIN_FILES[0], train), (cifar_binary.TEST_FILE, test)):
        kept = split.take(np.isin(split.labels, classes))
        records = np.concatenate(
            [
                kept.labels.astype(np.uint8)[:, None],
                kept.images.transpose(0, 3, 1, 2).reshape(len(kept), -1),
            ],
            axis=1,
        )
        atomic_file(os.path.join(bins, file), lambda path, r=records: r.tofile(path))
    log(f"classes {classes} of {args.data_dir} -> {folder}")
    return folder


def add_patch_flags(p) -> None:
    """Flags of the universal patch (`universal_patch`)."""
    p.add_argument("--patch_size", type=int, default=8, help="patch side in pixels (of 32)")
    p.add_argument("--patch_steps", type=int, default=200)
    p.add_argument("--patch_step_size", type=float, default=0.02)
    p.add_argument(
        "--patch_train_images",
        type=int,
        default=500,
        help="training images the patch is optimised on",
    )


def universal_patch(args, model, source, x):
    """One universal untargeted patch (`tfadv.attacks.patch`, --patch_size, --patch_steps,
    --patch_step_size, --seed) optimised on the ImageSet `source` and pasted at random places on
    the float images x: (patched images, (N, 2) positions of the patch's top-left corner)."""
    from tfadv import attacks

    log(
        f"patch {args.patch_size}x{args.patch_size}, "
        f"{args.patch_steps} steps on {len(source)} training images"
    )
    trained = attacks.patch(
        model,
        source.float_images(),
        source.labels,
        size=args.patch_size,
        steps=args.patch_steps,
        step_size=args.patch_step_size,
        seed=args.seed,
    )
    pasted = attacks.apply_patch(x, trained.patch, seed=args.seed)
    return pasted.images.numpy(), pasted.positions.numpy()
