"""Clean a predicted label map: one white blood cell per image, without holes.

The dataset's images are crops centred on one WBC, so the cell a user wants is the one at the
centre; other blobs are neighbouring cells or false positives.
"""

from __future__ import annotations

import cv2
import numpy as np
from scipy import ndimage


def wbc_components(labels: np.ndarray) -> tuple[np.ndarray, int]:
    """The 8-connected components of the WBC (every label > 0), numbered from 1, and their count.
    OpenCV's labelling is faster than scipy.ndimage.label, and `wbcseg predict` runs it per image."""
    count, components = cv2.connectedComponents((labels > 0).astype(np.uint8), connectivity=8)
    return components, int(count) - 1


def central_component(components: np.ndarray, count: int) -> int:
    """The id of the component containing the image centre, else of the one nearest to it (0 if none)."""
    if count == 0:
        return 0
    h, w = components.shape
    at_centre = components[h // 2, w // 2]
    if at_centre:
        return int(at_centre)
    rows, cols = np.indices(components.shape)
    distance = np.hypot(rows - (h - 1) / 2, cols - (w - 1) / 2)
    nearest = ndimage.minimum(distance, components, index=np.arange(1, count + 1))
    return int(np.argmin(nearest)) + 1


def keep_central_cell(labels: np.ndarray, probabilities: np.ndarray | None = None) -> np.ndarray:
    """Labels with only the WBC component nearest the image centre, its holes filled.

    Works for both tasks: binary (0/1) and tissue (0 background, 1 cytoplasm, 2 nucleus). A filled
    hole takes the more probable foreground class at that pixel when `probabilities` (H, W, C) are
    given, else label 1 (cell, or cytoplasm), since a hole inside a cell is most often cytoplasm
    paler than the model expected.
    """
    components, count = wbc_components(labels)
    keep = central_component(components, count)
    if keep == 0:
        return np.zeros_like(labels)
    cell = ndimage.binary_fill_holes(components == keep)
    out = np.where(components == keep, labels, 0).astype(labels.dtype)
    holes = cell & (out == 0)
    if probabilities is not None and probabilities.shape[-1] > 2:
        out[holes] = 1 + np.argmax(probabilities[holes][:, 1:], axis=-1)
    else:
        out[holes] = 1
    return out
