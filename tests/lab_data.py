"""A small generated lab dataset: synthetic white cells (a dark nucleus in a paler cytoplasm on a
light background, each at its own place, size and stain) with masks in either convention."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from wbcseg.classes import MASK_VALUES

BACKGROUND, CYTOPLASM, NUCLEUS = (236, 214, 176), (205, 150, 195), (95, 45, 140)


def synthetic_cell(rng: np.random.Generator, side: int) -> tuple[np.ndarray, np.ndarray]:
    """(RGB image, class map 0/1/2) of one generated cell."""
    yy, xx = np.mgrid[:side, :side]
    cy, cx = side / 2 + rng.uniform(-0.1, 0.1, 2) * side
    cell_r = side * rng.uniform(0.25, 0.35)
    nucleus_r = cell_r * rng.uniform(0.4, 0.7)
    r = np.hypot(yy - cy, xx - cx)
    labels = np.where(r < nucleus_r, 2, np.where(r < cell_r, 1, 0)).astype(np.uint8)
    colours = np.array([BACKGROUND, CYTOPLASM, NUCLEUS]) + rng.integers(-15, 16, (3, 3))
    image = colours[labels] + rng.integers(-10, 11, (side, side, 3))
    return np.clip(image, 0, 255).astype(np.uint8), labels


def write_lab_dataset(folder: Path, n: int = 24, mask_values: str = "classes", seed: int = 0) -> Path:
    """`n` cells as folder/images/cell_NN.png with folder/masks/cell_NN.png (mask_values 'grey':
    0/128/255, 'classes': 0/1/2), the layout of data.ExtraDataset's defaults."""
    rng = np.random.default_rng(seed)
    for sub in ("images", "masks"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    for i in range(n):
        image, labels = synthetic_cell(rng, int(rng.integers(80, 120)))
        Image.fromarray(image).save(folder / "images" / f"cell_{i:02d}.png")
        Image.fromarray(MASK_VALUES[labels] if mask_values == "grey" else labels).save(folder / "masks" / f"cell_{i:02d}.png")
    return folder
