"""Overlays: an image with its segmentation tinted and outlined (and, for a field, each cell outlined and
numbered), as `wbcseg predict` writes and the reports show."""

from __future__ import annotations

import functools
import math

import cv2
import numpy as np
from scipy import ndimage

from wbcseg.classes import TASK_CLASSES

#: Overlay colour (RGB) of each label of a task; row 0 (background) is never painted.
OVERLAY_COLOURS = {
    "binary": ((0, 0, 0), (0, 220, 255)),
    "tissue": ((0, 0, 0), (0, 200, 80), (255, 40, 40)),
}
OVERLAY_ALPHA = 0.35
#: Text scales of the legend (OpenCV's Hershey font): the largest drawn, and the smallest still
#: readable on one row; narrower images get one class per row instead.
LEGEND_SCALE = (0.5, 0.4)
FONT = cv2.FONT_HERSHEY_SIMPLEX
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


@functools.lru_cache(maxsize=32)
def legend_strip(width: int, task: str) -> np.ndarray:
    """A white strip `width` pixels wide with a colour swatch and the name of each class of `task`
    (cytoplasm and nucleus, or cell): one row where the names fit readably, else one per row.
    Cached per size, as a batch of crops shares a few widths; read-only."""
    entries = list(zip(TASK_CLASSES[task][1:], OVERLAY_COLOURS[task][1:]))
    sizes = [cv2.getTextSize(name, FONT, 1.0, 1)[0] for name, _ in entries]  # (width, height) at scale 1
    unit = max(h for _, h in sizes)
    # an entry is a swatch one text-height square, half a height of space, the name, a height of space
    spans = [2.5 * unit + w for w, _ in sizes]
    scale = min(LEGEND_SCALE[0], width / sum(spans))
    rows = [entries] if scale >= LEGEND_SCALE[1] else [[entry] for entry in entries]
    if len(rows) > 1:
        scale = min(LEGEND_SCALE[0], width / max(spans))
    side = max(4, math.ceil(unit * scale))
    pad = max(2, side // 2)
    strip = np.full((len(rows) * (side + pad) + pad, width, 3), 255, np.uint8)
    for r, row in enumerate(rows):
        x, y = pad, pad + r * (side + pad)
        for name, colour in row:
            cv2.rectangle(strip, (x, y), (x + side - 1, y + side - 1), colour, thickness=-1)
            x += side + max(2, side // 2)
            cv2.putText(strip, name, (x, y + side - 1), FONT, scale, (0, 0, 0), 1, cv2.LINE_AA)
            x += math.ceil(cv2.getTextSize(name, FONT, scale, 1)[0][0]) + side
    strip.flags.writeable = False
    return strip


def overlay_with_legend(image: np.ndarray, labels: np.ndarray, task: str) -> np.ndarray:
    """`overlay` with the legend strip below it (the image itself is not covered): the overlay that `wbcseg predict` writes."""
    return np.vstack([overlay(image, labels, task), legend_strip(image.shape[1], task)])


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
