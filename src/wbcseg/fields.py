"""Whole blood-smear fields: every white cell found, segmented at native resolution, one id each.

The crop model was trained on crops centred on one white cell, so it is used here only where it
is reliable. A field is brought to the training scale (white cells as wide as in training); a
tiled pass finds the nuclei (`fields_detect`), since the model's cytoplasm class paints cells
around red-cell clumps while its nucleus class errs only on red cells and their rims, which are
paler than most nuclei and pinker than the pale ones, or where the model is less sure, and are
dropped by their colour, size and confidence; nucleus lobes closer than a fraction of a cell
diameter are one cell (neutrophils have several lobes). Each cell found is then segmented in a
crop centred on it and sized to it at the
training scale, as crop mode segments a dataset image, and pasted back: a pixel claimed by two
crops goes to the cell whose nucleus is nearer, which keeps touching cells apart.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import cv2
import numpy as np
from scipy import ndimage

from wbcseg.card import model_cell_diameter
from wbcseg.fields_detect import BATCH_SIZE, NUCLEUS, Detection, detect_cells
from wbcseg.fields_scale import Scale, ScaleError, dark_blobs, equivalent_diameter, given_scale
from wbcseg.measure import measure_labels
from wbcseg.postprocess import keep_central_cell
from wbcseg.preprocess import check_rgb, crop_window, extract, resize_image, resize_probabilities
from wbcseg.tiling import STEP_FRACTION

#: A segmented cell smaller than this fraction of the expected cell area is not kept.
MIN_CELL_FRACTION = 0.1
#: Images at most this many cell diameters across (on their short side) are crops, like the datasets'.
CROP_MAX_DIAMETERS = 3.0
#: Cells measured to estimate a field's scale, and rounds of measuring at most (each at the scale
#: the round before found): the crop model outlines a cell well within a factor of about two of
#: its training scale, but a window narrower than the cell cuts it, so an estimate that starts
#: short grows round by round. It stops when a round moves it by less than ESTIMATE_SETTLED;
#: then one more round, with the segmenter's TTA, sets it.
ESTIMATE_CELLS = 8
ESTIMATE_ROUNDS = 4
ESTIMATE_SETTLED = 0.05
#: An estimate below this many pixels is no white cell but debris, which the model (it paints a
#: cell at the centre of any crop) outlined at whatever scale the debris suggested: on empty
#: validation fields such estimates came out at 14 to 23 px, real fields' at 35 px and more.
#: Fields of smaller cells need the scale given.
MIN_ESTIMATE_PX = 30
#: Largest field at the training scale, in pixels: beyond it the resized copy alone would fill
#: the memory, and the cell diameter was most likely given or estimated far too small.
MAX_MODEL_PIXELS = 64_000_000


@dataclass(frozen=True)
class CellInfo:
    """One white cell of a field: its id in the instance image, its measurements (the columns of
    `measure.measure`, in field pixels; `mean_confidence` is over its pixels in its own crop), and
    whether the image border cuts it."""

    id: int
    measurements: dict
    touches_border: bool


@dataclass(frozen=True)
class FieldResult:
    """instances: (H, W) int32, 0 background and 1..n one id per white cell; classes: (H, W)
    uint8, 0 background, 1 cytoplasm, 2 nucleus (a cell's nucleus is classes == 2 within its id);
    cells: one CellInfo per id, in id order; scale: the cell diameter used and where it came from
    (None when it could not be estimated, for want of any nucleus)."""

    instances: np.ndarray
    classes: np.ndarray
    cells: tuple[CellInfo, ...]
    scale: Scale | None


# --------------------------------------------------------------------------- segmentation of each cell


def seed_in_window(detection: Detection, corner: tuple[int, int], size: int, factor: float) -> np.ndarray:
    """The detection's nucleus group as a (size, size) bool mask over the field window at `corner`."""
    model_size = max(1, round(size * factor))
    canvas = np.zeros((model_size, model_size), np.uint8)
    # The window's corner at the training scale, then the group's place inside that window.
    ox, oy = round((corner[0] + 0.5) * factor - 0.5), round((corner[1] + 0.5) * factor - 0.5)
    gx, gy = detection.corner[0] - ox, detection.corner[1] - oy
    gh, gw = detection.nucleus.shape
    ys, xs = slice(max(gy, 0), min(gy + gh, model_size)), slice(max(gx, 0), min(gx + gw, model_size))
    canvas[ys, xs] = detection.nucleus[ys.start - gy : ys.stop - gy, xs.start - gx : xs.stop - gx]
    return cv2.resize(canvas, (size, size), interpolation=cv2.INTER_NEAREST) > 0


def segment_crops(windows: list[np.ndarray], segmenter, tta: str | None = None) -> Iterable[tuple[np.ndarray, float]]:
    """(labels, mean confidence) of field windows segmented as crop mode does: model-size
    probabilities (over the segmenter's TTA, or `tta` where given) resized back to the window,
    arg-max, the central cell kept with its holes filled; the confidence is the mean probability
    of the kept cell's labels (nan without a cell)."""
    size = segmenter.input_size
    for k in range(0, len(windows), BATCH_SIZE):
        batch = windows[k : k + BATCH_SIZE]
        probs = segmenter.predict_probabilities(np.stack([resize_image(w, size) for w in batch]), tta)
        for window, p in zip(batch, probs):
            probabilities = resize_probabilities(p, window.shape[:2])
            labels = keep_central_cell(probabilities.argmax(axis=-1).astype(np.uint8), probabilities)
            cell = labels > 0
            chosen = np.take_along_axis(probabilities[cell], labels[cell][:, None].astype(np.intp), axis=-1)
            yield labels, float(chosen.mean()) if cell.any() else float("nan")


def segment_cells(image: np.ndarray, segmenter, detections: list[Detection], factor: float, trained: float):
    """Each detected cell segmented in a crop centred on it at the training scale, as pieces
    (corner, labels, seed) with their mean confidences.

    A first crop, centred on the nucleus at the field's scale, finds the cell; a second is centred
    on that cell and sized so that it is as wide as the training cells, since the cells of one
    field differ in size by half and more. A crop whose central cell misses the detected nucleus
    is dropped (the nucleus was false).
    """
    base = max(1, round(segmenter.input_size / factor))
    centres, sizes = [d.centre for d in detections], [base] * len(detections)
    for final in (False, True):
        corners = [crop_window(c, s) for c, s in zip(centres, sizes)]
        results = list(segment_crops([extract(image, c, s) for c, s in zip(corners, sizes)], segmenter))
        if final:
            break
        for k, ((labels, _), corner) in enumerate(zip(results, corners)):
            rows, cols = np.nonzero(labels)
            if rows.size:
                centres[k] = (corner[0] + cols.mean(), corner[1] + rows.mean())
                wanted = segmenter.input_size * equivalent_diameter(rows.size) / trained
                sizes[k] = int(np.clip(round(wanted), base // 2, 2 * base))
    pieces, confidences = [], []
    for detection, corner, size, (labels, confidence) in zip(detections, corners, sizes, results):
        seed = seed_in_window(detection, corner, size, factor)
        if (seed & (labels > 0)).any():
            pieces.append((corner, labels, seed))
            confidences.append(confidence)
    return pieces, confidences


def paste_cells(shape: tuple[int, int], pieces: list[tuple[tuple[int, int], np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """Instance ids (int32) and classes (uint8) over a field of `shape` from each cell's (window
    corner, window labels, window seed): a pixel claimed by several cells goes to the one whose
    nucleus seed is nearest, and each cell keeps only the parts connected to its seed."""
    h, w = shape
    instances = np.zeros(shape, np.int32)
    classes = np.zeros(shape, np.uint8)
    distance = np.full(shape, np.inf)
    for cell_id, ((x, y), labels, seed) in enumerate(pieces, start=1):
        size = labels.shape[0]
        # SciPy's exact transform, not OpenCV's: OpenCV's differs between calls in the last bits,
        # which flipped ties between touching cells from one run to the next.
        to_seed = ndimage.distance_transform_edt(~seed)
        x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + size, w), min(y + size, h)
        inner = (slice(y0 - y, y1 - y), slice(x0 - x, x1 - x))
        region = (slice(y0, y1), slice(x0, x1))
        claim = (labels[inner] > 0) & (to_seed[inner] < distance[region])
        instances[region][claim] = cell_id
        classes[region][claim] = labels[inner][claim]
        distance[region][claim] = to_seed[inner][claim]
    for cell_id, ((x, y), labels, seed) in enumerate(pieces, start=1):
        size = labels.shape[0]
        x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + size, w), min(y + size, h)
        region = (slice(y0, y1), slice(x0, x1))
        mine = instances[region] == cell_id
        _, parts = cv2.connectedComponents(mine.astype(np.uint8), connectivity=8)
        touching = np.unique(parts[mine & seed[y0 - y : y1 - y, x0 - x : x1 - x]])
        stray = mine & ~np.isin(parts, touching[touching > 0])
        instances[region][stray] = 0
        classes[region][stray] = 0
    return instances, classes


def relabel(instances: np.ndarray, classes: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Instance ids renumbered 1..n over the ids where keep[id] is True; the rest become background
    in both images (in place for `classes`)."""
    lookup = np.zeros(len(keep), np.int32)
    lookup[keep] = np.arange(1, int(keep.sum()) + 1)
    out = lookup[instances]
    classes[out == 0] = 0
    return out


# --------------------------------------------------------------------------- the whole field


def cell_infos(instances: np.ndarray, classes: np.ndarray, confidence: dict[int, float], pixel_size: float | None = None) -> tuple[CellInfo, ...]:
    """One CellInfo per instance id, in id order, each measured in its own bounding box."""
    h, w = instances.shape
    out = []
    for cell_id, (rows, cols) in enumerate(ndimage.find_objects(instances), start=1):
        if rows is None:
            continue
        labels = np.where(instances[rows, cols] == cell_id, classes[rows, cols], 0)
        measurements = {**measure_labels(labels, "tissue", pixel_size, offset=(cols.start, rows.start)), "mean_confidence": confidence[cell_id]}
        touches_border = rows.start == 0 or cols.start == 0 or rows.stop == h or cols.stop == w
        out.append(CellInfo(cell_id, measurements, touches_border))
    return tuple(out)


def estimate_cell_diameter(image: np.ndarray, segmenter) -> float | None:
    """The white-cell diameter (pixels) of a field, measured on the cells that the crop model
    outlines around its darkest blobs; None when no blob is dark enough to be a nucleus, no crop
    holds a nucleus, or the cells come out narrower than MIN_ESTIMATE_PX.

    The first round crops at the scale that the blobs' size suggests; each round measures the
    cells' equivalent diameter in field pixels, which does not depend on the crop's scale as long
    as the model outlines the cell, and their median sets the next round's scale. The median is
    weighted by each blob's area: a field with one white cell also has specks and overlapping red
    cells dark enough to pass, and around those the model outlines small false cells, which would
    otherwise outvote the one nucleus (benchmarks/scale_estimate.py). The rounds run without TTA,
    for speed; a last one with the segmenter's TTA sets the estimate, which also decides whether
    a field has cells at all, as carefully as the cells are segmented (scale_estimate.py compares
    it with every round plain).
    """
    blobs = dark_blobs(image, ESTIMATE_CELLS)
    if not blobs:
        return None
    suggested = np.array([d for _, d in blobs])
    weights = suggested**2  # proportional to the blob's area

    def measured(diameter: float, tta: str | None) -> float | None:
        cells = blob_cells(image, segmenter, blobs, diameter, tta)
        return weighted_median([d for _, d in cells], [weights[k] for k, _ in cells]) if cells else None

    diameter = weighted_median(suggested, weights)
    for _ in range(ESTIMATE_ROUNDS):
        previous, diameter = diameter, measured(diameter, "none")
        if diameter is None:
            return None
        if abs(diameter / previous - 1) < ESTIMATE_SETTLED:
            break
    diameter = measured(diameter, None)
    return diameter if diameter is not None and diameter >= MIN_ESTIMATE_PX else None


def blob_cells(image: np.ndarray, segmenter, blobs: list, diameter: float, tta: str | None = None) -> list[tuple[int, float]]:
    """(index of the blob, equivalent diameter in field pixels) of the cell that the crop model
    outlines (over the segmenter's TTA, or `tta` where given) around each of `blobs` (from
    `dark_blobs`) in a crop sized for cells `diameter` wide, for the crops whose cell has a nucleus."""
    size = max(1, round(segmenter.input_size * diameter / model_cell_diameter(segmenter.card)))
    windows = [extract(image, crop_window(centre, size), size) for centre, _ in blobs]
    return [
        (k, equivalent_diameter(np.count_nonzero(labels)))
        for k, (labels, _) in enumerate(segment_crops(windows, segmenter, tta))
        if (labels == NUCLEUS).any()
    ]


def weighted_median(values, weights) -> float:
    """The value below and above which lie at most half the total weight."""
    return float(np.quantile(np.asarray(values, float), 0.5, weights=np.asarray(weights, float), method="inverted_cdf"))


def resolve_scale(image: np.ndarray, segmenter, cell_diameter: float | None = None, pixel_size: float | None = None) -> Scale | None:
    """The scale the user gave (a cell diameter in pixels or a pixel size in µm), else the
    estimate of `estimate_cell_diameter`; None when there is nothing to estimate it from."""
    given = given_scale(cell_diameter, pixel_size)
    if given is not None:
        return given
    estimate = estimate_cell_diameter(image, segmenter)
    return None if estimate is None else Scale(estimate, "estimate")


def segment_field(image: np.ndarray, segmenter, scale: Scale | None, step_fraction: float = STEP_FRACTION) -> FieldResult:
    """Find, segment and separate every white cell of an RGB uint8 field image at native resolution.

    `scale` (from `resolve_scale`) says how wide the field's white cells are; the training cell
    diameter comes from the segmenter's model card, and the segmenter's pixel size adds µm² areas
    to the cells' measurements. None, a scale that could not be estimated for
    want of any nucleus-dark blob, means no white cell: the result is empty.
    """
    image = check_rgb(image)
    trained = model_cell_diameter(segmenter.card)
    if scale is None:
        return FieldResult(np.zeros(image.shape[:2], np.int32), np.zeros(image.shape[:2], np.uint8), (), None)
    factor = trained / scale.cell_diameter
    h, w = image.shape[:2]
    if h * w * factor**2 > MAX_MODEL_PIXELS:
        raise ScaleError(
            f"at a cell diameter of {scale.cell_diameter:.3g} px ({scale.source}), this {w}x{h} field would be "
            f"{w * factor:.0f}x{h * factor:.0f} px at the model's scale, over {MAX_MODEL_PIXELS / 1e6:.0f} megapixels; "
            "check the cell diameter or pixel size, or cut the image into parts"
        )
    detections = detect_cells(image, segmenter, factor, trained, step_fraction)
    pieces, confidences = segment_cells(image, segmenter, detections, factor, trained)
    instances, classes = paste_cells(image.shape[:2], pieces)
    counts = np.bincount(instances.ravel(), minlength=len(pieces) + 1)
    nuclei = np.bincount(instances[classes == NUCLEUS], minlength=len(pieces) + 1)
    keep = (counts >= MIN_CELL_FRACTION * np.pi / 4 * scale.cell_diameter**2) & (nuclei > 0)
    keep[0] = False
    instances = relabel(instances, classes, keep)
    confidence = {new: confidences[old - 1] for new, old in enumerate(np.flatnonzero(keep), start=1)}
    return FieldResult(instances, classes, cell_infos(instances, classes, confidence, segmenter.pixel_size), scale)


def choose_mode(shape: tuple[int, ...], scale: Scale | None) -> tuple[str, str]:
    """'crop' or 'field' for an image of `shape` at `scale` (from `resolve_scale`), with the reason:
    the datasets' crops are one to three cell diameters across, fields many more, and an image
    with no nucleus-dark blob (scale None) is a field without white cells, never a crop (the crop
    model would paint a cell at its centre)."""
    size = f"{shape[1]}x{shape[0]} px"
    if scale is None:
        return "field", f"{size} shows nothing as dark as a nucleus: a field without white cells"
    across = min(shape[:2]) / scale.cell_diameter
    how = "estimated" if scale.estimated else "given"
    if across <= CROP_MAX_DIAMETERS:
        return "crop", f"{size} is {across:.1f} cell diameters across ({scale.cell_diameter:.0f} px, {how}): a crop centred on one white cell"
    return "field", f"{size} is {across:.1f} cell diameters across ({scale.cell_diameter:.0f} px, {how}): a field that may hold several white cells"
