"""Overlays: an image with its segmentation tinted and outlined, as `wbcseg predict` writes and the reports show."""

from __future__ import annotations

import cv2
import numpy as np

#: Overlay colour (RGB) of each label of a task; row 0 (background) is never painted.
OVERLAY_COLOURS = {
    "binary": ((0, 0, 0), (0, 220, 255)),
    "tissue": ((0, 0, 0), (0, 200, 80), (255, 40, 40)),
}
OVERLAY_ALPHA = 0.35


def overlay(image: np.ndarray, labels: np.ndarray, task: str) -> np.ndarray:
    """The image with each WBC label tinted and outlined in its colour (OVERLAY_COLOURS)."""
    colours = np.asarray(OVERLAY_COLOURS[task], np.uint8)
    cell = labels > 0
    out = image.copy()
    # Blending only the WBC pixels, not the whole image, is much faster where the cell is small.
    out[cell] = (image[cell] * (1 - OVERLAY_ALPHA) + colours[labels[cell]] * OVERLAY_ALPHA + 0.5).astype(np.uint8)
    # A label's outline: its pixels with a differently labelled neighbour. OpenCV's 3x3 erosion and
    # dilation find them much faster than skimage's find_boundaries, which matters per image.
    square = np.ones((3, 3), np.uint8)
    edge = cell & ((cv2.erode(labels, square) != labels) | (cv2.dilate(labels, square) != labels))
    out[edge] = colours[labels[edge]]
    return out
