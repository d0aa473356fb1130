"""Overlays: an image with its segmentation tinted and outlined (and, for a field, each cell outlined and
numbered), as `wbcseg predict` writes and the reports show."""

from __future__ import annotations

import cv2
import numpy as np
from scipy import ndimage

#: Overlay colour (RGB) of each label of a task; row 0 (background) is never painted.
OVERLAY_COLOURS = {
    "binary": ((0, 0, 0), (0, 220, 255)),
    "tissue": ((0, 0, 0), (0, 200, 80), (255, 40, 40)),
}
OVERLAY_ALPHA = 0.35
#: Outline and id colour (RGB) of each white cell of a field (touching cells of one class would blend
#: otherwise): blue, which neither the tints nor a stained smear use.
CELL_EDGE_COLOUR = (20, 60, 255)


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


def overlay_cells(image: np.ndarray, instances: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """A field's tissue overlay with each white cell outlined in CELL_EDGE_COLOUR and its id (the
    `cell_id` of measurements.csv) written at the top left of its box."""
    out = overlay(image, classes, "tissue")
    ids = instances.astype(np.float32)  # OpenCV's morphology takes float32, not int32; ids stay exact below 2**24
    square = np.ones((3, 3), np.uint8)
    out[(instances > 0) & ((cv2.erode(ids, square) != ids) | (cv2.dilate(ids, square) != ids))] = CELL_EDGE_COLOUR
    size = max(0.5, min(image.shape[:2]) / 800)
    for cell_id, box in enumerate(ndimage.find_objects(instances), start=1):
        if box is not None:
            corner = (box[1].start, max(box[0].start, round(12 * size)))
            cv2.putText(out, str(cell_id), corner, cv2.FONT_HERSHEY_SIMPLEX, size, CELL_EDGE_COLOUR, max(1, round(2 * size)), cv2.LINE_AA)
    return out
