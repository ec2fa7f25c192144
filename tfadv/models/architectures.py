"""Named image-classifier architectures, built by name from a registry.

Every model takes float32 images in [0, 1], ends in a `TemperatureSoftmax` layer
named "softmax" whose input is the Dense layer named "logits".
`logits_model(model)` returns the same network (shared weights) up to the logits.
"""

import dataclasses

import keras

from tfadv.layers import BoundedLeakyReLU, GaussianNoise, TemperatureSoftmax

ACTIVATIONS = ("relu", "bounded_leaky_relu")
NOISE_PLACEMENTS = ("none", "input", "after_first_conv", "before_classifier")
SOFTMAX_LAYER = "softmax"
LOGITS_LAYER = "logits"


@dataclasses.dataclass(frozen=True)
class ModelOptions:
    """Options every architecture accepts.

    Attributes:
        activation: "relu" or "bounded_leaky_relu".
        noise: where a GaussianNoise layer goes: one of NOISE_PLACEMENTS.
        noise_stddev: its stddev (input units; pixel scale when at the input).
        noise_at_inference: keep that noise on at inference.
        temperature: initial softmax temperature T > 0.
        seed: seed for the noise layer.
        synchronized_batchnorm: BatchNormalization over the global batch of all replicas of a
            tf.distribute strategy (the same statistics on every worker); per replica otherwise.
    """

    activation: str = "relu"
    noise: str = "none"
    noise_stddev: float = 0.0
    noise_at_inference: bool = False
    temperature: float = 1.0
    seed: int | None = None
    synchronized_batchnorm: bool = False

    def __post_init__(self):
        if self.activation not in ACTIVATIONS:
            raise ValueError(
                f"Unknown activation {self.activation!r}; expected one of {ACTIVATIONS}"
            )
        if self.noise not in NOISE_PLACEMENTS:
            raise ValueError(
                f"Unknown noise placement {self.noise!r}; expected one of {NOISE_PLACEMENTS}"
            )
        if self.noise_stddev < 0:
            raise ValueError(
                f"Expected noise_stddev >= 0. Received: noise_stddev={self.noise_stddev!r}"
            )
        if self.noise != "none" and self.noise_stddev == 0:
            raise ValueError(
                f"noise={self.noise!r} needs noise_stddev > 0. Received: noise_stddev=0"
            )
        if self.temperature <= 0:
            raise ValueError(
                f"Expected temperature > 0. Received: temperature={self.temperature!r}"
            )


class _Builder:
    """Small helper that threads options through an architecture definition."""

    def __init__(self, options: ModelOptions):
        self.options = options

    def activation(self, name):
        if self.options.activation == "relu":
            return keras.layers.ReLU(name=name)
        return BoundedLeakyReLU(name=name)

    def noise(self, where, name="gaussian_noise"):
        if self.options.noise != where:
            return None
        return GaussianNoise(
            self.options.noise_stddev,
            seed=self.options.seed,
            active_at_inference=self.options.noise_at_inference,
            name=name,
        )

    def head(self, x, num_classes):
        noise = self.noise("before_classifier")
        if noise is not None:
            x = noise(x)
        logits = keras.layers.Dense(num_classes, name=LOGITS_LAYER)(x)
        return TemperatureSoftmax(self.options.temperature, name=SOFTMAX_LAYER)(logits)


def _conv_blocks(b, x, filters_per_block, convs_per_block, dropout, batchnorm):
    first = True
    synchronized = b.options.synchronized_batchnorm
    for block, filters in enumerate(filters_per_block, start=1):
        for conv in range(1, convs_per_block + 1):
            x = keras.layers.Conv2D(filters, 3, padding="same", name=f"block{block}_conv{conv}")(x)
            if batchnorm:
                x = keras.layers.BatchNormalization(
                    momentum=0.9, synchronized=synchronized, name=f"block{block}_bn{conv}"
                )(x)
            x = b.activation(f"block{block}_act{conv}")(x)
            if first:
                noise = b.noise("after_first_conv")
                if noise is not None:
                    x = noise(x)
                first = False
        x = keras.layers.MaxPooling2D(2, name=f"block{block}_pool")(x)
        if dropout:
            x = keras.layers.Dropout(dropout, name=f"block{block}_dropout")(x)
    return x


