"""The OpenVINO engine: same network as TensorFlow, converted once and cached."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from wbcseg import engine, network
from wbcseg.engine import native_bfloat16
from wbcseg.segmenter import Segmenter


def test_engine_names():
    import tensorflow as tf

    assert engine.resolve_engine("auto") == ("tensorflow" if tf.config.list_physical_devices("GPU") else "openvino")
    assert [engine.resolve_engine(name) for name in ("tensorflow", "openvino")] == ["tensorflow", "openvino"]
    with pytest.raises(ValueError, match="unknown engine 'onnx'; choose auto, tensorflow, openvino"):
        engine.resolve_engine("onnx")


def test_precision_names():
    assert engine.resolve_precision("auto") == ("bfloat16" if engine.native_bfloat16() else "float32")
    assert [engine.resolve_precision(name) for name in ("float32", "bfloat16")] == ["float32", "bfloat16"]
    with pytest.raises(ValueError, match="unknown precision 'half'; choose auto, float32, bfloat16"):
        engine.resolve_precision("half")


@pytest.mark.skipif(not engine.native_bfloat16(), reason="this CPU has no native bfloat16")
def test_bfloat16_applies_inside_the_block_only():
    import tensorflow as tf

    unet = network.build_unet("inceptionv3", "tissue", 96)
    x = np.random.default_rng(0).uniform(0, 255, (2, 96, 96, 3)).astype(np.float32)
    before = unet.predict_on_batch(x)
    with engine.inference_precision("bfloat16"):
        mixed = unet.predict_on_batch(x)
    after = unet.predict_on_batch(x)
    # bfloat16 keeps 8 bits of mantissa: close to float32, but not equal.
    assert 0 < np.abs(mixed - before).max() < 0.05
    np.testing.assert_array_equal(after, before)  # the rewrite did not outlive the block
    assert not tf.config.optimizer.get_experimental_options().get("auto_mixed_precision_onednn_bfloat16", False)



def _cache_entries(cache: Path) -> list[Path]:
    return sorted((cache / "openvino").iterdir()) if (cache / "openvino").is_dir() else []


def _decided(probabilities: np.ndarray, margin: float) -> np.ndarray:
    """Pixels whose two most probable classes are more than `margin` apart: their label is stable."""
    top2 = np.sort(probabilities, axis=-1)[..., -2:]
    return top2[..., 1] - top2[..., 0] > margin


def test_openvino_gives_tensorflows_result_in_float32_and_caches_the_conversion(tissue_model_dir, cell_image, model_cache, monkeypatch):
    image = cell_image[0]
    reference = Segmenter.load(tissue_model_dir, tta=True).segment(image)
    converted = Segmenter.load(tissue_model_dir, tta=True, engine="openvino")
    assert converted.engine == "openvino"
    result = converted.segment(image)
    change = np.abs(result.probabilities - reference.probabilities).max()
    assert change < 1e-4
    decided = _decided(reference.probabilities, 2 * change)
    assert decided.mean() > 0.9
    np.testing.assert_array_equal(result.labels[decided], reference.labels[decided])

    entries = _cache_entries(model_cache)
    assert [(entry / "model.xml").is_file() and (entry / "model.bin").is_file() for entry in entries] == [True]
    # A second load (a new Keras model object) reads the cache instead of converting again.
    monkeypatch.setattr(engine, "_convert", lambda *args: pytest.fail("converted again"))
    again = Segmenter.load(tissue_model_dir, tta=True, engine="openvino").segment(image)
    np.testing.assert_array_equal(again.probabilities, result.probabilities)
    assert _cache_entries(model_cache) == entries


@pytest.mark.skipif(not native_bfloat16(), reason="this CPU has no native bfloat16")
def test_openvino_bfloat16_agrees_with_float32(tissue_model_dir, cell_image):
    image = cell_image[0]
    exact = Segmenter.load(tissue_model_dir).segment(image)
    fast = Segmenter.load(tissue_model_dir, precision="bfloat16", engine="openvino").segment(image)
    change = np.abs(fast.probabilities - exact.probabilities).max()
    assert 0 < change < 0.05
    decided = _decided(exact.probabilities, 2 * change)  # this barely trained model has many near ties
    assert decided.mean() > 0.5
    np.testing.assert_array_equal(fast.labels[decided], exact.labels[decided])


class _Unconvertible:
    """Stands in for a Keras model whose conversion is interrupted."""


def test_interrupted_conversion_leaves_nothing_in_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("WBCSEG_CACHE_DIR", str(tmp_path / "cache"))
    model_file = tmp_path / "model.keras"
    model_file.write_bytes(b"weights")

    def interrupted(model, folder):
        (folder / "saved_model").mkdir()
        (folder / "saved_model" / "half-written").write_bytes(b"x")
        raise KeyboardInterrupt

    monkeypatch.setattr(engine, "_convert", interrupted)
    with pytest.raises(KeyboardInterrupt):
        engine.openvino_model(_Unconvertible(), model_file)
    assert list((tmp_path / "cache" / "openvino").iterdir()) == []


def test_cache_dir_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("WBCSEG_CACHE_DIR", str(tmp_path))
    assert engine.cache_dir() == tmp_path
    monkeypatch.delenv("WBCSEG_CACHE_DIR")
    assert engine.cache_dir() == Path.home() / ".cache" / "wbcseg"


def test_cache_keeps_the_most_recently_used_conversions(tmp_path):
    for age, name in enumerate(["new", "old", "older"]):
        (tmp_path / name).mkdir()
        os.utime(tmp_path / name, (1e9 - age, 1e9 - age))
    (tmp_path / ".partial-x").mkdir()  # another process's conversion in progress
    engine._prune(tmp_path, keep=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".partial-x", "new", "old"]
