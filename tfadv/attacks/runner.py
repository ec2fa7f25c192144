"""Running an attack over a whole data set in batches, saving the result, transfer attacks.

    result = run_attack(model, (images, labels), "pgd", eps=8 / 255, seed=0, progress=True)
    result.summary()            # clean / adversarial accuracy
    save(result, "adv.npz")     # or "adv.tfrecord"; load(path) reads either back
"""

import dataclasses
import inspect

import keras
import numpy as np
import tensorflow as tf

from tfadv import export
from tfadv.attacks import gradient, registry

NPZ_KEYS = ("adversarial", "labels", "clean_predictions", "adversarial_predictions")  # + "targets" if targeted


@dataclasses.dataclass
class AttackResult:
    """Adversarial images (float32 in [0, 1]) with labels and the evaluated model's predictions."""

    adversarial: np.ndarray
    labels: np.ndarray
    clean_predictions: np.ndarray
    adversarial_predictions: np.ndarray
    targets: np.ndarray | None = None

    def __len__(self):
        return len(self.labels)

    def summary(self) -> dict:
        """clean_accuracy, adversarial_accuracy (all images), adversarial_accuracy_on_correct
        (images classified correctly when clean; NaN if there are none), n, n_correct, and
        for targeted runs target_success_rate (adversarial prediction == target)."""
        correct = self.clean_predictions == self.labels
        adv_correct = self.adversarial_predictions == self.labels
        n, n_correct = len(self.labels), int(correct.sum())
        summary = {
            "clean_accuracy": float(correct.mean()),
            "adversarial_accuracy": float(adv_correct.mean()),
            "adversarial_accuracy_on_correct": float(adv_correct[correct].mean()) if n_correct else float("nan"),
            "n": n,
            "n_correct": n_correct,
        }
        if self.targets is not None:
            summary["target_success_rate"] = float((self.adversarial_predictions == self.targets).mean())
        return summary


def predict_classes(model, images) -> np.ndarray:
    """Top-1 classes (argmax of the logits, inference mode) of one batch."""
    return np.argmax(gradient.logits_of(model, images).numpy(), axis=-1)


def batches(data, batch_size: int):
    """Yields (images, labels) batches from (images, labels) arrays, an ImageSet or a tf.data
    dataset of (images, labels) (batched or not). Returns (iterator, number of images or None)."""
    if batch_size <= 0:
        raise ValueError(f"Expected batch_size > 0. Received: batch_size={batch_size!r}")
    if isinstance(data, tf.data.Dataset):
        if data.element_spec[0].shape.rank == 3:
            data = data.batch(batch_size)
        return iter(data), None  # the number of images is unknown without reading it
    if hasattr(data, "float_images"):  # tfadv.data.ImageSet
        data = (data.float_images(), data.labels)
    if not (isinstance(data, (tuple, list)) and len(data) == 2):
        raise ValueError(f"Expected (images, labels), an ImageSet or a tf.data.Dataset. Received: {type(data).__name__}")
    images, labels = data
    n = len(labels)
    if len(images) != n:
        raise ValueError(f"Expected as many labels as images. Received: {len(images)} images, {n} labels")
    return ((images[i : i + batch_size], labels[i : i + batch_size]) for i in range(0, n, batch_size)), n


def _batch_seed(seed, index: int):
    return None if seed is None else (int(seed), index)


def run_attack(
    model,
    data,
    attack,
    eps,
    *,
    batch_size: int = 256,
    seed=None,
    target=None,
    progress: bool = False,
    eval_model=None,
    **attack_options,
) -> AttackResult:
    """Attacks every batch of `data` and collects the adversarial set.

    Args:
        model: the model the attack sees (the surrogate in a transfer attack).
        data: (images, labels) arrays, an ImageSet or a tf.data dataset of (images, labels).
        attack: an attack name (see `tfadv.attacks.get`) or function.
        eps: budget in pixel scale.
        batch_size: images per attack call (for arrays and unbatched datasets).
        seed: None, or an int: batch i then uses seed (seed, i), so results are repeatable
            and batches draw different noise. Only passed to attacks that take a seed.
        target: None (untargeted), or for attacks with a `targeted` option the target choice
            of `tfadv.attacks.choose_targets` ("least_likely", "least_likely_top5", "random"
            or a class id), chosen on `model`; the targets are kept in the result.
        progress: show a keras Progbar.
        eval_model: the model whose predictions are recorded (default `model`).
        **attack_options: passed to the attack (steps, alpha, norm, loss_on, ...).
    """
    fn = registry.get(attack)
    parameters = inspect.signature(fn).parameters
    takes_seed = "seed" in parameters
    name = getattr(fn, "__name__", attack)
    if seed is not None and not takes_seed:
        raise ValueError(f"Attack {name!r} takes no seed. Received: seed={seed!r}")
    if target is not None and "targeted" not in parameters:
        raise ValueError(f"Attack {name!r} has no targeted mode. Received: target={target!r}")
    eval_model = model if eval_model is None else eval_model
    iterator, size = batches(data, batch_size)
    bar = keras.utils.Progbar(size, unit_name="image") if progress else None
    parts = {key: [] for key in (*NPZ_KEYS, "targets")}
    done = 0
    for index, (x, y) in enumerate(iterator):
        options = dict(attack_options, seed=_batch_seed(seed, index)) if takes_seed else dict(attack_options)
        attacked = y
        if target is not None:
            attacked = gradient.choose_targets(model, x, y, target, seed=_batch_seed(seed, index))
            parts["targets"].append(attacked.numpy())
            options["targeted"] = True
        adv = fn(model, x, attacked, eps, **options)
        adv = getattr(adv, "images", adv)  # patch attacks return (images, patch)
        parts["adversarial"].append(np.asarray(adv, np.float32))
        parts["labels"].append(np.asarray(y, np.int64))
        parts["clean_predictions"].append(predict_classes(eval_model, x))
        parts["adversarial_predictions"].append(predict_classes(eval_model, adv))
        done += len(parts["labels"][-1])
        if bar is not None:
            bar.update(done)
    if not parts["labels"]:
        raise ValueError("Expected at least one image to attack. Received: an empty data set")
    return AttackResult(**{key: np.concatenate(values) if values else None for key, values in parts.items()})


