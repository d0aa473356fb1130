"""Synthetic blood-smear fields with ground truth, built from dataset crops, and their scoring.

A field is a red-cell background quilted from the crops' own surroundings (their pixels outside
the white cell), with several white cells of the same crops pasted at random places, all at one
random magnification; some fields hold no white cell. Scoring matches predicted to true cells at
IoU > 0.5, the usual instance-segmentation criterion.
"""

from __future__ import annotations

from dataclasses import dataclass
from dataclasses import field as dataclass_field

import cv2
import numpy as np
from scipy import ndimage

from wbcseg.fields_scale import equivalent_diameter
from wbcseg.metrics import dice

#: Side of the background patches, as a fraction of the crops' median cell diameter: large enough
#: to carry whole red cells, small enough that most crops have room for one beside their white cell.
PATCH_FRACTION = 0.6
#: Ring of the crop's own surroundings pasted with each white cell, as a fraction of its diameter:
#: the cell keeps its real neighbourhood (red cells touching it), and the seams of the quilted
#: background stay away from its outline. With 0.08, the model's outlines of Dataset 2 cells in
#: validation fields lost 0.04 Dice to crop mode even when cropped exactly like the dataset
#: images: the seams, not field mode, were what it saw differently.
RIM_FRACTION = 0.25
#: Margin kept between background patches and any white cell of their crop, as a fraction of
#: the cells' median diameter: the blur of a cell's edge stays out of the background.
BACKGROUND_MARGIN_FRACTION = 0.08
#: A background patch is taken only where at least this share of it is clear of white cells.
MIN_FREE_SHARE = 0.6
#: Colour clusters of a crop's surroundings (pale background, red cells, their edges).
SURROUNDING_CLUSTERS = 3
#: Alpha coverage of the background at which quilting stops.
COVERAGE = 0.995


@dataclass(frozen=True)
class Field:
    """A synthetic field: image (H, W, 3) uint8, instances (H, W) int32 (0 none, 1..n one id per
    white cell), classes (H, W) uint8 (0 background, 1 cytoplasm, 2 nucleus), scale (the factor
    applied to the crops), sources (what each instance id came from, in id order: `make_field`
    gives the index of its crop in the list it was given) and tone (the RGB median of the
    background that every crop was brought to by `toned`; None for a field without cells)."""

    image: np.ndarray
    instances: np.ndarray
    classes: np.ndarray
    scale: float
    sources: tuple
    tone: np.ndarray | None = None


def _feather(size: int) -> np.ndarray:
    """A square alpha window that is 1 inside and falls smoothly to 0 at its edges (Hann edges)."""
    ramp = np.minimum(1.0, np.hanning(size) * 2.0)
    return np.outer(ramp, ramp).astype(np.float32)


def rescale(array: np.ndarray, scale: float, labels: bool = False) -> np.ndarray:
    """An image (area averaging when shrinking, bilinear when enlarging) or, with `labels`, a label
    map (nearest neighbour) resized by `scale`, as cells are pasted into fields."""
    h, w = array.shape[:2]
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    if labels:
        return cv2.resize(array, size, interpolation=cv2.INTER_NEAREST)
    return cv2.resize(array, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)


def toned(image: np.ndarray, labels: np.ndarray, tone: np.ndarray | None) -> np.ndarray:
    """`image` (uint8) with its colours scaled per channel so that its pixels outside the white
    cell (`labels` == 0) have the median RGB `tone`; unchanged when `tone` is None. One field is one
    slide under one light, so its crops and background share one tone."""
    if tone is None:
        return image
    gain = tone / np.maximum(background_tone([(image, labels)]), 1.0)
    return np.clip(image * gain + 0.5, 0, 255).astype(np.uint8)


def _edge_ramp(shape: tuple[int, int], width: int) -> np.ndarray:
    """(H, W) float32 that rises linearly from 0 at the border to 1 at `width` pixels inside."""
    ramps = [np.clip(np.minimum(np.arange(n), np.arange(n)[::-1]) / max(width, 1), 0, 1) for n in shape]
    return np.minimum.outer(*ramps).astype(np.float32)


