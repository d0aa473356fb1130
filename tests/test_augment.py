import numpy as np
import pytest
from skimage.filters import threshold_otsu

from wbcseg.augment import LEVELS, training_augmentation


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
