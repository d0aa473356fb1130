"""The classical baseline: sensible on a generated cell, robust on blank input, runs on real images."""

from __future__ import annotations

import numpy as np
import pytest

from wbcseg import baseline, metrics, scoring
from wbcseg.data import list_samples
from wbcseg.split import make_split


def dice(pred, truth):
    return metrics.segmentation_metrics(pred, truth)["dice"]


def test_tissue_labels_of_a_generated_cell(cell_image):
    image, truth = cell_image
    labels = baseline.segment_classical(image, "tissue")
    assert labels.shape == truth.shape and labels.dtype == np.uint8
    assert set(np.unique(labels)) <= {0, 1, 2}
    assert dice(labels > 0, truth > 0) > 0.95
    assert dice(labels == 2, truth == 2) > 0.95
    assert dice(labels == 1, truth == 1) > 0.9


def test_binary_labels_are_the_whole_cell(cell_image):
    image, truth = cell_image
    labels = baseline.segment_classical(image, "binary")
    assert set(np.unique(labels)) == {0, 1}
    assert dice(labels == 1, truth > 0) > 0.95


def test_keeps_the_central_cell_only(cell_image):
    image, truth = cell_image
    image = image.copy()
    image[2:14, 2:14] = (90, 40, 140)  # a stained blob in the corner, like a neighbouring cell
    labels = baseline.segment_classical(image, "tissue")
    assert not labels[2:14, 2:14].any()
    assert dice(labels > 0, truth > 0) > 0.95


def test_pale_cell_among_red_cells_is_found_by_blueness():
    # Dataset 2's look: a pale lilac cytoplasm, and red cells touching it that are darker in green.
    yy, xx = np.mgrid[:150, :150]
    r = np.hypot(yy - 75, xx - 75)
    truth = np.where(r < 20, 2, np.where(r < 40, 1, 0))
    red = np.zeros((150, 150), bool)
    for cy, cx in [(75, 132), (20, 40), (130, 30), (75, 18)]:
        red |= np.hypot(yy - cy, xx - cx) < 22
    regions = np.where(red & (truth == 0), 3, truth)
    colours = np.array([[250, 228, 205], [200, 190, 222], [90, 40, 140], [205, 150, 170]])
    noise = np.random.default_rng(0).integers(-8, 9, (150, 150, 3))
    image = np.clip(colours[regions] + noise, 0, 255).astype(np.uint8)
    darkness_only = baseline.cell_candidate(baseline.stain_channels(image)["darkness"])
    assert dice(darkness_only, truth > 0) < 0.9  # the case the second candidate is for
    assert dice(baseline.segment_cell(image), truth > 0) > 0.97


def test_blank_image_gives_empty_labels():
    blank = np.full((50, 60, 3), 230, np.uint8)
    labels = baseline.segment_classical(blank, "tissue")
    assert labels.shape == (50, 60) and not labels.any()


def test_bad_input_is_rejected(cell_image):
    with pytest.raises(ValueError, match="unknown task"):
        baseline.segment_classical(cell_image[0], "nuclei")
    with pytest.raises(ValueError, match="RGB"):
        baseline.segment_classical(cell_image[0][..., 0], "tissue")


def test_cell_likeness_prefers_a_lone_round_cell():
    yy, xx = np.mgrid[:100, :100]
    disc = np.hypot(yy - 50, xx - 50) < 25
    merged = disc | (yy > 80)  # the same cell run into a band along the border
    assert baseline.cell_likeness(disc) > baseline.cell_likeness(merged)
    assert baseline.cell_likeness(np.zeros((5, 5), bool)) == -np.inf


def test_evaluate_classical_on_real_train_images(mirror):
    train = make_split(list_samples(mirror), 0.2, 0.2, 42)
    rows = train[train["split"] == "train"].groupby("dataset").head(3)
    table = scoring.summarize(baseline.evaluate_classical(rows)).set_index(["dataset", "target"])
    assert table.loc[("all", "cell"), "n_images"] == 6
    # A baseline, not a model: well above chance, far from perfect.
    assert table.loc[("d1", "cell"), "dice_mean"] > 0.85
    assert table.loc[("all", "nucleus"), "dice_mean"] > 0.8
