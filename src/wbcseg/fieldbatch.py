"""Whole fields through `wbcseg predict`, and its choice of mode for each image.

A field is read, its scale given or estimated, every white cell segmented (`fields.segment_field`),
and its files written: the class mask in the dataset's 0/128/255 convention (as for a crop), the
instance labels (16-bit PNG, 0 background, 1..n one id per cell), an overlay with each cell
outlined and numbered, a QuPath GeoJSON and an ImageJ ROI set; then its rows of measurements.csv,
one per cell, are recorded together. `predict_images` runs the whole command: crop mode is the
batched crop pipeline unchanged (`batch.predict_files`); `auto` decides per image with
`fields.choose_mode` and sends the crops there.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

from wbcseg import batch
from wbcseg.classes import mask_to_png_values
from wbcseg.errors import DataError
from wbcseg.exports import geojson_cells, imagej_rois, write_geojson, write_imagej_rois
from wbcseg.fields import FieldResult, choose_mode, resolve_scale, segment_field
from wbcseg.fields_scale import ScaleError
from wbcseg.files import (
    DEFAULT_MAX_MEGAPIXELS,
    FILE_COLUMNS,
    MASKS_DIR,
    OVERLAYS_DIR,
    Counts,
    MeasurementsTable,
    OutputFolder,
    output_names,
    read_input_image,
    write_png,
)
from wbcseg.measure import measure_labels, measurement_columns
from wbcseg.overlay import overlay_cells
from wbcseg.segmenter import DEFAULT_BATCH_SIZE, Segmenter

MODES = ("crop", "field", "auto")
INSTANCES_DIR, GEOJSON_DIR, ROIS_DIR = "instances", "geojson", "rois"
#: The cell's place in its field, then (after the measurements) whether the border cuts it and
#: the scale the field was segmented at: the cell diameter in pixels and where it came from.
CELL_ID_COLUMNS = ("instances", "cell_id")
FIELD_COLUMNS = ("touches_border", "cell_diameter_px", "scale_source")
#: The measurements a QuPath cell object carries (numbers only).
GEOJSON_MEASUREMENTS = ("wbc_area_px", "nucleus_area_px", "cytoplasm_area_px", "wbc_area_um2", "nucleus_area_um2",
                        "cytoplasm_area_um2", "nc_ratio", "mean_confidence")


def field_columns(pixel_size: float | None = None) -> list[str]:
    """The columns of a field's rows of measurements.csv, in order."""
    return [*FILE_COLUMNS, *CELL_ID_COLUMNS, *measurement_columns(pixel_size), *FIELD_COLUMNS]


def field_rows(result: FieldResult, files: dict[str, str], pixel_size: float | None = None) -> list[dict]:
    """A field's rows of measurements.csv: one per cell, or for a field without white cells one
    row with cell_id 0 and no area, so that the table says it was segmented (and a rerun that
    finds no cell replaces the rows of an earlier one that did)."""
    scale = {
        "cell_diameter_px": None if result.scale is None else result.scale.cell_diameter,
        "scale_source": "none found" if result.scale is None else result.scale.source,
    }
    if not result.cells:
        nothing = {**measure_labels(np.zeros((1, 1), np.uint8), "tissue", pixel_size), "mean_confidence": None}
        return [{**files, "cell_id": 0, **nothing, "touches_border": None, **scale}]
    return [{**files, "cell_id": cell.id, **cell.measurements, "touches_border": cell.touches_border, **scale} for cell in result.cells]


def write_field_outputs(image: np.ndarray, result: FieldResult, out_dir: Path, name: Path, source: Path, pixel_size=None) -> list[dict]:
    """Write one field's files (class mask, instance labels, overlay, GeoJSON, ROI set); return its rows."""
    paths = {
        "mask": out_dir / MASKS_DIR / f"{name}.png",
        "overlay": out_dir / OVERLAYS_DIR / f"{name}.png",
        "instances": out_dir / INSTANCES_DIR / f"{name}.png",
        "geojson": out_dir / GEOJSON_DIR / f"{name}.geojson",
        "rois": out_dir / ROIS_DIR / f"{name}.zip",
    }
    for path in paths.values():
        path.parent.mkdir(parents=True, exist_ok=True)
    write_png(mask_to_png_values(result.classes, "tissue"), paths["mask"])
    # 16 bits hold any field's ids: fields.MAX_MODEL_PIXELS leaves room for some 14,000 training-size cells.
    write_png(result.instances.astype(np.uint16), paths["instances"])
    write_png(overlay_cells(image, result.instances, result.classes), paths["overlay"])
    numbers = {cell.id: {k: v for k, v in cell.measurements.items() if k in GEOJSON_MEASUREMENTS and v is not None} for cell in result.cells}
    write_geojson(paths["geojson"], geojson_cells(result.instances, result.classes, name.as_posix(), numbers))
    write_imagej_rois(paths["rois"], imagej_rois(result.instances, result.classes))
    files = {
        "image": str(source), "mask": paths["mask"].relative_to(out_dir).as_posix(), "overlay": paths["overlay"].relative_to(out_dir).as_posix(),
        "width": image.shape[1], "height": image.shape[0], "instances": paths["instances"].relative_to(out_dir).as_posix(),
    }
    return field_rows(result, files, pixel_size)


