"""Sliding-window inference over images larger than the model input, in strips of bounded memory.

As in nnU-Net v2, overlapping tiles are weighted by a Gaussian centred on each tile, because a
convolutional network is least reliable near the edges of its input; the weighted sum is divided
by the summed weights. Tiles are visited one row of tiles at a time, and the rows of pixels that
no later tile touches are handed out at once, so the probabilities held at any time are one
tile-high band of the image, whatever its size.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import cv2
import numpy as np
from scipy import ndimage

#: nnU-Net v2's default: sigma of the importance map as a fraction of the tile side.
SIGMA_SCALE = 1.0 / 8
#: nnU-Net v2's default step between tiles as a fraction of the tile side (half-overlapping tiles).
STEP_FRACTION = 0.5

Predict = Callable[[np.ndarray], np.ndarray]


def gaussian_importance(tile: int, sigma_scale: float = SIGMA_SCALE) -> np.ndarray:
    """A (tile, tile) float32 weight map: a Gaussian centred on the tile, 1 at its peak, with no
    zero anywhere (a zero weight would leave pixels undefined where only that tile reaches)."""
    impulse = np.zeros((tile, tile))
    impulse[tile // 2, tile // 2] = 1.0
    weights = ndimage.gaussian_filter(impulse, tile * sigma_scale, mode="constant", cval=0.0)
    weights = (weights / weights.max()).astype(np.float32)
    weights[weights == 0] = weights[weights > 0].min()
    return weights


def window_starts(length: int, tile: int, step_fraction: float = STEP_FRACTION) -> list[int]:
    """Start offsets of tiles covering [0, length) with steps of at most tile * step_fraction,
    spread evenly so the last tile ends at `length` (length >= tile)."""
    if not 0 < step_fraction <= 1:
        raise ValueError(f"step_fraction must be in (0, 1], got {step_fraction}")
    if length < tile:
        raise ValueError(f"an image side of {length} px is shorter than the tile ({tile} px); pad it first")
    steps = int(np.ceil((length - tile) / (tile * step_fraction))) + 1
    if steps == 1:
        return [0]
    return [round(i * (length - tile) / (steps - 1)) for i in range(steps)]


def predict_strips(
    image: np.ndarray, predict: Predict, tile: int, step_fraction: float = STEP_FRACTION, batch_size: int = 32
) -> Iterator[tuple[int, np.ndarray]]:
    """Blended class probabilities of an RGB image of any size, as (first row, (n, W, C) float32)
    bands that follow each other down the image and cover every row once.

    `predict` maps (N, tile, tile, 3) images to (N, tile, tile, C) probabilities. An image smaller
    than a tile is mirrored at its bottom and right edges up to the tile's size.
    """
    height, width = image.shape[:2]
    padded = np.ascontiguousarray(image)
    if height < tile or width < tile:
        padded = cv2.copyMakeBorder(padded, 0, max(0, tile - height), 0, max(0, tile - width), cv2.BORDER_REFLECT_101)
    rows = window_starts(padded.shape[0], tile, step_fraction)
    cols = window_starts(padded.shape[1], tile, step_fraction)
    weights = gaussian_importance(tile)
    summed: np.ndarray | None = None
    weight = np.zeros((tile, padded.shape[1]), np.float32)
    for i, top in enumerate(rows):
        for k in range(0, len(cols), batch_size):
            lefts = cols[k : k + batch_size]
            probs = predict(np.stack([padded[top : top + tile, left : left + tile] for left in lefts]))
            if summed is None:
                summed = np.zeros((tile, padded.shape[1], probs.shape[-1]), np.float32)
            for left, p in zip(lefts, probs):
                summed[:, left : left + tile] += p * weights[..., None]
                weight[:, left : left + tile] += weights
        done = (rows[i + 1] if i + 1 < len(rows) else top + tile) - top
        last = min(done, height - top)
        if last > 0:
            yield top, summed[:last, :width] / weight[:last, :width, None]
        # The band's finished rows leave; the rows still open move up to the top of the buffers.
        summed[: tile - done] = summed[done:]
        weight[: tile - done] = weight[done:]
        summed[tile - done :] = 0
        weight[tile - done :] = 0


def predict_tiled(
    image: np.ndarray, predict: Predict, tile: int, step_fraction: float = STEP_FRACTION, batch_size: int = 32
) -> np.ndarray:
    """The whole (H, W, C) float32 probability map of `predict_strips`, for images small enough to hold it."""
    return np.concatenate([band for _, band in predict_strips(image, predict, tile, step_fraction, batch_size)])
