"""tfadv: adversarial robustness for Keras 3 / TensorFlow 2 image classifiers.

`import tfadv` loads no TensorFlow: each subpackage (`tfadv.data`, `tfadv.models`, `tfadv.attacks`,
...) is imported on first use (PEP 562), after the oneDNN default below has been set.
"""

import importlib

from tfadv.runtime import onednn as _onednn

_onednn.enable_by_default()  # before anything loads TensorFlow; see tfadv.runtime.onednn

__version__ = "0.1.0"

SUBPACKAGES = (
    "runtime",
    "layers",
    "data",
    "models",
    "attacks",
    "defenses",
    "evaluation",
    "explain",
    "experiment",
)
"""Loaded on first attribute access; the CLIs (tfadv.train, tfadv.attack, tfadv.evaluate) are
not."""


def __getattr__(name):
    if name in SUBPACKAGES:
        return importlib.import_module(f"tfadv.{name}")  # also binds tfadv.<name>: called once
    raise AttributeError(f"module 'tfadv' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(SUBPACKAGES))
