"""tfadv: adversarial robustness for Keras 3 / TensorFlow 2 image classifiers."""

__version__ = "0.1.0"
