"""The albumentations pipelines. Augmentation touches the training set only.

Levels (`train.augment`):
- `none`: the images as they are.
- `basic`: flips, 90° rotations, a mild affine warp, brightness/contrast and hue/saturation jitter.
- `stain`: `basic` geometry over a wider scale range, plus colour augmentation wide enough to span
  the two datasets' stains (Dataset 1 yellowish, Dataset 2 purple): stain-matrix jitter, hue,
  saturation, gamma, channel shifts and an occasional grey image, so colour cannot be the cue a
  model learns the cell by.
- `capture`: `stain`, plus what differs between two cameras and magnifications: zoom in further
  (a cell filling more of its crop, as in Dataset 1's tight crops), lost resolution (a downscale
  and upscale, as Dataset 1's crops of about 100 px enlarged to the model's input) and stronger
  blur. For a model trained on one dataset and used on another (`d2_to_d1`; docs/decisions.md).

Every call draws its randomness from a seed it is given, so training is repeatable.
"""

from __future__ import annotations

import albumentations as A
import cv2

LEVELS = ("none", "basic", "stain", "capture")


def _geometry(scale: tuple[float, float]) -> list:
    return [
        A.HorizontalFlip(p=0.5),
        A.VerticalFlip(p=0.5),
        A.RandomRotate90(p=0.5),
        A.Affine(scale=scale, rotate=(-30, 30), translate_percent=(-0.05, 0.05), border_mode=cv2.BORDER_REFLECT_101, p=0.7),
    ]


def _stain_colour() -> list:
    return [
        A.HEStain(method="random_preset", intensity_scale_range=(0.7, 1.3), intensity_shift_range=(-0.2, 0.2), augment_background=True, p=0.3),
        A.HueSaturationValue(hue_shift_limit=40, sat_shift_limit=40, val_shift_limit=20, p=0.7),
        A.RGBShift(r_shift_limit=20, g_shift_limit=20, b_shift_limit=20, p=0.3),
        A.RandomBrightnessContrast(brightness_limit=0.25, contrast_limit=0.25, p=0.5),
        A.RandomGamma(gamma_limit=(70, 150), p=0.3),
        A.ToGray(p=0.05),
    ]


def training_augmentation(level: str = "basic", seed: int | None = None) -> A.Compose:
    """The augmentation of `level` (LEVELS), applied jointly to an image and its class map; masks
    are warped with nearest-neighbour interpolation so no new label values appear."""
    if level not in LEVELS:
        raise ValueError(f"unknown augmentation {level!r}; choose one of {', '.join(LEVELS)}")
    if level == "none":
        return A.Compose([], seed=seed)
    if level == "basic":
        return A.Compose(
            [
                *_geometry((0.85, 1.15)),
                A.RandomBrightnessContrast(brightness_limit=0.2, contrast_limit=0.2, p=0.5),
                A.HueSaturationValue(hue_shift_limit=15, sat_shift_limit=25, val_shift_limit=15, p=0.5),
                A.GaussianBlur(blur_limit=(3, 3), p=0.1),
            ],
            seed=seed,
        )
    capture = level == "capture"
    return A.Compose(
        [
            *_geometry((0.75, 1.6) if capture else (0.75, 1.3)),
            *_stain_colour(),
            *([A.Downscale(scale_range=(0.35, 0.9), p=0.3)] if capture else []),
            A.GaussianBlur(blur_limit=(3, 7) if capture else (3, 5), p=0.3 if capture else 0.15),
            A.GaussNoise(std_range=(0.01, 0.04), p=0.15),
        ],
        seed=seed,
    )
