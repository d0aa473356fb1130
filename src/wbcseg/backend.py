"""TensorFlow and segmentation_models, imported once, with the settings they need and without start-up noise.

Every module that runs a network takes `tf` and `sm` from here: segmentation_models needs
SM_FRAMEWORK=tf.keras before it is imported, and TensorFlow's native start-up lines (oneDNN notes,
CPU instruction sets, and on a machine without a GPU "failed call to cuInit: ... CUDA error") look
like failures to a person watching `make repro`. They are written by C++ straight to file
descriptor 2, before TensorFlow's own log settings apply, so the import and the first device query
run with that descriptor captured; the captured lines that are known start-up noise are dropped and
every other line (a real error) is passed on to stderr.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import tempfile

from wbcseg.noise import drop_noise

os.environ.setdefault("SM_FRAMEWORK", "tf.keras")
# The models are tf.keras models. bioimageio.core (the `export` extra) sets KERAS_BACKEND to its own
# default, "torch", for the whole process and every child it starts unless it is already set.
KERAS_BACKEND = "tensorflow"
os.environ["KERAS_BACKEND"] = KERAS_BACKEND
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

@contextlib.contextmanager
def quiet_startup():
    """Capture stdout and the native stderr descriptor for the block; pass on all but the noise."""
    sys.stderr.flush()
    saved = os.dup(2)
    printed = io.StringIO()
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            with contextlib.redirect_stdout(printed):
                yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            sys.stderr.write(drop_noise(captured.read().decode("utf-8", "replace")))
            sys.stdout.write(drop_noise(printed.getvalue()))


with quiet_startup():
    import tensorflow as tf

    tf.config.list_physical_devices()  # the CUDA probe prints its lines here, once
    import segmentation_models as sm

tf.get_logger().setLevel("ERROR")  # e.g. "Assets written to ..." on every SavedModel export

__all__ = ["tf", "sm", "gpus"]


def gpus() -> list:
    """The GPUs TensorFlow sees."""
    return tf.config.list_physical_devices("GPU")
