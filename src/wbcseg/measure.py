"""Per-image measurements of a segmented white blood cell: areas, N:C ratio, centroid, box, confidence."""

from __future__ import annotations

import numpy as np

from wbcseg.classes import check_task
from wbcseg.postprocess import wbc_components

#: Columns of `measure`, in order; the µm² ones only when a pixel size is given.
AREA_COLUMNS = ("wbc_area", "nucleus_area", "cytoplasm_area")
SHAPE_COLUMNS = (
    "nc_ratio", "centroid_x", "centroid_y", "bbox_x", "bbox_y", "bbox_width", "bbox_height",
    "n_components", "mean_confidence",
)


def measurement_columns(pixel_size: float | None = None) -> list[str]:
    """The keys of `measure`'s dict, in order."""
    areas = [f"{name}_px" for name in AREA_COLUMNS]
    if pixel_size is not None:
        areas += [f"{name}_um2" for name in AREA_COLUMNS]
    return areas + list(SHAPE_COLUMNS)


def measure_labels(labels: np.ndarray, task: str, pixel_size: float | None = None, offset: tuple[int, int] = (0, 0)) -> dict:
    """The columns of `measure` but `mean_confidence`, from labels alone; centroid and box are
    shifted by `offset` (x, y), the place of `labels` in a larger image."""
    check_task(task)
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
    x, y = offset
    out.update(
        nc_ratio=areas["nucleus_area"] / areas["cytoplasm_area"] if tissue and areas["cytoplasm_area"] else None,
        centroid_x=float(x + cols.mean()) if found else None,
        centroid_y=float(y + rows.mean()) if found else None,
        bbox_x=int(x + cols.min()) if found else None,
        bbox_y=int(y + rows.min()) if found else None,
        bbox_width=int(cols.max() - cols.min() + 1) if found else None,
        bbox_height=int(rows.max() - rows.min() + 1) if found else None,
        n_components=wbc_components(labels)[1],
    )
    return out


def measure(labels: np.ndarray, probabilities: np.ndarray, task: str, pixel_size: float | None = None) -> dict:
    """Areas, nucleus:cytoplasm ratio, centroid, bounding box, component count and confidence of the WBC.

    The WBC is every pixel with a label > 0 (all its components). Areas are in pixels, and in µm²
    when `pixel_size` (µm per pixel) is given. A binary model knows no nucleus or cytoplasm, so
    those entries are None; so are the entries that an empty mask leaves undefined.
    `mean_confidence` is the mean probability of the assigned label over the WBC pixels.
    """
    cell = labels > 0
    assigned = np.take_along_axis(probabilities, labels[..., None].astype(np.intp), axis=-1)[..., 0]
    return {**measure_labels(labels, task, pixel_size), "mean_confidence": float(assigned[cell].mean()) if cell.any() else None}
