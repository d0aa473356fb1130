"""The Segmenter: the one inference path, used by the evaluation, `wbcseg predict` and the notebooks.

Each image is resized to the model's input, predicted, and its class *probabilities* are resized
back to the native resolution before the arg-max. A model trained with `model.min_cell_diameter`
sees a crop whose white cell would be narrower than that zoomed in on the cell instead, as in
training: a first, plain pass finds the cell, the second segments the window around it.
`Segmenter.load(model_dir)` applies the inference options that the model card records (those its
test metrics were measured with), so the Python API and the command give the same masks from the
same model.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from wbcseg.card import MODEL_FILE, recorded_inference
from wbcseg.engine import make_runner, native_bfloat16, openvino_model, resolve_engine, resolve_precision
from wbcseg.measure import measure
from wbcseg.network import load_model
from wbcseg.params import tta_setting
from wbcseg.postprocess import keep_central_cell
from wbcseg.preprocess import check_rgb, extract, resize_image, resize_probabilities, window_probabilities, zoom_window

#: Images per model call: larger batches cost less per image on a CPU (docs/decisions.md).
DEFAULT_BATCH_SIZE = 32


@dataclass(frozen=True)
class SegmentResult:
    """One image's segmentation at its native resolution.

    labels: (H, W) uint8 in the task's label space (binary 0/1; tissue 0 background, 1 cytoplasm,
    2 nucleus). probabilities: (H, W, C) float32, C = len(card['classes']). measurements: `measure`.
    """

    labels: np.ndarray
    probabilities: np.ndarray
    measurements: dict


def as_class_probabilities(probs: np.ndarray) -> np.ndarray:
    """A model's output as one probability per class: a binary model's single sigmoid channel p
    becomes (1 - p, p)."""
    probs = np.asarray(probs, dtype=np.float32)
    if probs.shape[-1] == 1:
        return np.concatenate([1.0 - probs, probs], axis=-1)
    return probs


#: Each TTA setting's views, as (quarter turns, mirrored first): a view is the image mirrored left to
#: right (if so), then rotated by that many quarter turns. Flipped top to bottom is (2, True).
TTA_VIEWS = {
    "none": ((0, False),),
    "flips": ((0, False), (0, True), (2, True)),
    "dihedral": tuple((turns, mirrored) for mirrored in (False, True) for turns in range(4)),
}


def view(x: np.ndarray, turns: int, mirrored: bool) -> np.ndarray:
    """Images (N, H, W, ...) as one TTA view sees them."""
    return np.rot90(x[:, :, ::-1] if mirrored else x, turns, axes=(1, 2))


def undo_view(x: np.ndarray, turns: int, mirrored: bool) -> np.ndarray:
    """`view`'s inverse: a view's predictions (N, H, W, C) brought back to the image's orientation."""
    x = np.rot90(x, -turns, axes=(1, 2))
    return x[:, :, ::-1] if mirrored else x


def _chunks(items: Iterable, size: int) -> Iterator[list]:
    chunk = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def inference_options(card: dict, tta=None, postprocess=None, precision=None, engine=None) -> tuple[dict, list[str]]:
    """The options a run uses, and notes on each recorded one this machine cannot honour.

    Each option is the one asked for, else the one the card records (`card.recorded_inference`),
    except that a recorded bfloat16 becomes float32 on a machine without native bfloat16 (emulated,
    it would be slow), and a recorded OpenVINO (a CPU engine) becomes TensorFlow where TensorFlow
    sees a GPU.
    """
    recorded = recorded_inference(card)
    asked = {"tta": tta, "postprocess": postprocess, "precision": precision, "engine": engine}
    options = {key: recorded[key] if value is None else value for key, value in asked.items()}
    notes = []
    if precision is None and recorded["precision"] == "bfloat16" and not native_bfloat16():
        options["precision"] = "float32"
        notes.append(
            "the model was evaluated in bfloat16, which this machine does not run natively; "
            "using float32 (a few pixels may differ from the evaluated masks)"
        )
    if engine is None and recorded["engine"] == "openvino" and resolve_engine("auto") == "tensorflow":
        options["engine"] = "tensorflow"
        notes.append(
            "the model was evaluated with OpenVINO on a CPU, and this machine has a GPU; using TensorFlow "
            "(a few pixels may differ from the evaluated masks; engine 'openvino' keeps OpenVINO)"
        )
    return options, notes


