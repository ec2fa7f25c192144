"""tfadv turns TensorFlow's oneDNN kernels on by default on x86-64, only when that can take
effect."""

import os
import platform
import subprocess
import sys

import pytest

from tfadv.runtime import onednn

X86 = platform.machine().lower() in onednn.X86_64


def _python(code, **env_overrides):
    env = {k: v for k, v in os.environ.items() if k != onednn.ENV_VAR}
    env.update(env_overrides)
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


REPORT = (
    "import os, tfadv; from tfadv.runtime import onednn; "
    "print(os.environ.get('TF_ENABLE_ONEDNN_OPTS'), onednn.is_enabled())"
)


@pytest.mark.skipif(not X86, reason="tfadv sets the oneDNN default on x86-64 only")
def test_importing_tfadv_first_turns_onednn_on():
    assert _python(REPORT) == ["1", "True"]


def test_an_explicit_user_setting_is_kept():
    assert _python(REPORT, TF_ENABLE_ONEDNN_OPTS="0") == ["0", "False"]


def test_nothing_is_set_once_tensorflow_is_loaded():
    code = "import tensorflow, os, tfadv; print(os.environ.get('TF_ENABLE_ONEDNN_OPTS'))"
    assert _python(code) == ["None"]
