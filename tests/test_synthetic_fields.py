"""Synthetic fields and their scoring, on generated crops."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from wbcseg.data import read_image, read_mask
from wbcseg.metrics import dice
from wbcseg.synthetic_fields import (
    Field,
    FieldScores,
    background_tone,
    make_field,
    match_cells,
    quilt_background,
)

WBC_BLUE = (20, 20, 230)


def crop(radius: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A 120x120 crop: a blue white cell (purple nucleus) at the centre, red discs around it on a
    pale background, with its class map."""
    rng = np.random.default_rng(seed)
    rows, cols = np.indices((120, 120))
    image = np.empty((120, 120, 3), np.uint8)
    image[:] = (235, 225, 205)
    for y, x in rng.integers(0, 120, (12, 2)):
        image[np.hypot(rows - y, cols - x) < 9] = (210, 120, 130)
    r = np.hypot(rows - 60, cols - 60)
    labels = np.where(r < radius * 0.5, 2, np.where(r < radius, 1, 0)).astype(np.uint8)
    image[labels == 1] = WBC_BLUE
    image[labels == 2] = (80, 30, 110)
    return image, labels


def test_background_is_quilted_from_outside_the_white_cells():
    crops = [crop(30, seed) for seed in range(4)]
    background = quilt_background(crops, (150, 200), 1.0, np.random.default_rng(0))
    assert background.shape == (150, 200, 3) and background.dtype == np.uint8
    blue = (background[..., 2] > 150) & (background[..., 0] < 100)
    assert not blue.any()
    reddish = (background[..., 0] > 190) & (background[..., 1] < 150)
    assert 0.05 < reddish.mean() < 0.9  # red cells came along


@pytest.mark.parametrize("scale", [0.5, 1.0, 2.0])
def test_a_field_holds_its_cells_at_scale_with_their_truth(scale):
    crops = [crop(r, seed) for seed, r in enumerate((24, 30, 34))]
    field = make_field(crops, crops, (300, 400), scale, np.random.default_rng(1))
    assert field.image.shape == (300, 400, 3) and field.instances.dtype == np.int32
    assert len(field.sources) == field.instances.max() >= 1
    for cell_id, source in enumerate(field.sources, start=1):
        true_area = (crops[source][1] > 0).sum() * scale**2
        assert (field.instances == cell_id).sum() == pytest.approx(true_area, rel=0.1)
        nucleus = (field.instances == cell_id) & (field.classes == 2)
        assert nucleus.sum() == pytest.approx((crops[source][1] == 2).sum() * scale**2, rel=0.15)
    cell = field.instances > 0
    assert np.array_equal(cell, field.classes > 0)
    assert (field.image[field.classes == 1][:, 2] > 150).mean() > 0.9  # cell pixels are the crops'


def test_cells_of_another_tone_are_brought_to_the_fields_tone():
    image, labels = crop(24, 0)
    crops = [(image, labels), ((image * 0.7).astype(np.uint8), labels)]
    field = make_field(crops, crops, (300, 400), 1.0, np.random.default_rng(1))
    assert len(field.sources) == 2
    for cell_id in (1, 2):
        cell = field.instances == cell_id
        ring = cv2.dilate(cell.astype(np.uint8), np.ones((9, 9), np.uint8)).astype(bool) & ~cell
        assert np.abs(np.median(field.image[ring], axis=0) - field.tone).max() <= 12


def test_a_field_depends_on_its_seed_alone(mirror):
    # How a crop's surroundings are clustered (to keep pieces of other white cells out of the
    # background) must not depend on the calls before: OpenCV's k-means++ drew from OpenCV's
    # global generator, so a field could differ with the fields built before it in the process.
    crops = [(read_image(mirror / "Dataset 1" / f"{n:03d}.bmp"), read_mask(mirror / "Dataset 1" / f"{n:03d}.png")) for n in (85, 198, 269)]
    first, *again = (make_field(crops[:1], crops, (200, 300), 1.0, np.random.default_rng(3)) for _ in range(6))
    assert all(np.array_equal(first.image, field.image) for field in again)


def test_a_cell_without_room_is_left_out():
    crops = [crop(34, 0)] * 5
    field = make_field(crops, crops, (80, 200), 1.0, np.random.default_rng(0))
    assert len(field.sources) <= 2


def test_matching_needs_iou_above_one_half():
    truth = np.zeros((10, 20), np.int32)
    truth[:, :10], truth[:, 10:] = 1, 2
    predicted = np.zeros_like(truth)
    predicted[:, :8] = 5  # IoU 0.8 with cell 1
    predicted[:, 15:] = 7  # IoU 0.5 with cell 2: not a match
    assert match_cells(truth, predicted) == [(1, 5, pytest.approx(0.8))]
    with pytest.raises(ValueError, match="0.5"):
        match_cells(truth, predicted, threshold=0.3)


def test_scores_count_detections_dice_and_false_cells_on_empty_fields():
    truth = np.zeros((10, 20), np.int32)
    truth[:, :10] = 1
    field = Field(np.zeros((10, 20, 3), np.uint8), truth, (truth > 0).astype(np.uint8), 1.0, (4,))
    empty = Field(np.zeros((10, 20, 3), np.uint8), np.zeros_like(truth), np.zeros((10, 20), np.uint8), 1.0, ())
    predicted = np.zeros_like(truth)
    predicted[:, :8] = 1
    predicted[:, 15:] = 2
    scores = FieldScores()
    scores.add(field, predicted)
    scores.add(empty, predicted)
    assert (scores.true_positives, scores.false_positives, scores.false_negatives) == (1, 3, 0)
    assert scores.precision == 0.25 and scores.recall == 1.0
    assert scores.false_cells_per_empty_field == 2.0
    assert scores.dice == [(4, pytest.approx(dice(truth == 1, predicted == 1)))]
    assert dice(truth == 1, predicted == 1) == pytest.approx(2 * 80 / 180)


def test_background_takes_the_tone_of_the_cells_surroundings():
    crops = [crop(30, seed) for seed in range(3)]
    darker = [((image * 0.8).astype(np.uint8), labels) for image, labels in crops]
    tone = background_tone(darker)
    background = quilt_background(crops, (150, 200), 1.0, np.random.default_rng(0), tone)
    assert np.abs(np.median(background.reshape(-1, 3), axis=0) - tone).max() <= 6
    assert np.abs(np.median(quilt_background(crops, (150, 200), 1.0, np.random.default_rng(0)).reshape(-1, 3), axis=0) - tone).max() > 20
