"""Stand-ins for a Keras model, shared by the tests."""

from __future__ import annotations

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
