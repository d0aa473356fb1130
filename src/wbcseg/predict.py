"""Masks, overlays and measurements for new images: the `wbcseg predict` command and its Python API.

`Segmenter` is the one way to turn images into label maps: `wbcseg predict` and the evaluation
stage both go through `Segmenter.predict_probabilities` and `Segmenter.finish`, so they give the
same mask by construction. Each image is resized to the model's input, predicted, and its class
*probabilities* are resized back to the native resolution before the arg-max.

TensorFlow and the other heavy libraries are imported inside functions, because `wbcseg fetch`
imports this module (for `add_arguments`) and must stay fast.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import tempfile
from collections import Counter, deque
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from wbcseg.params import ENGINES, PRECISIONS

IMAGE_SUFFIXES = (".bmp", ".png", ".jpg", ".jpeg", ".tif", ".tiff")
TIFF_SUFFIXES = (".tif", ".tiff")
DEFAULT_MAX_MEGAPIXELS = 50.0
#: 32: on 2 CPU cores a bfloat16 model call costs 17.3 ms per image at 16 images, 16.0 at 32.
DEFAULT_BATCH_SIZE = 32
#: Files decoded at once by tf.data. A fixed number, not AUTOTUNE: on 2 cores, AUTOTUNE's
#: tuning made the end of the image stream stall for up to 1.8 s, and decoding is a small share of the work.
DECODERS = min(4, os.cpu_count() or 1)
MEASUREMENTS_FILE = "measurements.csv"
MASKS_DIR = "masks"
OVERLAYS_DIR = "overlays"
#: Overlay colour (RGB) of each label of a task; row 0 (background) is never painted.
OVERLAY_COLOURS = {
    "binary": ((0, 0, 0), (0, 220, 255)),
    "tissue": ((0, 0, 0), (0, 200, 80), (255, 40, 40)),
}
OVERLAY_ALPHA = 0.35
#: Columns of `measure`, in order; the µm² ones only when a pixel size is given.
AREA_COLUMNS = ("wbc_area", "nucleus_area", "cytoplasm_area")
SHAPE_COLUMNS = (
    "nc_ratio", "centroid_x", "centroid_y", "bbox_x", "bbox_y", "bbox_width", "bbox_height",
    "n_components", "mean_confidence",
)
FILE_COLUMNS = ("image", "mask", "overlay", "width", "height")


# --------------------------------------------------------------------------- label maps


def mask_to_png_values(labels: np.ndarray, task: str) -> np.ndarray:
    """A label map as the dataset's PNG grey values: tissue 0/128/255, binary 0/255."""
    from wbcseg.data import MASK_VALUES

    if task == "tissue":
        return MASK_VALUES[labels]
    if task == "binary":
        return np.where(labels > 0, 255, 0).astype(np.uint8)
    raise ValueError(f"unknown task {task!r}; choose 'binary' or 'tissue'")


def measurement_columns(pixel_size: float | None = None) -> list[str]:
    """The keys of `measure`'s dict, in order."""
    areas = [f"{name}_px" for name in AREA_COLUMNS]
    if pixel_size is not None:
        areas += [f"{name}_um2" for name in AREA_COLUMNS]
    return areas + list(SHAPE_COLUMNS)


