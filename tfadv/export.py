"""Writing and reading trained models, atomically.

A run folder holds, for every model NAME the recipe produced:
    models/NAME/          SavedModel; signatures `serving_default` (images float32 in
                          [0,1] -> {"probabilities"}) and `logits` (-> {"logits"})
    models/NAME.keras     the Keras model itself (layers, temperature, weights)
and `summary.json`, whose "main" field names the model the run reports on.
"""

import json
import os
import shutil
import tempfile

import keras
import tensorflow as tf

from tfadv import models
from tfadv.errors import UserInputError

MODELS_DIR = "models"
SUMMARY_FILE = "summary.json"


def atomic_dir(final_path: str, write) -> str:
    """Calls write(tmp_folder) and renames tmp_folder to final_path: all or nothing."""
    parent = os.path.dirname(os.path.abspath(final_path))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(final_path)}.tmp-", dir=parent)
    try:
        write(tmp)
        if os.path.exists(final_path):
            shutil.rmtree(final_path)
        os.replace(tmp, final_path)
    finally:
        if os.path.exists(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
    return final_path


def atomic_file(path: str, write) -> str:
    """Calls write(tmp_path) (same extensions, e.g. ".weights.h5", same folder) and renames tmp_path
    to path: all or nothing."""
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    name = os.path.basename(path).lstrip(".")
    suffix = "." + name.split(".", 1)[1] if "." in name else ""
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=suffix, dir=parent)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def write_json_atomic(path: str, payload) -> None:
    def write(tmp):
        with open(tmp, "w") as f:
            json.dump(payload, f, indent=2, sort_keys=True, default=str)

    atomic_file(path, write)


def export_saved_model(model, path: str) -> str:
    """Exports `model` as a SavedModel with probability and logits signatures (atomic)."""
    spec = tf.TensorSpec((None, *model.input_shape[1:]), tf.float32, name="images")
    logits = models.logits_model(model)

    def write(tmp):
        archive = keras.export.ExportArchive()
        archive.track(model)
        archive.add_endpoint(
            "serving_default",
            lambda images: {"probabilities": model(images, training=False)},
            input_signature=[spec],
        )
        archive.add_endpoint(
            "logits", lambda images: {"logits": logits(images, training=False)}, input_signature=[spec]
        )
        archive.write_out(tmp, verbose=False)

    return atomic_dir(path, write)


def save_keras(model, path: str) -> str:
    """Saves the `.keras` file atomically."""
    return atomic_file(path, model.save)


def export_run_models(output_dir: str, named_models: dict) -> dict:
    """Exports every model of a run; returns {name: SavedModel path}."""
    paths = {}
    for name, model in named_models.items():
        base = os.path.join(output_dir, MODELS_DIR, name)
        save_keras(model, base + ".keras")
        paths[name] = export_saved_model(model, base)
    return paths


class ExportedModel:
    """A SavedModel exported by tfadv, used like a model: `m(images)` gives probabilities.

    `m.logits(images)` gives the logits beneath the softmax.
    """

    def __init__(self, path: str):
        self.path = path
        self._loaded = tf.saved_model.load(path)
        signatures = self._loaded.signatures
        if "serving_default" not in signatures or "logits" not in signatures:
            raise UserInputError(f"{path!r} is not a tfadv SavedModel (needs serving_default and logits signatures)")
        self._probs = signatures["serving_default"]
        self._logits = signatures["logits"]
        self.input_shape = (None, *self._probs.structured_input_signature[1]["images"].shape[1:])

    def __call__(self, images, training=False):
        return self._probs(images=tf.convert_to_tensor(images, tf.float32))["probabilities"]

    def logits(self, images):
        return self._logits(images=tf.convert_to_tensor(images, tf.float32))["logits"]

    def predict(self, images, batch_size=256, verbose=0):
        import numpy as np

        return np.concatenate(
            [self(images[i : i + batch_size]).numpy() for i in range(0, len(images), batch_size)]
        )


def resolve_model_path(path: str, name: str = "", flag: str = "--model") -> str:
    """Turns a run folder (+ optional model name), a .keras file or a SavedModel into a file path.

    `flag` names the flag the path came from in error messages.
    """
    if not os.path.exists(path):
        raise UserInputError(f"{flag}={path!r} does not exist")
    summary = os.path.join(path, SUMMARY_FILE)
    if os.path.isdir(path) and os.path.exists(summary):
        with open(summary) as f:
            run = json.load(f)
        name = name or run.get("main", "model")
        candidate = os.path.join(path, MODELS_DIR, name + ".keras")
        if not os.path.exists(candidate):
            available = sorted(run.get("exports", {}))
            raise UserInputError(f"run {path!r} has no model {name!r}; it has {available}")
        return candidate
    return path


def load(path: str, name: str = "", flag: str = "--model"):
    """Loads a `.keras` model, a tfadv SavedModel (as ExportedModel) or a run folder's main model."""
    path = resolve_model_path(path, name, flag)
    if path.endswith(".keras"):
        try:
            return keras.saving.load_model(path)
        except Exception as e:
            raise UserInputError(f"cannot load Keras model {path!r}: {str(e).splitlines()[0]}") from e
    if os.path.exists(os.path.join(path, "saved_model.pb")):
        return ExportedModel(path)
    raise UserInputError(f"{path!r} is neither a .keras file, a SavedModel nor a tfadv run folder")
