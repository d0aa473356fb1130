"""Stand-ins for a Keras model, and loaders of them for Dask workers, shared by the tests."""

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
