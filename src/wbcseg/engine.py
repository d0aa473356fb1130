"""Inference engines: what runs the network's forward pass for `predict.Segmenter`.

- `tensorflow`: the Keras model as trained, in float32 or with TensorFlow's bfloat16 rewrite
  (`model.inference_precision`). It runs on a GPU where TensorFlow sees one.
- `openvino`: the same network converted to OpenVINO, run by OpenVINO's CPU kernels. On 2 CPU
  cores with native bfloat16 its model call takes about 13 ms per 128-px image, TensorFlow's
  about 16 ms (benchmarks/predict_speed.py prints both, alone and end to end). In float32 the
  two agree to about 1e-7; in bfloat16 each rounds in its own way, so the evaluation records
  which engine produced its masks.

Converting (Keras -> SavedModel -> OpenVINO) takes about 10 s, so the converted model of a model
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
from pathlib import Path

from wbcseg.data import sha256_file
from wbcseg.params import ENGINES

#: OpenVINO's names of the precisions of `model.resolve_precision`.
OPENVINO_PRECISIONS = {"float32": "f32", "bfloat16": "bf16"}
CACHED_MODELS = 8
_CONVERTED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def resolve_engine(engine: str) -> str:
    """'tensorflow' or 'openvino'; 'auto' is tensorflow where TensorFlow sees a GPU, else openvino."""
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}; choose {', '.join(ENGINES)}")
    if engine == "auto":
        import tensorflow as tf

        return "tensorflow" if tf.config.list_physical_devices("GPU") else "openvino"
    return engine


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

    It is compiled for each batch size it meets (about 0.3 s each): in one measurement a static
    shape ran about 5 % faster than a dynamic batch dimension (13.6 against 14.4 ms per image).
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
