"""Reading the user's images and writing outputs that no crash, rerun or second run can spoil."""

from __future__ import annotations

import csv
import os
import stat
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from wbcseg.errors import OutputError
from wbcseg.files import LOCK_FILE, MeasurementsTable, OutputFolder, find_images, output_names, read_input_image, write_png

RNG = np.random.default_rng(0)


def rgb(h, w):
    return RNG.integers(0, 256, (h, w, 3), dtype=np.uint8)


def files_under(root: Path) -> list[Path]:
    return sorted(p.relative_to(root) for p in root.rglob("*") if p.is_file() and p.name != LOCK_FILE)


def rows_of(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_output_names_never_collide(tmp_path):
    files = [tmp_path / "a" / "x.bmp", tmp_path / "b" / "x.bmp", tmp_path / "a" / "x.png", tmp_path / "a" / "y.tif"]
    assert output_names(files) == [Path("a/x.bmp"), Path("b/x"), Path("a/x.png"), Path("a/y")]


def test_find_images_recurses_and_skips_the_output_folder(tmp_path):
    (tmp_path / "in" / "sub" / "deeper").mkdir(parents=True)
    (tmp_path / "in" / "out").mkdir()
    for rel in ("in/a.PNG", "in/sub/b.jpeg", "in/sub/deeper/c.tiff", "in/out/old.png", "in/notes.txt"):
        (tmp_path / rel).write_bytes(b"x")
    files, missing = find_images([tmp_path / "in", tmp_path / "in" / "a.PNG", tmp_path / "nope"], exclude=tmp_path / "in" / "out")
    assert [f.relative_to(tmp_path).as_posix() for f in files] == ["in/a.PNG", "in/sub/b.jpeg", "in/sub/deeper/c.tiff"]
    assert missing == [tmp_path / "nope"]


def test_read_input_image_converts_every_kind(tmp_path):
    image = rgb(10, 12)
    Image.fromarray(np.dstack([image, np.full((10, 12), 7, np.uint8)])).save(tmp_path / "rgba.png")
    np.testing.assert_array_equal(read_input_image(tmp_path / "rgba.png"), image)
    Image.fromarray(image[..., 0]).save(tmp_path / "grey.bmp")
    np.testing.assert_array_equal(read_input_image(tmp_path / "grey.bmp"), np.repeat(image[..., :1], 3, -1))
    Image.fromarray(image[..., 0].astype(np.uint16) * 257).save(tmp_path / "grey16.png")
    np.testing.assert_array_equal(read_input_image(tmp_path / "grey16.png")[..., 0], image[..., 0])
    # PIL cannot decode a float RGB TIFF: tifffile reads it, scaled by its range.
    tifffile.imwrite(tmp_path / "float.tif", np.linspace(0, 1, 10 * 12 * 3, dtype=np.float32).reshape(10, 12, 3), photometric="rgb")
    out = read_input_image(tmp_path / "float.tif")
    assert out.shape == (10, 12, 3) and out.dtype == np.uint8 and (out.min(), out.max()) == (0, 255)


def test_write_png_round_trips_grey_and_rgb(tmp_path):
    rng = np.random.default_rng(0)
    for name, array in (("grey", rng.integers(0, 256, (7, 5), dtype=np.uint8)), ("rgb", rng.integers(0, 256, (7, 5, 3), dtype=np.uint8))):
        write_png(array, tmp_path / f"{name}.png")
        with Image.open(tmp_path / f"{name}.png") as back:
            assert back.mode == ("L" if array.ndim == 2 else "RGB")
            np.testing.assert_array_equal(np.asarray(back), array)


def test_write_png_leaves_nothing_when_it_fails(tmp_path, monkeypatch):
    write_png(np.zeros((4, 4), np.uint8), tmp_path / "ok.png")

    def disk_full(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", disk_full)
    with pytest.raises(OSError, match="No space left"):
        write_png(np.zeros((4, 4, 3), np.uint8), tmp_path / "bad.png")
    assert files_under(tmp_path) == [Path("ok.png")]


def test_outputs_get_the_permissions_of_any_new_file(tmp_path):
    before = os.umask(0o022)
    try:
        write_png(np.zeros((4, 4), np.uint8), tmp_path / "m.png")
    finally:
        os.umask(before)
    assert stat.S_IMODE((tmp_path / "m.png").stat().st_mode) == 0o644


def test_table_keeps_whole_rows_after_an_error(tmp_path):
    with pytest.raises(RuntimeError):
        with MeasurementsTable(tmp_path, ["mask", "b"]) as table:
            table.write({"mask": "masks/1.png", "b": 0.123456789})
            raise RuntimeError("crash")
    assert (tmp_path / "measurements.csv").read_text().splitlines() == ["mask,b", "masks/1.png,0.1235"]
    assert files_under(tmp_path) == [Path("measurements.csv")]


def test_a_rerun_merges_by_image_and_the_new_row_wins(tmp_path):
    with MeasurementsTable(tmp_path, ["mask", "area"]) as table:
        table.write({"mask": "masks/a.png", "area": 1})
        table.write({"mask": "masks/b.png", "area": 2})
    with MeasurementsTable(tmp_path, ["mask", "area", "area_um2"]) as table:
        table.write({"mask": "masks/c.png", "area": 30, "area_um2": 7.5}, order=1)
        table.write({"mask": "masks/b.png", "area": 20, "area_um2": 5.0}, order=0)
    assert rows_of(tmp_path / "measurements.csv") == [
        {"mask": "masks/a.png", "area": "1", "area_um2": ""},
        {"mask": "masks/b.png", "area": "20", "area_um2": "5.0"},
        {"mask": "masks/c.png", "area": "30", "area_um2": "7.5"},
    ]


def test_a_fields_rows_are_replaced_together_when_it_is_redone(tmp_path):
    def cells(image, n):
        return [{"mask": f"masks/{image}.png", "cell_id": k, "area": 10 * k} for k in range(1, n + 1)]

    with MeasurementsTable(tmp_path, ["mask", "area"]) as table:
        table.write({"mask": "masks/crop.png", "area": 5})
    with MeasurementsTable(tmp_path, ["mask", "cell_id", "area"]) as table:
        table.write_rows(cells("field", 3), order=0)
        table.write_rows(cells("other", 1), order=1)
    with MeasurementsTable(tmp_path, ["mask", "cell_id", "area"]) as table:
        table.write_rows(cells("field", 1))  # fewer cells this time: the old cells 2 and 3 must go
    assert [(row["mask"], row["cell_id"]) for row in rows_of(tmp_path / "measurements.csv")] == [
        ("masks/crop.png", ""), ("masks/other.png", "1"), ("masks/field.png", "1"),
    ]
    with pytest.raises(ValueError):
        with MeasurementsTable(tmp_path, ["mask", "cell_id", "area"]) as table:
            table.write_rows(cells("field", 1) + cells("other", 1))  # one image's rows at a time


def test_rows_are_journaled_at_once_and_a_killed_runs_rows_are_recovered(tmp_path):
    with MeasurementsTable(tmp_path, ["mask", "area"]) as table:
        table.write({"mask": "masks/a.png", "area": 1})
    killed = MeasurementsTable(tmp_path, ["mask", "area"])
    killed.write({"mask": "masks/b.png", "area": 2})
    killed.write({"mask": "masks/a.png", "area": 10})
    # The process dies here (no close): its rows are already on disk, in the journal...
    journal = tmp_path / ".measurements.csv.partial"
    assert [row["mask"] for row in rows_of(journal)] == ["masks/b.png", "masks/a.png"]
    with open(journal, "a") as fh:
        fh.write("masks/c.png,3")  # ...and a row cut short by the kill is not a row
    # ...and the next run folds them in before it starts its own journal.
    with MeasurementsTable(tmp_path, ["mask", "area"]) as table:
        assert rows_of(tmp_path / "measurements.csv") == [{"mask": "masks/a.png", "area": "10"}, {"mask": "masks/b.png", "area": "2"}]
        table.write({"mask": "masks/d.png", "area": 4})
    assert [row["mask"] for row in rows_of(tmp_path / "measurements.csv")] == ["masks/a.png", "masks/b.png", "masks/d.png"]
    assert not journal.exists()


def test_a_second_run_into_a_folder_in_use_is_refused(tmp_path):
    with OutputFolder(tmp_path / "out"):
        with pytest.raises(OutputError, match="out: another wbcseg predict is writing there"):
            OutputFolder(tmp_path / "out")
    with OutputFolder(tmp_path / "out"):  # free again once the first run ends
        pass


def test_an_output_folder_that_cannot_be_one_is_refused(tmp_path):
    (tmp_path / "a_file").write_text("x")
    with pytest.raises(OutputError, match="a_file: exists and is not a folder"):
        OutputFolder(tmp_path / "a_file")
    with pytest.raises(OutputError, match="a_file/out: cannot write there"):
        OutputFolder(tmp_path / "a_file" / "out")
