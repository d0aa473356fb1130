"""keep_central_cell on hand-made label maps."""

import numpy as np

from wbcseg.postprocess import central_component, keep_central_cell, wbc_components


def blank(shape=(21, 21)):
    return np.zeros(shape, np.uint8)


def test_keeps_the_component_at_the_centre_with_its_tissue_labels():
    labels = blank()
    labels[6:15, 6:15] = 1  # cytoplasm of the central cell
    labels[9:12, 9:12] = 2  # its nucleus
    labels[0:3, 0:3] = 2  # a neighbour's nucleus in the corner
    out = keep_central_cell(labels)
    expected = labels.copy()
    expected[0:3, 0:3] = 0
    np.testing.assert_array_equal(out, expected)
    assert out.dtype == np.uint8


def test_keeps_the_nearest_component_when_none_covers_the_centre():
    labels = blank()
    labels[0:4, 0:4] = 1  # far corner: nearest pixel ~9.9 px from the centre
    labels[10:13, 14:17] = 1  # nearest pixel 4 px from the centre
    out = keep_central_cell(labels)
    assert out[0:4, 0:4].sum() == 0
    assert (out[10:13, 14:17] == 1).all()


def test_fills_holes_with_the_more_probable_foreground_class():
    labels = blank()
    labels[5:16, 5:16] = 1
    labels[9:12, 9:12] = 0  # a hole in the cell
    probabilities = np.zeros((21, 21, 3), np.float32)
    probabilities[..., 0] = 0.5
    probabilities[..., 2] = 0.3  # nucleus beats cytoplasm (0.2) inside the hole
    probabilities[..., 1] = 0.2
    assert (keep_central_cell(labels, probabilities)[9:12, 9:12] == 2).all()
    assert (keep_central_cell(labels)[9:12, 9:12] == 1).all()  # without probabilities: cytoplasm


def test_binary_hole_is_filled_with_cell():
    labels = blank()
    labels[5:16, 5:16] = 1
    labels[10, 10] = 0
    probabilities = np.dstack([1.0 - labels, labels]).astype(np.float32)
    out = keep_central_cell(labels, probabilities)
    assert out[10, 10] == 1 and set(np.unique(out)) == {0, 1}


def test_empty_mask_stays_empty():
    out = keep_central_cell(blank())
    assert out.sum() == 0 and out.shape == (21, 21)


def test_diagonal_neighbours_form_one_component():
    labels = blank((4, 4))
    labels[0, 0] = labels[1, 1] = labels[2, 2] = 1
    labels[0, 3] = 1
    components, count = wbc_components(labels)
    assert count == 2
    assert central_component(components, count) == components[1, 1]
