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
- `smear`: `stain`, plus dense red cells drawn around and against the white cell (`RedCells`) and a
  wider zoom-out, as on Dataset 2's smears, where Dataset 1's crops show only faint red-cell
  outlines. For a model trained on Dataset 1 and used on Dataset 2 (`d1_to_d2`).

Every call draws its randomness from a seed it is given, so training is repeatable.
"""

from __future__ import annotations

import albumentations as A
import cv2
import numpy as np
from albumentations.core.transforms_interface import DualTransform

LEVELS = ("none", "basic", "stain", "capture", "smear")


class RedCells(DualTransform):
    """Draw `count` (a range) red cells on the background of an image, never over the white cell,
    and leave its class map as it is: discs a third or so of the white cell's diameter wide, darker
    and redder than the background (a random shade), with a pale centre, placed at random; they
    overlap each other and touch the white cell. So a model trained on images whose red cells are
    faint learns that dense red cells are background too."""

    def __init__(self, count: tuple[int, int] = (4, 14), p: float = 0.5):
        super().__init__(p=p)
        self.count = count

    def get_params_dependent_on_data(self, params: dict, data: dict) -> dict:
        cell = data["mask"] > 0
        height, width = cell.shape[:2]
        diameter = 2 * np.sqrt(cell.sum() / np.pi) if cell.any() else 0.3 * min(height, width)
        rng = self.random_generator
        discs = [
            (
                rng.uniform(0, width),
                rng.uniform(0, height),
                rng.uniform(0.28, 0.42) * diameter,
                rng.uniform(0.6, 0.9) * np.array([1.0, rng.uniform(0.7, 0.85), rng.uniform(0.8, 0.95)]),
                rng.uniform(0.2, 0.7),
            )
            for _ in range(int(rng.integers(self.count[0], self.count[1] + 1)))
        ]
        return {"discs": discs, "background": ~cell}

    def apply(self, img: np.ndarray, discs: list = (), background: np.ndarray | None = None, **params) -> np.ndarray:
        if not discs or not background.any():
            return img
        out = img.astype(np.float32)
        colour = np.median(out[background], axis=0)
        # soft edges: anti-aliased discs that fade out within a pixel or two of the white cell
        visible = cv2.GaussianBlur(background.astype(np.float32), (0, 0), 1.0) * background
        rows, cols = np.mgrid[: img.shape[0], : img.shape[1]]
        for x, y, radius, shade, pallor in discs:
            distance = np.hypot(cols - x, rows - y)
            alpha = (np.clip((radius - distance) / 1.5 + 0.5, 0, 1) * visible)[..., None]
            centre = (np.clip(1 - distance / (0.45 * radius), 0, 1) * pallor)[..., None]
            tone = colour * shade + colour * (1 - shade) * centre
            out = out * (1 - alpha) + tone * alpha
        return np.clip(out, 0, 255).astype(np.uint8)

    def apply_to_mask(self, mask: np.ndarray, **params) -> np.ndarray:
        return mask

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("count",)


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
    scale = {"capture": (0.75, 1.6), "smear": (0.5, 1.3)}.get(level, (0.75, 1.3))
    return A.Compose(
        [
            *([RedCells(p=0.7)] if level == "smear" else []),
            *_geometry(scale),
            *_stain_colour(),
            *([A.Downscale(scale_range=(0.35, 0.9), p=0.3)] if capture else []),
            A.GaussianBlur(blur_limit=(3, 7) if capture else (3, 5), p=0.3 if capture else 0.15),
            A.GaussNoise(std_range=(0.01, 0.04), p=0.15),
        ],
        seed=seed,
    )
