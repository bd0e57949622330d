"""Process start-up shared by the command-line programs and Ray Tune's trial workers."""

import os
import sys


def import_tensorflow_quietly() -> None:
    """Imports TensorFlow and probes its devices with stderr closed, so that its C++ start-up
    messages (no CUDA driver on a CPU machine, absl's pre-init notice) do not bury ours."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        import tensorflow as tf

        tf.config.list_physical_devices()
    finally:
        os.dup2(saved, 2)
        os.close(devnull)
        os.close(saved)
