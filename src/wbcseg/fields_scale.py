"""Scale of a field: how wide its white cells are in pixels, given by the user or found from its
darkest blobs, and how wide the training cells were.

The model card records the median white-cell diameter of the training images in model-input
pixels (`card.model_cell_diameter`); a field is resized so that its white cells are that wide
before the model sees it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import cv2
import numpy as np

from wbcseg.errors import WbcsegError

#: A typical white blood cell is about 12 µm across (neutrophils 12-15 µm, lymphocytes 7-10,
#: monocytes 15-20); the scale only has to be right within the model's tolerance to size.
WBC_DIAMETER_UM = 12.0


class ScaleError(WbcsegError):
    """A scale cannot be used or found; the message says which input to give."""


@dataclass(frozen=True)
class Scale:
    """White-cell diameter in field pixels, and where it came from: 'cell_diameter' or
    'pixel_size' (given by the user) or 'estimate'."""

    cell_diameter: float
    source: str

    @property
    def estimated(self) -> bool:
        return self.source == "estimate"


def equivalent_diameter(area: float) -> float:
    """Diameter of the disc of `area` pixels."""
    return float(np.sqrt(4.0 * area / np.pi))


def training_cell_diameter(class_maps: Iterable[np.ndarray], input_size: int) -> float:
    """Median equivalent diameter, in model-input pixels, of the white cell (cytoplasm and
    nucleus) of training class maps after the crop -> model-size resize: what a model card
    records as scale.cell_diameter_px."""
    # Nearest neighbour, as the training arrays' class maps are resized (preprocess.resize_labels).
    diameters = [
        equivalent_diameter(np.count_nonzero(cv2.resize(labels, (input_size, input_size), interpolation=cv2.INTER_NEAREST)))
        for labels in class_maps
    ]
    if not diameters:
        raise ScaleError("no training class maps to measure the cell diameter on")
    return float(np.median(diameters))


def given_scale(cell_diameter: float | None = None, pixel_size: float | None = None) -> Scale | None:
    """The scale the user gave: a cell diameter in pixels, else a pixel size in µm per pixel
    (cells then WBC_DIAMETER_UM wide); None when neither is given. A cell diameter wins over a
    pixel size: it is measured on the user's own cells, and the pixel size still gives µm² areas."""
    if cell_diameter is not None:
        if not cell_diameter > 0:
            raise ScaleError(f"cell diameter must be a positive number of pixels, got {cell_diameter}")
        return Scale(float(cell_diameter), "cell_diameter")
    if pixel_size is not None:
        if not pixel_size > 0:
            raise ScaleError(f"pixel size must be a positive number of µm per pixel, got {pixel_size}")
        return Scale(WBC_DIAMETER_UM / float(pixel_size), "pixel_size")
    return None


#: Nuclei are the darkest objects of a Wright/Giemsa-stained smear in the green channel: the
#: median nucleus pixel is at most 0.42 of an image's median green in both datasets, red cells at
#: 0.6 and above, so half the median splits them.
DARK_FRACTION = 0.5
#: Median ratio of nucleus to whole-cell equivalent diameter over both datasets (0.61 and 0.65).
NUCLEUS_TO_CELL = 0.63
#: Candidate nuclei are looked for on the image shrunk to about this many pixels: enough to see
#: a nucleus on a 12-megapixel field, cheap everywhere.
WORKING_PIXELS = 1_000_000
#: Dark blobs below this many working pixels are specks (platelets, dust), and blobs smaller than
#: MIN_BLOB_SHARE of the largest are debris beside a nucleus.
MIN_BLOB_PX = 12
MIN_BLOB_SHARE = 0.1


def dark_blobs(image: np.ndarray, limit: int) -> list[tuple[tuple[float, float], float]]:
    """The `limit` largest blobs as dark as a nucleus in an RGB field, as ((x, y) centre in image
    pixels, cell diameter that a nucleus of that size suggests), largest first; [] when none."""
    h, w = image.shape[:2]
    shrink = min(1.0, float(np.sqrt(WORKING_PIXELS / (h * w))))
    green = image[..., 1] if shrink == 1 else cv2.resize(image[..., 1], None, fx=shrink, fy=shrink, interpolation=cv2.INTER_AREA)
    dark = cv2.morphologyEx((green < DARK_FRACTION * np.median(green)).astype(np.uint8), cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    count, _, stats, centroids = cv2.connectedComponentsWithStats(dark, connectivity=8)
    areas = stats[1:, cv2.CC_STAT_AREA]
    if count == 1 or areas.max() < MIN_BLOB_PX:
        return []
    order = [i for i in np.argsort(-areas) if areas[i] >= max(MIN_BLOB_PX, MIN_BLOB_SHARE * areas.max())][:limit]
    return [
        (tuple((centroids[i + 1] + 0.5) / shrink - 0.5), equivalent_diameter(areas[i]) / shrink / NUCLEUS_TO_CELL)
        for i in order
    ]
