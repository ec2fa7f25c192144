"""BPDA: a view of a model whose non-differentiable layers pass the gradient straight through.

    layers = tfadv.models.nondifferentiable_layers(model, images)   # e.g. ["quantize"]
    view = tfadv.models.straight_through(model, images=images)      # same weights, same outputs
    x_adv = tfadv.attacks.apgd(view, images, labels, eps=8 / 255)   # gradients flow again

A rounding or quantizing input layer, a `stop_gradient`, a sign or step function gives an input
gradient that is zero or undefined, so gradient attacks see nothing (gradient masking). Backward
pass differentiable approximation (Athalye et al. 2018) replaces the backward pass of such a layer
by the identity and keeps its forward pass: the view computes exactly the model's outputs, while
an attacker follows the gradient of the rest of the network. Only layers whose output has the
shape of their input can pass a gradient through unchanged.
"""

import keras
import numpy as np
import tensorflow as tf

ZERO_SHARE = 0.5  # flagged: the layer's gradient is exactly zero on more than this share of images


@keras.saving.register_keras_serializable(package="tfadv")
class StraightThrough(keras.layers.Layer):
    """Runs `layer` forward and passes the gradient back unchanged (identity backward).

    Forward: exactly `layer(x)`. Backward: d output / d x = identity. `layer` must map inputs to
    outputs of the same shape.
    """

    def __init__(self, layer, **kwargs):
        super().__init__(**kwargs)
        self.layer = layer

    def call(self, inputs, training=None, mask=None):  # Keras passes `mask` when re-running a graph
        extra = {} if mask is None else {"mask": mask}
        outputs = self.layer(inputs, training=training, **extra)
        return keras.ops.stop_gradient(outputs) + (inputs - keras.ops.stop_gradient(inputs))

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "layer": keras.saving.serialize_keras_object(self.layer)}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        return cls(keras.saving.deserialize_keras_object(config.pop("layer")), **config)


def _check_model(model, function: str):
    if isinstance(model, keras.Model) and (
        isinstance(model, keras.Sequential) or hasattr(model, "_run_through_graph")  # Functional
    ):
        return
    raise ValueError(
        f"{function} needs a Functional or Sequential Keras model. "
        f"Received: model of type {type(model).__name__}"
    )


def _same_shape(layer) -> bool:
    try:
        return tuple(layer.input.shape) == tuple(layer.output.shape)
    except (AttributeError, ValueError):  # called more than once, or several inputs
        return False


def _layer_inputs(model, images):
    """(layer, its input on `images`) for every same-shape layer, in order."""
    layers = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
    x = tf.convert_to_tensor(np.asarray(images, np.float32))
    if isinstance(model, keras.Sequential):
        for layer in layers:
            if tuple(layer.input.shape[1:]) == tuple(layer.output.shape[1:]):
                yield layer, x
            x = layer(x, training=False)
        return
    for layer in layers:
        if _same_shape(layer):
            yield layer, keras.Model(model.inputs, layer.input)(x, training=False)


def _blocks_gradient(layer, inputs) -> bool:
    """The layer's gradient on `inputs` is undefined, not finite, or all zero for most images."""
    with tf.GradientTape() as tape:
        tape.watch(inputs)
        outputs = layer(inputs, training=False)
    # a random direction: the all-ones one sees no gradient through a softmax (its outputs sum to 1)
    direction = tf.random.stateless_normal(tf.shape(outputs), [0, 0], dtype=outputs.dtype)
    grad = tape.gradient(outputs, inputs, output_gradients=direction)
    if grad is None:
        return True
    grad = keras.ops.convert_to_numpy(grad).reshape(len(inputs), -1)
    if not np.all(np.isfinite(grad)):
        return True
    return float(np.mean(np.all(grad == 0, axis=1))) > ZERO_SHARE


def nondifferentiable_layers(model, images) -> list:
    """Names of the layers of a Functional or Sequential `model` whose output has their input's
    shape and whose gradient on `images` (float32 (N, H, W, C) in [0, 1]) is undefined, not
    finite, or exactly zero for more than half the images."""
    _check_model(model, "nondifferentiable_layers")
    if len(images) == 0:
        raise ValueError("Expected at least one image to probe the layers with. Received: 0 images")
    found = _layer_inputs(model, images)
    return [layer.name for layer, inputs in found if _blocks_gradient(layer, inputs)]


def straight_through(model, layers=None, images=None):
    """`model` with an identity backward pass through `layers` (BPDA), sharing its weights.

    Args:
        model: a Functional or Sequential Keras model.
        layers: names of layers to pass straight through (each must keep its input's shape);
            None: the layers `nondifferentiable_layers(model, images)` finds.
        images: float32 (N, H, W, C) in [0, 1] to probe the layers with (when layers is None).

    Returns:
        A new Keras model computing exactly `model`'s outputs, named "<name>_bpda".

    Raises:
        ValueError: another kind of model, an unknown or shape-changing layer, no images to
            probe, or no layer to pass through.
    """
    _check_model(model, "straight_through")
    if layers is None:
        if images is None:
            raise ValueError(
                "straight_through needs images to find the layers (or layers=[names]). "
                "Received: images=None"
            )
        layers = nondifferentiable_layers(model, images)
        if not layers:
            raise ValueError(
                "Found no layer whose gradient is zero, undefined or non-finite on these images. "
                "Received: layers=None"
            )
    if isinstance(layers, str):
        layers = [layers]
    names = {layer.name: layer for layer in model.layers}
    for name in layers:
        if name not in names:
            raise ValueError(
                f"Expected names of layers of {model.name!r}. Received: layers={list(layers)!r}"
            )
        if not _same_shape(names[name]):
            raise ValueError(
                f"Layer {name!r} changes the shape of its input, so no gradient can pass it "
                f"unchanged. Received: layers={list(layers)!r}"
            )
    chosen = set(layers)

    def clone(layer):
        return StraightThrough(layer, name=f"{layer.name}_bpda") if layer.name in chosen else layer

    view = keras.models.clone_model(model, clone_function=clone)
    view.name = f"{model.name}_bpda"
    return view
