"""The files of `wbcseg predict`: finding and reading the user's images, and writing outputs that no
crash, rerun or second run can spoil.

- Inputs: BMP, PNG, JPEG and TIFF (RGB, RGBA, grey, 16-bit, float), refused over a size limit
  judged from the file header before decoding.
- Outputs: PNGs written atomically; `measurements.csv` merged with the rows earlier runs left in
  the folder (a rerun replaces the rows of the images it redoes and keeps the others), each
  image's rows appended to a journal as soon as its files are in place, so even a hard kill loses
  no row of a finished image (the next run folds the journal in); one run at a time per folder.
"""

from __future__ import annotations

import csv
import fcntl
import io
import os
import threading
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from wbcseg.atomic import file_mode, write_bytes
from wbcseg.data import IMAGE_SUFFIXES, read_image
from wbcseg.errors import DataError, OutputError
from wbcseg.measure import measurement_columns

TIFF_SUFFIXES = (".tif", ".tiff")
DEFAULT_MAX_MEGAPIXELS = 50.0
MEASUREMENTS_FILE = "measurements.csv"
MASKS_DIR = "masks"
OVERLAYS_DIR = "overlays"
#: The columns of measurements.csv before the measurements: the input and the outputs of one image.
FILE_COLUMNS = ("image", "mask", "overlay", "width", "height")
LOCK_FILE = ".wbcseg-predict.lock"
#: The column that names the image a row belongs to: its mask (a rerun overwrites the same mask). A
#: crop has one row; a field has one per cell, told apart by `cell_id`, and its rows are written
#: and replaced together (a rerun may find fewer cells: no row of an earlier run may outlive it).
ROW_KEY = "mask"


# --------------------------------------------------------------------------- inputs


def _check_pixels(path: Path, width: int, height: int, max_megapixels: float) -> None:
    if width * height > max_megapixels * 1e6:
        raise DataError(
            f"{path}: image is {width}x{height} ({width * height / 1e6:.3g} megapixels), "
            f"over the limit of {max_megapixels:g} (raise it with --max-megapixels)"
        )


def _check_header_size(path: Path, max_megapixels: float) -> None:
    """Refuse an image over the limit from its header, before decoding it fills the memory."""
    from PIL import Image

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


# --------------------------------------------------------------------------- outputs


def encode_png(array: np.ndarray) -> bytes:
    """A grey (H, W) uint8 or uint16 (16-bit PNG), or an RGB (H, W, 3) uint8 array as PNG bytes.

    'Up' filtering with run-length coding: encoding is the largest per-image cost after the model,
    and this pair was the fastest at a similar size (docs/decisions.md).
    """
    import cv2

    pixels = array if array.ndim == 2 else cv2.cvtColor(array, cv2.COLOR_RGB2BGR)
    options = [cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_UP, cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_RLE]
    ok, data = cv2.imencode(".png", pixels, options)
    if not ok:
        raise OSError(f"OpenCV could not encode a {array.dtype} {array.shape} array as PNG")
    return data.tobytes()


def write_png(array: np.ndarray, path: Path) -> None:
    """Write a PNG atomically (its folder is created)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_bytes(path, encode_png(array))


class OutputFolder:
    """An output folder held by one run: created if needed, checked writable, and locked, so that
    a second run into the same folder is refused at once (before any model is loaded) instead of
    mixing its files and rows with the first's. A context manager; the lock ends with the process."""

    def __init__(self, path: str | os.PathLike, command: str = "wbcseg predict"):
        self.path = Path(path)
        if self.path.exists() and not self.path.is_dir():
            raise OutputError(f"{self.path}: exists and is not a folder; give --out a folder")
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            self._lock = open(self.path / LOCK_FILE, "a")
        except OSError as exc:
            raise OutputError(f"{self.path}: cannot write there ({exc.strerror})") from exc
        if not os.access(self.path, os.W_OK | os.X_OK):
            self._lock.close()
            raise OutputError(f"{self.path}: cannot write there (permission denied)")
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._lock.close()
            raise OutputError(f"{self.path}: another {command} is writing there; wait for it to end or use another --out") from None

    def release(self) -> None:
        self._lock.close()  # closing the file ends the lock

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.release()


