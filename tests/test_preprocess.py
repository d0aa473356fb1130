"""Model inputs zoomed in on small white cells (`model.min_cell_diameter`), in training and in
prediction, on drawn crops and a stand-in model."""

from __future__ import annotations

import numpy as np
import pytest

from wbcseg.batch import predict_files
from wbcseg.data import read_mask
from wbcseg.fields_scale import equivalent_diameter
from wbcseg.metrics import dice
from wbcseg.preprocess import model_input, resize_image, resize_labels, window_probabilities, zoom_window

from stand_ins import STAIN_CELL_DIAMETER, draw_field, stain_segmenter


def crop_with_cell(side: int, radius: int, centre: tuple[int, int] | None = None):
    """A side x side crop with one drawn white cell, and its class map (0 / 1 cytoplasm / 2 nucleus)."""
    y, x = centre or (side // 2, side // 2)
    image, truth = draw_field((side, side), [(y, x, radius)])
    rows, cols = np.indices((side, side))
    labels = np.where(truth > 0, np.where(np.hypot(rows - y, cols - x) < 0.45 * radius, 2, 1), 0).astype(np.uint8)
    return image, labels


def test_a_small_cell_is_zoomed_to_the_minimum_width_and_centred():
    image, labels = crop_with_cell(300, 50, centre=(140, 170))
    window = zoom_window(labels > 0, 128, 77)
    assert window is not None
    (x, y), side = window
    assert side == round(equivalent_diameter((labels > 0).sum()) * 128 / 77)
    assert abs(x + (side - 1) / 2 - 170) <= 1 and abs(y + (side - 1) / 2 - 140) <= 1
    small_image, small_labels = model_input(image, labels, 128, 77)
    assert small_image.shape == (128, 128, 3) and small_labels.shape == (128, 128)
    assert equivalent_diameter((small_labels > 0).sum()) == pytest.approx(77, abs=2)
    rows, cols = np.nonzero(small_labels)
    assert abs(rows.mean() - 63.5) < 1.5 and abs(cols.mean() - 63.5) < 1.5
    assert set(np.unique(small_labels)) == {0, 1, 2}


@pytest.mark.parametrize("minimum", [None, 40])
def test_a_wide_enough_cell_or_no_minimum_means_the_whole_crop(minimum):
    image, labels = crop_with_cell(120, 45)  # 96 px of 120: 102 px at 128
    assert zoom_window(labels > 0, 128, minimum) is None
    small_image, small_labels = model_input(image, labels, 128, minimum)
    np.testing.assert_array_equal(small_image, resize_image(image, 128))
    np.testing.assert_array_equal(small_labels, resize_labels(labels, 128))


def test_a_window_past_the_border_is_mirrored_in_and_pasted_back_clipped():
    image, labels = crop_with_cell(200, 20, centre=(15, 100))  # the window reaches above the crop
    (x, y), side = zoom_window(labels > 0, 64, 40)
    assert y < 0
    small_image, small_labels = model_input(image, labels, 64, 40)
    assert small_image.shape == (64, 64, 3)
    probs = np.zeros((64, 64, 3), np.float32)
    probs[..., 1] = 1.0  # the whole window says cytoplasm
    native = window_probabilities((200, 200), probs, ((x, y), side))
    inside = np.zeros((200, 200), bool)
    inside[max(y, 0) : y + side, max(x, 0) : x + side] = True
    assert (native[inside, 1] == 1).all() and (native[~inside, 0] == 1).all()
    np.testing.assert_allclose(native.sum(-1), 1)


def test_the_segmenter_zooms_in_on_a_small_cell_and_outlines_it_better():
    image, labels = crop_with_cell(240, 24)  # 48 px of 240: 6.4 px at the stand-in's 32
    plain = stain_segmenter(postprocess=True)
    zoomed = stain_segmenter(postprocess=True)
    zoomed.min_cell_diameter = STAIN_CELL_DIAMETER
    _, windows = zoomed.model_inputs([image], resize_image(image, 32)[None])
    assert windows[0] is not None
    plain_dice = dice(plain.segment(image).labels > 0, labels > 0)
    zoomed_result = zoomed.segment(image)
    zoomed_dice = dice(zoomed_result.labels > 0, labels > 0)
    assert zoomed_dice > 0.95 and zoomed_dice > plain_dice + 0.02
    assert dice(zoomed_result.labels == 2, labels == 2) > 0.9


def test_files_are_zoomed_as_the_api_zooms_them(tmp_path):
    from PIL import Image

    image, _ = crop_with_cell(240, 24)
    Image.fromarray(image).save(tmp_path / "small_cell.png")
    segmenter = stain_segmenter(postprocess=True)
    segmenter.min_cell_diameter = STAIN_CELL_DIAMETER
    counts = predict_files(segmenter, [tmp_path / "small_cell.png"], tmp_path / "out")
    assert counts.ok == 1
    mask = read_mask(tmp_path / "out" / "masks" / "small_cell.png")
    np.testing.assert_array_equal(mask, segmenter.segment(image).labels)
