"""Any image classifier seen two ways: images -> logits and images -> probabilities.

    clf = tfadv.models.as_classifier(model)            # found once per model
    clf.logits(images); clf.probabilities(images)
    clf = tfadv.models.as_classifier(net, output="logits")   # declare what an opaque model returns

Where the logits come from (the first rule that applies):

1. A model ending in `TemperatureSoftmax` (every tfadv model): the layer's input. Its
   temperature T is kept, for losses on logits / T.
2. A model ending in a softmax: a `keras.layers.Softmax`, an `Activation("softmax")` or a layer
   with `activation="softmax"` (`Dense(10, activation="softmax")`, `keras.applications` heads):
   that layer's output without the softmax.
3. A model ending in another Keras model (e.g. preprocessing layers in front of a
   `keras.applications` network): rules 1-3 inside it, behind the preprocessing.
4. A tfadv SavedModel (signatures `serving_default` -> probabilities and `logits` -> logits).
5. Any other Keras Functional or Sequential model: its final layer applies no softmax, so its
   output is taken as the logits (`output="logits"` is implied).
6. Opaque models (subclassed Keras models, plain SavedModels and `model.export()` archives)
   must say what they return: `output="logits"`, or `output="probabilities"` (then the logits
   are log(probabilities): any softmax input up to a per-image constant, which every loss here
   ignores; where a probability underflows to 0 they are clipped, and `logits_source` says so).

Compiled, batched questions: `logits_of(model, images)` and `probabilities_of(model, images)`
(one tf.function per model and view, traced once for any batch size).

A model that outputs logits has no probabilities of its own to attack: `scores(x, "probabilities")`
(the naive attacker's view, for masking checks) raises instead of computing a probability loss
on logits. Everything runs in inference mode (`training=False`).
"""

import weakref

import keras
import tensorflow as tf

from tfadv.layers import TemperatureSoftmax
from tfadv.runtime import devices, tensors, validation

OUTPUTS = ("probabilities", "logits")
PROBABILITY_CLIP = (
    1e-7  # keras.config.epsilon(), as in keras.losses.sparse_categorical_crossentropy
)
LOG_PROBABILITY_FLOOR = 1e-30  # log(p) of an underflowed probability is clipped to log(1e-30)


class Classifier:
    """A classifier as images -> logits and images -> probabilities (inference mode).

    Build with `as_classifier`. Calling it returns probabilities, so it can stand wherever a
    Keras model's output probabilities are expected.

    Attributes:
        model: the wrapped model (Keras model or loaded SavedModel).
        output: what the model itself returns: "probabilities" or "logits".
        logits_source: "temperature_softmax", "softmax_layer", "softmax_activation",
            "signature" (tfadv SavedModel), "output" (the model outputs logits) or
            "log_probabilities" (log of the output; no logits could be found).
        name: a short name for messages and reports.
        differentiable: False for models queried without gradients (TFLite interpreters,
            Python callables: `tfadv.models.from_callable`); gradient attacks refuse them.
    """

    differentiable = True

    def __init__(
        self,
        model,
        output,
        logits_fn,
        probabilities_fn,
        logits_source,
        temperature_fn=None,
        name=None,
        shapes=None,
    ):
        self.model = model
        self._shapes = shapes  # (input shape, num_classes) when the model does not declare them
        self.output = output
        self.logits_source = logits_source
        self.name = name or getattr(model, "name", None) or type(model).__name__
        self._logits = logits_fn
        self._probabilities = probabilities_fn
        self._temperature = temperature_fn

    def __repr__(self):
        return (
            f"Classifier({self.name!r}, output={self.output!r}, logits from {self.logits_source})"
        )

    def __call__(self, images, training=False):
        return self.probabilities(images)

    def logits(self, images):
        """Scores beneath the softmax, float32 (N, classes)."""
        return self._logits(_as_float(images))

    def probabilities(self, images):
        """The model's probabilities; softmax(logits) for a model that outputs logits."""
        if self._probabilities is None:
            return tf.nn.softmax(self.logits(images), axis=-1)
        return self._probabilities(_as_float(images))

    def temperature(self):
        """T of a final TemperatureSoftmax (a tensor read at run time), else 1.0."""
        return self._temperature() if self._temperature is not None else tf.constant(1.0)

    def scores(self, images, view: str = "logits"):
        """What a loss sees: the logits ("logits"), or the log of the model's own output
        probabilities clipped to [1e-7, 1 - 1e-7] as Keras does ("probabilities": the naive
        attacker's view, where a saturated softmax gives exactly zero gradients).

        Raises:
            ValueError: view="probabilities" on a model that outputs logits.
        """
        if view == "logits":
            return self.logits(images)
        if view != "probabilities":
            raise ValueError(
                "Expected loss_on to be one of ('logits', 'probabilities'). "
                f"Received: loss_on={view!r}"
            )
        if self.output != "probabilities":
            raise ValueError(
                f"Model {self.name!r} outputs logits, so there are no output probabilities "
                "to attack. Received: loss_on='probabilities' (use loss_on='logits')"
            )
        probabilities = self.probabilities(images)
        return tf.math.log(
            tf.clip_by_value(probabilities, PROBABILITY_CLIP, 1.0 - PROBABILITY_CLIP)
        )

    @property
    def input_shape(self):
        """(None, H, W, C) when known, else None."""
        if self._shapes is not None:
            return self._shapes[0]
        try:
            shape = getattr(self.model, "input_shape", None)
        except (AttributeError, ValueError):  # a never-called Sequential
            shape = None
        return tuple(shape) if shape is not None else None

    @property
    def num_classes(self):
        """Number of classes when the model declares it, else None."""
        if self._shapes is not None:
            return self._shapes[1]
        try:
            shape = getattr(self.model, "output_shape", None)
        except (AttributeError, ValueError):
            shape = None
        if isinstance(shape, tuple) and shape and isinstance(shape[-1], int):
            return shape[-1]
        return None

    def ensure_built(self, images) -> None:
        """Builds a never-called Keras model by calling it once eagerly (outside any graph)."""
        model = self.model
        if isinstance(model, keras.Model) and not model.built and tf.executing_eagerly():
            model(_as_float(images)[:1], training=False)


