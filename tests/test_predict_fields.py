"""`wbcseg predict --mode field|auto`: the command on small drawn fields, with the stand-in stain
model behind `Segmenter.load` (the model directory holds a card with a scale and a placeholder
model file, never loaded)."""

from __future__ import annotations

import csv
import json
import re
import zipfile
from pathlib import Path

import numpy as np
import pytest
import roifile
from PIL import Image
from shapely.geometry import shape

from test_cli import run_cli
from test_predict import our_lines
from wbcseg import cli
from wbcseg.card import CARD_FILE, MODEL_FILE, make_card
from wbcseg.data import read_mask
from wbcseg.fieldbatch import MODES, field_columns
from wbcseg.files import LOCK_FILE

from stand_ins import draw_field, stain_segmenter, tiny_config


def model_dir(tmp_path: Path, **card_changes) -> Path:
    """A model directory that passes the command's checks: a tissue card with a scale, and a zip as model file."""
    folder = tmp_path / "model"
    folder.mkdir()
    card = {**make_card(tiny_config(), cell_diameter_px=18), **card_changes}
    (folder / CARD_FILE).write_text(json.dumps(card))
    with zipfile.ZipFile(folder / MODEL_FILE, "w") as archive:
        archive.writestr("placeholder", "never loaded")
    return folder


@pytest.fixture
def stand_in(monkeypatch):
    """Segmenter.load gives the stain stand-in with the asked pixel size."""
    monkeypatch.setattr("wbcseg.segmenter.Segmenter.load", lambda model_dir, pixel_size=None, **options: stain_segmenter(pixel_size=pixel_size))


def rows_of(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture
def inputs(tmp_path):
    """A field with two touching cells and one cut by the right border; an empty field of red
    cells; a crop of one cell. Returns the folder and the truth of the first field."""
    folder = tmp_path / "in"
    folder.mkdir()
    field, truth = draw_field((160, 260), [(80, 60, 20), (80, 99, 20), (70, 250, 20)], [(30, 170, 12)])
    Image.fromarray(field).save(folder / "field.png")
    empty, _ = draw_field((150, 200), [], [(40, 40, 12), (100, 150, 12), (60, 120, 12)])
    Image.fromarray(empty).save(folder / "empty.png")
    crop, _ = draw_field((60, 60), [(30, 30, 20)])
    Image.fromarray(crop).save(folder / "crop.png")
    return folder, truth


def test_a_field_run_writes_instances_rows_and_exports(tmp_path, inputs, stand_in):
    folder, truth = inputs
    out = tmp_path / "out"
    argv = ["predict", str(folder / "field.png"), str(folder / "empty.png"), "--model", str(model_dir(tmp_path)), "--out", str(out),
            "--mode", "field", "--cell-diameter", "40", "--pixel-size", "0.3"]
    code, stdout, stderr = run_cli(argv)
    assert code == 0, stderr
    assert "2 ok, 0 failed; masks, instance labels, overlays, GeoJSON, ROI sets and measurements.csv in" in stdout
    assert sorted(our_lines(stderr)) == [
        f"wbcseg predict: {folder / 'empty.png'}: field: 0 white cells (cell diameter 40 px, given)",
        f"wbcseg predict: {folder / 'field.png'}: field: 3 white cells (cell diameter 40 px, given)",
    ]
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file() and p.name != LOCK_FILE) == sorted(
        [f"{d}/{name}.{ext}" for name in ("field", "empty")
         for d, ext in (("masks", "png"), ("overlays", "png"), ("instances", "png"), ("geojson", "geojson"), ("rois", "zip"))]
        + ["measurements.csv"]
    )

    instances = np.asarray(Image.open(out / "instances" / "field.png"))
    classes = read_mask(out / "masks" / "field.png")  # the dataset's 0/128/255 convention
    assert instances.dtype == np.uint16 and instances.shape == truth.shape and set(np.unique(instances)) == {0, 1, 2, 3}
    assert np.array_equal(instances > 0, classes > 0)
    for true_id in (1, 2, 3):
        found = np.bincount(instances[truth == true_id]).argmax()
        assert ((instances == found) & (truth == true_id)).sum() / ((instances == found) | (truth == true_id)).sum() > 0.85

    rows = rows_of(out / "measurements.csv")
    assert list(rows[0]) == field_columns(0.3)
    cells = [row for row in rows if row["mask"] == "masks/field.png"]
    assert [int(row["cell_id"]) for row in cells] == [1, 2, 3] and all(row["instances"] == "instances/field.png" for row in cells)
    for row in cells:
        mine = instances == int(row["cell_id"])
        assert int(row["wbc_area_px"]) == mine.sum() and int(row["nucleus_area_px"]) == (mine & (classes == 2)).sum()
        assert row["touches_border"] == str(int(row["bbox_x"]) + int(row["bbox_width"]) == truth.shape[1])
        assert float(row["wbc_area_um2"]) == pytest.approx(mine.sum() * 0.09, rel=1e-3) and row["scale_source"] == "cell_diameter"
    assert sum(row["touches_border"] == "True" for row in cells) == 1
    (nothing,) = [row for row in rows if row["mask"] == "masks/empty.png"]
    assert (nothing["cell_id"], nothing["wbc_area_px"]) == ("0", "0") and not np.asarray(Image.open(out / "instances" / "empty.png")).any()

    features = json.loads((out / "geojson" / "field.geojson").read_text())["features"]
    assert [f["properties"]["measurements"]["Cell id"] for f in features] == [1, 2, 3]
    for feature, row in zip(features, cells):
        assert shape(feature["geometry"]).area == int(row["wbc_area_px"])  # pixel-edge outlines: area in pixels
        assert feature["properties"]["measurements"]["nucleus_area_px"] == int(row["nucleus_area_px"])
    assert [roi.name for roi in roifile.roiread(out / "rois" / "field.zip") if roi.group == 1] == ["cell-1", "cell-2", "cell-3"]
    assert json.loads((out / "geojson" / "empty.geojson").read_text())["features"] == [] and roifile.roiread(out / "rois" / "empty.zip") == []

    assert run_cli(argv)[0] == 0  # a rerun replaces all rows of the images it redoes
    assert rows_of(out / "measurements.csv") == rows  # the same rows, once: field mode is deterministic


