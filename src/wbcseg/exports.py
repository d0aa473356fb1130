"""White cells of an instance image as shapes that the lab's tools read: QuPath GeoJSON and ImageJ ROIs.

Outlines follow pixel edges (a cell's polygon is the union of its pixel squares), so a tool that
fills a polygon by pixel centres, as QuPath and ImageJ do, gets back exactly the labelled pixels.
Coordinates are in pixels with the origin at the top-left corner of the image, QuPath's and
ImageJ's convention.
"""

from __future__ import annotations

import io
import json
import os
import uuid
import zipfile
from collections.abc import Iterator, Mapping

import numpy as np
import roifile
import shapely
from scipy import ndimage
from shapely.geometry import mapping

from wbcseg.atomic import write_bytes, write_text

NUCLEUS = 2
CELL_CLASS = "White blood cell"
#: QuPath draws a class in its colour (RGB); ImageJ groups let Fiji colour cells and nuclei apart.
CELL_COLOUR = (0, 200, 80)
CELL_GROUP, NUCLEUS_GROUP = 1, 2
#: Namespace of the features' ids: the same image and cell id give the same id on every run.
ID_NAMESPACE = uuid.UUID("7c1c6f0e-35b5-4c38-9a0f-5b1d0f7d2a11")


def mask_geometry(mask: np.ndarray, offset: tuple[int, int] = (0, 0)):
    """The pixel squares of a boolean mask as one shapely (Multi)Polygon, shifted by offset (x, y);
    None for an empty mask."""
    edges = np.diff(np.pad(mask.astype(np.int8), ((0, 0), (1, 1))), axis=1)
    rows_start, cols_start = np.nonzero(edges == 1)
    _, cols_end = np.nonzero(edges == -1)  # row-major order pairs each run's end with its start
    if rows_start.size == 0:
        return None
    x, y = offset
    runs = shapely.box(x + cols_start, y + rows_start, x + cols_end, y + rows_start + 1)
    return shapely.simplify(shapely.union_all(runs), 0)  # drops the vertices runs leave on straight edges


def cell_shapes(instances: np.ndarray, classes: np.ndarray) -> Iterator[tuple[int, object, object]]:
    """(cell id, cell geometry, nucleus geometry or None) of every id of an instance image, in id order."""
    for cell_id, objects in enumerate(ndimage.find_objects(instances), start=1):
        if objects is None:
            continue
        mine = instances[objects] == cell_id
        offset = (objects[1].start, objects[0].start)
        yield cell_id, mask_geometry(mine, offset), mask_geometry(mine & (classes[objects] == NUCLEUS), offset)


def feature_id(image_name: str, cell_id: int) -> str:
    """A stable UUID for one cell of one image."""
    return str(uuid.uuid5(ID_NAMESPACE, f"{image_name}/{cell_id}"))


def geojson_cells(
    instances: np.ndarray, classes: np.ndarray, image_name: str, measurements: Mapping[int, Mapping[str, float]] | None = None
) -> dict:
    """A GeoJSON FeatureCollection that QuPath imports as cell objects: one feature per white cell
    with its outline as `geometry`, its nucleus as `nucleusGeometry`, the class CELL_CLASS and
    its numeric `measurements` (from `measurements[cell_id]`, plus the cell id)."""
    features = []
    for cell_id, cell, nucleus in cell_shapes(instances, classes):
        values = {"Cell id": cell_id, **{k: float(v) for k, v in (measurements or {}).get(cell_id, {}).items()}}
        feature = {
            "type": "Feature",
            "id": feature_id(image_name, cell_id),
            "geometry": mapping(cell),
            "properties": {
                "objectType": "cell",
                "name": f"cell {cell_id}",
                "classification": {"name": CELL_CLASS, "color": list(CELL_COLOUR)},
                "isLocked": False,
                "measurements": values,
            },
        }
        if nucleus is not None:
            feature["nucleusGeometry"] = mapping(nucleus)
        features.append(feature)
    return {"type": "FeatureCollection", "features": features}


def write_geojson(path: str | os.PathLike, collection: dict) -> None:
    """Write a FeatureCollection as JSON, atomically."""
    write_text(path, json.dumps(collection))


def _polygons(geometry) -> list:
    return list(geometry.geoms) if hasattr(geometry, "geoms") else [geometry]


def _roi(polygon, name: str, group: int) -> roifile.ImagejRoi:
    # ImageJ polygons have no holes: the outer ring only (a ring-shaped nucleus comes back filled).
    roi = roifile.ImagejRoi.frompoints(np.asarray(polygon.exterior.coords[:-1], np.int32), name=name)
    roi.roitype = roifile.ROI_TYPE.POLYGON
    roi.group = group
    return roi


def imagej_rois(instances: np.ndarray, classes: np.ndarray) -> list[roifile.ImagejRoi]:
    """ImageJ polygon ROIs: per white cell `cell-<id>` (group CELL_GROUP) and its nucleus
    `cell-<id>-nucleus` (group NUCLEUS_GROUP); a shape in several pieces (nucleus lobes) gives one
    ROI per piece, the second and later suffixed `-2`, `-3`..."""
    rois = []
    for cell_id, cell, nucleus in cell_shapes(instances, classes):
        for name, geometry, group in ((f"cell-{cell_id}", cell, CELL_GROUP), (f"cell-{cell_id}-nucleus", nucleus, NUCLEUS_GROUP)):
            if geometry is None:
                continue
            pieces = sorted(_polygons(geometry), key=lambda p: -p.area)
            rois += [_roi(p, name if k == 0 else f"{name}-{k + 1}", group) for k, p in enumerate(pieces)]
    return rois


def write_imagej_rois(path: str | os.PathLike, rois: list[roifile.ImagejRoi]) -> None:
    """Write ROIs as an ImageJ ROI set (a .zip of one `<name>.roi` per ROI, as Fiji's ROI Manager
    saves it), atomically, replacing any file there."""
    if not os.fspath(path).endswith(".zip"):
        raise ValueError(f"{path}: an ImageJ ROI set is a .zip file")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for roi in rois:
            archive.writestr(f"{roi.name}.roi", roi.tobytes())
    write_bytes(path, buffer.getvalue())
