import albumentations as A
import numpy as np
import pytest
from skimage.filters import threshold_otsu

from wbcseg.augment import LEVELS, RedCells, training_augmentation
from wbcseg.params import AUGMENTATIONS


def test_params_accept_every_augmentation_level_and_no_other():
    # params.py keeps its own copy so that reading params does not import albumentations
    assert AUGMENTATIONS == LEVELS


def test_augmentation_keeps_image_and_mask_aligned(cell_image):
    image, labels = cell_image
    pipeline = training_augmentation(seed=3)
    changed = 0
    for _ in range(20):
        out = pipeline(image=image, mask=labels)
        aug_image, aug_labels = out["image"], out["mask"]
        assert aug_image.shape == image.shape and aug_labels.shape == labels.shape
        assert set(np.unique(aug_labels)) <= {0, 1, 2}  # nearest-neighbour: no blended labels
        # the dark (low red) nucleus of the warped image sits where the warped mask says nucleus
        red = aug_image[..., 0]
        dark = red < threshold_otsu(red)
        nucleus = aug_labels == 2
        assert (dark & nucleus).sum() / (dark | nucleus).sum() > 0.9
        changed += not np.array_equal(aug_labels, labels)
    assert changed >= 10


@pytest.mark.parametrize("level", LEVELS)
def test_every_level_is_seeded_and_keeps_the_label_values(cell_image, level):
    image, labels = cell_image
    a = training_augmentation(level, seed=5)
    b = training_augmentation(level, seed=5)
    for _ in range(5):
        out_a, out_b = a(image=image, mask=labels), b(image=image, mask=labels)
        np.testing.assert_array_equal(out_a["image"], out_b["image"])
        np.testing.assert_array_equal(out_a["mask"], out_b["mask"])
        assert out_a["image"].dtype == np.uint8 and set(np.unique(out_a["mask"])) <= {0, 1, 2}


def test_capture_blurs_or_coarsens_some_images_more_than_stain(cell_image):
    image, labels = cell_image

    def sharpness(level):
        pipeline = training_augmentation(level, seed=11)
        return [np.abs(np.diff(pipeline(image=image, mask=labels)["image"].astype(float), axis=1)).mean() for _ in range(60)]

    assert np.percentile(sharpness("capture"), 25) < np.percentile(sharpness("stain"), 25)


def test_red_cells_are_drawn_on_the_background_only(cell_image):
    image, labels = cell_image
    pipeline = A.Compose([RedCells(count=(6, 10), p=1.0)], seed=2)
    out = pipeline(image=image, mask=labels)
    np.testing.assert_array_equal(out["mask"], labels)
    np.testing.assert_array_equal(out["image"][labels > 0], image[labels > 0])
    background = labels == 0
    changed = np.any(out["image"] != image, axis=-1) & background
    assert changed.sum() > 0.2 * background.sum()
    # red cells absorb green: the painted background is darker, in green most of all
    before, after = image[changed].astype(float).mean(0), out["image"][changed].astype(float).mean(0)
    assert after[1] < before[1] and before[1] - after[1] > before[0] - after[0]
