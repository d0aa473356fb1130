"""Exports read back: QuPath GeoJSON with json and shapely, ImageJ ROI sets with roifile; every
shape is filled again by pixel centres and compared with the label image it came from."""

from __future__ import annotations

import json

import numpy as np
import pytest
import roifile
import shapely
from shapely.geometry import shape

from wbcseg.exports import (
    CELL_CLASS,
    CELL_GROUP,
    NUCLEUS_GROUP,
    geojson_cells,
    imagej_rois,
    mask_geometry,
    write_geojson,
    write_imagej_rois,
)


@pytest.fixture
def labelled():
    """Three cells: a round one, one with a two-lobed nucleus, one cut by the image border and
    touching the second; instances (int32) and classes (0/1/2)."""
    rows, cols = np.indices((120, 160))
    instances = np.zeros((120, 160), np.int32)
    classes = np.zeros((120, 160), np.uint8)
    for cell_id, (y, x, r) in enumerate([(30, 30, 18), (70, 90, 22), (90, 150, 20)], start=1):
        disc = (np.hypot(rows - y, cols - x) < r) & (instances == 0)
        instances[disc] = cell_id
        classes[disc] = 1
    classes[np.hypot(rows - 30, cols - 30) < 8] = 2
    for dx in (-9, 9):
        classes[(np.hypot(rows - 70, cols - 90 - dx) < 6)] = 2
    classes[(instances == 3) & (np.hypot(rows - 90, cols - 152) < 9)] = 2
    return instances, classes


def filled(geometry, shape_hw) -> np.ndarray:
    """A geometry filled by pixel centres, as QuPath and ImageJ fill it."""
    rows, cols = np.indices(shape_hw)
    return shapely.contains_xy(geometry, cols + 0.5, rows + 0.5)


def iou(a, b):
    return (a & b).sum() / (a | b).sum()


def test_mask_geometry_is_the_union_of_pixel_squares():
    mask = np.zeros((6, 7), bool)
    mask[1:3, 2:5] = True
    mask[4, 0] = True
    geometry = mask_geometry(mask, offset=(10, 20))
    assert geometry.area == mask.sum() and geometry.is_valid
    assert geometry.bounds == (10, 21, 15, 25)
    assert mask_geometry(np.zeros((3, 3), bool)) is None


def test_geojson_reads_back_as_qupath_cells_on_the_label_image(tmp_path, labelled):
    instances, classes = labelled
    collection = geojson_cells(instances, classes, "field.png", {2: {"Mean confidence": 0.9}})
    write_geojson(tmp_path / "cells.geojson", collection)
    back = json.loads((tmp_path / "cells.geojson").read_text())
    assert back["type"] == "FeatureCollection" and len(back["features"]) == 3
    assert len({f["id"] for f in back["features"]}) == 3
    for cell_id, feature in enumerate(back["features"], start=1):
        props = feature["properties"]
        assert props["objectType"] == "cell" and props["classification"]["name"] == CELL_CLASS
        assert props["measurements"]["Cell id"] == cell_id
        cell, nucleus = shape(feature["geometry"]), shape(feature["nucleusGeometry"])
        assert cell.is_valid and nucleus.is_valid and cell.contains(nucleus)
        assert iou(filled(cell, instances.shape), instances == cell_id) > 0.999
        assert iou(filled(nucleus, instances.shape), (instances == cell_id) & (classes == 2)) > 0.999
    assert back["features"][1]["properties"]["measurements"]["Mean confidence"] == 0.9
    assert shape(back["features"][1]["nucleusGeometry"]).geom_type == "MultiPolygon"  # two lobes
    assert geojson_cells(instances, classes, "field.png")["features"][0]["id"] == back["features"][0]["id"]


def test_imagej_roi_set_reads_back_with_cell_and_nucleus_rois(tmp_path, labelled):
    instances, classes = labelled
    path = tmp_path / "cells.zip"
    write_imagej_rois(path, imagej_rois(instances, classes))
    rois = roifile.roiread(path)
    names = [roi.name for roi in rois]
    assert names == ["cell-1", "cell-1-nucleus", "cell-2", "cell-2-nucleus", "cell-2-nucleus-2", "cell-3", "cell-3-nucleus"]
    by_name = {roi.name: roi for roi in rois}
    for cell_id in (1, 2, 3):
        roi = by_name[f"cell-{cell_id}"]
        assert roi.roitype == roifile.ROI_TYPE.POLYGON and roi.group == CELL_GROUP
        outline = filled(shapely.Polygon(roi.coordinates()), instances.shape)
        assert iou(outline, instances == cell_id) > 0.999
        nucleus = np.zeros(instances.shape, bool)
        for name in by_name:
            if name.startswith(f"cell-{cell_id}-nucleus"):
                assert by_name[name].group == NUCLEUS_GROUP
                nucleus |= filled(shapely.Polygon(by_name[name].coordinates()), instances.shape)
        assert iou(nucleus, (instances == cell_id) & (classes == 2)) > 0.999


def test_no_cell_gives_empty_exports(tmp_path):
    empty = np.zeros((50, 60), np.int32)
    assert geojson_cells(empty, empty.astype(np.uint8), "empty.png") == {"type": "FeatureCollection", "features": []}
    write_imagej_rois(tmp_path / "none.zip", imagej_rois(empty, empty.astype(np.uint8)))
    assert roifile.roiread(tmp_path / "none.zip") == []


def test_roi_set_must_be_a_zip(tmp_path):
    with pytest.raises(ValueError, match="zip"):
        write_imagej_rois(tmp_path / "cells.roi", [])
