"""The albumentations pipelines. Augmentation touches the training set only."""

from __future__ import annotations

import albumentations as A
import cv2


def training_augmentation(seed: int | None = None) -> A.Compose:
    """Geometric and colour augmentation applied jointly to an image and its class map.

    Colour jitter is generous because the two datasets differ mostly in stain colour
    (Dataset 1 yellowish, Dataset 2 purple); masks are warped with nearest-neighbour
    interpolation so no new label values appear.
    """
    return A.Compose(
        [
            A.HorizontalFlip(p=0.5),
            A.VerticalFlip(p=0.5),
            A.RandomRotate90(p=0.5),
            A.Affine(
                scale=(0.85, 1.15),
                rotate=(-30, 30),
                translate_percent=(-0.05, 0.05),
                border_mode=cv2.BORDER_REFLECT_101,
                p=0.7,
            ),
            A.RandomBrightnessContrast(brightness_limit=0.2, contrast_limit=0.2, p=0.5),
            A.HueSaturationValue(hue_shift_limit=15, sat_shift_limit=25, val_shift_limit=15, p=0.5),
            A.GaussianBlur(blur_limit=(3, 3), p=0.1),
        ],
        seed=seed,
    )