def _say(message: str) -> None:
    from tqdm import tqdm

    tqdm.write(f"wbcseg predict: {message}", file=sys.stderr)


def segment_file(
    segmenter: Segmenter, path: Path, name: Path, out_dir: Path, mode: str, cell_diameter: float | None, max_megapixels: float
) -> tuple[list[dict] | None, str]:
    """One image of a field or auto run: (its rows, a line on what was found) once its files are
    written, or (None, why it is a crop) where auto mode calls it a crop. DataError or ScaleError
    naming the file when it cannot be segmented; OSError when its outputs cannot be written."""
    image = read_input_image(path, max_megapixels)
    scale = resolve_scale(image, segmenter, cell_diameter, segmenter.pixel_size)
    if mode == "auto":
        chosen, reason = choose_mode(image.shape, scale)
        if chosen == "crop":
            return None, f"{path}: crop: {reason}"
    try:
        result = segment_field(image, segmenter, scale)
    except ScaleError as exc:
        raise ScaleError(f"{path}: {exc}") from None
    rows = write_field_outputs(image, result, out_dir, name, path, segmenter.pixel_size)
    found = "no nucleus-dark blob, so no scale" if scale is None else (
        f"cell diameter {scale.cell_diameter:.0f} px, {'estimated' if scale.estimated else 'given'}"
    )
    return rows, f"{path}: field: {len(result.cells)} white cells ({found})"


def segment_fields(
    segmenter: Segmenter, files: list[Path], names: list[Path], out_dir: Path, mode: str, cell_diameter: float | None,
    max_megapixels: float, counts: Counts, say: Callable[[str], None] = _say,
) -> list[int]:
    """Segment and write each of `files` that is a field (every one in field mode; in auto mode
    those `fields.choose_mode` calls fields), one line each on what was found or why it failed;
    return the indices of the crops, left to the crop pipeline."""
    from tqdm import tqdm

    crops = []
    with MeasurementsTable(out_dir, field_columns(segmenter.pixel_size)) as table, tqdm(
        total=len(files), unit="image", disable=None, file=sys.stderr
    ) as bar:
        for index, path in enumerate(files):
            failed = True
            try:
                rows, message = segment_file(segmenter, path, names[index], out_dir, mode, cell_diameter, max_megapixels)
                failed = False
            except (DataError, ScaleError) as exc:
                message = str(exc)
            except OSError as exc:
                message = f"{path}: cannot write its outputs ({exc})"
            finally:
                bar.update()
            say(message)
            if failed:
                counts.failed += 1
            elif rows is None:
                crops.append(index)
            else:
                table.write_rows(rows, order=index)  # at once: a hard kill later loses no finished field's rows
                counts.ok += 1
    return crops


def predict_images(
    segmenter: Segmenter,
    files: list[Path],
    out: str | os.PathLike | OutputFolder,
    mode: str = "crop",
    cell_diameter: float | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    max_megapixels: float = DEFAULT_MAX_MEGAPIXELS,
    counts: Counts | None = None,
) -> Counts:
    """`wbcseg predict` over `files` into the folder `out`, in `mode` (see MODES): crops through
    `batch.predict_files`, fields through `segment_fields`. `cell_diameter` (pixels), else the
    segmenter's pixel size, gives the fields' scale; without either it is estimated per image.
    `out` may be an `OutputFolder` the caller already holds; a path is locked for the run."""
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
    if not isinstance(out, OutputFolder):
        with OutputFolder(out) as folder:
            return predict_images(segmenter, files, folder, mode, cell_diameter, batch_size, max_megapixels, counts)
    counts = counts if counts is not None else Counts()
    if mode == "crop":
        return batch.predict_files(segmenter, files, out, batch_size=batch_size, max_megapixels=max_megapixels, counts=counts)
    names = output_names(files)  # of the whole run: crops and fields never share a name
    crops = segment_fields(segmenter, files, names, out.path, mode, cell_diameter, max_megapixels, counts)
    if crops:
        batch.predict_files(
            segmenter, [files[i] for i in crops], out, batch_size=batch_size, max_megapixels=max_megapixels, counts=counts, names=[names[i] for i in crops]
        )
    return counts
