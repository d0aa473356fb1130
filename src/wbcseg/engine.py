"""What runs the network's forward pass for the Segmenter, and at which precision.

- `tensorflow`: the Keras model as trained, in float32 or with TensorFlow's bfloat16 rewrite
  (`inference_precision`). It runs on a GPU where TensorFlow sees one.
- `openvino`: the same network converted to OpenVINO, run by OpenVINO's CPU kernels. In float32
  the two agree closely (tests/test_engine.py holds them to 1e-4); in bfloat16 each rounds in its own way, so the evaluation records
  which engine produced its masks. docs/performance.md has the speed of each, and the benchmark
  that measures it.

Converting (Keras -> SavedModel -> OpenVINO) takes seconds, so the converted model of a model
file is cached under $WBCSEG_CACHE_DIR (default ~/.cache/wbcseg), keyed by the SHA-256 of the file
and the OpenVINO version. Every experiment trains new models, so only the CACHED_MODELS most
recently used conversions are kept (each about the size of its model.keras). The conversion reads
the SavedModel with `openvino.Core.read_model`, not `openvino.convert_model`, whose Python layer
sends usage telemetry by default.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import weakref
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from wbcseg.backend import gpus, tf
from wbcseg.data import sha256_file
from wbcseg.params import ENGINES, PRECISIONS

#: OpenVINO's names of the precisions of `resolve_precision`.
OPENVINO_PRECISIONS = {"float32": "f32", "bfloat16": "bf16"}
CACHED_MODELS = 8
_CONVERTED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
#: The TensorFlow graph rewrite behind bfloat16 inference: oneDNN's automatic mixed precision runs
#: convolutions and the like in bfloat16 and keeps numerically sensitive ops (softmax) in float32.
_BF16_REWRITE = "auto_mixed_precision_onednn_bfloat16"


# --------------------------------------------------------------------------- precision


def native_bfloat16() -> bool:
    """Whether the model runs on a CPU with native bfloat16 arithmetic (AVX512_BF16 or AMX; read
    from /proc/cpuinfo, so Linux only) and no GPU is visible to TensorFlow."""
    if gpus():
        return False
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return re.search(r"\b(avx512_bf16|amx_bf16)\b", cpuinfo) is not None


def resolve_precision(precision: str) -> str:
    """'float32' or 'bfloat16'; 'auto' is bfloat16 where `native_bfloat16()`, else float32."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose {', '.join(PRECISIONS)}")
    if precision == "auto":
        return "bfloat16" if native_bfloat16() else "float32"
    return precision


@contextmanager
def inference_precision(precision: str):
    """Run the TensorFlow functions called in the block at `precision` ('float32' or 'bfloat16').

    The graph rewrite is a process-wide TensorFlow option, read when a function runs, so it is
    switched on for the block only: a model trained in the same process afterwards stays float32.
    """
    if resolve_precision(precision) == "float32":
        yield
        return
    before = tf.config.optimizer.get_experimental_options().get(_BF16_REWRITE, False)
    tf.config.optimizer.set_experimental_options({_BF16_REWRITE: True})
    try:
        yield
    finally:
        tf.config.optimizer.set_experimental_options({_BF16_REWRITE: before})


# --------------------------------------------------------------------------- engines


def resolve_engine(engine: str) -> str:
    """'tensorflow' or 'openvino'; 'auto' is tensorflow where TensorFlow sees a GPU, else openvino."""
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}; choose {', '.join(ENGINES)}")
    if engine == "auto":
        return "tensorflow" if gpus() else "openvino"
    return engine


class TensorFlowRunner:
    """The Keras model (or anything with its `predict_on_batch`) at `precision`, called on a batch."""

    def __init__(self, model, precision: str):
        self.model = model
        self.precision = precision

    def __call__(self, x: np.ndarray) -> np.ndarray:
        with inference_precision(self.precision):
            return np.asarray(self.model.predict_on_batch(x))


def cache_dir() -> Path:
    """Where converted models are kept: $WBCSEG_CACHE_DIR, else ~/.cache/wbcseg."""
    return Path(os.environ.get("WBCSEG_CACHE_DIR") or Path.home() / ".cache" / "wbcseg")


def _convert(model, folder: Path):
    """The OpenVINO model of a Keras model, through a SavedModel written in `folder`; any batch size."""
    import openvino as ov

    saved = folder / "saved_model"
    model.export(saved, format="tf_saved_model", verbose=False)
    converted = ov.Core().read_model(saved)
    converted.reshape([-1, *model.input_shape[1:]])
    return converted


def openvino_model(model, model_file: str | os.PathLike | None = None):
    """The OpenVINO model (`openvino.Model`) of a Keras model, converted once per model object.

    With `model_file` (the .keras file the model was loaded from), it comes from the cache, and a
    conversion is stored there: written in a temporary folder and renamed, so an interrupted one
    leaves nothing that a later run could read.
    """
    import openvino as ov

    if model in _CONVERTED:
        return _CONVERTED[model]
    if model_file is None:
        with tempfile.TemporaryDirectory(prefix="wbcseg-openvino-") as tmp:
            converted = _convert(model, Path(tmp))  # it holds its weights: the SavedModel may go
    else:
        version = re.sub(r"[^0-9A-Za-z.]+", "_", ov.get_version())
        entry = cache_dir() / "openvino" / f"{sha256_file(Path(model_file))}-{version}"
        if not (entry / "model.xml").is_file():
            entry.parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=".partial-", dir=entry.parent))
            try:
                (tmp / "ir").mkdir()
                ov.save_model(_convert(model, tmp), tmp / "ir" / "model.xml", compress_to_fp16=False)
                os.replace(tmp / "ir", entry)
            except OSError:
                if not (entry / "model.xml").is_file():  # not another process's finished conversion
                    raise
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        converted = ov.Core().read_model(entry / "model.xml")
        os.utime(entry)  # most recently used
        _prune(entry.parent)
    _CONVERTED[model] = converted
    return converted


def _prune(folder: Path, keep: int = CACHED_MODELS) -> None:
    """Delete all but the `keep` most recently used conversions in `folder`."""
    entries = sorted((p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")), key=lambda p: p.stat().st_mtime)
    for stale in entries[:-keep]:
        shutil.rmtree(stale, ignore_errors=True)


class OpenVinoRunner:
    """A Keras model compiled by OpenVINO for the CPU at `precision` ('float32' or 'bfloat16'),
    called like `predict_on_batch`: (N, S, S, 3) float32 in, the model's output as a new array out.

    It is compiled for each batch size it meets (a fraction of a second each), because a static
    shape ran faster than a dynamic batch dimension (docs/decisions.md).
    """

    def __init__(self, model, precision: str):
        self.model = openvino_model(model)
        self.config = {"INFERENCE_PRECISION_HINT": OPENVINO_PRECISIONS[precision], "PERFORMANCE_HINT": "LATENCY"}
        self.compiled = {}

    def __call__(self, x):
        import openvino as ov

        if len(x) not in self.compiled:
            static = self.model.clone()
            static.reshape([len(x), *x.shape[1:]])
            self.compiled[len(x)] = ov.Core().compile_model(static, "CPU", self.config)
        return self.compiled[len(x)](x, share_inputs=False, share_outputs=False)[0]


def make_runner(model, engine: str, precision: str):
    """The callable that runs `model` on a batch with `engine` at `precision` (both resolved here)."""
    engine, precision = resolve_engine(engine), resolve_precision(precision)
    return OpenVinoRunner(model, precision) if engine == "openvino" else TensorFlowRunner(model, precision)