def _as_float(images):
    return tf.cast(tf.convert_to_tensor(images), tf.float32)


# ----------------------------------------------------------------------------- finding the logits


def _is_softmax(layer) -> bool:
    if isinstance(layer, keras.layers.Softmax):
        return True
    activation = getattr(layer, "activation", None)
    return getattr(activation, "__name__", "") == "softmax"


def _call_without_softmax(layer, h):
    """The layer's output with its softmax activation replaced by the identity."""
    if isinstance(layer, (keras.layers.Softmax, keras.layers.Activation)):
        return h
    saved = layer.activation
    layer.activation = keras.activations.linear
    try:
        return layer(h, training=False)
    finally:
        layer.activation = saved


def _final_layer_and_prefix(model):
    """(final layer, fn: images -> that layer's input) of a Functional or Sequential model, or
    None."""
    if isinstance(model, keras.Sequential):
        layers = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
        if not layers:
            return None
        body = layers[:-1]

        def prefix(x):
            for layer in body:
                x = layer(x, training=False)
            return x

        return layers[-1], prefix
    outputs = getattr(model, "_outputs", None) if isinstance(model, keras.Model) else None
    try:
        outputs = model.outputs if outputs is None else outputs
    except (AttributeError, ValueError):
        return None
    if not outputs or len(outputs) != 1 or not hasattr(outputs[0], "_keras_history"):
        return None
    layer, node_index, _ = outputs[0]._keras_history
    node = layer._inbound_nodes[node_index]
    if len(node.input_tensors) != 1:
        return None
    before = node.input_tensors[0]
    if any(before is x for x in model.inputs):
        return layer, lambda x: x
    body = keras.Model(model.inputs, before, name=f"{model.name}_body")
    return layer, lambda x: body(x, training=False)


def _keras_classifier(model, output):
    """Rules 1, 2, 3 and 5 for a Keras model; None for an opaque (subclassed) model."""
    found = _final_layer_and_prefix(model)
    if found is None:
        return None
    layer, prefix = found

    def probabilities(x):
        return model(x, training=False)

    if isinstance(layer, TemperatureSoftmax):
        return Classifier(
            model,
            "probabilities",
            lambda x: prefix(x),
            probabilities,
            "temperature_softmax",
            temperature_fn=lambda: tf.convert_to_tensor(layer.temperature),
        )
    if _is_softmax(layer):
        source = (
            "softmax_layer"
            if isinstance(layer, (keras.layers.Softmax, keras.layers.Activation))
            else "softmax_activation"
        )
        return Classifier(
            model,
            "probabilities",
            lambda x: _call_without_softmax(layer, prefix(x)),
            probabilities,
            source,
        )
    if isinstance(layer, keras.Model):
        inner = _keras_classifier(layer, None)
        if inner is not None and inner.output == "probabilities":
            return Classifier(
                model,
                "probabilities",
                lambda x: inner.logits(prefix(x)),
                probabilities,
                inner.logits_source,
                temperature_fn=inner._temperature,
            )
    if output == "probabilities":
        return None  # declared probabilities without a visible softmax: log-probabilities below
    return Classifier(model, "logits", probabilities, None, "output")