class Segmenter:
    """A model and its card, ready to segment RGB uint8 images of any size at native resolution.

    tta: 'none', 'flips' (average the probabilities over the image and its two flips) or
    'dihedral' (over its 8 rotations and mirror images); true and false mean 'flips' and 'none'
    (params.TTA). postprocess: keep the WBC component nearest the image centre and fill its holes
    (`postprocess.keep_central_cell`). pixel_size: µm per pixel, to add µm² areas to the
    measurements. precision: 'float32', 'bfloat16' or 'auto' (bfloat16 where the CPU has it
    natively, else float32). engine: 'tensorflow', 'openvino' (faster on CPUs; see `wbcseg.engine`)
    or 'auto' (openvino unless TensorFlow sees a GPU).

    `model` is a Keras model, or, with the tensorflow engine, anything with its `predict_on_batch`
    (the tests use stand-ins). `Segmenter.load` is the usual way in.
    """

    def __init__(
        self, model, card: dict, tta: str | bool = "none", postprocess: bool = False, pixel_size: float | None = None,
        precision: str = "float32", engine: str = "tensorflow",
    ):
        self.model = model
        self.card = card
        self.task = card["task"]
        self.classes = tuple(card["classes"])
        self.input_size = int(card["input_size"])
        self.tta = tta_setting(tta)
        self.postprocess = bool(postprocess)
        self.pixel_size = pixel_size
        self.min_cell_diameter = card.get("min_cell_diameter")
        self.precision = resolve_precision(precision)
        self.engine = resolve_engine(engine)
        self.notes: list[str] = []
        self._run = make_runner(model, self.engine, self.precision)

    @classmethod
    def load(cls, model_dir: str | os.PathLike, tta=None, postprocess=None, pixel_size=None, precision=None, engine=None) -> Segmenter:
        """The Segmenter of a model directory (model.keras + model_card.json); ModelError if it is unusable.

        Options left as None take the values the card records (see `inference_options`); where this
        machine cannot honour one, `segmenter.notes` says what was used instead. The openvino
        engine's conversion of the model comes from, or goes to, `engine.cache_dir()`.
        """
        model, card = load_model(model_dir)
        options, notes = inference_options(card, tta=tta, postprocess=postprocess, precision=precision, engine=engine)
        if resolve_engine(options["engine"]) == "openvino":
            openvino_model(model, Path(model_dir) / MODEL_FILE)  # the constructor then finds it converted
        segmenter = cls(model, card, pixel_size=pixel_size, **options)
        segmenter.notes = notes
        return segmenter

    def describe(self) -> str:
        """One line: the model and the options this Segmenter runs with."""
        return (
            f"{self.task} model at {self.input_size} px, TTA {'off' if self.tta == 'none' else self.tta}, "
            f"post-processing {'on' if self.postprocess else 'off'}, {self.precision} on {self.engine}"
        )

    def segment(self, image: np.ndarray) -> SegmentResult:
        """Segment one RGB uint8 image (H, W, 3)."""
        return next(self.segment_many([image], batch_size=1))

    def segment_many(self, images: Iterable[np.ndarray], batch_size: int = DEFAULT_BATCH_SIZE) -> Iterator[SegmentResult]:
        """Segment RGB uint8 images lazily, `batch_size` per model call, yielding results in order."""
        for batch in _chunks(images, batch_size):
            batch = [check_rgb(image) for image in batch]
            inputs, windows = self.model_inputs(batch, np.stack([resize_image(image, self.input_size) for image in batch]))
            probs = self.predict_probabilities(inputs)
            yield from (self.finish(image.shape[:2], p, window) for image, p, window in zip(batch, probs, windows))

    def model_inputs(self, images: list[np.ndarray], resized: np.ndarray) -> tuple[np.ndarray, list]:
        """The model-size inputs (N, S, S, 3) of RGB images and their zoom windows (None: resized
        whole), from the images and their whole resized copies. A model trained with
        min_cell_diameter gets each image whose central cell comes out narrower than that in one
        plain pass (no TTA) zoomed in on that cell (`preprocess.zoom_window`, as in training)."""
        if not self.min_cell_diameter:
            return resized, [None] * len(images)
        first = self.predict_probabilities(resized, tta="none")
        inputs, windows = [], []
        for image, small, probs in zip(images, resized, first):
            labels = keep_central_cell(probs.argmax(axis=-1).astype(np.uint8), probs)
            cell = cv2.resize((labels > 0).astype(np.uint8), image.shape[1::-1], interpolation=cv2.INTER_NEAREST) > 0
            window = zoom_window(cell, self.input_size, self.min_cell_diameter)
            inputs.append(small if window is None else resize_image(extract(image, *window), self.input_size))
            windows.append(window)
        return np.stack(inputs), windows

    def predict_probabilities(self, resized: np.ndarray, tta: str | None = None) -> np.ndarray:
        """Class probabilities (N, S, S, C) of model-size RGB images (N, S, S, 3), in one model call,
        averaged over the views of the segmenter's TTA, or of `tta` where given."""
        x = np.asarray(resized, dtype=np.float32)
        views = TTA_VIEWS[self.tta if tta is None else tta_setting(tta)]
        # one call on every view keeps the batch large; the views of a square image share its shape
        probs = as_class_probabilities(self._run(np.ascontiguousarray(np.concatenate([view(x, *v) for v in views]))))
        n = len(x)
        return sum(undo_view(probs[i * n : (i + 1) * n], *v) for i, v in enumerate(views)) / len(views)

    def finish(self, shape: tuple[int, int], probs: np.ndarray, window=None) -> SegmentResult:
        """The result at native `shape` (H, W) of one image's model-size probabilities (S, S, C),
        of the whole image or of its zoom window (`model_inputs`)."""
        probabilities = resize_probabilities(probs, shape) if window is None else window_probabilities(shape, probs, window)
        labels = probabilities.argmax(axis=-1).astype(np.uint8)
        if self.postprocess:
            labels = keep_central_cell(labels, probabilities)
        return SegmentResult(labels, probabilities, measure(labels, probabilities, self.task, self.pixel_size))