def _inputs(b, input_shape):
    inputs = keras.Input(shape=input_shape, name="images")
    noise = b.noise("input", name="input_noise")
    return inputs, (noise(inputs) if noise is not None else inputs)


def baseline_cnn(input_shape=(32, 32, 3), num_classes=10, options=ModelOptions()):
    """The seeds' CNN: 3 x ([Conv3x3 + BN] x 2, MaxPool, Dropout), Flatten, Dense.

    Filters 32, 64, 64: 150,954 parameters on 32x32x3 input and 10 classes
    (plus the non-trainable temperature).
    """
    b = _Builder(options)
    inputs, x = _inputs(b, input_shape)
    x = _conv_blocks(b, x, (32, 64, 64), 2, dropout=0.25, batchnorm=True)
    x = keras.layers.Flatten(name="flatten")(x)
    return keras.Model(inputs, b.head(x, num_classes), name="baseline_cnn")


def vgg_small(input_shape=(32, 32, 3), num_classes=10, options=ModelOptions()):
    """VGG-style: 3 blocks of two 3x3 convs (32, 64, 128) + max-pool, Dense(512), Dense."""
    b = _Builder(options)
    inputs, x = _inputs(b, input_shape)
    x = _conv_blocks(b, x, (32, 64, 128), 2, dropout=0.0, batchnorm=False)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(512, name="fc1")(x)
    x = b.activation("fc1_act")(x)
    x = keras.layers.Dropout(0.5, name="fc1_dropout")(x)
    return keras.Model(inputs, b.head(x, num_classes), name="vgg_small")


def tiny_cnn(input_shape=(32, 32, 3), num_classes=10, options=ModelOptions()):
    """A two-conv network for tests and quick experiments (seconds per epoch)."""
    b = _Builder(options)
    inputs, x = _inputs(b, input_shape)
    x = _conv_blocks(b, x, (16, 32), 1, dropout=0.0, batchnorm=True)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    return keras.Model(inputs, b.head(x, num_classes), name="tiny_cnn")


REGISTRY = {
    "baseline_cnn": baseline_cnn,
    "vgg_small": vgg_small,
    "tiny_cnn": tiny_cnn,
}


def register(name):
    """Decorator adding an architecture `fn(input_shape, num_classes, options)` to the registry."""

    def wrap(fn):
        if name in REGISTRY:
            raise ValueError(f"Model {name!r} is already registered")
        REGISTRY[name] = fn
        return fn

    return wrap


def build(name, input_shape=(32, 32, 3), num_classes=10, options=None, **option_kwargs):
    """Builds the registered architecture `name`.

    Options come either as a `ModelOptions` or as its fields by keyword.
    """
    if name not in REGISTRY:
        raise ValueError(f"Unknown model {name!r}; expected one of {sorted(REGISTRY)}")
    if options is None:
        options = ModelOptions(**option_kwargs)
    elif option_kwargs:
        options = dataclasses.replace(options, **option_kwargs)
    return REGISTRY[name](tuple(input_shape), int(num_classes), options)


def softmax_layer(model) -> TemperatureSoftmax:
    """The model's final TemperatureSoftmax layer."""
    layer = model.layers[-1]
    if not isinstance(layer, TemperatureSoftmax):
        raise ValueError(
            f"Expected a model ending in TemperatureSoftmax; {model.name!r} ends in "
            f"{type(layer).__name__}"
        )
    return layer


def set_temperature(model, temperature):
    """Changes the deploy temperature of a built model in place."""
    softmax_layer(model).set_temperature(temperature)


def get_temperature(model) -> float:
    return softmax_layer(model).current_temperature()


def logits_model(model):
    """The same network, sharing weights, up to the input of its TemperatureSoftmax."""
    softmax = softmax_layer(model)
    return keras.Model(model.input, softmax.input, name=f"{model.name}_logits")


def count_parameters(model, include_temperature=False) -> int:
    """Parameters of the network; the softmax temperature is left out unless asked."""
    total = model.count_params()
    if not include_temperature:
        total -= 1
    return total
