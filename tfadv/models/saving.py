"""Saving and loading classifiers: `.keras` files and SavedModels, written atomically.

    tfadv.models.export_saved_model(model, "out/model")  # any classifier as_classifier accepts
    clf = tfadv.models.load("out/model")  # a Classifier
    # a keras.Model (tfadv layers reload by themselves):
    model = tfadv.models.load("out/model.keras")

A tfadv SavedModel has two signatures, `serving_default` (images float32 in [0, 1] ->
{"probabilities"}) and `logits` (-> {"logits"}), so its logits stay reachable after export.
"""

import hashlib
import os

import keras
import tensorflow as tf

from tfadv.models.adapter import as_classifier
from tfadv.models.tflite import load_tflite
from tfadv.runtime.files import atomic_dir, atomic_file


def export_saved_model(model, path: str) -> str:
    """Writes `model` (anything `as_classifier` accepts) as a tfadv SavedModel, atomically."""
    clf = as_classifier(model)
    shape = clf.input_shape
    if shape is None:
        raise ValueError(
            f"Expected a model with a known input shape to export. Received: {clf.name!r}"
        )
    spec = tf.TensorSpec((None, *shape[1:]), tf.float32, name="images")

    def write(tmp):
        archive = keras.export.ExportArchive()
        archive.track(clf.model)
        archive.add_endpoint(
            "serving_default",
            lambda images: {"probabilities": clf.probabilities(images)},
            input_signature=[spec],
        )
        archive.add_endpoint(
            "logits", lambda images: {"logits": clf.logits(images)}, input_signature=[spec]
        )
        archive.write_out(tmp, verbose=False)

    return atomic_dir(path, write)


def weights_checksum(model) -> str:
    """16 hex digits of sha256 over a Keras model's weights (paths, shapes, dtypes, bytes):
    equal for bit-identical weights."""
    digest = hashlib.sha256()
    for weight in model.weights:
        value = keras.ops.convert_to_numpy(weight)
        digest.update(f"{weight.path}:{value.shape}:{value.dtype}".encode())
        digest.update(value.tobytes())
    return digest.hexdigest()[:16]


def save_keras(model, path: str) -> str:
    """Saves the `.keras` file atomically."""
    return atomic_file(path, model.save)


def load(path: str, output: str | None = None):
    """Loads a `.keras` file (a keras.Model), a SavedModel folder or a `.tflite` file (a Classifier;
    a TFLite one has no gradients, see `tfadv.models.tflite`).

    Args:
        path: a `.keras` file, a tfadv SavedModel, a plain SavedModel / `model.export()`
            archive (these need `output`), or a `.tflite` file (its probabilities).
        output: "logits" or "probabilities" for SavedModels that do not say (see `as_classifier`).

    Raises:
        FileNotFoundError: nothing at `path`.
        ValueError: a file that is neither, or cannot be read.
    """
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"Expected an existing path; it does not exist. Received: path={path!r}"
        )
    if path.endswith(".keras"):
        try:
            return keras.saving.load_model(path)
        except Exception as e:  # Keras raises many kinds on a corrupt or foreign file
            raise ValueError(
                f"Expected a readable Keras model; cannot load the Keras model "
                f"({str(e).splitlines()[0]}). Received: path={path!r}"
            ) from e
    if path.endswith(".tflite"):
        return load_tflite(path)
    if os.path.isdir(path) and os.path.exists(os.path.join(path, "saved_model.pb")):
        try:
            loaded = tf.saved_model.load(path)
        except Exception as e:
            raise ValueError(
                f"Expected a readable SavedModel; cannot load the SavedModel "
                f"({str(e).splitlines()[0]}). Received: path={path!r}"
            ) from e
        return as_classifier(loaded, output, name=os.path.basename(os.path.normpath(path)))
    raise ValueError(
        f"path={path!r} is neither a .keras file, a SavedModel folder nor a .tflite file"
    )
