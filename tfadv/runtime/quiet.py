"""Silencing TensorFlow's native start-up chatter (imports no TensorFlow itself).

TF 2.21 writes lines such as "Could not find cuda drivers" and the absl
"InitializeLog" warning straight to file descriptor 2 while importing, whatever
TF_CPP_MIN_LOG_LEVEL says. The command-line tools import TensorFlow inside
`native_stderr_silenced()` so that their own messages (and one-line errors)
are all a user sees. Python exceptions raised inside still reach the terminal:
stderr is restored before they propagate.
"""

import contextlib
import os
import sys


def quiet_tensorflow_logs() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@contextlib.contextmanager
def native_stderr_silenced():
    """Points file descriptor 2 at /dev/null for the duration of the block."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no real stderr (some embedded interpreters)
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