def measure(labels: np.ndarray, probabilities: np.ndarray, task: str, pixel_size: float | None = None) -> dict:
    """Areas, nucleus:cytoplasm ratio, centroid, bounding box, component count and confidence of the WBC.

    The WBC is every pixel with a label > 0 (all its components). Areas are in pixels, and in µm²
    when `pixel_size` (µm per pixel) is given. A binary model knows no nucleus or cytoplasm, so
    those entries are None; so are the entries that an empty mask leaves undefined.
    `mean_confidence` is the mean probability of the assigned label over the WBC pixels.
    """
    from wbcseg.postprocess import wbc_components

    if task not in ("binary", "tissue"):
        raise ValueError(f"unknown task {task!r}; choose 'binary' or 'tissue'")
    cell = labels > 0
    rows, cols = np.nonzero(cell)
    tissue = task == "tissue"
    areas = {
        "wbc_area": int(rows.size),
        "nucleus_area": int((labels == 2).sum()) if tissue else None,
        "cytoplasm_area": int((labels == 1).sum()) if tissue else None,
    }
    out = {f"{name}_px": value for name, value in areas.items()}
    if pixel_size is not None:
        out.update({f"{name}_um2": None if v is None else v * pixel_size**2 for name, v in areas.items()})
    found = rows.size > 0
    assigned = np.take_along_axis(probabilities, labels[..., None].astype(np.intp), axis=-1)[..., 0]
    out.update(
        nc_ratio=areas["nucleus_area"] / areas["cytoplasm_area"] if tissue and areas["cytoplasm_area"] else None,
        centroid_x=float(cols.mean()) if found else None,
        centroid_y=float(rows.mean()) if found else None,
        bbox_x=int(cols.min()) if found else None,
        bbox_y=int(rows.min()) if found else None,
        bbox_width=int(cols.max() - cols.min() + 1) if found else None,
        bbox_height=int(rows.max() - rows.min() + 1) if found else None,
        n_components=wbc_components(labels)[1],
        mean_confidence=float(assigned[cell].mean()) if found else None,
    )
    return out


def overlay(image: np.ndarray, labels: np.ndarray, task: str) -> np.ndarray:
    """The image with each WBC label tinted and outlined in its colour (OVERLAY_COLOURS)."""
    import cv2

    colours = np.asarray(OVERLAY_COLOURS[task], np.uint8)
    cell = labels > 0
    out = image.copy()
    # Blending only the WBC pixels, not the whole image, halved the time of this function (Dataset 2).
    out[cell] = (image[cell] * (1 - OVERLAY_ALPHA) + colours[labels[cell]] * OVERLAY_ALPHA + 0.5).astype(np.uint8)
    # A label's outline: its pixels with a differently labelled neighbour. OpenCV's 3x3 erosion and
    # dilation find them ~25x faster than skimage's find_boundaries, which matters per image.
    square = np.ones((3, 3), np.uint8)
    edge = cell & ((cv2.erode(labels, square) != labels) | (cv2.dilate(labels, square) != labels))
    out[edge] = colours[labels[edge]]
    return out


# --------------------------------------------------------------------------- the Python API


@dataclass(frozen=True)
class SegmentResult:
    """One image's segmentation at its native resolution.

    labels: (H, W) uint8 in the task's label space (binary 0/1; tissue 0 background, 1 cytoplasm,
    2 nucleus). probabilities: (H, W, C) float32, C = len(card['classes']). measurements: `measure`.
    """

    labels: np.ndarray
    probabilities: np.ndarray
    measurements: dict


