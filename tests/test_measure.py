"""Measurements and overlays of a segmented image, and the mask values written to PNG."""

from __future__ import annotations

import numpy as np
import pytest

from wbcseg.classes import mask_to_png_values
from wbcseg.measure import measure, measure_labels, measurement_columns
from wbcseg.overlay import CELL_EDGE_COLOUR, OVERLAY_ALPHA, OVERLAY_COLOURS, legend_strip, overlay, overlay_cells, overlay_with_legend


def test_mask_to_png_values():
    labels = np.array([[0, 1, 2]], np.uint8)
    np.testing.assert_array_equal(mask_to_png_values(labels, "tissue"), [[0, 128, 255]])
    np.testing.assert_array_equal(mask_to_png_values(labels[:, :2], "binary"), [[0, 255]])
    assert mask_to_png_values(labels, "tissue").dtype == np.uint8


def hand_made_labels() -> np.ndarray:
    """20x30: cytoplasm rows 2-9 x cols 4-13 with a 3x4 nucleus inside, and a 2x2 stray blob."""
    labels = np.zeros((20, 30), np.uint8)
    labels[2:10, 4:14] = 1
    labels[4:7, 6:10] = 2
    labels[15:17, 25:27] = 1
    return labels


def test_measure_on_a_hand_made_label_map():
    labels = hand_made_labels()
    probabilities = np.eye(3, dtype=np.float32)[labels] * 0.8 + 0.2 / 3
    m = measure(labels, probabilities, "tissue", pixel_size=0.5)
    assert list(m) == measurement_columns(0.5)
    assert (m["wbc_area_px"], m["nucleus_area_px"], m["cytoplasm_area_px"]) == (84, 12, 72)
    assert (m["wbc_area_um2"], m["nucleus_area_um2"], m["cytoplasm_area_um2"]) == (21.0, 3.0, 18.0)
    assert m["nc_ratio"] == pytest.approx(12 / 72)
    rows, cols = np.nonzero(labels)
    assert (m["centroid_x"], m["centroid_y"]) == pytest.approx((cols.mean(), rows.mean()))
    assert (m["bbox_x"], m["bbox_y"], m["bbox_width"], m["bbox_height"]) == (4, 2, 23, 15)
    assert m["n_components"] == 2
    assert m["mean_confidence"] == pytest.approx(0.8 + 0.2 / 3)


def test_labels_cut_from_a_larger_image_measure_where_they_lie():
    labels = hand_made_labels()
    padded = np.pad(labels, ((7, 0), (5, 0)))
    whole = measure(padded, np.full((*padded.shape, 3), 1 / 3, np.float32), "tissue")
    shifted = measure_labels(labels, "tissue", offset=(5, 7))
    assert shifted == {key: value for key, value in whole.items() if key != "mean_confidence"} and "mean_confidence" not in shifted


def test_measure_binary_and_empty():
    labels = (hand_made_labels() > 0).astype(np.uint8)
    m = measure(labels, np.eye(2, dtype=np.float32)[labels], "binary")
    assert "wbc_area_um2" not in m
    assert m["wbc_area_px"] == 84 and m["nucleus_area_px"] is None and m["nc_ratio"] is None
    empty = measure(np.zeros((5, 5), np.uint8), np.full((5, 5, 3), 1 / 3, np.float32), "tissue")
    assert empty["wbc_area_px"] == 0 and empty["n_components"] == 0
    assert empty["centroid_x"] is None and empty["bbox_width"] is None and empty["nc_ratio"] is None


def test_overlay_tints_and_outlines_the_cell_only():
    image = np.full((9, 9, 3), 200, np.uint8)
    labels = np.zeros((9, 9), np.uint8)
    labels[1:8, 1:8] = 1
    labels[4, 4] = 2
    out = overlay(image, labels, "tissue")
    colours = np.asarray(OVERLAY_COLOURS["tissue"])
    assert (out[labels == 0] == 200).all()
    np.testing.assert_array_equal(out[1, 1], colours[1])  # cytoplasm outline
    np.testing.assert_array_equal(out[4, 4], colours[2])  # the nucleus is all outline
    np.testing.assert_array_equal(out[2, 2], np.floor(200 * (1 - OVERLAY_ALPHA) + colours[1] * OVERLAY_ALPHA + 0.5))


@pytest.mark.parametrize("width, task, rows", [(300, "tissue", 1), (120, "tissue", 2), (40, "binary", 1)])
def test_the_legend_sits_below_the_image_with_a_swatch_per_class(width, task, rows):
    image = np.full((50, width, 3), 200, np.uint8)
    labels = np.zeros((50, width), np.uint8)
    out = overlay_with_legend(image, labels, task)
    strip = legend_strip(width, task)
    assert out.shape == (50 + strip.shape[0], width, 3)
    np.testing.assert_array_equal(out[:50], overlay(image, labels, task))  # the image is not covered
    for colour in OVERLAY_COLOURS[task][1:]:
        assert (strip == colour).all(axis=-1).sum() >= 16, colour  # a filled swatch, at least 4x4
    swatch_rows = np.flatnonzero((strip == OVERLAY_COLOURS[task][1]).all(axis=-1).any(axis=1))
    assert (strip.shape[0] > 2 * len(swatch_rows)) == (rows == 2)  # narrow images stack the classes
    assert (strip[:, -1] == 255).all()  # nothing drawn past the edge


def test_a_fields_overlay_outlines_touching_cells_apart():
    image = np.full((40, 60, 3), 200, np.uint8)
    instances = np.zeros((40, 60), np.int32)
    instances[10:30, 5:30], instances[10:30, 30:55] = 1, 2  # two cells of one class side by side
    classes = (instances > 0).astype(np.uint8)
    out = overlay_cells(image, instances, classes)
    plain = overlay(image, classes, "tissue")
    assert (out[20, 29] == CELL_EDGE_COLOUR).all() and (out[20, 30] == CELL_EDGE_COLOUR).all()  # their shared edge
    assert (plain[20, 29] != CELL_EDGE_COLOUR).any()  # which the class overlay alone cannot show
    assert (out[20, 15] == plain[20, 15]).all() and (out[35, 5:55] == 200).all()