def test_auto_mode_says_what_it_decided_and_sends_crops_down_the_crop_path(tmp_path, inputs, stand_in):
    folder, _ = inputs
    # Cells apart: the estimate measures each cell alone (two touching cells would pass for one larger cell).
    Image.fromarray(draw_field((160, 260), [(50, 50, 20), (110, 130, 20), (60, 210, 20)], [(130, 40, 12)])[0]).save(folder / "field.png")
    out = tmp_path / "out"
    code, _, stderr = run_cli(["predict", str(folder), "--model", str(model_dir(tmp_path)), "--out", str(out), "--mode", "auto"])
    assert code == 0, stderr
    lines = {Path(line.split(": ")[1]).name: line for line in our_lines(stderr)}
    assert len(lines) == 3
    assert re.search(r": crop: 60x60 px is 1\.\d cell diameters across \(\d\d px, estimated\): a crop centred on one white cell$", lines["crop.png"])
    assert re.search(r": field: 3 white cells \(cell diameter \d\d px, estimated\)$", lines["field.png"])
    assert ": field: 0 white cells (no nucleus-dark blob, so no scale)" in lines["empty.png"]
    rows = {row["mask"]: row for row in rows_of(out / "measurements.csv")}
    assert rows["masks/crop.png"]["cell_id"] == "" and int(rows["masks/crop.png"]["wbc_area_px"]) > 0  # a crop's row, as in crop mode
    assert not (out / "instances" / "crop.png").exists() and (out / "overlays" / "crop.png").is_file()


@pytest.mark.parametrize("mode", ["field", "auto"])
@pytest.mark.parametrize(
    "card_changes, reason", [({"scale": None}, "records no scale.cell_diameter_px"), ({"task": "binary", "classes": ["background", "cell"]}, "has none")]
)
def test_a_model_that_cannot_do_fields_is_one_line_before_it_loads(tmp_path, inputs, monkeypatch, mode, card_changes, reason):
    folder, _ = inputs
    monkeypatch.setattr("wbcseg.segmenter.Segmenter.load", lambda *a, **k: pytest.fail("the model was loaded"))
    directory = model_dir(tmp_path, **card_changes)
    code, _, stderr = run_cli(["predict", str(folder), "--model", str(directory), "--out", str(tmp_path / "out"), "--mode", mode])
    assert code == 2
    (line,) = our_lines(stderr)
    assert line.startswith(f"wbcseg predict: error: {directory / CARD_FILE}: ") and reason in line


def test_a_scale_that_would_not_fit_in_memory_fails_that_image_only(tmp_path, inputs, stand_in):
    folder, _ = inputs
    argv = ["predict", str(folder / "field.png"), "--model", str(model_dir(tmp_path)), "--out", str(tmp_path / "out"), "--mode", "field"]
    code, stdout, stderr = run_cli([*argv, "--cell-diameter", "0.05"])
    assert code == 1 and "0 ok, 1 failed" in stdout
    (line,) = our_lines(stderr)
    assert line.startswith(f"wbcseg predict: {folder / 'field.png'}: at a cell diameter of 0.05 px (cell_diameter)") and "megapixels" in line


def test_the_command_line_knows_every_mode():
    parser = cli.build_parser()
    assert [parser.parse_args(["predict", "x", "--model", "m", "--out", "o", "--mode", m]).mode for m in MODES] == list(MODES)
    assert parser.parse_args(["predict", "x", "--model", "m", "--out", "o"]).mode == "crop"