def _check_rgb(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[-1] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an RGB uint8 image (H, W, 3), got {image.dtype} {image.shape}; use wbcseg.data.read_image")
    return np.ascontiguousarray(image)  # OpenCV refuses some views, such as flipped ones


def _chunks(items: Iterable, size: int) -> Iterator[list]:
    chunk = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


class Segmenter:
    """A model and its card, ready to segment RGB uint8 images of any size at native resolution.

    tta: average the probabilities over horizontal and vertical flips. postprocess: keep the WBC
    component nearest the image centre and fill its holes (`postprocess.keep_central_cell`).
    pixel_size: µm per pixel, to add µm² areas to the measurements. precision: 'float32',
    'bfloat16' (about 1.6x faster on CPUs with native bfloat16; see `model.inference_precision`)
    or 'auto' (bfloat16 where native, else float32). engine: 'tensorflow', 'openvino' (faster on
    CPUs; see `wbcseg.engine`) or 'auto' (openvino unless TensorFlow sees a GPU).

    `model` is a Keras model, or, with the tensorflow engine, anything with its `predict_on_batch`
    (the tests use stand-ins).
    """

    def __init__(
        self, model, card: dict, tta: bool = False, postprocess: bool = False, pixel_size: float | None = None,
        precision: str = "float32", engine: str = "tensorflow",
    ):
        from wbcseg.engine import OpenVinoRunner, resolve_engine
        from wbcseg.model import resolve_precision

        self.model = model
        self.card = card
        self.task = card["task"]
        self.classes = tuple(card["classes"])
        self.input_size = int(card["input_size"])
        self.tta = bool(tta)
        self.postprocess = bool(postprocess)
        self.pixel_size = pixel_size
        self.precision = resolve_precision(precision)
        self.engine = resolve_engine(engine)
        self._openvino = OpenVinoRunner(model, self.precision) if self.engine == "openvino" else None

    @classmethod
    def load(cls, model_dir: str | os.PathLike, **options) -> "Segmenter":
        """The Segmenter of a model directory (model.keras + model_card.json), with the options of
        `Segmenter` (tta, postprocess, pixel_size, precision, engine); ModelError if it is unusable.
        The openvino engine's conversion of the model comes from, or goes to, `engine.cache_dir()`."""
        from wbcseg.engine import openvino_model, resolve_engine
        from wbcseg.model import MODEL_FILE, load_model

        model, card = load_model(model_dir)
        if resolve_engine(options.get("engine", "tensorflow")) == "openvino":
            openvino_model(model, Path(model_dir) / MODEL_FILE)  # the constructor then finds it converted
        return cls(model, card, **options)

    def segment(self, image: np.ndarray) -> SegmentResult:
        """Segment one RGB uint8 image (H, W, 3)."""
        return next(self.segment_many([image], batch_size=1))

    def segment_many(self, images: Iterable[np.ndarray], batch_size: int = DEFAULT_BATCH_SIZE) -> Iterator[SegmentResult]:
        """Segment RGB uint8 images lazily, `batch_size` per model call, yielding results in order."""
        from wbcseg.preprocess import resize_image

        for batch in _chunks(images, batch_size):
            batch = [_check_rgb(image) for image in batch]
            probs = self.predict_probabilities(np.stack([resize_image(image, self.input_size) for image in batch]))
            yield from (self.finish(image.shape[:2], p) for image, p in zip(batch, probs))

    def predict_probabilities(self, resized: np.ndarray) -> np.ndarray:
        """Class probabilities (N, S, S, C) of model-size RGB images (N, S, S, 3), in one model call."""
        from wbcseg.model import as_class_probabilities, inference_precision

        x = np.asarray(resized, dtype=np.float32)
        if self.tta:  # one call on the three views keeps the batch large
            x = np.concatenate([x, x[:, :, ::-1], x[:, ::-1]])
        if self._openvino is not None:
            probs = as_class_probabilities(self._openvino(x))
        else:
            with inference_precision(self.precision):
                probs = as_class_probabilities(self.model.predict_on_batch(x))
        if not self.tta:
            return probs
        n = len(probs) // 3  # each view's flip is undone before averaging
        return (probs[:n] + probs[n : 2 * n, :, ::-1] + probs[2 * n :, ::-1]) / 3

    def finish(self, shape: tuple[int, int], probs: np.ndarray) -> SegmentResult:
        """The result at native `shape` (H, W) of one image's model-size probabilities (S, S, C)."""
        from wbcseg.postprocess import keep_central_cell
        from wbcseg.preprocess import resize_probabilities

        probabilities = resize_probabilities(probs, shape)
        labels = probabilities.argmax(axis=-1).astype(np.uint8)
        if self.postprocess:
            labels = keep_central_cell(labels, probabilities)
        return SegmentResult(labels, probabilities, measure(labels, probabilities, self.task, self.pixel_size))


def card_inference_options(card: dict) -> dict:
    """The inference options that a model card records under 'inference' (those its test metrics
    were measured with): {'tta': bool, 'postprocess': bool, 'precision': str, 'engine': str}; off,
    float32 and tensorflow when not recorded."""
    recorded = card.get("inference") or {}
    options = {key: bool(recorded.get(key, False)) for key in ("tta", "postprocess")}
    return {**options, "precision": recorded.get("precision") or "float32", "engine": recorded.get("engine") or "tensorflow"}


# --------------------------------------------------------------------------- reading user files


def _check_pixels(path: Path, width: int, height: int, max_megapixels: float) -> None:
    if width * height > max_megapixels * 1e6:
        from wbcseg.data import DataError

        raise DataError(
            f"{path}: image is {width}x{height} ({width * height / 1e6:.3g} megapixels), "
            f"over the limit of {max_megapixels:g} (raise it with --max-megapixels)"
        )


def _check_header_size(path: Path, max_megapixels: float) -> None:
    """Refuse an image over the limit from its header, before decoding it fills the memory."""
    from PIL import Image

    from wbcseg.data import DataError

    try:
        with Image.open(path) as image:
            width, height = image.size
    except Image.DecompressionBombError as exc:
        raise DataError(f"{path}: image is too large to decode safely ({exc})") from exc
    except Exception:
        return  # not parsable: read_image explains why
    _check_pixels(path, width, height, max_megapixels)


def tiff_array_to_rgb(array: np.ndarray) -> np.ndarray:
    """RGB uint8 from a TIFF page's array (grey, RGB or RGBA; 8/16-bit integer or float), scaled
    like data.to_rgb_uint8: 16-bit by 65535 (or 255 when no value exceeds it), float by its range."""
    array = np.squeeze(array)
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3 or array.shape[-1] not in (1, 3, 4):
        raise ValueError(f"unsupported TIFF layout {array.shape}")
    rgb = np.repeat(array, 3, axis=-1) if array.shape[-1] == 1 else array[..., :3]
    if rgb.dtype == np.uint8:
        return np.ascontiguousarray(rgb)
    rgb = rgb.astype(np.float64)
    if array.dtype.kind == "f":
        low, span = rgb.min(), (rgb.max() - rgb.min()) or 1.0
    else:
        low, span = 0.0, 65535.0 if rgb.max() > 255 else 255.0
    return np.clip((rgb - low) / span * 255.0 + 0.5, 0, 255).astype(np.uint8)


def read_input_image(path: str | os.PathLike, max_megapixels: float = DEFAULT_MAX_MEGAPIXELS) -> np.ndarray:
    """A user's image file (BMP, PNG, JPEG, TIFF; RGB, RGBA, grey, 16-bit) as RGB uint8 (H, W, 3).

    DataError naming the file when it is missing, empty, unreadable or over `max_megapixels`.
    TIFFs that PIL cannot decode (float RGB, for one) are read with tifffile.
    """
    from wbcseg.data import DataError, read_image

    path = Path(path)
    _check_header_size(path, max_megapixels)
    try:
        return read_image(path)
    except DataError as pil_error:
        if path.suffix.lower() not in TIFF_SUFFIXES:
            raise
        import tifffile

        try:
            with tifffile.TiffFile(path) as tif:
                page = tif.pages.first
                _check_pixels(path, page.imagewidth, page.imagelength, max_megapixels)
                return tiff_array_to_rgb(page.asarray())
        except DataError:
            raise
        except Exception:
            raise pil_error from None  # tifffile cannot read it either; PIL's reason is the clearer one


def find_images(paths: Iterable[str | os.PathLike], exclude: str | os.PathLike | None = None) -> tuple[list[Path], list[Path]]:
    """The image files named by `paths` (files as given, folders searched recursively for
    IMAGE_SUFFIXES, sorted, duplicates dropped, nothing under `exclude`), and the paths that do not exist."""
    excluded = os.path.abspath(exclude) if exclude else None
    files, missing, seen = [], [], set()
    for path in map(Path, paths):
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        elif path.exists():
            found = [path]
        else:
            missing.append(path)
            continue
        for file in found:
            key = os.path.abspath(file)
            if key in seen or (excluded and os.path.commonpath([key, excluded]) == excluded):
                continue
            seen.add(key)
            files.append(file)
    return files, missing


def output_names(files: list[Path]) -> list[Path]:
    """The relative output path (without extension) of each file: its path below the files'
    common folder, so same-named files in different folders never collide; where two files in
    one folder share a stem (a.bmp, a.png), their full names are kept (a.bmp, a.png)."""
    if not files:
        return []
    absolute = [Path(os.path.abspath(f)) for f in files]
    root = Path(os.path.commonpath([str(p.parent) for p in absolute]))
    relative = [p.relative_to(root) for p in absolute]
    stems = [r.with_suffix("") for r in relative]
    shared = {stem for stem, n in Counter(stems).items() if n > 1}
    return [r if s in shared else s for r, s in zip(relative, stems)]


# --------------------------------------------------------------------------- writing outputs


def encode_png(array: np.ndarray) -> bytes:
    """A grey (H, W) or RGB (H, W, 3) uint8 array as PNG bytes.

    'Up' filtering with run-length coding: in one measurement on Dataset 2 this took 2.7 ms per
    overlay against 3.3 for Paeth with Huffman-only coding (files 3 % larger) and 0.15 ms per mask
    against 0.64 (files 8 times smaller); zlib's default level is slower still. Encoding is the largest per-image cost
    after the model.
    """
    import cv2

    pixels = array if array.ndim == 2 else cv2.cvtColor(array, cv2.COLOR_RGB2BGR)
    options = [cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_UP, cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_RLE]
    ok, data = cv2.imencode(".png", pixels, options)
    if not ok:
        raise OSError(f"OpenCV could not encode a {array.dtype} {array.shape} array as PNG")
    return data.tobytes()


def write_png(array: np.ndarray, path: Path) -> None:
    """Write a PNG atomically: a temporary file beside it, then os.replace."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = encode_png(array)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def _csv_value(value):
    return round(value, 4) if isinstance(value, float) else value


class MeasurementsTable:
    """measurements.csv, written row by row to a hidden temporary file (each row flushed whole)
    and moved into place with os.replace when closed, also after an error or Ctrl-C: the table
    then holds exactly the images finished so far, and never a half row."""

    def __init__(self, path: Path, columns: list[str]):
        self.path = path
        self.tmp = path.with_name(f".{path.name}.partial")
        self.file = open(self.tmp, "w", newline="")
        self.writer = csv.DictWriter(self.file, fieldnames=columns)
        self.writer.writeheader()

    def write(self, row: dict) -> None:
        self.writer.writerow({key: _csv_value(value) for key, value in row.items()})
        self.file.flush()

    def close(self) -> None:
        self.file.close()
        os.replace(self.tmp, self.path)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()


def write_outputs(image: np.ndarray, labels: np.ndarray, measurements: dict, task: str, out_dir: Path, name: Path, source: Path) -> dict:
    """Write one image's mask and overlay PNGs; its measurements.csv row."""
    mask_path = out_dir / MASKS_DIR / f"{name}.png"
    overlay_path = out_dir / OVERLAYS_DIR / f"{name}.png"
    write_png(mask_to_png_values(labels, task), mask_path)
    write_png(overlay(image, labels, task), overlay_path)
    return {
        "image": str(source),
        "mask": mask_path.relative_to(out_dir).as_posix(),
        "overlay": overlay_path.relative_to(out_dir).as_posix(),
        "width": image.shape[1],
        "height": image.shape[0],
        **measurements,
    }


def finish_and_write(segmenter: Segmenter, image: np.ndarray, probs: np.ndarray, out_dir: Path, name: Path, source: Path) -> dict:
    """`write_outputs` for one image, given its model-size probabilities from `Segmenter.predict_probabilities`."""
    result = segmenter.finish(image.shape[:2], probs)
    return write_outputs(image, result.labels, result.measurements, segmenter.task, out_dir, name, source)


# --------------------------------------------------------------------------- the batched pipeline


def decoded_images(files: list[Path], size: int, max_megapixels: float, prefetch: int) -> Iterator[tuple]:
    """(image, resized to size x size, error message or '') per file, in order; files are read,
    decoded and resized in parallel by tf.data, a bounded number ahead of the consumer."""
    import tensorflow as tf

    from wbcseg.preprocess import resize_image

    empty = (np.zeros((0, 0, 3), np.uint8), np.zeros((size, size, 3), np.uint8))

    def load(index):
        path = files[int(index)]
        try:
            image = read_input_image(path, max_megapixels)
            return image, resize_image(image, size), np.bytes_(b"")
        except Exception as exc:  # any reason at all: one bad file must not stop the run
            reason = str(exc) if str(exc).startswith(str(path)) else f"{path}: cannot be read ({exc})"
            return (*empty, np.bytes_(" ".join(reason.splitlines()).encode()))

    dataset = (
        tf.data.Dataset.range(len(files))
        .map(
            lambda i: tf.numpy_function(load, [i], (tf.uint8, tf.uint8, tf.string), stateful=False),
            num_parallel_calls=DECODERS,
            deterministic=True,
        )
        .prefetch(prefetch)
    )
    options = tf.data.Options()
    options.autotune.enabled = False
    dataset = dataset.with_options(options)
    for image, resized, error in dataset.as_numpy_iterator():
        yield image, resized, error.decode()


def predict_files(
    segmenter: Segmenter,
    files: list[Path],
    out_dir: str | os.PathLike,
    batch_size: int = DEFAULT_BATCH_SIZE,
    max_megapixels: float = DEFAULT_MAX_MEGAPIXELS,
) -> tuple[int, int]:
    """Segment `files` into `out_dir` (masks/, overlays/, measurements.csv); (n ok, n failed).

    Each failure is one line on stderr naming the file; the other files go on.
    """
    from concurrent.futures import ThreadPoolExecutor

    from tqdm import tqdm

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    names = output_names(files)
    columns = list(FILE_COLUMNS) + measurement_columns(segmenter.pixel_size)
    counts = {"ok": 0, "failed": 0}
    pending: deque = deque()

    def fail(message: str) -> None:
        tqdm.write(f"wbcseg predict: {message}", file=sys.stderr)
        counts["failed"] += 1

    with MeasurementsTable(out_dir / MEASUREMENTS_FILE, columns) as table, ThreadPoolExecutor(2) as pool, tqdm(
        total=len(files), unit="image", disable=None, file=sys.stderr
    ) as bar:

        def settle(limit: int) -> None:
            # Rows are written in input order, once both PNGs of the image are in place.
            while len(pending) > limit:
                index, future = pending.popleft()
                try:
                    table.write(future.result())
                    counts["ok"] += 1
                except OSError as exc:
                    fail(f"{files[index]}: cannot write its outputs ({exc})")
                bar.update()

        def flush(batch: list[tuple]) -> None:
            resized = np.stack([r for _, _, r in batch])
            if len(batch) < batch_size and len(files) > batch_size:
                # A last, smaller batch would make TensorFlow trace and optimise the model again
                # for its shape (about 2 s); blank images fill it instead.
                resized = np.concatenate([resized, np.zeros((batch_size - len(batch), *resized.shape[1:]), resized.dtype)])
            probabilities = segmenter.predict_probabilities(resized)[: len(batch)]
            for (index, image, _), probs in zip(batch, probabilities):
                # Finishing (as segment_many does) and writing run in the pool, while the model
                # predicts the next batch.
                job = pool.submit(finish_and_write, segmenter, image, probs, out_dir, names[index], files[index])
                pending.append((index, job))
            settle(2 * batch_size)  # bounds the images held in memory while PNGs are written

        batch = []
        try:
            for index, (image, resized, error) in enumerate(decoded_images(files, segmenter.input_size, max_megapixels, batch_size)):
                if error:
                    fail(error)
                    bar.update()
                    continue
                batch.append((index, image, resized))
                if len(batch) == batch_size:
                    flush(batch)
                    batch = []
            if batch:
                flush(batch)
        finally:
            settle(0)  # also after an error or Ctrl-C: every image whose PNGs are written gets its row
    return counts["ok"], counts["failed"]


# --------------------------------------------------------------------------- the command


def _positive(kind):
    def parse(text: str):
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its error message
    return parse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `wbcseg predict`."""
    parser.add_argument("paths", nargs="+", metavar="PATH", help="image files, or folders searched recursively for BMP, PNG, JPEG and TIFF")
    parser.add_argument("--model", required=True, metavar="MODEL_DIR", help="a trained model directory (model.keras + model_card.json)")
    parser.add_argument("--out", required=True, metavar="DIR", help="where masks/, overlays/ and measurements.csv go")
    parser.add_argument("--batch-size", type=_positive(int), default=DEFAULT_BATCH_SIZE, metavar="N", help=f"images per model call (default {DEFAULT_BATCH_SIZE})")
    parser.add_argument(
        "--max-megapixels", type=_positive(float), default=DEFAULT_MAX_MEGAPIXELS, metavar="MP",
        help=f"refuse images larger than this (default {DEFAULT_MAX_MEGAPIXELS:g})",
    )
    parser.add_argument("--pixel-size", type=_positive(float), metavar="UM", help="µm per pixel; adds areas in µm² to measurements.csv")
    parser.add_argument(
        "--tta", action=argparse.BooleanOptionalAction, default=None,
        help="average predictions over flips (default: what the model card records, else off)",
    )
    parser.add_argument(
        "--postprocess", action=argparse.BooleanOptionalAction, default=None,
        help="keep only the cell at the image centre and fill its holes (default: what the model card records, else off)",
    )
    parser.add_argument(
        "--precision", choices=PRECISIONS, default=None,
        help="bfloat16 is ~1.6x faster on CPUs with native bfloat16; auto: bfloat16 there, else float32 "
        "(default: what the model card records, else float32)",
    )
    parser.add_argument(
        "--engine", choices=ENGINES, default=None,
        help="what runs the model: openvino is faster on CPUs (it converts the model once, ~10 s, and caches it "
        "in $WBCSEG_CACHE_DIR or ~/.cache/wbcseg); tensorflow can use a GPU; auto: tensorflow where it sees a GPU, "
        "else openvino (default: what the model card records, else tensorflow)",
    )


def _precision(asked: str | None, recorded: str) -> str:
    """The precision a run uses: the one asked for, else the card's, unless the card's is
    bfloat16 and this machine has no native bfloat16 (emulated, it would be slow)."""
    from wbcseg.model import native_bfloat16

    if asked is not None:
        return asked
    if recorded == "bfloat16" and not native_bfloat16():
        print(
            "wbcseg predict: the model was evaluated in bfloat16, which this machine does not run natively; "
            "using float32 (a few pixels may differ from the evaluated masks)",
            file=sys.stderr,
        )
        return "float32"
    return recorded


def _engine(asked: str | None, recorded: str) -> str:
    """The engine a run uses: the one asked for, else the card's, unless the card's is openvino
    (a CPU engine) and TensorFlow sees a GPU here."""
    from wbcseg.engine import resolve_engine

    if asked is not None:
        return asked
    if recorded == "openvino" and resolve_engine("auto") == "tensorflow":
        print(
            "wbcseg predict: the model was evaluated with OpenVINO on a CPU, and this machine has a GPU; "
            "using TensorFlow (a few pixels may differ from the evaluated masks; --engine openvino keeps OpenVINO)",
            file=sys.stderr,
        )
        return "tensorflow"
    return recorded


def run(args: argparse.Namespace) -> int:
    """`wbcseg predict`: 0 when every image was segmented, 1 when any failed. A bad model
    directory raises ModelError (the CLI prints it and exits 2)."""
    from wbcseg.model import read_card

    recorded = card_inference_options(read_card(args.model))  # a bad model directory stops us before any slow work
    files, missing = find_images(args.paths, exclude=args.out)
    for path in missing:
        print(f"wbcseg predict: {path}: no such file or folder", file=sys.stderr)
    if not files:
        print(f"wbcseg predict: no images ({', '.join(IMAGE_SUFFIXES)}) found in {' '.join(map(str, args.paths))}", file=sys.stderr)
        return 1
    segmenter = Segmenter.load(
        args.model,
        tta=recorded["tta"] if args.tta is None else args.tta,
        postprocess=recorded["postprocess"] if args.postprocess is None else args.postprocess,
        pixel_size=args.pixel_size,
        precision=_precision(args.precision, recorded["precision"]),
        engine=_engine(args.engine, recorded["engine"]),
    )
    print(
        f"wbcseg predict: {len(files)} images; {segmenter.task} model at {segmenter.input_size} px, "
        f"TTA {'on' if segmenter.tta else 'off'}, post-processing {'on' if segmenter.postprocess else 'off'}, "
        f"{segmenter.precision} on {segmenter.engine}",
        file=sys.stderr,
    )
    ok, failed = predict_files(segmenter, files, args.out, batch_size=args.batch_size, max_megapixels=args.max_megapixels)
    failed += len(missing)
    print(f"wbcseg predict: {ok} ok, {failed} failed; masks, overlays and {MEASUREMENTS_FILE} in {args.out}")
    return 1 if failed else 0
