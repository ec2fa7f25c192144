"""Shared plumbing of the issue-12 studies (tools/*_study.py): flags, data, training, tables, progress.

Each study: define flags (argparse, defaults for a real run), `start(args)` (output folder and
flags.json), then the library does the work; tables go out as CSV + Markdown (`write_table`).
"""

import argparse
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

DEFAULT_DATA = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "shared", "data", "cifar-10-mini-binary.tar.gz")
_START = time.time()


def parser(description: str) -> argparse.ArgumentParser:
    """The flags every study has: data, output folder, scale, seed."""
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data_dir", default=DEFAULT_DATA, help="CIFAR-10 binary archive (.tar.gz or folder)")
    p.add_argument("--out", required=True, help="output folder (tables, PNGs, flags.json, trained weights)")
    p.add_argument("--model", default="baseline_cnn", help="architecture (tfadv.models.REGISTRY)")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch_size", type=int, default=128)
    p.add_argument("--learning_rate", type=float, default=1e-3)
    p.add_argument("--train_images", type=int, default=0, help="training images used (0: all 4,194)")
    p.add_argument("--test_images", type=int, default=500, help="test images evaluated / attacked (0: all 932)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--retrain", action="store_true", help="train again even if weights exist in --out/models")
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
        splits = [type(s)(s.images, np.array([mapping[c] for c in s.labels], np.int64)) for s in splits]
        names = [names[c] for c in classes]
    train, val, test = splits
    return train.head(args.train_images), val, test.head(args.test_images), names


def train_model(args, name, train, val, num_classes, trainer=None, **options):
    """A tfadv model trained with Adam + cross-entropy (or by `trainer(model)`: a keras.Model wrapper
    compiled here), weights cached in --out/models/<name>.weights.h5 (reused unless --retrain)."""
    import keras

    from tfadv import models

    keras.utils.set_random_seed(args.seed)
    model = models.build(args.model, train.images.shape[1:], num_classes, seed=args.seed, **options)
    path = os.path.join(args.out, "models", f"{name}.weights.h5")
    if os.path.exists(path) and not args.retrain:
        model.load_weights(path)
        log(f"[{name}] reusing {path}")
        return model
    fit = trainer(model) if trainer is not None else model
    if trainer is None:
        fit.compile(optimizer=keras.optimizers.Adam(args.learning_rate), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    else:
        fit.compile(optimizer=keras.optimizers.Adam(args.learning_rate))
    log(f"[{name}] training {args.epochs} epoch(s) on {len(train)} images, options {options}")
    fit.fit(
        train.float_images(), train.labels, batch_size=args.batch_size, epochs=args.epochs,
        validation_data=(val.float_images(), val.labels), verbose=2,
    )  # fmt: skip
    from tfadv.runtime.files import atomic_file

    atomic_file(path, model.save_weights)
    return model


def accuracy(model, images, labels) -> float:
    from tfadv import attacks

    return float((attacks.predict_classes(model, images) == labels).mean())


def markdown(frame: pd.DataFrame) -> str:
    def cell(v):
        if isinstance(v, (float, np.floating)):
            return "nan" if np.isnan(v) else (f"{v:.3g}" if (v != 0 and (abs(v) < 1e-2 or abs(v) >= 1e3)) else f"{v:.3f}")
        return str(v)

    lines = ["| " + " | ".join(map(str, frame.columns)) + " |", "|" + "---|" * len(frame.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
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