def _saved_model_classifier(loaded, output, name=None):
    """Rules 4 and 6 for a loaded SavedModel (tf.saved_model.load or model.export())."""
    name = name or "saved_model"
    signatures = getattr(loaded, "signatures", None) or {}
    if "serving_default" in signatures and "logits" in signatures:
        probabilities = _single_output(signatures["serving_default"])
        logits = _single_output(signatures["logits"])
        shapes = _signature_shapes(signatures["serving_default"])
        return Classifier(
            loaded, "probabilities", logits, probabilities, "signature", name=name, shapes=shapes
        )
    if callable(getattr(loaded, "serve", None)):  # model.export() archives
        fn = loaded.serve
    elif "serving_default" in signatures:
        fn = _single_output(signatures["serving_default"])
    else:
        raise ValueError(
            "Expected a SavedModel with a serving signature or a `serve` endpoint. "
            f"Received: {name!r} has neither"
        )
    clf = _declared(loaded, fn, output, name)
    if "serving_default" in signatures:
        clf._shapes = _signature_shapes(signatures["serving_default"])
    return clf


def _signature_shapes(signature):
    """(input shape, number of classes) of a one-input, one-output signature
    (None where unknown)."""
    (spec,) = signature.structured_input_signature[1].values()
    (out,) = signature.structured_outputs.values()
    classes = out.shape[-1] if out.shape.rank else None
    return tuple(spec.shape.as_list()), classes


def _single_output(signature):
    """images -> the only output tensor of a concrete signature function."""
    inputs = signature.structured_input_signature[1]
    if len(inputs) != 1:
        raise ValueError(
            f"Expected a signature with one input (the images). Received inputs {sorted(inputs)}"
        )
    (input_name,) = inputs
    outputs = signature.structured_outputs
    if len(outputs) != 1:
        raise ValueError(
            f"Expected a signature with one output. Received outputs {sorted(outputs)}"
        )
    (output_name,) = outputs
    return lambda x: signature(**{input_name: x})[output_name]


def _declared(model, fn, output, name=None):
    """Rule 6: an opaque model whose output kind was declared."""
    if output is None:
        raise ValueError(
            f"Cannot tell whether {name or type(model).__name__} outputs logits or probabilities: "
            "declare output='logits' or output='probabilities' "
            "(tfadv.models.as_classifier(model, output=...) "
            "or tfadv.models.load(path, output=...)). Received: output=None"
        )
    if output == "logits":
        return Classifier(model, "logits", fn, None, "output", name=name)

    def log_probabilities(x):
        return tf.math.log(tf.maximum(fn(x), LOG_PROBABILITY_FLOOR))

    return Classifier(model, "probabilities", log_probabilities, fn, "log_probabilities", name=name)


CACHE_ATTRIBUTE = (
    "_tfadv_classifiers"  # {output: Classifier}, kept on the model: it lives and dies with it
)


def as_classifier(model, output: str | None = None, name: str | None = None) -> Classifier:
    """The Classifier of `model` (see the module docstring for the rules), found once and cached.

    Args:
        model: a Keras model (Functional, Sequential or subclassed), a loaded SavedModel
            (`tf.saved_model.load`, `model.export()` archives) or a Classifier.
        output: what the model returns, "logits" or "probabilities"; needed only for opaque
            models. A declaration that contradicts what the model shows is an error.
        name: the name used in messages and reports (default: the model's).

    Raises:
        ValueError: unknown `output`; a contradiction; an opaque model without `output`.
    """
    if output is not None and output not in OUTPUTS:
        raise ValueError(
            f"Expected output to be one of {OUTPUTS} or None. Received: output={output!r}"
        )
    if isinstance(model, Classifier):
        if output is not None and output != model.output:
            raise ValueError(
                f"{model!r} already outputs {model.output}. Received: output={output!r}"
            )
        return model
    if not (callable(model) or hasattr(model, "signatures")):
        raise TypeError(
            "Expected a Keras model, a loaded SavedModel or a Classifier. "
            f"Received: {type(model).__name__}"
        )
    per_model = getattr(model, CACHE_ATTRIBUTE, None)
    if per_model is None:
        per_model = {}
        try:  # object.__setattr__: neither Keras nor tf.Module tracking sees the cache
            object.__setattr__(model, CACHE_ATTRIBUTE, per_model)
        except (AttributeError, TypeError):  # objects without a __dict__: no caching
            pass
    if output not in per_model or (name and per_model[output].name != name):
        clf = _find(model, output, name)
        per_model[output] = per_model.setdefault(clf.output, clf)
    return per_model[output]