@dataclass
class Counts:
    """How many files a run has segmented and how many failed, kept up to date as it goes."""

    ok: int = 0
    failed: int = 0


def output_columns(pixel_size: float | None = None) -> list[str]:
    """The columns of measurements.csv: FILE_COLUMNS, then `measure.measurement_columns`."""
    return [*FILE_COLUMNS, *measurement_columns(pixel_size)]


def _csv_value(value):
    return round(value, 4) if isinstance(value, float) else value


def _read_rows(path: Path) -> tuple[list[str], list[dict]]:
    """(columns, whole rows) of a CSV; a last line cut short by a crash is left out."""
    if not path.is_file():
        return [], []
    with open(path, newline="") as fh:
        text = fh.read()
    if text and not text.endswith("\n"):
        text = text[: text.rfind("\n") + 1]  # a row is whole only once its newline is written
    reader = csv.DictReader(text.splitlines())
    rows = [row for row in reader if row.get(ROW_KEY)]
    return list(reader.fieldnames or []), rows


def _by_image(rows: list[dict]) -> dict[str, list[dict]]:
    """Rows grouped by ROW_KEY, in order of first appearance."""
    images: dict[str, list[dict]] = {}
    for row in rows:
        images.setdefault(row[ROW_KEY], []).append(row)
    return images


class MeasurementsTable:
    """measurements.csv of an output folder: the rows of each image (one for a crop, one per cell
    for a field) under the image's mask path.

    Opening it folds in the rows that earlier runs left: the table itself, and the journal of a
    run that was killed before it could finish (its rows are newer). `write_rows` appends an
    image's rows to the journal at once (thread-safe, flushed); `close` writes the merged table
    atomically (the rows of this run replace all rows of the same images, others are kept) and
    removes the journal. Use it inside an `OutputFolder`, which keeps other runs out.
    """

    def __init__(self, out_dir: str | os.PathLike, columns: list[str]):
        out_dir = Path(out_dir)
        self.path = out_dir / MEASUREMENTS_FILE
        self.journal = out_dir / f".{MEASUREMENTS_FILE}.partial"
        old_columns, old_rows = _read_rows(self.path)
        journal_columns, journal_rows = _read_rows(self.journal)
        self.columns = list(dict.fromkeys([*old_columns, *journal_columns, *columns]))
        self.kept = {**_by_image(old_rows), **_by_image(journal_rows)}
        if journal_rows:
            self._write_table(self.kept.values())  # the killed run's rows are safe before its journal goes
        self.new: dict[str, tuple[int, list[dict]]] = {}
        self._lock = threading.Lock()
        self._file = open(self.journal, "w", newline="")
        os.chmod(self.journal, file_mode())
        self._writer = csv.DictWriter(self._file, fieldnames=columns)
        self._writer.writeheader()
        self._file.flush()

    def write(self, row: dict, order: int = 0) -> None:
        """Record one crop's row (`order`: its place among this run's images)."""
        self.write_rows([row], order)

    def write_rows(self, rows: list[dict], order: int = 0) -> None:
        """Record all the rows of one image (at least one, all with its ROW_KEY) in one go."""
        rows = [{key: _csv_value(value) for key, value in row.items()} for row in rows]
        images = {row[ROW_KEY] for row in rows}
        if len(images) != 1:
            raise ValueError(f"write_rows takes the rows of one image, got {sorted(images) or 'none'}")
        (image,) = images
        with self._lock:
            self._writer.writerows(rows)
            self._file.flush()
            self.new[image] = (order, rows)

    def _write_table(self, images) -> None:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=self.columns, restval="")
        writer.writeheader()
        for rows in images:
            writer.writerows(rows)
        write_bytes(self.path, buffer.getvalue().encode("utf-8"))

    def close(self) -> None:
        self._file.close()
        fresh = {image: rows for image, (_, rows) in sorted(self.new.items(), key=lambda item: item[1][0])}
        self._write_table({**{image: rows for image, rows in self.kept.items() if image not in fresh}, **fresh}.values())
        self.journal.unlink()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()
