"""Model inputs: RGB images checked, resized between native resolution and model size (whole, or
zoomed in on their white cell when it would be narrower than the model saw cells in training),
and the arrays that training reads."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from wbcseg.data import read_sample
from wbcseg.fields_scale import equivalent_diameter

ARRAY_FILE = "{split}.npz"


def check_rgb(image: np.ndarray) -> np.ndarray:
    """`image` as a C-contiguous RGB uint8 array, or ValueError."""
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[-1] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an RGB uint8 image (H, W, 3), got {image.dtype} {image.shape}; use wbcseg.data.read_image")
    return np.ascontiguousarray(image)  # OpenCV refuses some views, such as flipped ones


def resize_image(image: np.ndarray, size: int) -> np.ndarray:
    """An RGB uint8 image resized to size x size (area averaging when shrinking)."""
    h, w = image.shape[:2]
    interpolation = cv2.INTER_AREA if size < max(h, w) else cv2.INTER_LINEAR
    return cv2.resize(image, (size, size), interpolation=interpolation)


def resize_labels(labels: np.ndarray, size: int) -> np.ndarray:
    """A class map resized to size x size by nearest neighbour (labels are never blended)."""
    return cv2.resize(labels, (size, size), interpolation=cv2.INTER_NEAREST)


def resize_probabilities(probs: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Class probabilities (S, S, C) brought to an image's native (H, W) by bilinear interpolation,
    so that labels are decided at native resolution rather than upsampled as blocks."""
    h, w = shape[:2]
    out = cv2.resize(np.asarray(probs, dtype=np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
    return out.reshape(h, w, probs.shape[-1])


def crop_window(centre: tuple[float, float], size: int) -> tuple[int, int]:
    """Top-left corner (x, y) of the size x size window centred on `centre` (x, y)."""
    return round(centre[0] - (size - 1) / 2), round(centre[1] - (size - 1) / 2)


def extract(image: np.ndarray, corner: tuple[int, int], size: int) -> np.ndarray:
    """The size x size window at `corner` of an image or label map, mirrored where it leaves the
    image (like the padding of the tiled pass)."""
    h, w = image.shape[:2]
    x, y = corner
    x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + size, w), min(y + size, h)
    if x0 >= x1 or y0 >= y1:
        raise ValueError(f"window at {corner} of size {size} lies outside the {w}x{h} image")
    window = np.ascontiguousarray(image[y0:y1, x0:x1])
    return cv2.copyMakeBorder(window, y0 - y, y + size - y1, x0 - x, x + size - x1, cv2.BORDER_REFLECT_101)


def zoom_window(cell: np.ndarray, size: int, min_cell_diameter: float | None) -> tuple[tuple[int, int], int] | None:
    """Where to zoom in on an image's white cell (`cell`, a bool mask of the image): the square
    window, as (top-left corner (x, y), side) in image pixels, centred on the cell and sized so that
    the cell is `min_cell_diameter` pixels wide once the window is resized to size x size. None
    when the cell would be at least that wide with the whole image resized, or there is no cell
    or no minimum: the image is then resized whole."""
    area = np.count_nonzero(cell)
    if not min_cell_diameter or area == 0:
        return None
    width = equivalent_diameter(area)
    if width * size / np.sqrt(cell.shape[0] * cell.shape[1]) >= min_cell_diameter:
        return None
    side = max(1, round(width * size / min_cell_diameter))
    rows, cols = np.nonzero(cell)
    return crop_window((cols.mean(), rows.mean()), side), side


def window_probabilities(shape: tuple[int, int], probs: np.ndarray, window: tuple[tuple[int, int], int]) -> np.ndarray:
    """Native (H, W, C) class probabilities from the model-size ones of a zoom window (corner,
    side): the window's resized into place where it overlaps the image, and background (class 0)
    with certainty outside it, where crop mode's one white cell does not reach."""
    (x, y), side = window
    h, w = shape[:2]
    out = np.zeros((h, w, probs.shape[-1]), np.float32)
    out[..., 0] = 1.0
    inside = resize_probabilities(probs, (side, side))
    x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + side, w), min(y + side, h)
    out[y0:y1, x0:x1] = inside[y0 - y : y1 - y, x0 - x : x1 - x]
    return out


def model_input(image: np.ndarray, labels: np.ndarray, size: int, min_cell_diameter: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """An image and its class map at model size: zoomed in on the white cell where it would be
    narrower than `min_cell_diameter` (`zoom_window`), else resized whole."""
    window = zoom_window(labels > 0, size, min_cell_diameter)
    if window is not None:
        image, labels = extract(image, *window), extract(labels, *window)
    return resize_image(image, size), resize_labels(labels, size)


def model_arrays(samples: pd.DataFrame, size: int, min_cell_diameter: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, S, S, 3) uint8 and class maps (N, S, S) uint8 at model size (`model_input`), in
    `samples` order."""
    images = np.empty((len(samples), size, size, 3), np.uint8)
    labels = np.empty((len(samples), size, size), np.uint8)
    for i, (_, row) in enumerate(samples.iterrows()):
        images[i], labels[i] = model_input(*read_sample(row), size, min_cell_diameter)
    return images, labels


def write_arrays(path: str | os.PathLike, samples: pd.DataFrame, size: int, min_cell_diameter: float | None = None) -> Path:
    """Save the model-size arrays of `samples` (`model_arrays`) with their sample ids (atomically)."""
    path = Path(path)
    images, labels = model_arrays(samples, size, min_cell_diameter)
    tmp = path.with_name(f".{path.stem}.tmp.npz")
    np.savez_compressed(
        tmp, images=images, labels=labels,
        sample_id=samples["sample_id"].to_numpy(str), dataset=samples["dataset"].astype(str).to_numpy(str),
    )
    tmp.replace(path)
    return path


def read_arrays(path: str | os.PathLike, datasets=None) -> dict[str, np.ndarray]:
    """The arrays saved by `write_arrays`, optionally only the images of some datasets (ids, as
    params.yaml names them; the file holds them as text)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: preprocessed arrays not found; run the preprocess stage (`dvc repro preprocess`)")
    with np.load(path) as arrays:
        keep = slice(None) if datasets is None else np.isin(arrays["dataset"], [str(d) for d in datasets])
        return {key: arrays[key][keep] for key in arrays.files}
