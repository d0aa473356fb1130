"""Where a field's white cells are: its nucleus groups at the training scale, and what each says of itself.

A tiled pass of the crop model over the field at the training scale ranks nucleus first on every
nucleus, and also on red cells and their rims. Specks are dropped, lobes close together are
joined into one group per cell, groups too small for a nucleus are dropped, and each remaining
group is judged by its Evidence: how dark, how blue and how sure the model is.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from scipy import ndimage

from wbcseg.fields_scale import DARK_FRACTION
from wbcseg.tiling import STEP_FRACTION, predict_strips

NUCLEUS = 2
#: Tiles or crops per model call.
BATCH_SIZE = 16
#: Nucleus components smaller than this fraction of a training cell's area are specks; merged
#: groups smaller than MIN_NUCLEUS_FRACTION are not nuclei: on synthetic fields of validation
#: images the groups of real nuclei covered 0.21 to 1.1 of it, the false ones (rims of red cells)
#: mostly 0.05 to 0.14.
MIN_LOBE_FRACTION = 0.01
MIN_NUCLEUS_FRACTION = 0.15
#: A nucleus group whose mean nucleus probability is below this is not a nucleus. On synthetic
#: fields of training images (seeds 1, 3, 5) and validation images (seeds 1, 2) at their true
#: scale (benchmarks/field_detections.py), real nuclei had 0.857 and more, and the one false
#: group (of 185) dark enough to pass the darkness check had 0.80.
MIN_NUCLEUS_PROBABILITY = 0.86
#: A group paler than DARK_FRACTION is still a nucleus when it is at most PALE_FRACTION of the
#: field's median green and bluer than the field by at least MIN_PALE_BLUENESS (blue minus red, in
#: 0-255 steps): some Dataset 2 nuclei are pale but blue-purple, while red-cell overlaps and rims
#: that dark are pink. On the same training and validation fields, the 9 real nuclei in that band
#: (all of Dataset 2) were 62 to 92 bluer than their field, the 7 false groups -7 to 21; the false
#: groups of Dataset 1 as blue as 35 were all paler than 0.92 (benchmarks/field_detections.py).
PALE_FRACTION = 0.65
MIN_PALE_BLUENESS = 35
#: Nucleus components closer than this fraction of the cell diameter are lobes of one cell
#: (0.15, 0.25 and 0.35 found the same cells on the validation fields; 0.25 is the middle).
LOBE_MERGE_FRACTION = 0.25

@dataclass(frozen=True)
class Detection:
    """A white cell found by its nucleus: its centre (x, y) in field pixels, and its nucleus
    group as a mask at the training scale with that mask's top-left corner there."""

    centre: tuple[float, float]
    nucleus: np.ndarray
    corner: tuple[int, int]


def to_model_scale(image: np.ndarray, factor: float) -> np.ndarray:
    """The image resized by `factor` (area averaging when shrinking)."""
    h, w = image.shape[:2]
    size = (max(1, round(w * factor)), max(1, round(h * factor)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA if factor < 1 else cv2.INTER_LINEAR)


def nucleus_map(image: np.ndarray, segmenter, step_fraction: float = STEP_FRACTION) -> np.ndarray:
    """(H, W) uint8 over `image` (at the training scale) from a tiled, Gaussian-blended pass: the
    nucleus probability in steps of 1/255 where nucleus ranks first (then it is at least a third,
    so never 0), else 0. The probabilities of all classes are never held for more than one band of
    tiles. The pass has no TTA, whatever the segmenter's: the thresholds that sort its nuclei
    were set on plain passes, and TTA would multiply the cost of the whole field by its views (the
    cells' crops, few, get the segmenter's TTA)."""
    out = np.zeros(image.shape[:2], np.uint8)

    def plain(tiles: np.ndarray) -> np.ndarray:
        return segmenter.predict_probabilities(tiles, tta="none")

    for top, band in predict_strips(image, plain, segmenter.input_size, step_fraction, BATCH_SIZE):
        nucleus = band[..., NUCLEUS]
        out[top : top + len(band)] = np.where(band.argmax(axis=-1) == NUCLEUS, np.maximum(np.rint(nucleus * 255), 1), 0)
    return out


def group_nuclei(mask: np.ndarray, cell_diameter: float) -> list[tuple[np.ndarray, tuple[int, int]]]:
    """Nucleus groups of one cell each from a nucleus mask at the training scale, as (mask, (x, y)
    top-left corner): specks are dropped, components closer than LOBE_MERGE_FRACTION of a cell
    diameter are joined, and groups too small for a nucleus are dropped."""
    cell_area = np.pi / 4 * cell_diameter**2
    count, components, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    keep = np.zeros(count, bool)
    keep[1:] = stats[1:, cv2.CC_STAT_AREA] >= MIN_LOBE_FRACTION * cell_area
    lobes = keep[components]
    # Dilating every lobe by half the merge distance makes lobes that close touch: one group each.
    radius = max(1, round(LOBE_MERGE_FRACTION * cell_diameter / 2))
    disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1,) * 2)
    _, grown = cv2.connectedComponents(cv2.dilate(lobes.astype(np.uint8), disc), connectivity=8)
    groups = np.where(lobes, grown, 0)
    out = []
    for label, objects in enumerate(ndimage.find_objects(groups), start=1):
        if objects is None:
            continue
        group = groups[objects] == label
        if group.sum() >= MIN_NUCLEUS_FRACTION * cell_area:
            out.append((group, (objects[1].start, objects[0].start)))
    return out


