import numpy as np
from skimage.filters import threshold_otsu

from wbcseg.augment import training_augmentation


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


def test_augmentation_is_seeded(cell_image):
    image, labels = cell_image
    a = training_augmentation(seed=5)(image=image, mask=labels)["mask"]
    b = training_augmentation(seed=5)(image=image, mask=labels)["mask"]
    np.testing.assert_array_equal(a, b)