def _find(model, output, name):
    if isinstance(model, keras.Model):
        clf = _keras_classifier(model, output)
        if clf is None:
            clf = _declared(model, lambda x: model(x, training=False), output, name or model.name)
    else:
        clf = _saved_model_classifier(model, output, name)
    if name:
        clf.name = name
    if output is not None and clf.output != output:
        raise ValueError(
            f"Model {clf.name!r} ends in a softmax, so it outputs probabilities. "
            f"Received: output={output!r}"
        )
    return clf


def expectation(model, samples: int) -> Classifier:
    """Expectation over transformation (EOT) for a classifier that is random at inference
    (noise layers left on): logits and probabilities averaged over `samples` draws.

    Gradient attacks on this view follow the mean gradient of their loss over `samples` draws
    (expectation over transformation, Athalye et al. 2018; see `tfadv.attacks.losses.Objective`),
    which a single noisy draw hides; predictions use the mean probabilities. The batch is
    repeated `samples` times in one call, so memory grows by that factor. `.base` is the
    classifier itself.
    """
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
        raise ValueError(f"Expected samples to be an integer >= 1. Received: samples={samples!r}")
    clf = as_classifier(model)

    def repeat(fn):
        def averaged(x):
            n = tf.shape(x)[0]
            out = fn(tf.tile(x, tf.concat([[samples], tf.ones([tf.rank(x) - 1], tf.int32)], 0)))
            return tf.reduce_mean(
                tf.reshape(out, tf.concat([[samples, n], tf.shape(out)[1:]], 0)), axis=0
            )

        return averaged

    probabilities = repeat(clf.probabilities) if clf.output == "probabilities" else None
    eot = Classifier(
        clf.model,
        clf.output,
        repeat(clf.logits),
        probabilities,
        clf.logits_source,
        clf._temperature,
        name=f"{clf.name} (EOT x{samples})",
        shapes=(clf.input_shape, clf.num_classes),
    )
    eot.samples, eot.base, eot.budget = samples, clf, getattr(clf, "budget", None)
    eot.differentiable = clf.differentiable
    return eot


def is_stochastic(model, images) -> bool:
    """True when two inference calls on the same images give different probabilities."""
    clf = as_classifier(model)
    x = _as_float(images)
    return not bool(tf.reduce_all(tf.equal(clf.probabilities(x), clf.probabilities(x))))


class ClassifierRef:
    """How a compiled function finds its Classifier again without keeping the model alive: the
    model (weakly), what it outputs, the number of EOT samples (0: none) and the Budget counting
    its passes (None: none)."""

    def __init__(self, clf):
        self.model_ref = weakref.ref(clf.model)
        self.output, self.samples = clf.output, getattr(clf, "samples", 0)
        self.budget = getattr(clf, "budget", None)

    def get(self) -> Classifier:
        from tfadv.models.budget import counted  # budget builds on this module

        model = self.model_ref()
        if model is None:
            raise RuntimeError("The attacked model no longer exists")
        clf = as_classifier(model, self.output)
        if self.budget is not None:
            clf = counted(clf, self.budget)
        return expectation(clf, self.samples) if self.samples else clf


def view_key(clf) -> tuple:
    """What tells a classifier's views of one model apart (output, EOT draws, pass counting)."""
    return (clf.output, getattr(clf, "samples", 0), getattr(clf, "budget", None))


_FORWARD = weakref.WeakKeyDictionary()  # model -> {(what, view, image shape, XLA): tf.function}


class _Forward:
    """`clf.logits` or `clf.probabilities` of the classifier `ref` finds (a callable object: one
    code object for every model, so TensorFlow does not count other models as retracing)."""

    def __init__(self, ref, what):
        self.ref, self.what = ref, what

    def __call__(self, x):
        return getattr(self.ref.get(), self.what)(x)


def _forward(model, images, what: str, jit_compile):
    clf = as_classifier(model)
    x = validation.to_images(images, clf.input_shape)
    clf.ensure_built(x)
    jit = devices.resolve_jit_compile(jit_compile)
    spec = tensors.image_spec(x)
    key = (what, view_key(clf), tuple(spec.shape.as_list()), jit)
    per_model = _FORWARD.setdefault(clf.model, {})
    if key not in per_model:
        per_model[key] = tf.function(
            _Forward(ClassifierRef(clf), what),
            input_signature=[spec],
            jit_compile=jit,
            autograph=False,
        )
    return per_model[key](x)


def logits_of(model, images, *, jit_compile="auto") -> tf.Tensor:
    """The logits (see `as_classifier`), inference mode, compiled once per model."""
    return _forward(model, images, "logits", jit_compile)


def probabilities_of(model, images, *, jit_compile="auto") -> tf.Tensor:
    """The probabilities (the model's own, or softmax of its logits), inference mode, compiled
    once."""
    return _forward(model, images, "probabilities", jit_compile)