@dataclass(frozen=True)
class Evidence:
    """What a candidate nucleus group says of itself: `darkness`, its median green as a fraction of
    the field's median green; `confidence`, its mean nucleus probability (0 to 1); `blueness`, its
    median blue minus red less the field's median blue minus red (in 0-255 steps): nuclei are
    blue-purple, red cells and their overlaps pink."""

    darkness: float
    confidence: float
    blueness: float


def field_tone(small: np.ndarray) -> tuple[float, float]:
    """The field's median green and median blue minus red: what `nucleus_evidence` compares with."""
    return float(np.median(small[..., 1])), float(np.median(small[..., 2].astype(np.int16) - small[..., 0]))


def colour_evidence(pixels: np.ndarray, tone: tuple[float, float]) -> tuple[float, float]:
    """(darkness, blueness) of Evidence for a group's (N, 3) RGB pixels against the field's `tone`."""
    pixels = pixels.astype(np.int16)
    field_green, field_blueness = tone
    return float(np.median(pixels[:, 1]) / field_green), float(np.median(pixels[:, 2] - pixels[:, 0]) - field_blueness)


def nucleus_evidence(
    small: np.ndarray, tone: tuple[float, float], probability: np.ndarray, group: np.ndarray, corner: tuple[int, int]
) -> Evidence:
    """The Evidence of a nucleus group at `corner` of `small`, against the field's `tone` (from
    `field_tone`, computed once per field) and the nucleus probability of `nucleus_map`."""
    (x, y), (h, w) = corner, group.shape
    darkness, blueness = colour_evidence(small[y : y + h, x : x + w][group], tone)
    return Evidence(darkness, float(probability[y : y + h, x : x + w][group].mean() / 255), blueness)


def looks_like_nucleus(evidence: Evidence) -> bool:
    """Whether a nucleus group is sure enough (mean nucleus probability at least
    MIN_NUCLEUS_PROBABILITY) and dark enough (median green at most DARK_FRACTION of the field's, or
    at most PALE_FRACTION and blue: MIN_PALE_BLUENESS) for a nucleus: the model's nucleus class
    also fires on red cells and their rims, which are paler and pink, or where it is less sure."""
    dark = evidence.darkness <= DARK_FRACTION or (evidence.darkness <= PALE_FRACTION and evidence.blueness >= MIN_PALE_BLUENESS)
    return dark and evidence.confidence >= MIN_NUCLEUS_PROBABILITY


def plausible(small: np.ndarray, probability: np.ndarray, groups: list[tuple[np.ndarray, tuple[int, int]]]) -> list[tuple[np.ndarray, tuple[int, int]]]:
    """The nucleus groups of `small` that look like a nucleus (`looks_like_nucleus`)."""
    tone = field_tone(small)
    return [(group, corner) for group, corner in groups if looks_like_nucleus(nucleus_evidence(small, tone, probability, group, corner))]


def detect_cells(image: np.ndarray, segmenter, factor: float, cell_diameter: float, step_fraction: float = STEP_FRACTION) -> list[Detection]:
    """The white cells of a field image, found by their nuclei at the training scale: `factor`
    brings the field there and `cell_diameter` is the training cell diameter (model pixels)."""
    small = to_model_scale(image, factor)
    probability = nucleus_map(small, segmenter, step_fraction)
    groups = plausible(small, probability, group_nuclei(probability > 0, cell_diameter))
    detections = []
    for group, (x, y) in groups:
        rows, cols = np.nonzero(group)
        # Pixel centres map between scales as (i + 0.5) / factor - 0.5.
        centre = ((x + cols.mean() + 0.5) / factor - 0.5, (y + rows.mean() + 0.5) / factor - 0.5)
        detections.append(Detection(centre, group, (x, y)))
    return detections
