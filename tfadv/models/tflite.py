"""TFLite (LiteRT) exports of a classifier and the deployed artefact as a Classifier.

    tfadv.models.export_tflite(
        model, "out/model_int8.tflite", "int8", representative_images=x_train
    )
    clf = tfadv.models.load("out/model_int8.tflite")     # probabilities, no gradients
    tfadv.models.export_precisions(model, "RUN/models", "model", representative_images=x_train)

Precisions: "float32" (the float graph), "float16" (weights stored as float16, computed in
float32) and "int8" (full-integer post-training quantization: int8 weights, activations,
input and output, calibrated on a seeded draw of `representative_images`). Every export holds
the model's probabilities (input float32 images in [0, 1], or their int8 quantization).

A loaded model runs in `tf.lite.Interpreter` (TensorFlow 2.21 warns that it moves to LiteRT's
`ai_edge_litert`, which is used instead when installed): each query resizes the interpreter's
input to the batch (batches above `max_batch` are split), under a lock, so one Classifier can
be queried from several threads; int8 inputs and outputs are (de)quantised with the tensors'
scale and zero point. It has no gradients (see `tfadv.models.callable`).
"""

import os
import threading
import warnings

import numpy as np
import tensorflow as tf
from tensorflow.lite.python import schema_py_generated as schema
from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

from tfadv.models.adapter import as_classifier
from tfadv.models.callable import from_callable
from tfadv.runtime.choices import TFLITE_PRECISIONS as PRECISIONS
from tfadv.runtime.files import atomic_file
from tfadv.runtime.quiet import native_stderr_silenced

REPRESENTATIVE_IMAGES = 200  # images drawn (seeded) from representative_images to calibrate int8
MAX_BATCH = 256  # larger batches are run through the interpreter in pieces of this size


def _check_precision(precision):
    if precision not in PRECISIONS:
        raise ValueError(
            f"Expected precision to be one of {PRECISIONS}. Received: precision={precision!r}"
        )
    return precision


def representative_draw(images, count: int = REPRESENTATIVE_IMAGES, seed: int = 0) -> np.ndarray:
    """`count` images (all when fewer) drawn without replacement, seeded, as float32."""
    images = np.asarray(images, np.float32)
    if images.ndim != 4 or images.shape[0] == 0:
        raise ValueError(
            "Expected representative_images of shape (N, H, W, C), N >= 1. "
            f"Received: shape {images.shape}"
        )
    if images.min() < 0.0 or images.max() > 1.0:
        raise ValueError(
            "Expected representative_images in [0, 1]. "
            f"Received: min={images.min()}, max={images.max()}"
        )
    order = np.random.default_rng(seed).permutation(images.shape[0])[:count]
    return images[np.sort(order)]


def convert(
    model,
    precision: str = "float32",
    representative_images=None,
    seed: int = 0,
    representative_count: int = REPRESENTATIVE_IMAGES,
) -> bytes:
    """The TFLite flat buffer of `model`'s probabilities (see `export_tflite`)."""
    _check_precision(precision)
    if precision == "int8" and representative_images is None:
        raise ValueError(
            "Expected representative_images (training images) for precision='int8'. Received: None"
        )
    clf = as_classifier(model)
    shape = clf.input_shape
    if shape is None or any(s is None for s in shape[1:]):
        raise ValueError(
            f"Expected a model with a known input shape to export. Received: {clf.name!r}"
        )
    if not getattr(clf, "differentiable", True):
        raise ValueError(
            f"Expected a TensorFlow or Keras model to convert. Received: {clf.name!r} (not a graph)"
        )
    spec = tf.TensorSpec((None, *shape[1:]), tf.float32, name="images")
    function = tf.function(
        lambda images: clf.probabilities(images), input_signature=[spec], autograph=False
    )
    # variables (e.g. the softmax temperature) frozen to constants: the deployed graph reads none
    frozen = convert_variables_to_constants_v2(function.get_concrete_function())
    converter = tf.lite.TFLiteConverter.from_concrete_functions([frozen], clf.model)
    if precision == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif precision == "int8":
        calibration = representative_draw(representative_images, representative_count, seed)

        def dataset():
            for i in range(calibration.shape[0]):
                yield [calibration[i : i + 1]]

        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = dataset
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    try:
        return converter.convert()
    except Exception as e:  # the converter raises many kinds
        raise ValueError(
            f"Cannot convert {clf.name!r} to TFLite ({precision}): {str(e).splitlines()[0]}"
        ) from e


