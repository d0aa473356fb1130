"""Model inputs: RGB images checked, resized between native resolution and model size, and the arrays that training reads."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from wbcseg.data import read_sample

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


def model_arrays(samples: pd.DataFrame, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, S, S, 3) uint8 and class maps (N, S, S) uint8 at model size, in `samples` order."""
    images = np.empty((len(samples), size, size, 3), np.uint8)
    labels = np.empty((len(samples), size, size), np.uint8)
    for i, (_, row) in enumerate(samples.iterrows()):
        image, class_map = read_sample(row)
        images[i] = resize_image(image, size)
        labels[i] = resize_labels(class_map, size)
    return images, labels


def write_arrays(path: str | os.PathLike, samples: pd.DataFrame, size: int) -> Path:
    """Save the model-size arrays of `samples` with their sample ids (atomically)."""
    path = Path(path)
    images, labels = model_arrays(samples, size)
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