def transfer(surrogate, target, data, attack, eps, **options) -> dict:
    """Black-box transfer: examples generated on `surrogate`, evaluated on `target`.

    Returns the target's summary (see `AttackResult.summary`) plus
    `surrogate_adversarial_accuracy` (white-box accuracy of the surrogate on the same examples).
    """
    result = run_attack(surrogate, data, attack, eps, eval_model=target, **options)
    on_surrogate = np.concatenate(
        [predict_classes(surrogate, result.adversarial[i : i + 256]) for i in range(0, len(result), 256)]
    )
    return {**result.summary(), "surrogate_adversarial_accuracy": float((on_surrogate == result.labels).mean())}


# ----------------------------------------------------------------------------- saving


_INT_FEATURES = {
    "labels": "label",
    "clean_predictions": "clean_prediction",
    "adversarial_predictions": "adversarial_prediction",
    "targets": "target",
}


def _example(image: np.ndarray, ints: dict) -> bytes:
    features = {
        "image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[image.astype("<f4").tobytes()])),
        "shape": tf.train.Feature(int64_list=tf.train.Int64List(value=list(image.shape))),
    }
    for key, value in ints.items():
        features[key] = tf.train.Feature(int64_list=tf.train.Int64List(value=[int(value)]))
    return tf.train.Example(features=tf.train.Features(feature=features)).SerializeToString()


def save(result: AttackResult, path: str) -> str:
    """Writes the adversarial set atomically: `.npz` (compressed NumPy) or `.tfrecord`
    (one tf.train.Example per image: float32 `image` bytes, `shape`, `label`,
    `clean_prediction`, `adversarial_prediction` and, if targeted, `target`)."""
    if path.endswith(".npz"):
        arrays = {k: v for k, v in dataclasses.asdict(result).items() if v is not None}
        return export.atomic_file(path, lambda tmp: np.savez_compressed(tmp, **arrays))
    if path.endswith(".tfrecord"):

        def write(tmp):
            columns = {name: getattr(result, key) for key, name in _INT_FEATURES.items() if getattr(result, key) is not None}
            with tf.io.TFRecordWriter(tmp) as writer:
                for i, image in enumerate(result.adversarial):
                    writer.write(_example(image, {name: column[i] for name, column in columns.items()}))

        return export.atomic_file(path, write)
    raise ValueError(f"Expected a path ending in .npz or .tfrecord. Received: path={path!r}")


def load(path: str) -> AttackResult:
    """Reads a set written by `save`."""
    if path.endswith(".npz"):
        with np.load(path) as f:
            return AttackResult(**{key: f[key] for key in f.files})
    if path.endswith(".tfrecord"):
        images, columns = [], {key: [] for key in _INT_FEATURES}
        for record in tf.data.TFRecordDataset(path).as_numpy_iterator():
            feature = tf.train.Example.FromString(record).features.feature
            shape = tuple(feature["shape"].int64_list.value)
            images.append(np.frombuffer(feature["image"].bytes_list.value[0], "<f4").reshape(shape))
            for key, name in _INT_FEATURES.items():
                if name in feature:
                    columns[key].append(feature[name].int64_list.value[0])
        ints = {key: np.asarray(values, np.int64) for key, values in columns.items() if values}
        return AttackResult(np.stack(images).astype(np.float32), **ints)
    raise ValueError(f"Expected a path ending in .npz or .tfrecord. Received: path={path!r}")
