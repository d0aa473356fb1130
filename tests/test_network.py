import json

import numpy as np
import pytest

from wbcseg import card as wc
from wbcseg import network as wm
from wbcseg.errors import ModelError
from wbcseg.segmenter import as_class_probabilities


@pytest.mark.parametrize("size", [96, 128])
@pytest.mark.parametrize("task, channels", [("binary", 1), ("tissue", 3)])
def test_unet_builds_at_size_and_classes(size, task, channels):
    unet = wm.build_unet("inceptionv3", task, size)
    assert unet.input_shape == (None, size, size, 3)
    assert unet.output_shape == (None, size, size, channels)


def test_probabilities_sum_to_one_for_both_tasks():
    for task in ("binary", "tissue"):
        probs = as_class_probabilities(wm.build_unet("inceptionv3", task, 96).predict_on_batch(np.zeros((1, 96, 96, 3))))
        assert probs.shape[-1] == (2 if task == "binary" else 3)
        np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-5)


@pytest.mark.parametrize("size", [100, 64])
def test_bad_size_or_backbone_is_refused(size):
    with pytest.raises(ValueError, match="divisible by 32"):
        wm.build_unet("inceptionv3", "tissue", size)
    with pytest.raises(ValueError, match="unknown backbone 'inception'"):
        wm.build_unet("inception", "tissue", 96)


def test_weights_file_path_is_loaded(tmp_path):
    """A user's own encoder weights file (e.g. ImageNet weights saved offline) is used as given."""
    import tensorflow as tf

    def first_conv(layers):
        return next(layer for layer in layers if isinstance(layer, tf.keras.layers.Conv2D)).get_weights()[0]

    encoder = wm.build_unet("inceptionv3", "binary", 96).layers[2]
    path = tmp_path / "encoder.weights.h5"
    encoder.save_weights(path)
    rebuilt = wm.build_unet("inceptionv3", "binary", 96, encoder_weights=str(path))
    np.testing.assert_array_equal(first_conv(rebuilt.layers[2].layers), first_conv(encoder.layers))
    fresh = wm.build_unet("inceptionv3", "binary", 96)
    assert not np.array_equal(first_conv(fresh.layers[2].layers), first_conv(encoder.layers))


def test_save_and_load_round_trip(tissue_model_dir):
    model, card = wm.load_model(tissue_model_dir)
    assert card["task"] == "tissue" and card["classes"] == ["background", "cytoplasm", "nucleus"]
    assert card["input_size"] == 96 and card["data"]["commit"].startswith("fa9c016")
    assert not list(tissue_model_dir.glob(".*tmp*"))  # temporary files renamed away


def test_incomplete_mismatched_or_damaged_model_dir_is_a_clear_error(tmp_path, tissue_model_dir):
    card = json.loads((tissue_model_dir / wc.CARD_FILE).read_text())
    (tmp_path / wc.CARD_FILE).write_text(json.dumps({**card, "input_size": 128}))
    with pytest.raises(ModelError, match="no model.keras"):
        wm.load_model(tmp_path)
    (tmp_path / wc.MODEL_FILE).symlink_to(tissue_model_dir / wc.MODEL_FILE)
    with pytest.raises(ModelError, match="but its card says 128x128x3"):
        wm.load_model(tmp_path)
    (tmp_path / wc.MODEL_FILE).unlink()
    (tmp_path / wc.CARD_FILE).write_text(json.dumps(card))
    (tmp_path / wc.MODEL_FILE).write_bytes((tissue_model_dir / wc.MODEL_FILE).read_bytes()[:100_000])
    with pytest.raises(ModelError, match="model.keras: damaged or truncated"):
        wm.load_model(tmp_path)


@pytest.mark.parametrize("loss", ["dice_ce", "focal_dice", "focal", "tversky"])
def test_losses_are_finite_and_lower_for_a_better_prediction(loss):
    import tensorflow as tf

    truth = np.eye(3, dtype=np.float32)[np.random.default_rng(0).integers(0, 3, (2, 8, 8))]
    good = 0.9 * truth + 0.1 / 3
    bad = np.full_like(truth, 1 / 3)
    fn = wm.make_loss(loss, "tissue")
    assert float(fn(tf.constant(truth), tf.constant(good))) < float(fn(tf.constant(truth), tf.constant(bad)))
