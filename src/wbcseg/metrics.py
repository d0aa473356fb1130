"""Pure numpy metrics of one boolean prediction against one boolean truth: Dice, IoU, precision,
recall, pixel accuracy and HD95; and the pixel confusion counts of two label maps.

Edge cases of `segmentation_metrics` (a target absent from the truth, the prediction, or both):

- both empty: the prediction is right, so dice = iou = precision = recall = 1 and hd95 = 0;
- exactly one empty: dice = iou = precision = recall = 0 (sklearn's zero_division=0 convention,
  so a missed or invented region lowers every mean) and hd95 = NaN, because there is no boundary
  to measure a distance to. Means of hd95 skip NaNs; `evaluate.summarize` counts them in `hd95_nan`.

HD95 is the 95th percentile of the pooled distances, in pixels, from each boundary pixel of one
mask to the nearest boundary pixel of the other, in both directions (medpy's `hd95`). The image
border counts as background, so a region cut by the border has a boundary along it.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

METRICS = ("dice", "iou", "precision", "recall", "pixel_accuracy", "hd95")


def _boundary(mask: np.ndarray) -> np.ndarray:
    """Pixels of `mask` with a 4-neighbour outside it (the image border counts as outside)."""
    return mask & ~ndimage.binary_erosion(mask, ndimage.generate_binary_structure(2, 1), border_value=0)


def hd95(pred: np.ndarray, truth: np.ndarray) -> float:
    """95th percentile symmetric Hausdorff distance (pixels) between the boundaries of two
    non-empty masks; NaN when either is empty."""
    pred, truth = np.asarray(pred, bool), np.asarray(truth, bool)
    if not pred.any() or not truth.any():
        return float("nan")
    pred_edge, truth_edge = _boundary(pred), _boundary(truth)
    # The distance transform of the complement of a boundary is, at every pixel, the distance to
    # the nearest boundary pixel: one pass per direction instead of a pairwise loop.
    to_truth = ndimage.distance_transform_edt(~truth_edge)[pred_edge]
    to_pred = ndimage.distance_transform_edt(~pred_edge)[truth_edge]
    return float(np.percentile(np.concatenate([to_truth, to_pred]), 95))


def dice(pred: np.ndarray, truth: np.ndarray) -> float:
    """Dice of two boolean masks alone (1.0 when both are empty), where HD95 is not wanted."""
    total = np.count_nonzero(pred) + np.count_nonzero(truth)
    return 1.0 if total == 0 else 2.0 * np.count_nonzero(np.logical_and(pred, truth)) / total


def segmentation_metrics(pred: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Dice, IoU, precision, recall, pixel accuracy and HD95 of a boolean prediction against a
    boolean truth of the same shape (edge cases in the module docstring)."""
    pred, truth = np.asarray(pred, bool), np.asarray(truth, bool)
    if pred.shape != truth.shape:
        raise ValueError(f"prediction is {pred.shape} but truth is {truth.shape}; score them at the same resolution")
    tp = int(np.count_nonzero(pred & truth))
    fp = int(np.count_nonzero(pred & ~truth))
    fn = int(np.count_nonzero(~pred & truth))
    accuracy = 1.0 - (fp + fn) / pred.size
    if tp + fp + fn == 0:
        return {"dice": 1.0, "iou": 1.0, "precision": 1.0, "recall": 1.0, "pixel_accuracy": accuracy, "hd95": 0.0}
    return {
        "dice": 2 * tp / (2 * tp + fp + fn),
        "iou": tp / (tp + fp + fn),
        "precision": tp / (tp + fp) if tp + fp else 0.0,
        "recall": tp / (tp + fn) if tp + fn else 0.0,
        "pixel_accuracy": accuracy,
        "hd95": hd95(pred, truth),
    }


def confusion_counts(pred: np.ndarray, truth: np.ndarray, n_classes: int) -> np.ndarray:
    """Pixel counts (n_classes x n_classes) of each true class (rows) predicted as each class (columns)."""
    pred, truth = np.asarray(pred), np.asarray(truth)
    if pred.shape != truth.shape:
        raise ValueError(f"prediction is {pred.shape} but truth is {truth.shape}; count them at the same resolution")
    flat = truth.astype(np.int64).ravel() * n_classes + pred.astype(np.int64).ravel()
    return np.bincount(flat, minlength=n_classes * n_classes).reshape(n_classes, n_classes)
