"""oneDNN CPU kernels: on by default when tfadv is imported before TensorFlow (this module imports
no TensorFlow).

TensorFlow turns its oneDNN kernels on by itself only on x86 CPUs with AVX-512 neural-network
features; on the AVX2 machine tfadv is developed on they halve the time of a forward+backward
pass to the input (baseline_cnn, batch 256: 2.1-2.6 s vs 4.2-4.4 s for ten passes;
`tools/bench_attacks.py`). Importing tfadv therefore sets TF_ENABLE_ONEDNN_OPTS=1 on x86-64
unless the variable is already set. Opt out with TF_ENABLE_ONEDNN_OPTS=0. TensorFlow reads the
variable once, when it loads: importing tfadv after TensorFlow changes nothing.
oneDNN results differ from TensorFlow's own kernels by float round-off.
"""

import os
import platform
import sys

ENV_VAR = "TF_ENABLE_ONEDNN_OPTS"
X86_64 = ("x86_64", "amd64")


def enable_by_default() -> bool:
    """Sets TF_ENABLE_ONEDNN_OPTS=1 if unset, on x86-64, before TensorFlow loads; True if it set
    it."""
    if ENV_VAR in os.environ or "tensorflow" in sys.modules:
        return False
    if platform.machine().lower() not in X86_64:
        return False
    os.environ[ENV_VAR] = "1"
    return True


def is_enabled() -> bool:
    """Whether the loaded TensorFlow runs oneDNN kernels (False when that cannot be told)."""
    try:
        from tensorflow.python.util import _pywrap_util_port
    except ImportError:  # a TensorFlow without the (private) query
        return False
    return bool(_pywrap_util_port.IsMklEnabled())
