"""Classifiers: named architectures, the adapter that finds any classifier's logits, saving and
loading.

model = tfadv.models.build("baseline_cnn", (32, 32, 3), 10)
clf = tfadv.models.as_classifier(keras_or_saved_model)   # images -> logits / probabilities
tfadv.models.export_tflite(model, "model_int8.tflite", "int8", representative_images=x_train)
clf = tfadv.models.load("model_int8.tflite")             # the deployed artefact, no gradients
"""

from tfadv.models.adapter import (
    OUTPUTS,
    Classifier,
    as_classifier,
    expectation,
    is_stochastic,
    logits_of,
    probabilities_of,
)
from tfadv.models.architectures import (
    ACTIVATIONS,
    LOGITS_LAYER,
    NOISE_PLACEMENTS,
    REGISTRY,
    SOFTMAX_LAYER,
    ModelOptions,
    baseline_cnn,
    build,
    count_parameters,
    get_temperature,
    logits_model,
    register,
    set_temperature,
    softmax_layer,
    tiny_cnn,
    vgg_small,
)
from tfadv.models.budget import Budget, counted
from tfadv.models.callable import CallableModel, from_callable, require_gradients
from tfadv.models.saving import export_saved_model, load, save_keras, weights_checksum
from tfadv.models.straight_through import (
    StraightThrough,
    nondifferentiable_layers,
    straight_through,
)
from tfadv.models.tflite import (
    PRECISIONS,
    TFLiteModel,
    export_precisions,
    export_tflite,
    load_tflite,
)

__all__ = [
    "ACTIVATIONS",
    "Budget",
    "Classifier",
    "LOGITS_LAYER",
    "NOISE_PLACEMENTS",
    "OUTPUTS",
    "REGISTRY",
    "SOFTMAX_LAYER",
    "ModelOptions",
    "as_classifier",
    "baseline_cnn",
    "build",
    "count_parameters",
    "counted",
    "expectation",
    "export_saved_model",
    "get_temperature",
    "is_stochastic",
    "logits_of",
    "probabilities_of",
    "load",
    "logits_model",
    "nondifferentiable_layers",
    "register",
    "save_keras",
    "set_temperature",
    "softmax_layer",
    "StraightThrough",
    "straight_through",
    "tiny_cnn",
    "vgg_small",
    "weights_checksum",
    "CallableModel",
    "PRECISIONS",
    "TFLiteModel",
    "export_precisions",
    "export_tflite",
    "from_callable",
    "load_tflite",
    "require_gradients",
]
