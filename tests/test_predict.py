"""`wbcseg predict` and the Segmenter API.

The CLI runs use the untrained 96-px fixture models: their masks are garbage but deterministic,
which is all that plumbing needs. Exact checks (TTA, batching) use a stand-in model that maps
each pixel's colour to probabilities.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from wbcseg import cli, predict
from wbcseg.data import read_mask
from wbcseg.model import CARD_FILE, MODEL_FILE, native_bfloat16, read_card
from wbcseg.predict import (
    OVERLAY_ALPHA,
    OVERLAY_COLOURS,
    MeasurementsTable,
    Segmenter,
    SegmentResult,
    card_inference_options,
    find_images,
    mask_to_png_values,
    measure,
    measurement_columns,
    output_names,
    overlay,
    predict_files,
    read_input_image,
    write_png,
)

RNG = np.random.default_rng(0)


def rgb(h, w):
    return RNG.integers(0, 256, (h, w, 3), dtype=np.uint8)


def run_cli(argv: list[str]) -> tuple[int, str, str]:
    """cli.main in-process: (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(argv)
    return code, out.getvalue(), err.getvalue()


HEADER = re.compile(r"wbcseg predict: \d+ images; ")


def our_lines(stderr: str) -> list[str]:
    """The lines wbcseg printed (TensorFlow logs to the same stream), but the header of a run."""
    return [line for line in stderr.splitlines() if line.startswith("wbcseg predict") and not HEADER.match(line)]


def files_under(root: Path) -> list[Path]:
    return sorted(p.relative_to(root) for p in root.rglob("*") if p.is_file())


def model_variant(tmp_path: Path, model_dir: Path, **card_changes) -> Path:
    """A model directory sharing `model_dir`'s weights (symlinked) with a changed card."""
    variant = tmp_path / "model_variant"
    variant.mkdir()
    (variant / MODEL_FILE).symlink_to(Path(model_dir) / MODEL_FILE)
    card = json.loads((Path(model_dir) / CARD_FILE).read_text())
    (variant / CARD_FILE).write_text(json.dumps({**card, **card_changes}))
    return variant


# --------------------------------------------------------------------------- label maps and measurements


def test_mask_to_png_values():
    labels = np.array([[0, 1, 2]], np.uint8)
    np.testing.assert_array_equal(mask_to_png_values(labels, "tissue"), [[0, 128, 255]])
    np.testing.assert_array_equal(mask_to_png_values(labels[:, :2], "binary"), [[0, 255]])
    assert mask_to_png_values(labels, "tissue").dtype == np.uint8


def hand_made_labels() -> np.ndarray:
    """20x30: cytoplasm rows 2-9 x cols 4-13 with a 3x4 nucleus inside, and a 2x2 stray blob."""
    labels = np.zeros((20, 30), np.uint8)
    labels[2:10, 4:14] = 1
    labels[4:7, 6:10] = 2
    labels[15:17, 25:27] = 1
    return labels


def test_measure_on_a_hand_made_label_map():
    labels = hand_made_labels()
    probabilities = np.eye(3, dtype=np.float32)[labels] * 0.8 + 0.2 / 3
    m = measure(labels, probabilities, "tissue", pixel_size=0.5)
    assert list(m) == measurement_columns(0.5)
    assert (m["wbc_area_px"], m["nucleus_area_px"], m["cytoplasm_area_px"]) == (84, 12, 72)
    assert (m["wbc_area_um2"], m["nucleus_area_um2"], m["cytoplasm_area_um2"]) == (21.0, 3.0, 18.0)
    assert m["nc_ratio"] == pytest.approx(12 / 72)
    rows, cols = np.nonzero(labels)
    assert (m["centroid_x"], m["centroid_y"]) == pytest.approx((cols.mean(), rows.mean()))
    assert (m["bbox_x"], m["bbox_y"], m["bbox_width"], m["bbox_height"]) == (4, 2, 23, 15)
    assert m["n_components"] == 2
    assert m["mean_confidence"] == pytest.approx(0.8 + 0.2 / 3)


def test_measure_binary_and_empty():
    labels = (hand_made_labels() > 0).astype(np.uint8)
    m = measure(labels, np.eye(2, dtype=np.float32)[labels], "binary")
    assert "wbc_area_um2" not in m
    assert m["wbc_area_px"] == 84 and m["nucleus_area_px"] is None and m["nc_ratio"] is None
    empty = measure(np.zeros((5, 5), np.uint8), np.full((5, 5, 3), 1 / 3, np.float32), "tissue")
    assert empty["wbc_area_px"] == 0 and empty["n_components"] == 0
    assert empty["centroid_x"] is None and empty["bbox_width"] is None and empty["nc_ratio"] is None


# --------------------------------------------------------------------------- files and names


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
    Image.fromarray((image[..., 0].astype(np.uint16) * 257)).save(tmp_path / "grey16.png")
    np.testing.assert_array_equal(read_input_image(tmp_path / "grey16.png")[..., 0], image[..., 0])
    # PIL cannot decode a float RGB TIFF: tifffile reads it, scaled by its range.
    tifffile.imwrite(tmp_path / "float.tif", np.linspace(0, 1, 10 * 12 * 3, dtype=np.float32).reshape(10, 12, 3), photometric="rgb")
    out = read_input_image(tmp_path / "float.tif")
    assert out.shape == (10, 12, 3) and out.dtype == np.uint8 and (out.min(), out.max()) == (0, 255)


# --------------------------------------------------------------------------- the Segmenter API


class ColourModel:
    """Stands in for a Keras model: each pixel's probabilities depend on its colour alone, so
    flipping the input flips the output exactly."""

    def __init__(self, channels: int):
        self.channels = channels

    def predict_on_batch(self, x):
        red, green = x[..., :1] / 255.0, x[..., 1:2] / 255.0
        if self.channels == 1:
            return red
        return np.concatenate([1 - red, red * (1 - green), red * green], axis=-1)


def colour_segmenter(task: str, **options) -> Segmenter:
    classes = ["background", "cell"] if task == "binary" else ["background", "cytoplasm", "nucleus"]
    card = {"task": task, "classes": classes, "input_size": 32}
    return Segmenter(ColourModel(1 if task == "binary" else 3), card, **options)


def test_segment_gives_native_resolution_labels_and_probabilities():
    result = colour_segmenter("tissue").segment(rgb(45, 70))
    assert isinstance(result, SegmentResult)
    assert result.labels.shape == (45, 70) and result.labels.dtype == np.uint8
    assert result.probabilities.shape == (45, 70, 3) and result.probabilities.dtype == np.float32
    np.testing.assert_allclose(result.probabilities.sum(-1), 1, atol=1e-5)
    np.testing.assert_array_equal(result.labels, result.probabilities.argmax(-1))
    assert result.measurements["wbc_area_px"] == int((result.labels > 0).sum())


def test_binary_probabilities_have_two_channels():
    result = colour_segmenter("binary").segment(rgb(40, 40))
    assert result.probabilities.shape == (40, 40, 2)
    assert set(np.unique(result.labels)) <= {0, 1}


def test_tta_undoes_its_flips():
    images = [rgb(50, 64), rgb(64, 50)]
    plain = list(colour_segmenter("tissue").segment_many(images))
    tta = list(colour_segmenter("tissue", tta=True).segment_many(images))
    for a, b in zip(plain, tta):
        np.testing.assert_allclose(a.probabilities, b.probabilities, atol=1e-5)


def test_segment_many_batches_like_segment():
    segmenter = colour_segmenter("tissue", postprocess=True, pixel_size=0.25)
    images = [rgb(30 + i, 40) for i in range(5)]
    batched = list(segmenter.segment_many(iter(images), batch_size=2))
    assert len(batched) == 5
    for image, result in zip(images, batched):
        single = segmenter.segment(image)
        np.testing.assert_array_equal(single.labels, result.labels)
        assert single.measurements == result.measurements
        assert result.measurements["n_components"] <= 1
        assert result.measurements["wbc_area_um2"] == result.measurements["wbc_area_px"] * 0.0625


def test_segment_rejects_non_rgb_arrays():
    with pytest.raises(ValueError, match="RGB uint8"):
        colour_segmenter("tissue").segment(np.zeros((10, 10), np.uint8))


def test_real_model_round_trip_and_tta(tissue_model_dir, cell_image):
    segmenter = Segmenter.load(tissue_model_dir, tta=True)
    assert segmenter.card == read_card(tissue_model_dir)
    assert (segmenter.task, segmenter.input_size, segmenter.classes) == ("tissue", 96, ("background", "cytoplasm", "nucleus"))
    image = cell_image[0]
    first, again = segmenter.segment(image), next(segmenter.segment_many([image, image[::-1]], batch_size=2))
    assert first.probabilities.shape == (120, 120, 3)
    np.testing.assert_allclose(first.probabilities.sum(-1), 1, atol=1e-4)
    np.testing.assert_allclose(first.probabilities, again.probabilities, atol=1e-4)
    same_model = Segmenter(segmenter.model, segmenter.card, tta=True)
    np.testing.assert_allclose(same_model.segment(image).probabilities, first.probabilities, atol=1e-5)


def test_card_inference_options():
    assert card_inference_options({}) == {"tta": False, "postprocess": False, "precision": "float32", "engine": "tensorflow"}
    recorded = {"inference": {"postprocess": True, "precision": "bfloat16", "engine": "openvino"}}
    assert card_inference_options(recorded) == {"tta": False, "postprocess": True, "precision": "bfloat16", "engine": "openvino"}


@pytest.mark.skipif(not native_bfloat16(), reason="this CPU has no native bfloat16")
def test_bfloat16_segmenter_agrees_with_float32(tissue_model_dir, cell_image):
    image = cell_image[0]
    exact = Segmenter.load(tissue_model_dir).segment(image)
    fast = Segmenter.load(tissue_model_dir, precision="bfloat16")
    assert fast.precision == "bfloat16"
    mixed = fast.segment(image)
    change = np.abs(mixed.probabilities - exact.probabilities).max()
    assert 0 < change < 0.05
    # This barely trained model has many near ties; the label may change only where float32's
    # two best classes are closer than bfloat16 moved the probabilities.
    top2 = np.sort(exact.probabilities, axis=-1)[..., -2:]
    decided = top2[..., 1] - top2[..., 0] > 2 * change
    assert decided.mean() > 0.5
    np.testing.assert_array_equal(mixed.labels[decided], exact.labels[decided])


def test_predict_falls_back_to_float32_where_bfloat16_is_not_native(monkeypatch, capsys):
    from wbcseg import model

    assert predict._precision("bfloat16", "float32") == "bfloat16"  # asked for: used as asked
    monkeypatch.setattr(model, "native_bfloat16", lambda: True)
    assert predict._precision(None, "bfloat16") == "bfloat16"
    monkeypatch.setattr(model, "native_bfloat16", lambda: False)
    assert predict._precision(None, "bfloat16") == "float32"
    assert "does not run natively; using float32" in capsys.readouterr().err
    assert predict._precision(None, "float32") == "float32"


def test_predict_leaves_openvino_for_tensorflow_where_a_gpu_is_seen(monkeypatch, capsys):
    from wbcseg import engine

    assert predict._engine("openvino", "tensorflow") == "openvino"  # asked for: used as asked
    monkeypatch.setattr(engine, "resolve_engine", lambda name: "openvino")  # no GPU
    assert predict._engine(None, "openvino") == "openvino"
    monkeypatch.setattr(engine, "resolve_engine", lambda name: "tensorflow")  # a GPU
    assert predict._engine(None, "openvino") == "tensorflow"
    assert "this machine has a GPU; using TensorFlow" in capsys.readouterr().err
    assert predict._engine(None, "tensorflow") == "tensorflow"


def test_importing_predict_does_not_import_tensorflow():
    code = "import sys, wbcseg.cli; wbcseg.cli.build_parser(); print('tensorflow' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"


# --------------------------------------------------------------------------- atomic outputs


def test_overlay_tints_and_outlines_the_cell_only():
    image = np.full((9, 9, 3), 200, np.uint8)
    labels = np.zeros((9, 9), np.uint8)
    labels[1:8, 1:8] = 1
    labels[4, 4] = 2
    out = overlay(image, labels, "tissue")
    colours = np.asarray(OVERLAY_COLOURS["tissue"])
    assert (out[labels == 0] == 200).all()
    np.testing.assert_array_equal(out[1, 1], colours[1])  # cytoplasm outline
    np.testing.assert_array_equal(out[4, 4], colours[2])  # the nucleus is all outline
    np.testing.assert_array_equal(out[2, 2], np.floor(200 * (1 - OVERLAY_ALPHA) + colours[1] * OVERLAY_ALPHA + 0.5))


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


def test_measurements_table_keeps_whole_rows_after_an_error(tmp_path):
    with pytest.raises(RuntimeError):
        with MeasurementsTable(tmp_path / "m.csv", ["a", "b"]) as table:
            table.write({"a": 1, "b": 0.123456789})
            raise RuntimeError("crash")
    assert (tmp_path / "m.csv").read_text().splitlines() == ["a,b", "1,0.1235"]
    assert files_under(tmp_path) == [Path("m.csv")]


class InterruptedModel(ColourModel):
    """A stand-in model that is interrupted (Ctrl-C) on its second call."""

    calls = 0

    def predict_on_batch(self, x):
        self.calls += 1
        if self.calls == 2:
            raise KeyboardInterrupt
        return super().predict_on_batch(x)


def test_an_interrupted_run_leaves_complete_outputs_only(tmp_path):
    files = []
    for i in range(4):
        files.append(tmp_path / "in" / f"{i}.png")
        files[-1].parent.mkdir(exist_ok=True)
        Image.fromarray(rgb(30, 30)).save(files[-1])
    segmenter = Segmenter(InterruptedModel(3), {"task": "tissue", "classes": ["background", "cytoplasm", "nucleus"], "input_size": 32})
    with pytest.raises(KeyboardInterrupt):
        predict_files(segmenter, files, tmp_path / "out", batch_size=2)
    assert files_under(tmp_path / "out") == [
        Path("masks/0.png"), Path("masks/1.png"), Path("measurements.csv"), Path("overlays/0.png"), Path("overlays/1.png")
    ]
    with open(tmp_path / "out" / "measurements.csv", newline="") as fh:
        assert [row["mask"] for row in csv.DictReader(fh)] == ["masks/0.png", "masks/1.png"]


# --------------------------------------------------------------------------- the command: a tissue run


def write_inputs(root: Path) -> tuple[dict[str, tuple], dict[str, str]]:
    """Good images of every kind in nested folders, and bad files, under `root`.

    Returns {relative path: (height, width)} of the good ones and {relative path: expected reason} of the bad ones.
    """
    good = {
        "cells/cell.bmp": rgb(120, 100),
        "cells/cell.png": rgb(64, 80),  # same stem, same folder
        "cells/deep/cell.png": rgb(97, 101),  # same name, other folder
        "cells/photo.jpg": rgb(50, 60),
        "cells/rgba.png": np.dstack([rgb(40, 41), np.full((40, 41, 1), 128, np.uint8)]),
        "cells/grey.png": rgb(33, 30)[..., 0],
        "cells/grey16.tif": RNG.integers(0, 65536, (44, 40), dtype=np.uint16),
        "cells/deep/rgb.tiff": rgb(36, 38),
    }
    for rel, array in good.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(array).save(root / rel)
    png = (root / "cells/cell.png").read_bytes()
    corrupt = bytearray(png)
    corrupt[100:300] = bytes(200)
    (root / "cells/bad/corrupt.png").parent.mkdir()
    (root / "cells/bad/corrupt.png").write_bytes(bytes(corrupt))
    (root / "cells/bad/truncated.png").write_bytes(png[: len(png) // 2])
    (root / "cells/bad/not_an_image.jpg").write_text("hello")
    (root / "cells/bad/empty.bmp").write_bytes(b"")
    (root / "notes.txt").write_text("not an image, passed by name")
    bad = {
        "cells/bad/corrupt.png": "not a readable image",
        "cells/bad/truncated.png": "truncated",
        "cells/bad/not_an_image.jpg": "not a readable image",
        "cells/bad/empty.bmp": "file is empty",
        "notes.txt": "not a readable image",
    }
    return {rel: array.shape[:2] for rel, array in good.items()}, bad


@pytest.fixture(scope="module")
def tissue_run(tissue_model_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("tissue_run")
    good, bad = write_inputs(root / "in")
    out = root / "out"
    code, stdout, stderr = run_cli(
        ["predict", str(root / "in" / "cells"), str(root / "in" / "notes.txt"), "--model", str(tissue_model_dir), "--out", str(out), "--batch-size", "4"]
    )
    return {"code": code, "stdout": stdout, "stderr": stderr, "out": out, "good": good, "bad": bad, "root": root}


def test_run_exit_code_and_summary(tissue_run):
    assert tissue_run["code"] == 1
    assert "8 ok, 5 failed" in tissue_run["stdout"]


def test_each_bad_file_is_one_line_naming_it(tissue_run):
    lines = our_lines(tissue_run["stderr"])
    assert len(lines) == len(tissue_run["bad"])
    header = "wbcseg predict: 13 images; tissue model at 96 px, TTA off, post-processing off, float32 on tensorflow"
    assert header in tissue_run["stderr"].splitlines()
    for rel, reason in tissue_run["bad"].items():
        (line,) = [line for line in lines if str(tissue_run["root"] / "in" / rel) in line]
        assert reason in line


def test_masks_and_overlays_at_native_size_without_collisions(tissue_run):
    out = tissue_run["out"]
    # Below the inputs' common folder (in/, because of notes.txt); same stems in one folder keep their extension.
    expected = {
        "cells/cell.bmp": "cells/cell.bmp", "cells/cell.png": "cells/cell.png", "cells/deep/cell.png": "cells/deep/cell",
        "cells/photo.jpg": "cells/photo", "cells/rgba.png": "cells/rgba", "cells/grey.png": "cells/grey",
        "cells/grey16.tif": "cells/grey16", "cells/deep/rgb.tiff": "cells/deep/rgb",
    }
    assert files_under(out) == sorted(
        [Path("measurements.csv")] + [Path(d) / f"{name}.png" for name in expected.values() for d in ("masks", "overlays")]
    )  # also: no temporary files left behind
    for rel, name in expected.items():
        grey = np.asarray(Image.open(out / "masks" / f"{name}.png"))
        assert grey.shape == tissue_run["good"][rel] and set(np.unique(grey)) <= {0, 128, 255}
        read_mask(out / "masks" / f"{name}.png", shape=tissue_run["good"][rel])  # the dataset's convention
        assert np.asarray(Image.open(out / "overlays" / f"{name}.png")).shape == (*tissue_run["good"][rel], 3)


def test_measurements_csv_has_one_row_per_image(tissue_run):
    with open(tissue_run["out"] / "measurements.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["image", "mask", "overlay", "width", "height", *measurement_columns()]
    assert sorted(Path(r["image"]).relative_to(tissue_run["root"] / "in").as_posix() for r in rows) == sorted(tissue_run["good"])
    for row in rows:
        h, w = tissue_run["good"][Path(row["image"]).relative_to(tissue_run["root"] / "in").as_posix()]
        assert (int(row["height"]), int(row["width"])) == (h, w)
        grey = np.asarray(Image.open(tissue_run["out"] / row["mask"]))
        assert int(row["wbc_area_px"]) == int((grey > 0).sum())
        assert int(row["nucleus_area_px"]) == int((grey == 255).sum())


# --------------------------------------------------------------------------- the command: a binary run


def test_binary_run_with_card_defaults_pixel_size_and_size_limit(binary_model_dir, tmp_path):
    model_dir = model_variant(tmp_path, binary_model_dir, inference={"postprocess": True})
    for name, side in (("small", 40), ("large", 300)):
        Image.fromarray(rgb(side, side)).save(tmp_path / f"{name}.png")
    out = tmp_path / "out"
    code, stdout, stderr = run_cli(
        ["predict", str(tmp_path / "small.png"), str(tmp_path / "large.png"), "--model", str(model_dir),
         "--out", str(out), "--pixel-size", "0.5", "--max-megapixels", "0.01"]
    )
    assert code == 1 and "1 ok, 1 failed" in stdout
    (line,) = our_lines(stderr)
    assert str(tmp_path / "large.png") in line and "0.09 megapixels" in line and "--max-megapixels" in line
    mask = np.asarray(Image.open(out / "masks" / "small.png"))
    assert mask.shape == (40, 40) and set(np.unique(mask)) <= {0, 255}
    with open(out / "measurements.csv", newline="") as fh:
        (row,) = list(csv.DictReader(fh))
    assert row["nucleus_area_px"] == "" and row["nc_ratio"] == ""
    assert float(row["wbc_area_um2"]) == int(row["wbc_area_px"]) * 0.25
    assert int(row["n_components"]) <= 1  # postprocess on, as the card records


def test_engine_from_the_card_or_the_command_line(tissue_model_dir, cell_image, tmp_path):
    model_dir = model_variant(tmp_path, tissue_model_dir, inference={"engine": "openvino"})
    Image.fromarray(cell_image[0]).save(tmp_path / "cell.png")
    masks = {}
    for engine, extra in (("openvino", []), ("tensorflow", ["--engine", "tensorflow"])):
        out = tmp_path / engine
        code, _, stderr = run_cli(["predict", str(tmp_path / "cell.png"), "--model", str(model_dir), "--out", str(out), *extra])
        assert code == 0
        assert f"float32 on {engine}" in stderr
        masks[engine] = np.asarray(Image.open(out / "masks" / "cell.png"))
    # Same network, both in float32: only near ties of this untrained model may differ.
    assert (masks["openvino"] == masks["tensorflow"]).mean() > 0.99


# --------------------------------------------------------------------------- the command: bad model directories


@pytest.fixture
def one_image(tmp_path) -> str:
    Image.fromarray(rgb(20, 20)).save(tmp_path / "one.png")
    return str(tmp_path / "one.png")


def test_missing_model_directory(one_image, tmp_path):
    code, _, stderr = run_cli(["predict", one_image, "--model", str(tmp_path / "nope"), "--out", str(tmp_path / "out")])
    assert code == 2
    (line,) = our_lines(stderr)
    assert str(tmp_path / "nope") in line and "not found" in line


def test_incomplete_model_directories(one_image, tissue_model_dir, tmp_path):
    only_card = tmp_path / "only_card"
    only_card.mkdir()
    (only_card / CARD_FILE).write_text((tissue_model_dir / CARD_FILE).read_text())
    only_weights = tmp_path / "only_weights"
    only_weights.mkdir()
    (only_weights / MODEL_FILE).symlink_to(tissue_model_dir / MODEL_FILE)
    bad_card = model_variant(tmp_path, tissue_model_dir, classes=["background", "cell"])
    for model_dir, reason in ((only_card, MODEL_FILE), (only_weights, CARD_FILE), (bad_card, "do not agree")):
        code, _, stderr = run_cli(["predict", one_image, "--model", str(model_dir), "--out", str(tmp_path / "out")])
        assert code == 2
        (line,) = our_lines(stderr)
        assert str(model_dir) in line and reason in line
    assert not (tmp_path / "out").exists()


def test_mismatched_model_and_card(one_image, tissue_model_dir, tmp_path):
    model_dir = model_variant(tmp_path, tissue_model_dir, input_size=128)
    code, _, stderr = run_cli(["predict", one_image, "--model", str(model_dir), "--out", str(tmp_path / "out")])
    assert code == 2
    (line,) = our_lines(stderr)
    assert "card says 128x128x3" in line


def test_command_line_entry_point(one_image, tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "wbcseg.cli", "predict", one_image, "--model", str(tmp_path / "nope"), "--out", str(tmp_path / "out")],
        capture_output=True, text=True,
    )
    assert result.returncode == 2
    assert our_lines(result.stderr) == [f"wbcseg predict: error: {tmp_path / 'nope'}: model directory not found (train one with `dvc repro`)"]