def export_tflite(
    model,
    path: str,
    precision: str = "float32",
    representative_images=None,
    seed: int = 0,
    representative_count: int = REPRESENTATIVE_IMAGES,
) -> str:
    """Writes `model`'s probabilities as a TFLite flat buffer at `path`, atomically.

    Args:
        model: anything `tfadv.models.as_classifier` accepts with a known input shape.
        path: the `.tflite` file to write (replaced all or nothing).
        precision: "float32", "float16" (float16 weights) or "int8" (full-integer post-training
            quantization; int8 input and output).
        representative_images: float (N, H, W, C) in [0, 1], for int8 only: the calibration
            set, `representative_count` of them drawn with `seed` (use the training split).
        seed: the draw's seed.

    Returns:
        path.

    Raises:
        ValueError: unknown precision; int8 without representative_images; a model the
            converter rejects.
    """
    content = convert(model, precision, representative_images, seed, representative_count)

    def write(tmp):
        with open(tmp, "wb") as f:
            f.write(content)

    return atomic_file(path, write)


def export_precisions(
    model,
    folder: str,
    name: str = "model",
    precisions=PRECISIONS,
    representative_images=None,
    seed: int = 0,
) -> dict:
    """Writes FOLDER/NAME_PRECISION.tflite for each precision (beside a run's SavedModels).

    Returns:
        {"NAME_PRECISION": (path, size in bytes)} in the order of `precisions`.
    """
    if isinstance(precisions, str):
        precisions = tuple(p.strip() for p in precisions.split(",") if p.strip())
    for precision in precisions:
        _check_precision(precision)
    written = {}
    for precision in precisions:
        path = export_tflite(
            model,
            os.path.join(folder, f"{name}_{precision}.tflite"),
            precision,
            representative_images,
            seed,
        )
        written[f"{name}_{precision}"] = (path, os.path.getsize(path))
    return written


def verify(content: bytes, where: str = "<bytes>") -> None:
    """Raises a one-line ValueError unless `content` parses as a whole TFLite flat buffer.

    The interpreter trusts its input (a truncated file can crash the process), so the buffer is
    read first, field by field, by the schema's Python reader, which checks every offset."""
    try:
        if len(content) < 8 or content[4:8] != b"TFL3":
            raise ValueError(f"no TFLite identifier (bytes 4-8: {bytes(content[4:8])!r})")
        model = schema.ModelT.InitFromPackedBuf(bytearray(content), 0)
        for buffer in model.buffers or ():
            if buffer.offset and buffer.offset + buffer.size > len(content):
                raise ValueError(f"a weight buffer ends at byte {buffer.offset + buffer.size}")
        if not model.subgraphs:
            raise ValueError("no subgraph")
    except Exception as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ValueError(
            f"Expected a readable TFLite model; cannot load the TFLite model ({reason}). "
            f"Received: path={where!r}"
        ) from e


def _interpreter_class():
    try:
        from ai_edge_litert.interpreter import Interpreter

        return Interpreter
    except ImportError:
        return tf.lite.Interpreter


