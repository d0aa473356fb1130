"""Known start-up noise of TensorFlow and its libraries: lines that look like failures but say nothing is wrong.

Kept apart from `wbcseg.backend` so that the notebook runner can filter a kernel's output without
importing TensorFlow itself.
"""

from __future__ import annotations

import re

#: Start-up lines of TensorFlow, XLA and segmentation_models that say nothing is wrong.
NOISE = re.compile(
    "|".join(
        [
            r"All log messages before absl::InitializeLog\(\) is called",
            r"oneDNN custom operations are on",
            r"Could not find cuda drivers on your machine",
            r"failed call to cuInit",
            r"cpu_feature_guard\.cc",
            r"This TensorFlow binary is optimized to use available CPU instructions",
            r"To enable the following instructions: .* rebuild TensorFlow",
            r"Unable to register cu(DNN|FFT|BLAS) factory",
            r"computation placer already registered",
            r"TF-TRT Warning: Could not find TensorRT",
            r"oneDNN supports DT_INT32 only on platforms with AVX-512",
            # tf.data's graph, rewritten for op determinism, names an attribute its runtime ignores
            r"NodeDef mentions attribute use_unbounded_threadpool which is not in the op definition",
            r"Segmentation Models: using `tf\.keras` framework",
        ]
    )
)


def drop_noise(text: str) -> str:
    """`text` without its lines of known start-up noise."""
    return "".join(line for line in text.splitlines(keepends=True) if not NOISE.search(line))
