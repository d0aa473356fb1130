"""Many files through one Segmenter: the batched pipeline behind `wbcseg predict`.

Files are read, decoded and resized in parallel by tf.data with prefetching; the model runs on
full batches (a smaller last batch is filled with blank images, so the model is compiled for one
shape); resizing back, measuring and PNG encoding run in two writer threads while the model
predicts the next batch, with a bounded number of images in flight. Each image's measurements row
is recorded as soon as its mask and overlay are in place.
"""

from __future__ import annotations

import os
import sys
import threading
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from wbcseg.backend import tf
from wbcseg.classes import mask_to_png_values
from wbcseg.files import (
    DEFAULT_MAX_MEGAPIXELS,
    MASKS_DIR,
    OVERLAYS_DIR,
    Counts,
    MeasurementsTable,
    OutputFolder,
    output_columns,
    output_names,
    read_input_image,
    write_png,
)
from wbcseg.overlay import overlay_with_legend
from wbcseg.preprocess import resize_image
from wbcseg.segmenter import DEFAULT_BATCH_SIZE, Segmenter

#: Files decoded at once by tf.data. A fixed number, not AUTOTUNE: on 2 cores, AUTOTUNE's
#: tuning made the end of the image stream stall for over a second, and decoding is a small share of the work.
DECODERS = min(4, os.cpu_count() or 1)


def write_outputs(image: np.ndarray, labels: np.ndarray, measurements: dict, task: str, out_dir: Path, name: Path, source: Path) -> dict:
    """Write one image's mask and overlay PNGs; return its measurements.csv row."""
    mask_path = out_dir / MASKS_DIR / f"{name}.png"
    overlay_path = out_dir / OVERLAYS_DIR / f"{name}.png"
    write_png(mask_to_png_values(labels, task), mask_path)
    write_png(overlay_with_legend(image, labels, task), overlay_path)
    return {
        "image": str(source),
        "mask": mask_path.relative_to(out_dir).as_posix(),
        "overlay": overlay_path.relative_to(out_dir).as_posix(),
        "width": image.shape[1],
        "height": image.shape[0],
        **measurements,
    }


def decoded_images(files: list[Path], size: int, max_megapixels: float, prefetch: int) -> Iterator[tuple]:
    """(image, resized to size x size, error message or '') per file, in order; files are read,
    decoded and resized in parallel by tf.data, a bounded number ahead of the consumer."""
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


def segment_files(
    segmenter: Segmenter,
    files: list[Path],
    names: list[Path],
    out_dir: Path,
    record: Callable[[int, dict], None],
    fail: Callable[[int, str], None],
    batch_size: int = DEFAULT_BATCH_SIZE,
    max_megapixels: float = DEFAULT_MAX_MEGAPIXELS,
    pad: bool = True,
) -> None:
    """Segment `files` into `out_dir`, their outputs named `names` (see `files.output_names`).

    `record(index, row)` is called as soon as an image's mask and overlay are in place, from a
    writer thread; `fail(index, message)` once per file that could not be read or written. With
    `pad`, a last batch smaller than `batch_size` is filled with blank images, so the model keeps
    one input shape.
    """
    pending: deque = deque()

    def finish_and_write(index: int, image: np.ndarray, probs: np.ndarray, window) -> None:
        result = segmenter.finish(image.shape[:2], probs, window)
        record(index, write_outputs(image, result.labels, result.measurements, segmenter.task, out_dir, names[index], files[index]))

    def settle(limit: int) -> None:
        while len(pending) > limit:
            index, future = pending.popleft()
            try:
                future.result()
            except OSError as exc:
                fail(index, f"{files[index]}: cannot write its outputs ({exc})")

    def flush(batch: list[tuple]) -> None:
        resized, windows = segmenter.model_inputs([image for _, image, _ in batch], np.stack([r for _, _, r in batch]))
        if pad and len(batch) < batch_size:
            # A smaller batch would make TensorFlow trace and optimise the model again for its
            # shape (seconds); blank images fill it instead.
            resized = np.concatenate([resized, np.zeros((batch_size - len(batch), *resized.shape[1:]), resized.dtype)])
        probabilities = segmenter.predict_probabilities(resized)[: len(batch)]
        for (index, image, _), probs, window in zip(batch, probabilities, windows):
            # Finishing and writing run in the pool while the model predicts the next batch.
            pending.append((index, pool.submit(finish_and_write, index, image, probs, window)))
        settle(2 * batch_size)  # bounds the images held in memory while PNGs are written

    batch = []
    with ThreadPoolExecutor(2) as pool:
        try:
            for index, (image, resized, error) in enumerate(decoded_images(files, segmenter.input_size, max_megapixels, batch_size)):
                if error:
                    fail(index, error)
                    continue
                batch.append((index, image, resized))
                if len(batch) == batch_size:
                    flush(batch)
                    batch = []
            if batch:
                flush(batch)
        finally:
            settle(0)  # also after an error or Ctrl-C: every image already handed to the writers is finished


def predict_files(
    segmenter: Segmenter,
    files: list[Path],
    out: str | os.PathLike | OutputFolder,
    batch_size: int = DEFAULT_BATCH_SIZE,
    max_megapixels: float = DEFAULT_MAX_MEGAPIXELS,
    counts: Counts | None = None,
    names: list[Path] | None = None,
) -> Counts:
    """Segment `files` into the folder `out` (masks/, overlays/, measurements.csv).

    Each failure is one line on stderr naming the file; the other files go on. `counts` (returned,
    and updated as the run goes, so a caller still has them after Ctrl-C) says how many went well.
    `out` may be an `OutputFolder` the caller already holds; a path is locked for the run. `names`
    are the files' output names (default `output_names(files)`): a caller that sends only some of
    a run's files here passes the names of the whole run's, so no two files share one.
    """
    from tqdm import tqdm

    if not isinstance(out, OutputFolder):
        with OutputFolder(out) as folder:
            return predict_files(segmenter, files, folder, batch_size, max_megapixels, counts, names)
    counts = counts if counts is not None else Counts()
    names = output_names(files) if names is None else names
    with MeasurementsTable(out.path, output_columns(segmenter.pixel_size)) as table, tqdm(
        total=len(files), unit="image", disable=None, file=sys.stderr
    ) as bar:

        counting = threading.Lock()  # the writer threads record rows concurrently

        def record(index: int, row: dict) -> None:
            table.write(row, order=index)  # at once: a hard kill later loses no finished image's row
            with counting:
                counts.ok += 1
                bar.update()

        def fail(index: int, message: str) -> None:
            with counting:
                tqdm.write(f"wbcseg predict: {message}", file=sys.stderr)
                counts.failed += 1
                bar.update()

        segment_files(segmenter, files, names, out.path, record, fail, batch_size, max_megapixels, pad=len(files) > batch_size)
    return counts