def _log_likelihood(pixels: np.ndarray, sample: np.ndarray) -> np.ndarray:
    """Log-likelihood of RGB pixels under a Gaussian fitted to `sample` (constant terms dropped)."""
    mean = sample.mean(axis=0)
    cov = np.cov(sample, rowvar=False) + np.eye(3)  # the identity keeps flat colour samples invertible
    diff = pixels - mean
    return -0.5 * np.einsum("ij,jk,ik->i", diff, np.linalg.inv(cov), diff) - 0.5 * np.linalg.slogdet(cov)[1]


def _unlabelled_cells(image: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Pixels outside the labelled white cell that look like it (uint8 0/1): pieces of other white
    cells at a crop's edge, which the masks leave unlabelled and a background must not carry.
    Gaussian colour models decide: one per class of the crop's own white cell against one per
    colour cluster of its surroundings (background, red cells), so red cells stay."""
    outside = labels.ravel() == 0
    pixels = image.reshape(-1, 3).astype(np.float64)
    cell_classes = [pixels[labels.ravel() == c] for c in (1, 2) if (labels == c).sum() > 10]
    if not cell_classes or outside.sum() < 3 * 10:
        return np.zeros(labels.shape, np.uint8)
    criteria = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 20, 1.0)
    # k-means++ draws from OpenCV's global generator: seeded here, or a crop's clusters (and the
    # fields built from it) would depend on the calls made before in the process.
    cv2.setRNGSeed(0)
    _, cluster, _ = cv2.kmeans(pixels[outside].astype(np.float32), SURROUNDING_CLUSTERS, None, criteria, 2, cv2.KMEANS_PP_CENTERS)
    surroundings = [pixels[outside][cluster.ravel() == k] for k in range(SURROUNDING_CLUSTERS)]
    best_cell = np.max([_log_likelihood(pixels, c) for c in cell_classes], axis=0)
    best_rest = np.max([_log_likelihood(pixels, c) for c in surroundings if len(c) > 10], axis=0)
    foreign = ((best_cell > best_rest + np.log(9)) & outside).reshape(labels.shape).astype(np.uint8)
    return cv2.morphologyEx(foreign, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))


def background_tone(crops: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """Median RGB of the crops' pixels outside their white cells."""
    return np.median(np.concatenate([image[labels == 0] for image, labels in crops]), axis=0)


def quilt_background(
    crops: list[tuple[np.ndarray, np.ndarray]], shape: tuple[int, int], scale: float, rng: np.random.Generator,
    tone: np.ndarray | None = None,
) -> np.ndarray:
    """An (H, W, 3) uint8 background of the crops' pixels outside their white cells, at `scale`,
    each crop's colours scaled per channel to `tone` (`background_tone`), if given, so that the
    rims pasted with white cells match it.

    Feathered square patches are laid at random places, each taken where most of it is clear of
    the crop's white cell and of unlabelled pieces of others, and masked where it is not, until
    the whole canvas is covered; a later patch hides the ones below it. ValueError if the crops
    cannot cover it (a half-covered canvas filled with one colour would change the field's median
    colour, which field mode measures darkness against).
    """
    diameters = [equivalent_diameter(np.count_nonzero(labels)) for _, labels in crops]
    patch = max(8, round(PATCH_FRACTION * float(np.median(diameters))))
    margin = max(1, round(BACKGROUND_MARGIN_FRACTION * float(np.median(diameters))))
    sources = []
    for image, labels in crops:
        if image.shape[0] <= patch or image.shape[1] <= patch:
            continue
        free = cv2.erode((labels == 0).astype(np.uint8), np.ones((2 * margin + 1,) * 2, np.uint8))
        free &= ~cv2.dilate(_unlabelled_cells(image, labels), np.ones((6 * margin + 1,) * 2, np.uint8))
        # Share of each patch (by its top-left corner) that is free.
        share = cv2.boxFilter(free.astype(np.float32), -1, (patch, patch), anchor=(0, 0), borderType=cv2.BORDER_CONSTANT)
        corners = np.argwhere(share[: image.shape[0] - patch + 1, : image.shape[1] - patch + 1] >= MIN_FREE_SHARE)
        if len(corners):
            sources.append((toned(image, labels, tone).astype(np.float32), free, corners))
    if not sources:
        raise ValueError(f"no crop has a {patch} px patch mostly clear of white cells to build a background from")
    height, width = shape
    canvas = np.zeros((height, width, 3), np.float32)
    cover = np.zeros((height, width), np.float32)
    window = _feather(patch)
    patches = 0
    while cover.min() < COVERAGE:
        if patches > 400 * height * width / (patch * scale) ** 2 + 1000:
            raise ValueError(f"the crops' clear patches could not cover a {width}x{height} background")
        for _ in range(16):
            image, free, corners = sources[rng.integers(len(sources))]
            y, x = corners[rng.integers(len(corners))]
            pixels = rescale(image[y : y + patch, x : x + patch], scale)
            alpha = rescale(window * free[y : y + patch, x : x + patch], scale)
            ph, pw = alpha.shape
            top, left = rng.integers(-ph // 2, height - ph // 2), rng.integers(-pw // 2, width - pw // 2)
            ys, xs = slice(max(top, 0), min(top + ph, height)), slice(max(left, 0), min(left + pw, width))
            inner = (slice(ys.start - top, ys.stop - top), slice(xs.start - left, xs.stop - left))
            a = alpha[inner][..., None]
            canvas[ys, xs] = canvas[ys, xs] * (1 - a) + pixels[inner] * a
            cover[ys, xs] = cover[ys, xs] * (1 - a[..., 0]) + a[..., 0]
        patches += 16
    return np.clip(canvas / cover[..., None] + 0.5, 0, 255).astype(np.uint8)


def _place(sizes: list[int], shape: tuple[int, int], rng: np.random.Generator, tries: int = 200) -> list[tuple[int, int] | None]:
    """Top-left corners for squares of `sizes` inside `shape`, none overlapping; None for a square
    that finds no room in `tries` random draws."""
    placed: list[tuple[int, int, int]] = []
    corners: list[tuple[int, int] | None] = []
    for size in sizes:
        corners.append(None)
        for _ in range(tries if size < min(shape) else 0):
            y, x = int(rng.integers(0, shape[0] - size)), int(rng.integers(0, shape[1] - size))
            if all(y + size <= py or py + ps <= y or x + size <= px or px + ps <= x for py, px, ps in placed):
                placed.append((y, x, size))
                corners[-1] = (y, x)
                break
    return corners


def make_field(
    cells: list[tuple[np.ndarray, np.ndarray]],
    background: list[tuple[np.ndarray, np.ndarray]],
    shape: tuple[int, int],
    scale: float,
    rng: np.random.Generator,
) -> Field:
    """A field of `shape` with the white cells of `cells` (crops and class maps), all at `scale`,
    at random places where their bounding squares (cell plus rim) do not overlap, on a background
    quilted from `background` crops. Crops differ in tone, and a rim of another tone than the field
    stands out as part of the cell (the model took such rims of Dataset 1's tight crops for
    cytoplasm), so every crop and background patch is brought to the median tone of the cells'
    surroundings (`toned`), and each rim fades out before its crop's edge. A cell that finds no
    room is left out (see Field.sources)."""
    tone = background_tone(cells) if cells else None
    image = quilt_background(background, shape, scale, rng, tone)
    instances = np.zeros(shape, np.int32)
    classes = np.zeros(shape, np.uint8)
    pieces = []
    for crop, labels in cells:
        crop, labels = rescale(toned(crop, labels, tone), scale), rescale(labels, scale, labels=True)
        if not (labels > 0).any():
            raise ValueError("a cell crop at this scale has no white-cell pixel left")
        rim = max(1, round(RIM_FRACTION * equivalent_diameter(np.count_nonzero(labels))))
        cell = ndimage.binary_fill_holes(labels > 0)
        alpha = cv2.dilate(cell.astype(np.uint8), cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * rim + 1,) * 2))
        alpha = cv2.GaussianBlur(alpha.astype(np.float32), (0, 0), rim / 2.0) * _edge_ramp(labels.shape, rim // 2)
        alpha[cell] = 1.0
        rows, cols = np.nonzero(alpha > 1e-3)
        y0, x0, y1, x1 = rows.min(), cols.min(), rows.max() + 1, cols.max() + 1
        pieces.append((crop[y0:y1, x0:x1], labels[y0:y1, x0:x1], alpha[y0:y1, x0:x1]))
    corners = _place([max(p[0].shape[:2]) for p in pieces], shape, rng)
    sources = []
    for index, ((crop, labels, alpha), corner) in enumerate(zip(pieces, corners)):
        if corner is None:
            continue
        (y, x), (h, w) = corner, labels.shape
        region = (slice(y, y + h), slice(x, x + w))
        a = alpha[..., None]
        image[region] = np.clip(image[region] * (1 - a) + crop * a + 0.5, 0, 255).astype(np.uint8)
        instances[region][labels > 0] = len(sources) + 1
        classes[region][labels > 0] = labels[labels > 0]
        sources.append(index)
    return Field(image, instances, classes, float(scale), tuple(sources), tone)


# --------------------------------------------------------------------------- scoring


def match_cells(truth: np.ndarray, predicted: np.ndarray, threshold: float = 0.5) -> list[tuple[int, int, float]]:
    """(true id, predicted id, IoU) of every pair with IoU > threshold. Above 0.5 a cell can match
    at most one cell of the other image, so no assignment problem arises."""
    if threshold < 0.5:
        raise ValueError(f"matching needs an IoU threshold >= 0.5 to be one-to-one, got {threshold}")
    both = (truth > 0) & (predicted > 0)
    pairs, overlap = np.unique(np.stack([truth[both], predicted[both]]), axis=1, return_counts=True)
    true_area = np.bincount(truth.ravel())
    pred_area = np.bincount(predicted.ravel())
    out = []
    for (t, p), inter in zip(pairs.T, overlap):
        iou = inter / (true_area[t] + pred_area[p] - inter)
        if iou > threshold:
            out.append((int(t), int(p), float(iou)))
    return out


@dataclass
class FieldScores:
    """Running detection counts over fields, and the whole-cell Dice of each matched cell."""

    true_positives: int = 0
    false_positives: int = 0
    false_negatives: int = 0
    empty_fields: int = 0
    cells_on_empty_fields: int = 0
    dice: list[tuple[object, float]] = dataclass_field(default_factory=list)  # (source of the true cell, Dice)

    def add(self, field: Field, predicted: np.ndarray) -> None:
        """Score one field's predicted instance labels against its truth."""
        matches = match_cells(field.instances, predicted)
        n_true, n_pred = len(field.sources), len(np.unique(predicted[predicted > 0]))
        self.true_positives += len(matches)
        self.false_positives += n_pred - len(matches)
        self.false_negatives += n_true - len(matches)
        if n_true == 0:
            self.empty_fields += 1
            self.cells_on_empty_fields += n_pred
        for t, p, _ in matches:
            self.dice.append((field.sources[t - 1], dice(field.instances == t, predicted == p)))

    @property
    def precision(self) -> float:
        found = self.true_positives + self.false_positives
        return self.true_positives / found if found else 1.0

    @property
    def recall(self) -> float:
        real = self.true_positives + self.false_negatives
        return self.true_positives / real if real else 1.0

    @property
    def false_cells_per_empty_field(self) -> float:
        return self.cells_on_empty_fields / self.empty_fields if self.empty_fields else 0.0
