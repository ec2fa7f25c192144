"""Saving adversarial sets: `.npz` (compressed NumPy) or `.tfrecord`, written atomically.

save(result, "adv.npz"); result = load("adv.npz")
"""

import dataclasses

import numpy as np
import tensorflow as tf

from tfadv.attacks.runner import AttackResult
from tfadv.runtime.files import atomic_file

_INT_FEATURES = {
    "labels": "label",
    "clean_predictions": "clean_prediction",
    "adversarial_predictions": "adversarial_prediction",
    "targets": "target",
}


def _example(image: np.ndarray, ints: dict) -> bytes:
    features = {
        "image": tf.train.Feature(
            bytes_list=tf.train.BytesList(value=[image.astype("<f4").tobytes()])
        ),
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
        return atomic_file(path, lambda tmp: np.savez_compressed(tmp, **arrays))
    if path.endswith(".tfrecord"):

        def write(tmp):
            columns = {
                name: getattr(result, key)
                for key, name in _INT_FEATURES.items()
                if getattr(result, key) is not None
            }
            with tf.io.TFRecordWriter(tmp) as writer:
                for i, image in enumerate(result.adversarial):
                    writer.write(
                        _example(image, {name: column[i] for name, column in columns.items()})
                    )

        return atomic_file(path, write)
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
