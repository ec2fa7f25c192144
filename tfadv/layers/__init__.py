"""tfadv's Keras layers, all registered serializable under the package name "tfadv"."""

from tfadv.layers.bounded_leaky_relu import BoundedLeakyReLU
from tfadv.layers.gaussian_noise import GaussianNoise
from tfadv.layers.random_sign_noise import RandomSignNoise
from tfadv.layers.temperature_softmax import TemperatureSoftmax

__all__ = ["BoundedLeakyReLU", "GaussianNoise", "RandomSignNoise", "TemperatureSoftmax"]
