"""Stand-ins for a Keras model, loaders of them for Dask workers, and drawn smear fields, shared by the tests."""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass

import numpy as np

from wbcseg.segmenter import Segmenter


class ColourModel:
    """Stands in for a Keras model: each pixel's probabilities depend on its colour alone, so
    flipping the input flips the output exactly."""

    def __init__(self, channels: int):
        self.channels = channels

    def predict_on_batch(self, x):
        red, green = x[..., :1] / 255.0, x[..., 1:2] / 255.0
        if self.channels == 1:
            return red
        return np.concatenate([1 - red, red * (1 - green), red * green], axis=-1)


class StainModel:
    """Stands in for a Keras tissue model on smears: nucleus where green is dark, cytoplasm where it
    is middling (red cells too, as the real model's cytoplasm class tends to), background where
    pale; each pixel by its own colour, so tiled and whole-image predictions agree. Records the
    number of images of each call (TTA views included)."""

    def __init__(self):
        self.batches: list[int] = []

    @property
    def calls(self) -> int:
        return len(self.batches)

    @property
    def images(self) -> int:
        return sum(self.batches)

    def predict_on_batch(self, x):
        self.batches.append(len(x))
        green = np.asarray(x, np.float32)[..., 1:2]
        nucleus = 1 / (1 + np.exp((green - 95) / 8))
        cytoplasm = (1 - nucleus) / (1 + np.exp((green - 165) / 8))
        return np.concatenate([1 - nucleus - cytoplasm, cytoplasm, nucleus], axis=-1)


#: The stand-in's training cell diameter in its 32 px input: about the real model's 77 of 128.
STAIN_CELL_DIAMETER = 18


def stain_segmenter(**options) -> Segmenter:
    """A Segmenter of the StainModel, with a card that records its training scale."""
    card = {"task": "tissue", "classes": ["background", "cytoplasm", "nucleus"], "input_size": 32,
            "scale": {"cell_diameter_px": STAIN_CELL_DIAMETER}}
    return Segmenter(StainModel(), card, **options)


def colour_segmenter(task: str, **options) -> Segmenter:
    classes = ["background", "cell"] if task == "binary" else ["background", "cytoplasm", "nucleus"]
    card = {"task": task, "classes": classes, "input_size": 32}
    return Segmenter(ColourModel(1 if task == "binary" else 3), card, **options)


def tiny_config(**changes):
    """A params.RunConfig for a tiny, fast run (96 px, one dataset, two images a batch)."""
    from wbcseg.params import RunConfig

    settings = dict(
        variant="test", task="tissue", datasets=(1,), test_datasets=(1,), epochs=1, batch_size=2, learning_rate=1e-3,
        schedule="constant", warmup_epochs=0, loss="dice_ce", augment="none", balance=False, precision="float32", deterministic=False,
        seed=0, backbone="inceptionv3", encoder_weights=None, input_size=96,
    )
    return RunConfig(**{**settings, **changes})
@dataclass(frozen=True)
class ColourLoader:
    """Loads a colour segmenter on a Dask worker (a picklable stand-in for cluster.ModelSpec)."""

    task: str = "tissue"

    def __call__(self) -> Segmenter:
        return colour_segmenter(self.task)


class KillingModel(ColourModel):
    """A ColourModel that kills its own process on its second call, the first process to get
    there creating the `marker` file: a worker dies in the middle of a chunk of several batches,
    after its first batch's PNGs, and the other processes find the marker and go on."""

    calls = 0

    def __init__(self, channels: int, marker: str):
        super().__init__(channels)
        self.marker = marker

    def predict_on_batch(self, x):
        self.calls += 1
        if self.calls == 2:
            try:
                os.close(os.open(self.marker, os.O_CREAT | os.O_EXCL))  # atomic: one process only
            except FileExistsError:
                pass
            else:
                time.sleep(0.5)  # the writer threads write the first batch's PNGs, which the rerun overwrites
                os.kill(os.getpid(), signal.SIGKILL)
        return super().predict_on_batch(x)


@dataclass(frozen=True)
class KillOnceLoader:
    """Loads a colour segmenter whose model kills its worker once (see KillingModel)."""

    marker: str

    def __call__(self) -> Segmenter:
        card = {"task": "tissue", "classes": ["background", "cytoplasm", "nucleus"], "input_size": 32}
        return Segmenter(KillingModel(3, self.marker), card)


BACKGROUND, CYTOPLASM, NUCLEUS, RED_CELL = (235, 215, 200), (200, 150, 210), (90, 40, 130), (215, 150, 165)


def draw_field(shape, cells, red_cells=()):
    """A field image and its true instances: cells are (y, x, radius) with a nucleus of 0.45 the
    radius (or, for a 4-tuple with True last, two lobes); red cells are (y, x, radius) discs."""
    image = np.empty((*shape, 3), np.uint8)
    image[:] = BACKGROUND
    truth = np.zeros(shape, np.int32)
    rows, cols = np.indices(shape)
    for y, x, r in red_cells:
        image[np.hypot(rows - y, cols - x) < r] = RED_CELL
    for i, (y, x, r, *lobed) in enumerate(cells, start=1):
        disc = np.hypot(rows - y, cols - x) < r
        image[disc] = CYTOPLASM
        truth[disc & ((truth == 0) | (np.hypot(rows - y, cols - x) < r - 1))] = i
        if lobed and lobed[0]:
            for dx in (-0.45 * r, 0.45 * r):  # lobes 0.15 diameters apart
                image[np.hypot(rows - y, cols - x - dx) < 0.3 * r] = NUCLEUS
        else:
            image[np.hypot(rows - y, cols - x) < 0.45 * r] = NUCLEUS
    return image, truth