class TFLiteModel:
    """A TFLite interpreter as a thread-safe NumPy function float32 images -> probabilities.

    Attributes:
        path, input_shape (None, H, W, C), num_classes, precision ("int8" when the input is
        quantised, else "float").
    """

    def __init__(
        self, path: str = None, content: bytes = None, num_threads=None, max_batch: int = MAX_BATCH
    ):
        where = path or "<bytes>"
        if content is None:
            with open(path, "rb") as f:
                content = f.read()
        verify(content, where)
        try:
            # TF 2.21's notice that the interpreter moves to LiteRT, and the native "Created
            # TensorFlow Lite XNNPACK delegate" line on stderr (a command's one-line errors stay one
            # line)
            with warnings.catch_warnings(), native_stderr_silenced():
                warnings.simplefilter("ignore")
                self.interpreter = _interpreter_class()(
                    model_content=content, num_threads=num_threads
                )
            inputs, outputs = (
                self.interpreter.get_input_details(),
                self.interpreter.get_output_details(),
            )
        except Exception as e:  # the interpreter raises ValueError / RuntimeError with long texts
            raise ValueError(
                "Expected a readable TFLite model; cannot load the TFLite model "
                f"({str(e).splitlines()[0]}). Received: path={where!r}"
            ) from e
        if (
            len(inputs) != 1
            or len(outputs) != 1
            or len(inputs[0]["shape"]) != 4
            or len(outputs[0]["shape"]) != 2
        ):
            raise ValueError(
                "Expected one image input (N, H, W, C) and one output (N, classes); the model "
                f"has inputs {[tuple(d['shape']) for d in inputs]}, outputs "
                f"{[tuple(d['shape']) for d in outputs]}. Received: path={where!r}"
            )
        self.path, self._input, self._output = path, inputs[0], outputs[0]
        self.input_shape = (None, *(int(s) for s in self._input["shape"][1:]))
        self.num_classes = int(self._output["shape"][1])
        self.precision = (
            "float" if self._input["dtype"] == np.float32 else np.dtype(self._input["dtype"]).name
        )
        self.max_batch = max_batch
        self._lock = threading.Lock()
        self._batch = int(self._input["shape"][0])
        with native_stderr_silenced():
            self.interpreter.allocate_tensors()

    def _quantised(self, images):
        scale, zero = self._input["quantization"]
        if self._input["dtype"] == np.float32:
            return images
        limits = np.iinfo(self._input["dtype"])
        return np.clip(np.round(images / scale + zero), limits.min, limits.max).astype(
            self._input["dtype"]
        )

    def _dequantised(self, out):
        scale, zero = self._output["quantization"]
        if self._output["dtype"] == np.float32:
            return out
        return (out.astype(np.float32) - zero) * np.float32(scale)

    def _invoke(self, images):
        n = images.shape[0]
        if n != self._batch:
            self.interpreter.resize_tensor_input(self._input["index"], [n, *self.input_shape[1:]])
            self.interpreter.allocate_tensors()
            self._batch = n
        self.interpreter.set_tensor(self._input["index"], self._quantised(images))
        self.interpreter.invoke()
        return self._dequantised(self.interpreter.get_tensor(self._output["index"])).copy()

    def __call__(self, images) -> np.ndarray:
        """float32 (N, classes) probabilities of float32 (N, H, W, C) images in [0, 1]."""
        images = np.asarray(images, np.float32)
        with self._lock:
            pieces = [
                self._invoke(images[i : i + self.max_batch])
                for i in range(0, images.shape[0], self.max_batch)
            ]
        return np.concatenate(pieces, 0).astype(np.float32, copy=False)


def load_tflite(path: str, name: str | None = None, num_threads=None, max_batch: int = MAX_BATCH):
    """A Classifier (probabilities, no gradients) running the TFLite model at `path`.

    Raises:
        FileNotFoundError: nothing at `path`.
        ValueError: a file the interpreter cannot read, or not an image classifier.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"Expected an existing path; it does not exist. Received: path={path!r}"
        )
    model = TFLiteModel(path, num_threads=num_threads, max_batch=max_batch)
    name = name or os.path.splitext(os.path.basename(path))[0]
    return from_callable(
        model, model.input_shape, model.num_classes, name=name
    )  # clf.model.fn: the TFLiteModel
