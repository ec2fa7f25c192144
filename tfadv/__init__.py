"""tfadv: adversarial robustness for Keras 3 / TensorFlow 2 image classifiers."""

from tfadv.runtime import onednn as _onednn

_onednn.enable_by_default()  # before anything loads TensorFlow; see tfadv.runtime.onednn

__version__ = "0.1.0"
